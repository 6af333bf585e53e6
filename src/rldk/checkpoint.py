"""Checkpoint policy: digests of what a checkpoint holds, verify, diff.

An exact resume needs five parts of the training state: the model (parameters and
buffers), the optimizer (its moments and step counts), the LR scheduler, the RNG
states (python, numpy, torch, CUDA, and any generator that draws data or dropout)
and the data position (epoch, batch index, sampler state). On each save the
training loop logs one ``checkpoint`` event (``rldk.writer.log_checkpoint``):

    name    "save" (or "load" right after restoring one, for resume checks)
    step    the training step the checkpoint belongs to
    text    the checkpoint's path
    digest  a digest over the digests of the parts present
    attrs   {"parts": {part: {"digest", ...} | null}, "missing": [part, ...],
             "tensors": {model tensor name: checksum hex}}

A digest covers every tensor bit by bit (the writer's order-independent integer
checksums, see ``rldk.writer.probes``) and every other value by its ``repr``.

:func:`verify_checkpoints` reads these events (``rldk checkpoint verify``);
:func:`resume_check` runs a command uninterrupted and stopped-then-resumed and
compares the two (``rldk checkpoint resume-check``); :func:`diff_checkpoints`
compares two checkpoint files tensor by tensor (``rldk checkpoint diff``).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from rldk.core.errors import MissingEvents, UsageError

PARTS = ("model", "optimizer", "scheduler", "rng", "data")
#: parts without which a resume cannot be exact, and what it costs to miss each
NEEDED = {
    "model": "the resumed run starts from other weights",
    "optimizer": "Adam moments and step counts restart from zero",
    "rng": "dropout masks, sampling and shuffling draw different numbers after the resume",
    "data": "the resumed run sees other batches (the data position restarts)",
}
OPTIONAL = {"scheduler": "the learning-rate schedule restarts (harmless only for a constant LR)"}


# ------------------------------------------------------------------ digests
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
        out["tensors"] = {name: hx for name, hx in _tensor_checksums(_state_dict(model))}
    return out


def combined_digest(parts: dict) -> str:
    """One digest over the digests of the parts present (order: :data:`PARTS`)."""
    lines = [f"{p}={parts[p]['digest']}" for p in PARTS if parts.get(p)]
    return _blake("\n".join(lines).encode())


def _state_dict(obj):
    if obj is None:
        return None
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        return obj.state_dict()
    return obj


def _part(state) -> dict | None:
    if state is None:
        return None
    leaves = _flatten(state)
    tensors = [(k, v) for k, v in leaves if _is_tensor(v)]
    sums = dict(_tensor_checksums(tensors))
    lines = [f"{k}\t{sums[k]}" if k in sums else f"{k}\t{_plain_repr(v)}" for k, v in leaves]
    return {"digest": _blake("\n".join(lines).encode()), "tensors": len(tensors),
            "numel": int(sum(v.numel() for _, v in tensors))}


def _rng_part(rng) -> dict | None:
    if rng is None or rng is False:
        return None
    from rldk.writer.probes import rng_digests

    sources = dict(rng_digests(rng if hasattr(rng, "items") or isinstance(rng, (list, tuple)) else None))
    lines = [f"{k}\t{v}" for k, v in sorted(sources.items())]
    return {"digest": _blake("\n".join(lines).encode()), "sources": sources}


def _flatten(obj, prefix: str = "") -> list[tuple[str, object]]:
    """``(dotted path, leaf)`` pairs of nested dicts/lists, keys sorted as strings."""
    if isinstance(obj, dict):
        out = []
        for key in sorted(obj, key=str):
            out += _flatten(obj[key], f"{prefix}{key}." if prefix or key != "" else "")
        return out
    if isinstance(obj, (list, tuple)):
        out = []
        for i, v in enumerate(obj):
            out += _flatten(v, f"{prefix}{i}.")
        return out
    return [(prefix[:-1] if prefix.endswith(".") else prefix, obj)]


def _is_tensor(v) -> bool:
    return type(v).__module__.startswith("torch") and hasattr(v, "dtype") and hasattr(v, "numel")


def _tensor_checksums(state) -> list[tuple[str, str]]:
    """``(name, checksum hex)`` of every tensor in ``state`` (a mapping or pairs)."""
    if state is None:
        return []
    pairs = _flatten(state) if isinstance(state, dict) else list(state)
    pairs = [(k, v) for k, v in pairs if _is_tensor(v)]
    if not pairs:
        return []
    from rldk.writer.probes import tensor_stats

    stats = {s["name"]: s for s in tensor_stats(pairs)}
    return [(k, f"{stats[k]['checksum'] & 0xFFFFFFFFFFFFFFFF:016x}:{stats[k]['dtype']}:"
                f"{'x'.join(map(str, stats[k]['shape']))}") for k, _ in pairs]


def _plain_repr(v) -> str:
    if hasattr(v, "tobytes") and hasattr(v, "dtype"):            # numpy arrays
        return f"{v.dtype}:{getattr(v, 'shape', '')}:{_blake(v.tobytes())}"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return repr(v)


def _blake(data: bytes) -> str:
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


# ------------------------------------------------------------------ events
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
    import re

    out = {}
    for part, names in TRAINER_FILES.items():
        found = [n for n in names if n in files]
        if part == "rng":
            found += sorted(n for n in files if re.fullmatch(r"rng_state_\d+\.pth", n))
        out[part] = ({"files": found, "bytes": sum(files[n] for n in found),
                      "digest": combined_file_digest(found, digests)} if found else None)
    return out


def combined_file_digest(names, digests: dict) -> str | None:
    if not names or any(n not in digests for n in names):
        return None
    return _blake("\n".join(f"{n}={digests[n]}" for n in names).encode())


def checkpoint_events(store, run_id: str) -> list[CheckpointEvent]:
    """The run's checkpoint events in the order they were logged."""
    frame = store.sql(CHECKPOINTS_SQL, {"run_id": run_id})
    return [CheckpointEvent.from_row(r) for r in frame.iter_rows(named=True)]


