"""Change points in the mean of a series: exact PELT with an L2 cost (Killick et al., 2012).

The series is cut into segments of constant mean, minimising the sum of squared
deviations plus ``penalty`` per segment. PELT finds the optimal cut exactly (the
same answer as trying every segmentation) and prunes candidates that can never win,
so its cost is close to linear in practice. The penalty is set from the series' own
noise (``rldk.detectors.scale.noise_sigma``), so "a new regime" means "a shift large
against this series' step-to-step noise", whatever the units.

No part of the series is assumed healthy: every segment, the first included, is
fitted on its own data. Long series are averaged into at most ``MAX_POINTS`` buckets
first (a level shift survives averaging) and each cut is then placed exactly, at the
raw step, inside the bucket pair around it.
"""
from __future__ import annotations

import math

import numpy as np

try:                                       # the same search compiled (_pelt.c), when built
    from rldk.detectors._pelt import pelt as _pelt_compiled
except ImportError:
    _pelt_compiled = None

#: Above this many points a series is averaged into buckets before segmentation; PELT is
#: quadratic in the worst case (a series with no change point prunes nothing).
MAX_POINTS = 2000


def segment(y: np.ndarray, penalty: float, min_size: int = 2) -> list[int]:
    """Start indices of the segments of ``y`` (the first is always 0).

    ``penalty``: cost of one more segment, in units of squared ``y``. ``min_size``:
    shortest segment. ``y`` must be finite.
    """
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n < 2 * min_size:
        return [0]
    if n > MAX_POINTS:
        return _segment_long(y, penalty, min_size)
    return _pelt(y, penalty, min_size)


def _pelt(y: np.ndarray, penalty: float, min_size: int) -> list[int]:
    if _pelt_compiled is not None:
        return _pelt_compiled(*_prefix_sums(y), float(penalty), int(min_size))
    return _pelt_python(y, penalty, min_size)


def _pelt_python(y: np.ndarray, penalty: float, min_size: int) -> list[int]:
    n = len(y)
    sums = _prefix_sums(y)
    lists = tuple(a.tolist() for a in sums)
    best = np.full(n + 1, np.inf)
    best[0] = -penalty                     # the first segment pays no penalty
    best_list = best.tolist()
    last = [0] * (n + 1)
    candidates = [0]
    for t in range(1, n + 1):
        # candidates: a list while few, an array while many (NumPy's per-call overhead
        # costs more than a few Python floats)
        if len(candidates) < FEW:
            candidates = candidates if isinstance(candidates, list) else candidates.tolist()
            cost, start, candidates = _step_few(*lists, best_list, candidates, t, penalty, min_size)
        else:
            cost, start, candidates = _step_many(*sums, best, np.asarray(candidates), t, penalty, min_size)
        if start is not None:
            best[t] = best_list[t] = float(cost)
            last[t] = int(start)
        if best_list[t] < math.inf:
            candidates = (candidates + [t] if isinstance(candidates, list)
                          else np.concatenate((candidates, [t])))
    starts, t = [], n
    while t > 0:
        t = last[t]
        starts.append(t)
    return sorted(set(starts))


#: Below this many candidate starts a PELT step runs on Python floats (NumPy's per-call
#: overhead costs more there); the arithmetic is the same, so the cuts are the same.
FEW = 24


def _step_few(s1, s2, best, candidates, t, penalty, min_size):
    """One PELT step: ``(best[t], last[t], candidates)``. ``best[t]`` is the least, over
    the candidate starts ``c`` at least ``min_size`` before ``t``, of ``best[c]`` plus the
    L2 cost of ``y[c:t]``, plus ``penalty``; ``last[t]`` is that start (the first of equal
    totals); both None when no start is far enough. ``s1``, ``s2`` (the prefix sums) and
    ``best`` are lists; ``y`` is finite, so ``max(cost, 0)`` is plain comparison."""
    a1, a2 = s1[t], s2[t]
    totals = []
    for c in candidates:                   # one evaluation serves choice and pruning
        diff = a1 - s1[c]
        cost = (a2 - s2[c]) - diff * diff / (t - c)
        totals.append(best[c] + (cost if cost >= 0.0 else 0.0))
    ready = [i for i, c in enumerate(candidates) if t - c >= min_size]
    if not ready:
        return None, None, candidates
    i = min(ready, key=totals.__getitem__)
    cut = totals[i] + penalty
    # PELT pruning (K = 0 holds for the L2 cost): a start that cannot beat the best cut
    # now never will
    return cut, candidates[i], [c for c, total in zip(candidates, totals)
                                if t - c < min_size or total <= cut]


