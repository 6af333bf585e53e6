"""``python -m rldk.compat shim-path``: print the folder to put on ``PYTHONPATH`` so that
``import wandb`` loads :mod:`rldk.compat.wandb` in every process of a training job."""
from __future__ import annotations

import sys

from rldk.compat import SHIM_PATH


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["shim-path"]:
        print("usage: python -m rldk.compat shim-path", file=sys.stderr)
        return 2
    print(SHIM_PATH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