# ------------------------------------------------------------------ verify
@dataclass(frozen=True)
class CheckpointCheck:
    """The verdict on one saved checkpoint.

    missing: needed parts not saved. optional_missing: parts whose absence may be
    harmless (scheduler). exists: the path exists now (None: no path logged).
    file_check: with ``deep``, "match" / "mismatch: ..." / "skipped: ..." for the
    model tensors in the file against the digests logged at save.
    """

    step: int | None
    path: str | None
    exists: bool | None
    present: tuple[str, ...]
    missing: tuple[str, ...]
    optional_missing: tuple[str, ...]
    file_check: str | None = None

    @property
    def ok(self) -> bool:
        return not self.missing and self.exists is not False and not (
            self.file_check or "").startswith("mismatch")

    def to_dict(self) -> dict:
        return {"step": self.step, "path": self.path, "exists": self.exists,
                "present": list(self.present), "missing": list(self.missing),
                "optional_missing": list(self.optional_missing), "file_check": self.file_check,
                "ok": self.ok}


@dataclass(frozen=True)
class VerifyResult:
    """``rldk checkpoint verify``: one :class:`CheckpointCheck` per saved checkpoint."""

    run_id: str
    checks: tuple[CheckpointCheck, ...]
    passed: bool = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "passed", all(c.ok for c in self.checks))

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "passed": self.passed, "checkpoints": [c.to_dict() for c in self.checks]}

    def report(self):
        from rldk.core.report import Finding, Report, ReportTable

        findings = [_verify_finding(self.run_id, c) for c in self.checks if not c.ok]
        findings += [Finding("scheduler_not_saved", "info", f"checkpoint at step {c.step} has no "
                             "scheduler state", self.run_id, steps=(c.step, c.step),
                             fix="pass scheduler= to log_checkpoint and save its state_dict(), "
                             "unless the learning rate is constant")
                     for c in self.checks if c.ok and c.optional_missing]
        table = ReportTable("checkpoints", ("step", "path", "exists", "saved", "missing", "file"),
                            tuple((c.step, c.path, c.exists, ", ".join(c.present),
                                   ", ".join(c.missing + c.optional_missing), c.file_check)
                                  for c in self.checks))
        bad = [c for c in self.checks if not c.ok]
        summary = (f"{len(self.checks)} checkpoint(s) of run {self.run_id}: "
                   + ("all hold what an exact resume needs." if not bad else
                      f"{len(bad)} cannot resume exactly (first at step {bad[0].step})."))
        return Report("checkpoint_verify", f"Checkpoint verification: {self.run_id}",
                      "ok" if self.passed else "problems", summary, tuple(findings), (table,),
                      self.to_dict())


