"""Seeding every random source of a training process, and saying what was set.

``seed_everything(seed)`` seeds Python's ``random``, NumPy's global RNG, torch's
CPU and CUDA generators, and (with ``deterministic=True``) switches torch to
deterministic algorithms. What it set is kept as a record that the writer adds
to the run's ``start`` event (``attrs.seeding``) and, when a writer is already
open, logs as a ``run`` event named ``seed``: the determinism card reads it in
its environment audit.

DataLoader worker seeding is invisible from the outside, so it is recorded here:
:func:`dataloader_kwargs` returns a seeded ``generator`` and a ``worker_init_fn``
and notes that the process used them.
"""
from __future__ import annotations

import os
import random
import sys

#: cuBLAS workspace setting that makes cuBLAS deterministic (CUDA >= 10.2)
CUBLAS_DETERMINISTIC = ":4096:8"

_RECORD: dict = {}


def seed_everything(seed: int, deterministic: bool = False, *, writer=None) -> dict:
    """Seed python, numpy and torch (CPU and every CUDA device) with ``seed``.

    With ``deterministic=True`` also: ``torch.use_deterministic_algorithms(True)``,
    ``cudnn.deterministic = True``, ``cudnn.benchmark = False``, and
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` when unset (it only takes effect if CUDA
    is not initialized yet, which the record says). ``PYTHONHASHSEED`` is set for
    child processes; it cannot change this process's string hashing, which the
    record notes when it differs.

    Returns the record (JSON-ready) and logs it as a ``run``/``seed`` event on
    ``writer``, or on every open writer of the process.
    """
    seed = _check_seed(seed)
    record = {"seed": seed, "deterministic_requested": bool(deterministic), "seeded": ["python"]}
    random.seed(seed)
    record["pythonhashseed"] = _python_hash_seed(seed)
    if _seed_numpy(seed):
        record["seeded"].append("numpy")
    torch = _import_torch()
    if torch is not None:
        record["seeded"].append("torch")
        record["cuda_was_initialized"] = bool(torch.cuda.is_available() and torch.cuda.is_initialized())
        torch.manual_seed(seed)             # also seeds every CUDA device
        if torch.cuda.is_available():
            record["seeded"].append("cuda")
        if deterministic:
            record["deterministic_flags"] = _set_deterministic(torch, record["cuda_was_initialized"])
    dataloader = _RECORD.get("dataloader")       # a seeded DataLoader stays seeded
    _RECORD.clear()
    _RECORD.update(record, dataloader=dataloader)
    _log(writer, dict(_RECORD))
    return dict(_RECORD)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) and not hasattr(seed, "__index__"):
        raise ValueError(f"seed must be an integer, not {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed} (numpy's limit)")
    return seed


def _python_hash_seed(seed: int) -> dict:
    before = os.environ.get("PYTHONHASHSEED")
    os.environ["PYTHONHASHSEED"] = str(seed)
    return {"before": before, "set_for_children": str(seed),
            "this_process_randomized": before in (None, "random")}


def _seed_numpy(seed: int) -> bool:
    try:
        import numpy as np
    except ImportError:
        return False
    np.random.seed(seed)
    return True


def _import_torch():
    if "torch" in sys.modules:
        return sys.modules["torch"]
    try:
        import torch
    except ImportError:
        return None
    return torch


def _set_deterministic(torch, cuda_initialized: bool) -> dict:
    flags = {}
    if "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC
        flags["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC + (
            " (too late: CUDA already initialized)" if cuda_initialized else "")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    flags.update({"use_deterministic_algorithms": True, "cudnn.deterministic": True,
                  "cudnn.benchmark": False})
    return flags


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` for DataLoader workers: seeds python and numpy from torch's
    per-worker seed (torch seeds itself in each worker from the loader's generator)."""
    import torch

    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    try:
        import numpy as np
    except ImportError:
        return
    np.random.seed(worker_seed)


def dataloader_kwargs(seed: int, *, writer=None) -> dict:
    """``{"generator": ..., "worker_init_fn": ...}`` for ``torch.utils.data.DataLoader``:
    a generator seeded with ``seed`` (shuffling and worker seeds follow it) and
    :func:`seed_worker`. Records that the process seeds its DataLoader."""
    import torch

    seed = _check_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    _RECORD["dataloader"] = {"generator_seed": seed, "worker_init_fn": "rldk.seeding.seed_worker"}
    _log(writer, {"dataloader": _RECORD["dataloader"]}, name="seed_dataloader")
    return {"generator": gen, "worker_init_fn": seed_worker}


def current_record() -> dict | None:
    """What :func:`seed_everything` / :func:`dataloader_kwargs` set in this process, or None."""
    return dict(_RECORD) if _RECORD else None


def _log(writer, record: dict, name: str = "seed") -> None:
    """Log ``record`` (with a fresh torch audit: the flags may have changed since init) on
    ``writer``, or on every open writer of this process. With none open, the start
    event of the next writer picks the record up."""
    from rldk.writer._env import torch_audit
    from rldk.writer._lifecycle import _LIVE

    attrs = {**record, "torch": torch_audit()}
    for w in [writer] if writer is not None else list(_LIVE):
        if not w._closed:
            w.log_event("run", name, attrs=attrs)
