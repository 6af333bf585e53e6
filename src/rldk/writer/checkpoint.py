"""Checkpoint events from the training side: digests of what a checkpoint holds.

An exact resume needs five parts of the training state: the model (parameters and
buffers), the optimizer (its moments and step counts), the LR scheduler, the RNG
states (python, numpy, torch, CUDA, and any generator that draws data or dropout)
and the data position (epoch, batch index, sampler state). On each save the
training loop logs one ``checkpoint`` event (:func:`log_checkpoint`, or
``rldk.writer.log_checkpoint``):

    name    "save" (or "load" right after restoring one, for resume checks)
    step    the training step the checkpoint belongs to
    text    the checkpoint's path
    digest  a digest over the digests of the parts present
    attrs   {"parts": {part: {"digest", ...} | null}, "missing": [part, ...],
             "tensors": {model tensor name: checksum hex}}

A digest covers every tensor bit by bit (the writer's order-independent integer
checksums, see :mod:`rldk.writer.probes`) and every other value by its ``repr``.
Reading these events back (verify, resume check, diff) is
:mod:`rldk.analyzers.checkpoint`.
"""
from __future__ import annotations

import hashlib
import math
import os

from rldk.writer.probes import rng_digests, tensor_stats

PARTS = ("model", "optimizer", "scheduler", "rng", "data")


def state_digests(model=None, optimizer=None, scheduler=None, rng=True, dataloader_state=None) -> dict:
    """The attrs of a checkpoint event: one digest per part of the training state.

    model: an ``nn.Module`` or a state dict. optimizer, scheduler: objects with
    ``state_dict()`` or state dicts. rng: True for the global RNGs (python, numpy,
    torch, CUDA), a mapping ``{name: generator}`` for those plus named generators,
    False/None when the checkpoint does not hold RNG state. dataloader_state: any
    picklable description of the data position (None: not saved).
    """
    parts = {
        "model": _part(_state_dict(model)),
        "optimizer": _part(_state_dict(optimizer)),
        "scheduler": _part(_state_dict(scheduler)),
        "rng": _rng_part(rng),
        "data": _part(dataloader_state),
    }
    out = {"parts": parts, "missing": [p for p in PARTS if parts[p] is None]}
    if model is not None:
        out["tensors"] = {name: hx for name, hx in tensor_checksums(_state_dict(model))}
    return out


def combined_digest(parts: dict) -> str:
    """One digest over the digests of the parts present (order: :data:`PARTS`)."""
    lines = [f"{p}={parts[p]['digest']}" for p in PARTS if parts.get(p)]
    return blake("\n".join(lines).encode())


def _state_dict(obj):
    if obj is None:
        return None
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        return obj.state_dict()
    return obj


def _part(state) -> dict | None:
    if state is None:
        return None
    leaves = flatten(state)
    tensors = [(k, v) for k, v in leaves if is_tensor(v)]
    sums = dict(tensor_checksums(tensors))
    lines = [f"{k}\t{sums[k]}" if k in sums else f"{k}\t{_plain_repr(v)}" for k, v in leaves]
    return {"digest": blake("\n".join(lines).encode()), "tensors": len(tensors),
            "numel": int(sum(v.numel() for _, v in tensors))}


def _rng_part(rng) -> dict | None:
    if rng is None or rng is False:
        return None
    sources = dict(rng_digests(rng if hasattr(rng, "items") or isinstance(rng, (list, tuple)) else None))
    lines = [f"{k}\t{v}" for k, v in sorted(sources.items())]
    return {"digest": blake("\n".join(lines).encode()), "sources": sources}


def flatten(obj, prefix: str = "") -> list[tuple[str, object]]:
    """``(dotted path, leaf)`` pairs of nested dicts/lists, keys sorted as strings."""
    if isinstance(obj, dict):
        out = []
        for key in sorted(obj, key=str):
            out += flatten(obj[key], f"{prefix}{key}." if prefix or key != "" else "")
        return out
    if isinstance(obj, (list, tuple)):
        out = []
        for i, v in enumerate(obj):
            out += flatten(v, f"{prefix}{i}.")
        return out
    return [(prefix[:-1] if prefix.endswith(".") else prefix, obj)]


def is_tensor(v) -> bool:
    return type(v).__module__.startswith("torch") and hasattr(v, "dtype") and hasattr(v, "numel")


def tensor_checksums(state) -> list[tuple[str, str]]:
    """``(name, checksum hex)`` of every tensor in ``state`` (a mapping or pairs)."""
    if state is None:
        return []
    pairs = flatten(state) if isinstance(state, dict) else list(state)
    pairs = [(k, v) for k, v in pairs if is_tensor(v)]
    if not pairs:
        return []
    stats = {s["name"]: s for s in tensor_stats(pairs)}
    return [(k, f"{stats[k]['checksum'] & 0xFFFFFFFFFFFFFFFF:016x}:{stats[k]['dtype']}:"
                f"{'x'.join(map(str, stats[k]['shape']))}") for k, _ in pairs]


def _plain_repr(v) -> str:
    if hasattr(v, "tobytes") and hasattr(v, "dtype"):            # numpy arrays
        return f"{v.dtype}:{getattr(v, 'shape', '')}:{blake(v.tobytes())}"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return repr(v)


def blake(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def log_checkpoint(writer, step, path, model=None, optimizer=None, scheduler=None, rng=True,
                   dataloader_state=None, action: str = "save") -> dict:
    """Log a ``checkpoint`` event for the state saved at ``path`` (see module doc).

    Call it when the checkpoint is written (``action="save"``) and, in a resumed
    run, right after restoring it (``action="load"``): a resume check then compares
    the restored state with the saved one part by part. Returns the event's attrs.
    """
    if action not in ("save", "load"):
        raise ValueError(f"action must be 'save' or 'load', not {action!r}")
    attrs = state_digests(model, optimizer, scheduler, rng, dataloader_state)
    writer.log_event("checkpoint", action, step, digest=combined_digest(attrs["parts"]),
                     text=os.fspath(path) if path is not None else None, attrs=attrs)
    return attrs

