"""Checkpoint files loaded safely: safetensors, or torch.load(weights_only=True).

torch and safetensors are imported on use (heavy).
"""
from __future__ import annotations

import pickle
from pathlib import Path

from rldk.core.errors import UsageError

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth", "checkpoint.pt")


def load_state(path) -> dict:
    """A checkpoint as a nested dict of tensors (CPU), loaded safely.

    ``path``: a ``.safetensors`` file, a ``torch.save`` file (loaded with
    ``weights_only=True``: no code from the file runs), or a directory holding one
    of :data:`_WEIGHT_FILES` or shards ``model-*.safetensors`` / ``pytorch_model-*.bin``.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such checkpoint: {path}")
    files = _weight_files(path) if path.is_dir() else [path]
    state: dict = {}
    for f in files:
        state.update(_load_file(f))
    return state


def _weight_files(directory: Path) -> list[Path]:
    for name in _WEIGHT_FILES:
        if (directory / name).is_file():
            return [directory / name]
    for pattern in ("model-*.safetensors", "pytorch_model-*.bin"):
        shards = sorted(directory.glob(pattern))
        if shards:
            return shards
    candidates = sorted(p for ext in ("*.pt", "*.pth", "*.safetensors", "*.bin") for p in directory.glob(ext))
    if len(candidates) == 1:
        return candidates
    raise UsageError(f"{directory}: no model weights found (looked for {', '.join(_WEIGHT_FILES)}"
                     + (f"; several candidates: {', '.join(p.name for p in candidates)}: name one file"
                        if candidates else "") + ")")


def _load_file(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise UsageError(f"{path}: not a readable safetensors file ({exc})") from None
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise UsageError(f"{path}: cannot load safely with torch.load(weights_only=True): "
                         f"{_load_reason(exc)}; rldk runs no code from checkpoints: compare files "
                         "that hold tensors, plain containers and numbers (state_dicts, safetensors)") from None
    if not isinstance(obj, dict):
        raise UsageError(f"{path}: holds a {type(obj).__name__}, not a dict of tensors")
    return obj


def _load_reason(exc) -> str:
    """The informative line of torch's weights-only refusal (it names the global)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for line in lines:
        if "Unsupported global" in line or "Unsupported operand" in line:
            return line.split("WeightsUnpickler error: ")[-1].split(" Please use")[0].rstrip(".")
    return lines[0] if lines else type(exc).__name__

