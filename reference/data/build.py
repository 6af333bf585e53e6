"""Write the reference tasks' fixed datasets and their lineage manifests.

    python reference/data/build.py           # rewrite the JSONL files and manifests
    python reference/data/build.py --check   # exit 1 if a file differs from its task's rows

Each task's ``rows(split)`` is deterministic; this writes
``reference/data/<task>/<split>.jsonl`` (one JSON object per line, sorted
keys) and, through :func:`rldk.writer.lineage.write_manifest`, the content-hash
manifest ``<split>.jsonl.rldk.json`` beside it. The smoke test verifies the
manifests with :func:`rldk.analyzers.lineage.verify`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reference.tasks import SPLITS, TASKS, dataset_path, load  # noqa: E402


def render(rows) -> str:
    """The JSONL text of ``rows``: sorted keys, one object per line."""
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for task in TASKS:
        for split in SPLITS:
            path, text = dataset_path(task, split), render(load(task).rows(split))
            if args.check:
                if not path.is_file() or path.read_text(encoding="utf-8") != text:
                    stale.append(str(path))
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            from rldk.writer.lineage import write_manifest

            print(f"{path}  ->  {write_manifest(path)}")
    for path in stale:
        print(f"{path} differs from its task's rows: run python reference/data/build.py")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