def _verify_finding(run_id, check: CheckpointCheck):
    from rldk.core.report import Finding

    if check.missing:
        costs = "; ".join(f"{p}: {NEEDED[p]}" for p in check.missing)
        return Finding("checkpoint_incomplete", "error",
                       f"checkpoint at step {check.step} lacks {', '.join(check.missing)}",
                       run_id, steps=(check.step, check.step),
                       evidence={"missing": list(check.missing), "path": check.path},
                       fix=f"save and restore it ({costs}); log it with log_checkpoint(..., "
                           + ", ".join(_ARG[p] for p in check.missing) + ")")
    if check.exists is False:
        return Finding("checkpoint_file_missing", "error", f"checkpoint file of step {check.step} "
                       f"is gone: {check.path}", run_id, steps=(check.step, check.step),
                       fix="keep checkpoints you may resume from, or log the path they are moved to")
    return Finding("checkpoint_file_changed", "error", f"checkpoint file of step {check.step} does "
                   f"not hold the model logged at save: {check.file_check}", run_id,
                   steps=(check.step, check.step), evidence={"path": check.path},
                   fix="the file was overwritten or saved from another state: save after the step "
                       "that log_checkpoint describes")


_ARG = {"model": "model=model", "optimizer": "optimizer=opt", "scheduler": "scheduler=sched",
        "rng": "rng=True", "data": "dataloader_state=..."}


def verify_checkpoints(paths, run_id: str | None = None, deep: bool = False) -> VerifyResult:
    """Check every saved checkpoint of a run holds what an exact resume needs.

    paths: the event store. run_id: which run (needed when the store has several).
    deep: also load each checkpoint file and compare its model tensors with the
    checksums logged at save. Raises :class:`MissingEvents` without checkpoint events.
    """
    from rldk.core.store import open_store

    store = open_store(paths)
    run = _pick_run(store, run_id)
    saves = [e for e in checkpoint_events(store, run.id) if e.action == "save"]
    if not saves:
        raise MissingEvents(f"run {run.id!r} has no checkpoint events: log each save with "
                            "rldk.writer.log_checkpoint(step, path, model, optimizer, scheduler, "
                            "rng=True, dataloader_state=...)")
    return VerifyResult(run.id, tuple(_check(e, deep) for e in saves))


def _pick_run(store, run_id):
    if run_id is not None:
        return store.run(run_id)
    runs = store.runs()
    if len(runs) != 1:
        raise UsageError(f"the store holds {len(runs)} runs ({', '.join(r.id for r in runs)}): "
                         "pick one with --run ID")
    return runs[0]


def _check(event: CheckpointEvent, deep: bool) -> CheckpointCheck:
    present = tuple(p for p in PARTS if event.parts.get(p))
    missing = tuple(p for p in NEEDED if p not in present)
    optional = tuple(p for p in OPTIONAL if p not in present)
    exists = Path(event.path).exists() if event.path else None
    file_check = None
    if deep:
        file_check = _file_check(event) if exists else "skipped: no file"
    return CheckpointCheck(event.step, event.path, exists, present, missing, optional, file_check)


