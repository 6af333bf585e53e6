"""``import wandb`` -> :mod:`rldk.compat.wandb`, in every process started with the folder
above this one on ``PYTHONPATH`` (``python -m rldk.compat shim-path`` prints it).

For frameworks that import wandb in processes you do not start yourself (verl's Ray
workers, OpenRLHF's DeepSpeed ranks): the environment variable reaches them where an
``install()`` call in your script would not. Nothing else is on that path.
"""
from rldk.compat import wandb as _stand_in

__rldk_shim__ = True
_stand_in.install()      # replaces this module in sys.modules: `import wandb` returns the stand-in
