"""Run metadata captured once at ``init``: what a later reader needs to trust a run.

Captured from the training process itself (not from the analyzing machine): git
commit and dirty flag, package versions, host, command line, and an audit of the
settings that decide determinism. torch is only inspected if already imported.
"""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys

_PACKAGES = ("rldk", "torch", "transformers", "trl", "accelerate", "deepspeed", "vllm",
             "openrlhf", "verl", "numpy", "datasets", "tokenizers", "peft")
_ENV_VARS = ("PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "TOKENIZERS_PARALLELISM",
             "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "CUDA_LAUNCH_BLOCKING",
             "NCCL_ALGO", "WORLD_SIZE", "RANK", "LOCAL_RANK")


def run_metadata(config=None, seed=None) -> dict:
    """The attrs of a run's ``start`` event (JSON-ready)."""
    return {
        "config": config if config is not None else {},
        "seed": seed if seed is not None else _config_seed(config),
        "git": git_state(os.getcwd()),
        "packages": package_versions(),
        "host": {"hostname": socket.gethostname(), "platform": platform.platform(),
                 "python": platform.python_version(), "cpu_count": os.cpu_count(), "pid": os.getpid()},
        "argv": list(sys.argv),
        "env": {k: os.environ[k] for k in _ENV_VARS if k in os.environ},
        "torch": torch_audit(),
        "seeding": _seeding_record(),
    }


def _seeding_record():
    """What ``rldk.seed_everything`` set, if the process called it (dataloader seeding too)."""
    seeding = sys.modules.get("rldk.seeding")
    return seeding.current_record() if seeding is not None else None


def _config_seed(config):
    if isinstance(config, dict):
        for key in ("seed", "random_seed", "SEED"):
            if key in config:
                return config[key]
    return None


def git_state(path: str) -> dict | None:
    """``{"commit", "dirty"}`` of the git work tree holding ``path``; None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                                text=True, timeout=5)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                                capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def package_versions() -> dict:
    from importlib import metadata

    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def torch_audit() -> dict | None:
    """Determinism-relevant torch settings of this process (None if torch not imported)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    audit = {
        "version": torch.__version__,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "num_threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
    }
    cudnn = torch.backends.cudnn
    audit["cudnn"] = {"version": cudnn.version() if cudnn.is_available() else None,
                      "deterministic": cudnn.deterministic, "benchmark": cudnn.benchmark,
                      "allow_tf32": cudnn.allow_tf32}
    audit["cuda_matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    if torch.cuda.is_available():
        audit["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return audit