def _file_check(event: CheckpointEvent) -> str:
    if not event.tensors:
        return "skipped: no model tensors logged"
    try:
        state = load_state(event.path)
    except UsageError as exc:
        return f"skipped: {exc}"
    found = _match_model(state, event.tensors)
    if found is None:
        return "skipped: the file has none of the model's tensor names"
    differ = [n for n, hx in found.items() if hx != event.tensors[n]]
    absent = [n for n in event.tensors if n not in found]
    if differ or absent:
        return (f"mismatch: {len(differ)} tensor(s) differ (first {differ[0]})" if differ else
                f"mismatch: {len(absent)} tensor(s) absent (first {absent[0]})")
    return f"match ({len(found)} tensors)"


def _match_model(state: dict, names: dict) -> dict | None:
    """Checksums of the model tensors in ``state``, found at top level or under one prefix."""
    flat = dict(_tensor_checksums(state))
    for prefix in ("", *sorted({k.split(".", 1)[0] + "." for k in flat})):
        found = {n: flat[prefix + n] for n in names if prefix + n in flat}
        if found:
            return found
    return None


# ------------------------------------------------------------------ loading
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
    import pickle

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


# ------------------------------------------------------------------ diff
DIFF_COLUMNS = ("tensor", "shape", "l2_a", "l2_b", "l2_diff", "rel_change", "cosine", "max_abs_diff")


@dataclass(frozen=True)
class TensorDiff:
    """How one tensor moved from checkpoint A to B (float64 maths on CPU).

    l2_a, l2_b: L2 norms. l2_diff: ||b - a||. rel_change: l2_diff / l2_a (inf when
    a is all zeros and b is not). cosine: a.b / (|a||b|) (None when either is zero).
    max_abs_diff: max |b - a| over elements.
    """

    name: str
    shape: tuple[int, ...]
    l2_a: float
    l2_b: float
    l2_diff: float
    rel_change: float
    cosine: float | None
    max_abs_diff: float
    floating: bool = True

    def row(self) -> tuple:
        return (self.name, "x".join(map(str, self.shape)), self.l2_a, self.l2_b, self.l2_diff,
                self.rel_change, self.cosine, self.max_abs_diff)

    def to_dict(self) -> dict:
        return dict(zip(DIFF_COLUMNS, self.row()))


@dataclass(frozen=True)
class CheckpointDiff:
    """Two checkpoints compared tensor by tensor.

    tensors: every tensor present in both with the same shape, in name order.
    identical: how many of those are bit-identical. only_a, only_b: names in one
    file only. shape_mismatch: names whose shapes differ. top: the ``top_n``
    tensors with the largest relative change ("top movers").
    """

    a: str
    b: str
    tensors: tuple[TensorDiff, ...]
    identical: int
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
    shape_mismatch: tuple[str, ...]
    top_n: int = 10

    @property
    def top(self) -> list[TensorDiff]:
        moved = [t for t in self.tensors if t.l2_diff > 0]
        return sorted(moved, key=lambda t: (-t.rel_change, t.name))[: self.top_n]

    @property
    def total_rel_change(self) -> float:
        """||B - A|| / ||A|| over the floating-point tensors (RNG bytes, counters left out)."""
        floats = [t for t in self.tensors if t.floating]
        a = math.sqrt(sum(t.l2_a ** 2 for t in floats))
        d = math.sqrt(sum(t.l2_diff ** 2 for t in floats))
        return d / a if a else (0.0 if d == 0 else math.inf)

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "compared": len(self.tensors), "identical": self.identical,
                "total_rel_change": self.total_rel_change, "only_a": list(self.only_a),
                "only_b": list(self.only_b), "shape_mismatch": list(self.shape_mismatch),
                "top_movers": [t.to_dict() for t in self.top],
                "tensors": [t.to_dict() for t in self.tensors]}

    def report(self):
        from rldk.core.report import Finding, Report, ReportTable

        findings = []
        for code, names, what in (("only_in_a", self.only_a, "only in A"),
                                  ("only_in_b", self.only_b, "only in B"),
                                  ("shape_mismatch", self.shape_mismatch, "with different shapes")):
            if names:
                findings.append(Finding(code, "warning", f"{len(names)} tensor(s) {what}: "
                                        + ", ".join(names[:5]) + (" ..." if len(names) > 5 else ""),
                                        evidence={"names": list(names)}))
        summary = (f"{len(self.tensors)} tensors compared, {self.identical} bit-identical; "
                   f"relative change of the floating-point tensors {self.total_rel_change:.3g}.")
        tables = (ReportTable("top movers (largest relative change)", DIFF_COLUMNS,
                              tuple(t.row() for t in self.top)),)
        status = "problems" if findings else "ok"
        return Report("checkpoint_diff", "Checkpoint diff", status, summary, tuple(findings), tables,
                      {k: v for k, v in self.to_dict().items() if k != "tensors"})


