"""Two checkpoint files compared tensor by tensor (``rldk checkpoint diff``)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from rldk.analyzers.checkpoint.loading import load_state
from rldk.core.errors import UsageError
from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import Result
from rldk.writer.checkpoint import flatten, is_tensor

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
        # one row of the diff table, keyed by DIFF_COLUMNS (the shape as "AxB")
        return dict(zip(DIFF_COLUMNS, self.row()))


@dataclass(frozen=True)
class CheckpointDiff(Result):
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
        # counts and the top movers instead of the raw fields: what a reader of the JSON wants
        return {"a": self.a, "b": self.b, "compared": len(self.tensors), "identical": self.identical,
                "total_rel_change": self.total_rel_change, "only_a": list(self.only_a),
                "only_b": list(self.only_b), "shape_mismatch": list(self.shape_mismatch),
                "top_movers": [t.to_dict() for t in self.top],
                "tensors": [t.to_dict() for t in self.tensors]}

    def report(self) -> Report:
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
        checks = (Check("tensors_compared", "ran", f"{len(self.tensors)} tensors in both files"),)
        return Report("checkpoint_diff", "Checkpoint diff", verdict(findings, checks), summary,
                      tuple(findings), tables, self.to_dict(), checks)


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
    return {k: v for k, v in flatten(load_state(path))
            if is_tensor(v) and (prefix is None or k.startswith(prefix))}


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

