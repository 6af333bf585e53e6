"""Drop-in stand-ins for the trackers training code already calls, writing to an rldk store.

    import rldk.compat.wandb as wandb                       # instead of: import wandb
    from rldk.compat.tensorboard import SummaryWriter       # instead of: from torch.utils.tensorboard import ...

:mod:`rldk.compat.wandb` follows the ``wandb`` module's API (``init``, ``log``,
``config``, ``summary``, ``finish``, ``Table``, ``Histogram``, ``define_metric``...);
``rldk.compat.wandb.install()`` makes ``import wandb`` anywhere in the process
(transformers' and TRL's ``report_to="wandb"``) load it. :mod:`rldk.compat.tensorboard`
has TensorBoard's ``SummaryWriter``. Both write through :class:`rldk.writer.EventWriter`:
nothing leaves the machine, and a bad value is recorded and warned about, never raised.
See docs/adoption.md.
"""
from __future__ import annotations

import os

#: the folder whose ``wandb`` package is the stand-in (see ``rldk.compat.shim.wandb``)
SHIM_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim")