def diff_checkpoints(a, b, top: int = 10, prefix: str | None = None) -> CheckpointDiff:
    """Compare the tensors of checkpoints ``a`` and ``b`` (see :func:`load_state`).

    Tensors are named by their dotted path in the file (``model.fc1.weight``,
    ``optimizer.state.0.exp_avg``); ``prefix`` keeps only names starting with it.
    """
    if top < 1:
        raise UsageError(f"--top must be at least 1, got {top}")
    sa, sb = _tensors(a, prefix), _tensors(b, prefix)
    if not sa and not sb:
        raise UsageError(f"no tensors{f' under {prefix!r}' if prefix else ''} in {a} or {b}")
    common = sorted(set(sa) & set(sb))
    mismatch = tuple(n for n in common if tuple(sa[n].shape) != tuple(sb[n].shape))
    diffs = tuple(tensor_diff(n, sa[n], sb[n]) for n in common if n not in mismatch)
    identical = sum(1 for n in common if n not in mismatch and _bit_equal(sa[n], sb[n]))
    return CheckpointDiff(os.fspath(a), os.fspath(b), diffs, identical,
                          tuple(sorted(set(sa) - set(sb))), tuple(sorted(set(sb) - set(sa))),
                          mismatch, top)


def _tensors(path, prefix) -> dict:
    return {k: v for k, v in _flatten(load_state(path))
            if _is_tensor(v) and (prefix is None or k.startswith(prefix))}


def tensor_diff(name: str, a, b) -> TensorDiff:
    """L2 norms, L2 of the difference, relative change, cosine and max |b - a| of one tensor."""
    import torch

    x = a.detach().to("cpu", torch.float64).reshape(-1)
    y = b.detach().to("cpu", torch.float64).reshape(-1)
    d = y - x
    l2a, l2b, l2d = (float(torch.linalg.vector_norm(v)) for v in (x, y, d))
    cos = float(torch.dot(x, y)) / (l2a * l2b) if l2a and l2b else None
    rel = l2d / l2a if l2a else (0.0 if l2d == 0 else math.inf)
    mad = float(d.abs().max()) if d.numel() else 0.0
    return TensorDiff(name, tuple(a.shape), l2a, l2b, l2d, rel, cos, mad, a.is_floating_point())


def _bit_equal(a, b) -> bool:
    """Bit-for-bit equality (NaNs with the same bits count as equal)."""
    import torch

    if a.dtype != b.dtype:
        return False
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))


# ------------------------------------------------------------------ resume check
@dataclass(frozen=True)
class MissingState:
    """A part of the training state that a resume did not carry over.

    part: model | optimizer | scheduler | rng | data. how: "not saved" (the
    checkpoint event lists it as missing) or "not restored" (the state after
    loading differs from the state saved). detail: which RNG sources / tensors.
    """

    part: str
    how: str
    detail: str = ""

    def to_dict(self) -> dict:
        return {"part": self.part, "how": self.how, "detail": self.detail}


