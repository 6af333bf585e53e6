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

import numpy as np

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
    n = len(y)
    s1 = np.concatenate([[0.0], np.cumsum(y)])
    s2 = np.concatenate([[0.0], np.cumsum(y * y)])
    best = np.full(n + 1, np.inf)
    best[0] = -penalty                     # the first segment pays no penalty
    last = np.zeros(n + 1, dtype=int)
    held = np.zeros(n + 1, dtype=int)      # the candidate starts, increasing, in held[:m]
    m = 1
    for t in range(1, n + 1):
        candidates = held[:m]
        ready = int(np.searchsorted(candidates, t - min_size, side="right"))   # a prefix
        if not ready:
            continue
        cost = best[candidates] + _cost(s1, s2, candidates, t)
        i = int(np.argmin(cost[:ready]))
        best[t], last[t] = cost[i] + penalty, candidates[i]
        # PELT pruning (K = 0 holds for the L2 cost): a start that cannot beat the
        # best cut now never will
        keep = cost <= best[t]
        keep[ready:] = True
        kept = candidates[keep]
        m = len(kept) + 1
        held[:m - 1] = kept
        held[m - 1] = t
    starts, t = [], n
    while t > 0:
        t = int(last[t])
        starts.append(t)
    return sorted(set(starts))


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
    cuts = [best_split(y, int(edges[g[0] - 1]), int(edges[min(g[-1] + 1, len(edges) - 1)]), 0, n)
            for g in groups]
    return _prune([0] + sorted(set(cuts)), y, penalty, min_size)


def _prune(starts: list[int], y: np.ndarray, penalty: float, min_size: int) -> list[int]:
    """Drop cuts whose segments are shorter than ``min_size`` or that save less than
    ``penalty`` of cost against merging their two neighbours, worst first."""
    s1 = np.concatenate([[0.0], np.cumsum(y)])
    s2 = np.concatenate([[0.0], np.cumsum(y * y)])
    cost = lambda a, b: float(_cost(s1, s2, np.array([a]), b)[0])      # noqa: E731
    starts = list(starts)
    while len(starts) > 1:
        bounds = starts + [len(y)]
        saving = [cost(bounds[i - 1], bounds[i + 1]) - cost(bounds[i - 1], bounds[i])
                  - cost(bounds[i], bounds[i + 1])
                  if min(bounds[i] - bounds[i - 1], bounds[i + 1] - bounds[i]) >= min_size else -np.inf
                  for i in range(1, len(starts))]
        worst = int(np.argmin(saving))
        if saving[worst] >= penalty:
            break
        del starts[worst + 1]
    return starts


def best_split(y: np.ndarray, lo: int, hi: int, left: int, right: int) -> int:
    """The index ``k`` in ``[lo, hi)`` where cutting ``y[left:right]`` into ``y[left:k]``
    and ``y[k:right]`` costs least (L2), or ``lo`` when the range is empty."""
    ks = np.arange(max(lo, left + 1), min(hi, right))
    if len(ks) == 0:
        return lo
    part = y[left:right]
    s1 = np.concatenate([[0.0], np.cumsum(part)])
    s2 = np.concatenate([[0.0], np.cumsum(part * part)])
    k, m = ks - left, right - left
    cost = (s2[k] - s1[k] ** 2 / k) + ((s2[m] - s2[k]) - (s1[m] - s1[k]) ** 2 / (m - k))
    return int(ks[int(np.argmin(cost))])
