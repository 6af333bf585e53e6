"""The exact level: the first common step where a signal's values differ at all.

For runs meant to be bit-identical. Values are equal when they are the same
float64 (NaN equals NaN), with one allowance for storage precision: when one
run's series is stored rounded to float32 (every finite value is a float32, as
TensorBoard scalars are) and the other's is not, both are compared rounded to
float32. A float32 copy of a run carries no more digits, so a difference below
float32 resolution is no evidence; two series of the same precision are always
compared exactly. The signal's ``precision`` field says when this applied.

``auto_mode`` decides whether two runs are meant to be identical: they are when
nothing differs where both begin.
"""
from __future__ import annotations

import numpy as np

from rldk import semantics
from rldk.analyzers import _series
from rldk.analyzers.divergence.params import TIMING
from rldk.analyzers.divergence.result import SignalDivergence


def is_float32(values: np.ndarray) -> bool:
    """Whether every finite value is exactly a float32 (at least one finite value)."""
    if not _all_float32(values[:_FIRST]):         # a float64 series shows it at once
        return False
    finite = values[np.isfinite(values)]
    return len(finite) > 0 and _all_float32(finite)


#: Values checked first by ``is_float32``.
_FIRST = 64


def _all_float32(values: np.ndarray) -> bool:
    """Whether every finite value of ``values`` is exactly a float32 (True when none is finite)."""
    finite = values[np.isfinite(values)]
    with np.errstate(over="ignore"):
        return bool((finite.astype(np.float32).astype(np.float64) == finite).all())


def equal_values(va: np.ndarray, vb: np.ndarray, float32: bool) -> np.ndarray:
    """Per step, whether the values are equal (NaN equals NaN; at float32 when asked)."""
    same = (va == vb) | (np.isnan(va) & np.isnan(vb))
    if float32:
        with np.errstate(over="ignore"):
            same |= va.astype(np.float32) == vb.astype(np.float32)
    return same


def exact_signal(pair, sa, sb, steps, va, vb) -> SignalDivergence:
    """The exact level of one signal over its aligned steps (``pair``: a SignalPair)."""
    float32 = len(steps) > 0 and is_float32(va) != is_float32(vb)
    idx = np.flatnonzero(~equal_values(va, vb, float32))
    first = int(idx[0]) if len(idx) else None
    n = len(steps)
    delta = np.abs(vb - va)
    delta = delta[np.isfinite(delta)]
    return SignalDivergence(
        signal=pair.signal, name_a=pair.name_a, name_b=pair.name_b, common_steps=n,
        first_step=int(steps[0]) if n else None, last_step=int(steps[-1]) if n else None,
        only_a=len(sa) - n, only_b=len(sb) - n,
        exact_step=int(steps[first]) if first is not None else None,
        value_a=float(va[first]) if first is not None else None,
        value_b=float(vb[first]) if first is not None else None,
        max_abs_delta=float(delta.max()) if len(delta) else None,
        duplicates_a=sa.duplicates, duplicates_b=sb.duplicates,
        non_numeric_a=sa.non_numeric, non_numeric_b=sb.non_numeric,
        precision="float32" if float32 else "float64")


def auto_mode(a, b, tensors, rng) -> str:
    """"exact" when the runs start identical, else "statistical".

    They start identical when nothing differs where both begin: every quantity both
    log (timings aside) has the same first value when both first log it at the same
    step, the first compared RNG digests and tensor checksums are equal, and their
    recorded seeds agree.
    """
    for ev in (tensors, rng):
        if ev is not None and ev.first_step is not None and ev.first_step == ev.first_common:
            return "statistical"
    seeds = [_series.run_facts(src).meta.get("seed") for src in (a, b)]
    if None not in seeds and seeds[0] != seeds[1]:
        return "statistical"
    return "statistical" if first_values_differ(a, b) else "exact"


def first_values_differ(a, b) -> bool:
    """Whether a quantity both runs log differs at the first step both log it (names
    matched through :mod:`rldk.semantics`, so ``kl`` and ``train/kl`` are one quantity)."""
    index_a, index_b = _series.run_index(a), _series.run_index(b)
    first_a, first_b = _series.first_values(a), _series.first_values(b)
    for name_a in index_a:
        name_b = semantics.resolve_name(name_a, index_b)
        if name_b is None or TIMING.search(name_a) or name_a not in first_a or name_b not in first_b:
            continue
        if index_a[name_a].first_numeric_step != index_b[name_b].first_numeric_step:
            continue
        if not same_value(first_a[name_a], first_b[name_b]):
            return True
    return False


def same_value(va: float, vb: float) -> bool:
    """One pair of values, by the rule of :func:`equal_values` (float32 when exactly
    one of the two is a float32)."""
    float32 = is_float32(np.array([va])) != is_float32(np.array([vb]))
    return bool(equal_values(np.array([va]), np.array([vb]), float32)[0])


def headline_exact(compared, tensors, rng):
    """``(step, signal, level)`` of the earliest bitwise or exact difference (Nones when
    none); ties go to tensors, then RNG, then signals in order."""
    found = []
    for rank, ev in enumerate((tensors, rng)):
        if ev is not None and ev.first_step is not None:
            found.append((ev.first_step, rank, f"{ev.kind}/{ev.first_name}", "bitwise"))
    for i, s in enumerate(compared):
        if s.exact_step is not None:
            found.append((s.exact_step, 2 + i, s.signal, "exact"))
    if not found:
        return None, None, None
    step, _, signal, level = min(found)
    return step, signal, level