@dataclass(frozen=True)
class ResumeCheckResult:
    """An uninterrupted run to ``to`` against one stopped at ``at`` and resumed.

    exact: the resumed run equals the uninterrupted one at every level over
    steps 0..to. departs_at: first step where it does not (None when exact).
    before_resume: the two runs already differ at or before ``at`` (the run is
    not deterministic; no resume is involved). divergences: per level, from
    :func:`rldk.analyzers.determinism.compare_runs`. missing: the state the
    checkpoint lacked or the resume did not restore, most likely cause first.
    saved, loaded: the checkpoint events (loaded is None if the resumed run
    logged no ``load`` event).
    """

    at: int
    to: int
    divergences: tuple
    missing: tuple[MissingState, ...]
    saved: CheckpointEvent
    loaded: CheckpointEvent | None
    commands: tuple = ()
    store: str | None = None

    @property
    def departs_at(self) -> int | None:
        steps = [d.step for d in self.divergences if d.step is not None]
        return min(steps) if steps else None

    @property
    def exact(self) -> bool:
        return self.departs_at is None

    @property
    def passed(self) -> bool:
        return self.exact

    @property
    def before_resume(self) -> bool:
        return self.departs_at is not None and self.departs_at <= self.at

    def first(self, level: str):
        found = [d for d in self.divergences if d.level == level and d.step is not None]
        return min(found, key=lambda d: d.step) if found else None

    def to_dict(self) -> dict:
        return {"exact": self.exact, "at": self.at, "to": self.to, "departs_at": self.departs_at,
                "before_resume": self.before_resume,
                "first_tensor": _name(self.first("tensor")), "first_rng_source": _name(self.first("rng")),
                "first_metric": _name(self.first("metric")),
                "missing_state": [m.to_dict() for m in self.missing],
                "divergences": [d.to_dict() for d in self.divergences],
                "checkpoint": {"path": self.saved.path, "step": self.saved.step,
                               "saved_parts": [p for p in PARTS if self.saved.parts.get(p)],
                               "load_event": self.loaded is not None},
                "commands": [c.to_dict() for c in self.commands], "store": self.store}

    def report(self):
        from rldk.core.report import Report

        return Report("resume_check", "Resume check", "ok" if self.exact else "problems",
                      _resume_summary(self), tuple(_resume_findings(self)), _resume_tables(self),
                      self.to_dict())


def _name(d):
    return d.name if d is not None else None


RUN_REFERENCE, RUN_RESUMED = "reference", "resumed"


def resume_check(cmd, at: int, to: int, signals=None, *, timeout: float | None = None,
                 shell: bool = False, workdir=None, env: dict | None = None, cwd=None) -> ResumeCheckResult:
    """Run ``cmd`` to ``to`` uninterrupted, and to ``at`` then resumed to ``to``; compare.

    The command follows the harness protocol: ``RLDK_STOP_AT=N`` -> stop after step
    N; with ``RLDK_CHECKPOINT_DIR`` set, save a checkpoint there when stopping and
    log it with ``log_checkpoint(step, path, ...)``; ``RLDK_RESUME_FROM=path`` ->
    restore that checkpoint (then ideally ``log_checkpoint(..., action="load")``)
    and continue after its step. Runs: ``reference`` (to ``to``) and ``resumed``
    (both halves, one run id) in ``workdir/store``.
    """
    from rldk import harness
    from rldk.core.store import open_store

    if not 0 <= at < to:
        raise UsageError(f"--at must be at least 0 and below --to (got --at {at} --to {to})")
    argv = harness.split_command(cmd, shell)
    root = harness.fresh_workdir(workdir, "rldk-resume-")
    store_dir, ckpt_dir = root / "store", root / "checkpoints"
    base = {**(env or {}), harness.ENV_DIR: str(store_dir.resolve())}
    plan = (("reference", RUN_REFERENCE, {harness.ENV_STOP_AT: str(to)}),
            ("first half", RUN_RESUMED, {harness.ENV_STOP_AT: str(at),
                                         harness.ENV_CHECKPOINT_DIR: str(ckpt_dir.resolve())}))
    commands = [_run(argv, root, label, {**base, harness.ENV_RUN_ID: rid, **extra}, timeout, cwd)
                for label, rid, extra in plan]
    saved = _saved_checkpoint(open_store(str(store_dir)), at, argv)
    commands.append(_run(argv, root, "resumed half", {
        **base, harness.ENV_RUN_ID: RUN_RESUMED, harness.ENV_STOP_AT: str(to),
        harness.ENV_RESUME_FROM: saved.path}, timeout, cwd))
    store = open_store(str(store_dir))
    return _assess(store, at, to, signals, saved, tuple(commands), str(root))


