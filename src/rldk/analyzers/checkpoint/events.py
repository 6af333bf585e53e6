"""Checkpoint events read back: what each logged save (or load) holds, part by part.

Events come from :func:`rldk.writer.checkpoint.log_checkpoint` (per-part digests)
or from a Trainer checkpoint directory logged by the TRL callback (its file listing).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from rldk.writer.checkpoint import PARTS, blake

#: parts without which a resume cannot be exact, and what it costs to miss each
NEEDED = {
    "model": "the resumed run starts from other weights",
    "optimizer": "Adam moments and step counts restart from zero",
    "rng": "dropout masks, sampling and shuffling draw different numbers after the resume",
    "data": "the resumed run sees other batches (the data position restarts)",
}
OPTIONAL = {"scheduler": "the learning-rate schedule restarts (harmless only for a constant LR)"}

#: the log_checkpoint argument that saves each part
LOG_ARG = {"model": "model=model", "optimizer": "optimizer=opt", "scheduler": "scheduler=sched",
        "rng": "rng=True", "data": "dataloader_state=..."}


CHECKPOINTS_SQL = """
SELECT run_id, rank, step, name AS action, text AS path, digest, attrs, wall_time, seq
FROM checkpoints
WHERE run_id = $run_id
ORDER BY wall_time, seq
"""


@dataclass(frozen=True)
class CheckpointEvent:
    """One ``checkpoint`` event: step, action (save|load), path, digest and per-part attrs."""

    run_id: str
    step: int | None
    action: str
    path: str | None
    digest: str | None
    parts: dict
    missing: tuple[str, ...]
    tensors: dict

    @classmethod
    def from_row(cls, row: dict) -> "CheckpointEvent":
        attrs = json.loads(row["attrs"]) if row["attrs"] else {}
        action = row["action"]
        if "parts" in attrs:
            parts = attrs["parts"] or {}
        else:                       # a Trainer checkpoint directory (TRL RldkCallback.on_save)
            parts, action = parts_from_files(attrs.get("files") or {}, attrs.get("digests") or {}), "save"
        missing = [p for p in PARTS if not parts.get(p)]
        return cls(row["run_id"], row["step"], action, row["path"], row["digest"], parts,
                   tuple(missing), attrs.get("tensors") or {})


#: files of a Hugging Face Trainer checkpoint directory, by the part of the state they hold
#: (the Trainer restores the data position from trainer_state.json's global_step)
TRAINER_FILES = {
    "model": ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
              "pytorch_model.bin.index.json", "adapter_model.safetensors", "adapter_model.bin"),
    "optimizer": ("optimizer.pt", "optimizer.bin"),
    "scheduler": ("scheduler.pt",),
    "rng": ("rng_state.pth",),
    "data": ("trainer_state.json",),
}


def parts_from_files(files: dict, digests: dict) -> dict:
    """Parts of the state a Trainer checkpoint holds, from its file listing {name: bytes}."""
    out = {}
    for part, names in TRAINER_FILES.items():
        found = [n for n in names if n in files]
        if part == "rng":
            found += sorted(n for n in files if re.fullmatch(r"rng_state_\d+\.pth", n))
        out[part] = ({"files": found, "bytes": sum(files[n] for n in found),
                      "digest": combined_file_digest(found, digests)} if found else None)
    return out


def combined_file_digest(names, digests: dict) -> str | None:
    """One digest over the named files' digests (None when one is not known)."""
    if not names or any(n not in digests for n in names):
        return None
    return blake("\n".join(f"{n}={digests[n]}" for n in names).encode())


def checkpoint_events(store, run_id: str) -> list[CheckpointEvent]:
    """The run's checkpoint events in the order they were logged."""
    frame = store.sql(CHECKPOINTS_SQL, {"run_id": run_id})
    return [CheckpointEvent.from_row(r) for r in frame.iter_rows(named=True)]