def _step_many(s1, s2, best, candidates, t, penalty, min_size):
    """``_step_few`` on arrays (many candidates: a series with few cuts prunes few)."""
    c = candidates
    diff = s1[t] - s1[c]
    totals = best[c] + np.maximum((s2[t] - s2[c]) - diff * diff / (t - c), 0.0)
    if min_size == 1:                                  # every candidate is before t
        i = int(np.argmin(totals))
        cut = totals[i] + penalty
        return cut, c[i], c[totals <= cut]
    ready = t - c >= min_size
    if not ready.any():
        return None, None, c
    i = int(np.flatnonzero(ready)[int(np.argmin(totals[ready]))])
    cut = totals[i] + penalty
    return cut, c[i], c[~ready | (totals <= cut)]


def _cost(s1, s2, starts, t):
    """L2 cost of ``y[start:t]`` for each start (squared deviations from its mean)."""
    length = np.maximum(t - starts, 1)
    return np.maximum((s2[t] - s2[starts]) - (s1[t] - s1[starts]) ** 2 / length, 0.0)


def _segment_long(y: np.ndarray, penalty: float, min_size: int) -> list[int]:
    """Bucket means, segment them, then place each cut exactly among the raw points.

    A change inside a bucket gives that bucket an in-between mean, so the coarse cut
    can come as two neighbouring boundaries: they are one cut, placed once. Cuts
    that no longer pay their penalty on the raw points are dropped."""
    n = len(y)
    size = int(np.ceil(n / MAX_POINTS))
    edges = np.append(np.arange(0, n, size), n)
    means = np.add.reduceat(y, edges[:-1]) / np.diff(edges)
    coarse = _pelt(means, penalty / size, 1)[1:]       # a bucket mean has 1/size of the variance
    groups: list[list[int]] = []
    for b in coarse:
        if groups and b - groups[-1][-1] <= 1:
            groups[-1].append(b)
        else:
            groups.append([b])
    s1, s2 = _prefix_sums(y)                           # once for every cut and the pruning
    cuts = [_split(s1, s2, int(edges[g[0] - 1]), int(edges[min(g[-1] + 1, len(edges) - 1)]))
            for g in groups]
    return _prune([0] + sorted(set(cuts)), s1, s2, penalty, min_size)


def _prefix_sums(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running sums of ``y`` and ``y**2``, each with a leading 0."""
    return np.concatenate([[0.0], np.cumsum(y)]), np.concatenate([[0.0], np.cumsum(y * y)])


def _prune(starts: list[int], s1: np.ndarray, s2: np.ndarray, penalty: float,
           min_size: int) -> list[int]:
    """Drop cuts whose segments are shorter than ``min_size`` or that save less than
    ``penalty`` of cost against merging their two neighbours, worst first (``s1``, ``s2``:
    the series' ``_prefix_sums``)."""
    starts = list(starts)
    while len(starts) > 1:
        bounds = np.array(starts + [len(s1) - 1])
        left, mid, right = bounds[:-2], bounds[1:-1], bounds[2:]
        saving = (_cost(s1, s2, left, right) - _cost(s1, s2, left, mid)
                  - _cost(s1, s2, mid, right))
        saving[np.minimum(mid - left, right - mid) < min_size] = -np.inf
        worst = int(np.argmin(saving))
        if saving[worst] >= penalty:
            break
        del starts[worst + 1]
    return starts


def best_split(y: np.ndarray, lo: int, hi: int, left: int, right: int) -> int:
    """The index ``k`` in ``[lo, hi)`` where cutting ``y[left:right]`` into ``y[left:k]``
    and ``y[k:right]`` costs least (L2), or ``lo`` when the range is empty."""
    if max(lo, left + 1) >= min(hi, right):
        return lo
    return _split(*_prefix_sums(y[left:right]), lo - left, hi - left) + left


def _split(s1: np.ndarray, s2: np.ndarray, lo: int, hi: int) -> int:
    """``best_split`` of the whole series whose ``_prefix_sums`` are ``s1``, ``s2``."""
    m = len(s1) - 1
    k = np.arange(max(lo, 1), min(hi, m))
    if len(k) == 0:
        return lo
    cost = (s2[k] - s1[k] ** 2 / k) + ((s2[m] - s2[k]) - (s1[m] - s1[k]) ** 2 / (m - k))
    return int(k[int(np.argmin(cost))])