def _run(argv, root: Path, label: str, env: dict, timeout, cwd):
    from rldk import harness

    log = root / "logs" / f"{label.replace(' ', '-')}.log"
    result = harness.run_command(argv, log, env, timeout, cwd)
    if result.problem():
        raise harness.CommandFailed(f"the {label} run of `{' '.join(argv)}` {result.problem()} "
                                    f"(log: {result.log})")
    return result


def _saved_checkpoint(store, at: int, argv) -> CheckpointEvent:
    from rldk import harness

    saves = [e for e in checkpoint_events(store, RUN_RESUMED) if e.action == "save"] \
        if RUN_RESUMED in store.run_ids else []
    match = [e for e in saves if e.step == at and e.path]
    if not match:
        seen = ", ".join(str(e.step) for e in saves) or "none"
        raise harness.CommandFailed(
            f"`{' '.join(argv)}` logged no checkpoint at step {at} (checkpoints logged: {seen}): with "
            f"{harness.ENV_STOP_AT}={at} and {harness.ENV_CHECKPOINT_DIR} set it must save one after "
            "that step and log it with rldk.writer.log_checkpoint(step, path, model, optimizer, ...)")
    return match[-1]


def _assess(store, at, to, signals, saved, commands, root) -> ResumeCheckResult:
    from rldk.analyzers.determinism import compare_runs

    _check_reached(store, to)
    loads = [e for e in checkpoint_events(store, RUN_RESUMED) if e.action == "load"]
    loaded = loads[-1] if loads else None
    divergences = compare_runs(store, store.run(RUN_REFERENCE), store.run(RUN_RESUMED), signals,
                               window=(None, to))
    missing = diagnose(saved, loaded, divergences)
    return ResumeCheckResult(at, to, tuple(divergences), tuple(missing), saved, loaded, commands, root)


LAST_STEP_SQL = "SELECT max(step) AS last FROM metrics WHERE run_id = $run_id"


def _check_reached(store, to: int) -> None:
    from rldk import harness

    for rid in (RUN_REFERENCE, RUN_RESUMED):
        frame = store.sql(LAST_STEP_SQL, {"run_id": rid})
        last = frame["last"][0] if frame.height else None
        if last is None or last < to:
            raise harness.CommandFailed(
                f"the {rid} run logged metrics up to step {last}, not to step {to}: with "
                f"{harness.ENV_STOP_AT}={to} it must train through step {to}")


def diagnose(saved: CheckpointEvent, loaded: CheckpointEvent | None, divergences) -> list[MissingState]:
    """Which state the resume lacked: parts not saved, parts restored differently.

    Ordered by the evidence of the first departure: a part that explains the level
    that differs first (RNG source -> rng; tensors -> model/optimizer/...) comes first.
    """
    out = [MissingState(p, "not saved", NEEDED.get(p) or OPTIONAL.get(p, ""))
           for p in PARTS if not saved.parts.get(p)]
    if loaded is not None:
        for part in PARTS:
            before, after = saved.parts.get(part), loaded.parts.get(part)
            if before and after and before.get("digest") != after.get("digest"):
                out.append(MissingState(part, "not restored", _restore_detail(part, before, after, saved, loaded)))
    first = _first_level(divergences)
    lead = {"rng": ("rng",), "tensor": ("model", "optimizer", "scheduler", "data", "rng"),
            "metric": ("data", "scheduler", "optimizer", "model", "rng")}.get(first, ())
    rank = {p: i for i, p in enumerate(lead)}
    how = {"not restored": 0, "not saved": 1}
    return sorted(out, key=lambda m: (rank.get(m.part, len(rank)), how[m.how], PARTS.index(m.part)))


