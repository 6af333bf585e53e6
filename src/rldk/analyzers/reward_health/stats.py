"""The small statistics reward health needs, in NumPy: ranks, Spearman, Kendall, windows."""
from __future__ import annotations

import math

import numpy as np


def rankdata(x) -> np.ndarray:
    """1-based ranks of ``x``, ties given the average of the ranks they span
    (``scipy.stats.rankdata(x, "average")``)."""
    x = np.asarray(x, float)
    if x.size < 2 or (x[1:] > x[:-1]).all():       # already increasing (steps): 1..n
        return np.arange(1.0, x.size + 1.0)
    order = np.argsort(x)              # tied values share their average rank: any order will do
    ordered = x[order]
    new_value = ordered[1:] != ordered[:-1]
    ranks = np.empty(x.size)
    if new_value.all():                            # no ties: each value's place, 1-based
        ranks[order] = np.arange(1.0, x.size + 1.0)
        return ranks
    starts_group = np.r_[True, new_value]
    starts = np.flatnonzero(starts_group)
    counts = np.diff(np.r_[starts, x.size])
    average = starts + (counts + 1) / 2.0
    ranks[order] = average[np.cumsum(starts_group) - 1]
    return ranks


def spearman(x, y) -> float | None:
    """Spearman's rho of two equal-length arrays (Pearson correlation of their average
    ranks), over the pairs where both are finite; None with < 3 pairs or a constant side."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.all():                               # most series are finite: no copies then
        x, y = x[ok], y[ok]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


def kendall_tau_b(sign_a: np.ndarray, sign_b: np.ndarray) -> float | None:
    """Kendall's tau-b from the signs of all pairwise differences of two vectors:
    (concordant - discordant) / sqrt(pairs untied in a * pairs untied in b)."""
    untied = math.sqrt(float(np.count_nonzero(sign_a)) * float(np.count_nonzero(sign_b)))
    return float(np.sum(sign_a * sign_b) / untied) if untied else None


def window_bounds(steps: np.ndarray, windows: int, min_size: int) -> list[tuple[int, int]]:
    """``(first_step, last_step)`` of up to ``windows`` contiguous windows of the
    distinct ``steps``, each holding at least ``min_size`` of them when possible."""
    steps = np.asarray(steps)
    increasing = steps.size < 2 or bool((steps[1:] > steps[:-1]).all())
    distinct = steps if increasing else np.unique(steps)      # a series' steps already are
    if distinct.size == 0:
        return []
    count = max(1, min(windows, distinct.size // max(1, min_size)))
    return [(int(c[0]), int(c[-1])) for c in np.array_split(distinct, count)]


def in_window(steps: np.ndarray, bounds: tuple[int, int]) -> np.ndarray:
    """Mask of ``steps`` inside the inclusive ``bounds``."""
    return (steps >= bounds[0]) & (steps <= bounds[1])


def demean_by(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` minus the mean of the values that share their key."""
    _, inverse = np.unique(keys, return_inverse=True)
    means = np.bincount(inverse, weights=values) / np.bincount(inverse)
    return values - means[inverse]


def rolling_median(x: np.ndarray, k: int) -> np.ndarray:
    """Trailing median of ``k`` values (the first ``k - 1`` values unchanged)."""
    if x.size < k:
        return x
    from numpy.lib.stride_tricks import sliding_window_view

    return np.concatenate([x[: k - 1], np.median(sliding_window_view(x, k), axis=1)])


def mean_or_none(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def fmt(x) -> str:
    """A number for a one-line detail (3 significant digits, "n/a" for None / non-finite)."""
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3g}"