def _first_level(divergences) -> str | None:
    found = [d for d in divergences if d.step is not None]
    order = ("rng", "tensor", "metric", "steps")
    first = min(found, key=lambda d: (d.step, order.index(d.level)), default=None)
    return first.level if first else None


def _restore_detail(part, before, after, saved, loaded) -> str:
    if part == "rng":
        a, b = before.get("sources") or {}, after.get("sources") or {}
        differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        return "RNG sources that differ after loading: " + ", ".join(differ)
    if part == "model":
        differ = [n for n in saved.tensors if loaded.tensors.get(n) != saved.tensors[n]]
        return f"{len(differ)} tensor(s) differ after loading" + (f", first {differ[0]}" if differ else "")
    return "its digest after loading differs from the one saved"


def _resume_summary(r: ResumeCheckResult) -> str:
    if r.exact:
        return (f"Exact resume: stopped after step {r.at} and resumed, the run matches the "
                f"uninterrupted run at every step to {r.to}.")
    if r.before_resume:
        return (f"Not a resume problem: the two runs already differ at step {r.departs_at}, before "
                f"the checkpoint at step {r.at}; the run is not deterministic (run rldk check-determinism).")
    cause = r.missing[0] if r.missing else None
    what = f"; missing state: {cause.part} ({cause.how})" if cause else \
        "; every part of the checkpoint was saved and restored identically"
    return f"Resume departs at step {r.departs_at} (checkpoint after step {r.at}){what}."


def _resume_findings(r: ResumeCheckResult):
    from rldk.core.report import Finding

    out = []
    if not r.exact:
        cause = r.missing[0] if r.missing else None
        fix = (f"save and restore the {cause.part} state and log it with log_checkpoint(..., "
               f"{_ARG[cause.part]})" if cause else
               "something outside the checkpoint changes on resume: global state (e.g. a counter, "
               "a cache), or a nondeterministic op after the resume")
        out.append(Finding("resume_departs", "error", f"resumed run departs at step {r.departs_at}",
                           RUN_RESUMED, steps=(r.departs_at, r.departs_at),
                           evidence={"first_tensor": _name(r.first("tensor")),
                                     "first_rng_source": _name(r.first("rng")),
                                     "first_metric": _name(r.first("metric"))}, fix=fix))
    for m in r.missing:
        severity = "error" if not r.exact else "warning"
        out.append(Finding(f"{m.part}_{m.how.replace(' ', '_')}", severity,
                           f"{m.part} state {m.how}: {m.detail}", RUN_RESUMED, steps=(r.at, r.at),
                           fix=f"save it in the checkpoint, restore it on resume, and pass "
                               f"{_ARG[m.part]} to log_checkpoint"))
    if r.loaded is None:
        out.append(Finding("no_load_event", "info", "the resumed run logged no checkpoint load event",
                           RUN_RESUMED, fix="call log_checkpoint(step, path, ..., action='load') right "
                           "after restoring, so parts that are not restored are named"))
    return out


def _resume_tables(r: ResumeCheckResult):
    from rldk.core.report import ReportTable

    div = ReportTable("first departure per level", ("level", "step", "first name"),
                      tuple((d.level, d.step, d.name) for d in r.divergences))
    parts = ReportTable("checkpoint parts", ("part", "saved", "restored identically"),
                        tuple((p, bool(r.saved.parts.get(p)), _restored(r, p)) for p in PARTS))
    return div, parts


def _restored(r: ResumeCheckResult, part: str):
    if r.loaded is None or not r.saved.parts.get(part) or not r.loaded.parts.get(part):
        return None
    return r.saved.parts[part].get("digest") == r.loaded.parts[part].get("digest")
