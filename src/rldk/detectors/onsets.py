"""Where a bad state starts: the first logged step in the state from which the series stays.

A rule says what the state is, pointwise (``values < 0.2 x the level the entropy
held``); ``state_run`` finds the first run of points in it that lasts (to the end of
the log, or for MIN_STRETCH of it), tolerating brief excursions out of it; its first
point is the onset a person reads off the numbers. ``level_of`` is the robust level
a series held around each point (a centred rolling median), which rules use as their
reference: the highest level held, wherever it lies, never "the first tenth".
``stretch``/``first_staying`` do the same over regimes (``rldk.detectors.regimes``);
``held_before`` walks regimes with the levels held before each, ``level_above`` finds a
noisy series' state on its level.
"""
from __future__ import annotations

import numpy as np

from rldk.detectors.regimes import Regime, Regimes

#: Shortest regime (logged points) that can serve as the reference level of a fall or
#: a rise: a single outlier point is not a level the run held.
MIN_REFERENCE = 3
#: A bad state that does not last to the end of the run still counts when it holds this
#: share of the run's points (and at least MIN_REFERENCE): an entropy collapse that the
#: run later crashes out of is still a collapse, from its first step.
MIN_STRETCH = 0.1
#: Inside a bad state, this share of the points may stray back out (noise, brief bumps)
#: without ending the state, in excursions of at most MAX_EXCURSION consecutive points; a
#: longer excursion is a recovery and the state starts again after it. The labelled real
#: logs show such bumps in 1-3% of points, one or two values long.
STRAY = 0.05
MAX_EXCURSION = 2
#: STRAY for a state most of whose points lie deep in it (``state_run``'s ``deep``: e.g.
#: under half the line of a fall): its level is clearly in the state, and its brief
#: bursts back out are bursts, not a level it came back to.
STRAY_DEEP = 0.15


#: ``starts_mid_run``: a log whose first step lies this many of its own step spacings (the
#: median gap between logged steps) past 0 starts mid-run (a resumed run, a log kept from
#: late on): what the run did before it is not in view. A log from the start of its run
#: begins at step 0 or one logging interval in.
STARTS_MID_RUN = 10


def starts_mid_run(steps) -> bool:
    """Whether a series logged at ``steps`` (ascending) starts mid-run: its first step is
    STARTS_MID_RUN of its step spacings past 0 (rows logged at one step, by two ranks or
    as repeats, are no spacing). A state it is in from its first row began before the log:
    where, and what the run did through it, is not in view."""
    steps = np.asarray(steps)
    gaps = np.diff(steps)
    gaps = gaps[gaps > 0]
    return bool(len(gaps)) and float(steps[0]) >= STARTS_MID_RUN * float(np.median(gaps))


def stretch_need(n: int, least: int = MIN_REFERENCE) -> int:
    """Fewest points of a series of ``n`` that make a stretch of it: MIN_STRETCH of them,
    and at least ``least``."""
    return max(least, int(np.ceil(MIN_STRETCH * n)))


def final_need(below, lo: int, start: int, least: int) -> int:
    """Fewest points a state that lasts to the end of the series (from point ``start``)
    must hold to count: MIN_STRETCH of the series, as a state that ends must; or fewer,
    when the series never came back from a stretch in the state that long: one point more
    than the longest run of ``below`` within ``[lo, start)`` that it left again, and at
    least ``least``. A run stopped soon after its reward collapsed (the usual end of a
    broken run) ends in a short final state; a bursty return that drops back from a burst
    to the plateau it left and returned to before has been there, for longer, and came
    back. The run that reaches ``start`` is part of the final state, not an earlier one."""
    share = stretch_need(len(below), least)
    seg = np.asarray(below[lo:start], dtype=bool)
    if len(seg) and seg[-1]:
        seg = seg[:len(seg) - int(np.argmin(seg[::-1]))] if not seg.all() else seg[:0]
    longest = 0
    if seg.any():
        edges = np.flatnonzero(np.diff(np.concatenate([[0], seg.astype(np.int8), [0]])))
        longest = int(np.max(edges[1::2] - edges[::2]))
    return min(share, max(least, longest + 1))


def held_peak(parts, j: int) -> Regime | None:
    """The highest regime before index ``j`` that lasted MIN_REFERENCE points."""
    held = [p for p in parts[:j] if p.size >= MIN_REFERENCE]
    return max(held, key=lambda p: p.level) if held else None


def held_trough(parts, j: int) -> Regime | None:
    """The lowest regime before index ``j`` that lasted MIN_REFERENCE points."""
    held = [p for p in parts[:j] if p.size >= MIN_REFERENCE]
    return min(held, key=lambda p: p.level) if held else None


def held_before(r: Regimes):
    """``(prev, top, p)`` for each regime ``p`` that comes after a held one: ``prev`` the
    last regime of MIN_REFERENCE points before it, ``top`` the highest (median) of them."""
    prev = top = None
    for q, p in zip(r.parts, r.parts[1:]):
        if q.size >= MIN_REFERENCE:
            prev, top = q, q if top is None or q.raw > top.raw else top
        if prev is not None:
            yield prev, top, p


def stretch(r: Regimes, inside, start: int = 0) -> tuple[int, int] | None:
    """``(i, j)``: the first run of consecutive regimes ``parts[i:j]`` (from ``start``)
    that all satisfy ``inside`` and either reach the end of the series or hold at least
    MIN_STRETCH of its points."""
    need = stretch_need(len(r.values))
    i = start
    while i < len(r.parts):
        if not inside(r.parts[i]):
            i += 1
            continue
        j = i
        while j < len(r.parts) and inside(r.parts[j]):
            j += 1
        if j == len(r.parts) or r.parts[j - 1].end - r.parts[i].start >= need:
            return i, j
        i = j
    return None


def first_staying(bad: np.ndarray, lo: int, hi: int) -> int | None:
    """The first index ``k`` in ``[lo, hi)`` with ``bad[k]`` true from which the series
    stays in the state to ``hi``: no excursion out of it longer than MAX_EXCURSION points,
    and at most STRAY of the points out of it."""
    part = np.asarray(bad[lo:hi], dtype=bool)
    if not part.any():
        return None
    start = _after_last_long_excursion(part)
    share = np.cumsum(part[::-1])[::-1] / np.arange(len(part), 0, -1)
    ok = part & (share >= 1 - STRAY)
    ok[:start] = False
    return lo + int(np.argmax(ok)) if ok.any() else None


def _after_last_long_excursion(part: np.ndarray) -> int:
    """Index just after the last run of False longer than MAX_EXCURSION (0 if none)."""
    out = ~part
    if not out.any():
        return 0
    edges = np.flatnonzero(np.diff(np.concatenate([[0], out.astype(np.int8), [0]])))
    starts, ends = edges[::2], edges[1::2]
    long = np.flatnonzero(ends - starts > MAX_EXCURSION)
    return int(ends[long[-1]]) if len(long) else 0


def onset_in(r: Regimes, found: tuple[int, int], bad: np.ndarray) -> int:
    """The onset index of a stretch ``found`` of regimes: its first point in the state
    (``bad``) from which it stays there; the stretch's first point when none is."""
    lo, hi = r.parts[found[0]].start, r.parts[found[1] - 1].end
    k = first_staying(bad, lo, hi)
    return lo if k is None else k


#: Points in the centred rolling median that gives the level a series held around a
#: point: robust to a lone outlier on either side, short enough to see a collapse that
#: takes 5-10 logged values (the fast entropy collapses of the real logs).
LEVEL_WINDOW = 5


def level_of(values: np.ndarray) -> np.ndarray:
    """The level each point's neighbourhood held: a centred rolling median of
    LEVEL_WINDOW points."""
    values = np.asarray(values, float)
    n = len(values)
    if n < LEVEL_WINDOW:
        return np.full(n, float(np.median(values))) if n else values
    if n < 2 * LEVEL_WINDOW or not np.isfinite(values).all() or np.signbit(values[values == 0]).any():
        return rolling_median(values)
    # inside, each window's median is one of its values, its third smallest: a sorting
    # network of minima and maxima over the five shifted copies picks it (Polars' rolling
    # median gives the same value, at a third of the cost); the two points at either end
    # have shorter windows, left to Polars
    rows = [values[i:n - 4 + i] for i in range(5)]
    for i, j in _SORT_5:
        rows[i], rows[j] = np.minimum(rows[i], rows[j]), np.maximum(rows[i], rows[j])
    out = np.empty(n)
    out[2:n - 2] = rows[2]
    out[:2] = [_median(values[:3]), _median(values[:4])]
    out[n - 2:] = [_median(values[n - 4:]), _median(values[n - 3:])]
    return out


def _median(values: np.ndarray) -> float:
    """The median of a few finite values as Polars' rolling median takes it (an even
    count's middle pair interpolated as lower + (upper - lower) / 2), without Polars."""
    ordered = np.sort(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return ordered[middle - 1] + (ordered[middle] - ordered[middle - 1]) * 0.5


#: A sorting network of five values (nine compare-exchanges); LEVEL_WINDOW is 5.
_SORT_5 = ((0, 1), (3, 4), (2, 4), (2, 3), (1, 4), (0, 3), (0, 2), (1, 3), (1, 2))


def rolling_median(values: np.ndarray, window: int = LEVEL_WINDOW, min_samples: int = 1) -> np.ndarray:
    """A centred rolling median of ``window`` points (NaN where fewer than ``min_samples``
    of them lie inside the series)."""
    import polars as pl

    return (pl.Series(values)
            .rolling_median(window_size=window, center=True, min_samples=min_samples).to_numpy())


def state_run(bad: np.ndarray, lo: int = 0, final: bool = False,
              min_final: int = MIN_REFERENCE, deep=None) -> tuple[int, int] | None:
    """``(k, end)``: the first run of points from ``lo`` in the state (``bad``) that lasts
    to the end of the series (at least ``min_final`` points: a state seen at one or two
    points is not yet a state) or, unless ``final``, for MIN_STRETCH of it; excursions
    out of the state of at most MAX_EXCURSION points stay inside the run, and at most
    STRAY of its points may be out (STRAY_DEEP when more than half of them are ``deep``,
    a boolean array like ``bad``). ``k`` is a point in the state (the onset) whose next
    point is in it too: a lone point in the state followed by an excursion is noise
    before the state, not its first step (the onset protocol's "whose next row is past
    the midpoint too", benchmarks/data/real/README.md)."""
    bad = np.asarray(bad, dtype=bool)
    n = len(bad)
    need = stretch_need(n)
    for k, end in _runs(bad, lo):
        lasts = (end == n and end - k >= min_final) or (not final and end - k >= need)
        stray = STRAY_DEEP if deep is not None and np.mean(deep[k:end]) > 0.5 else STRAY
        if lasts and np.mean(~bad[k:end]) <= stray:
            return _paired(bad, k, end), end
    return None


#: Share of the points from a crossing to the deepest point that must stay past the
#: midpoint for the series to be past it "for good" (the onset protocol's 80%).
PAST_SHARE = 0.8


def past_midpoint(y: np.ndarray, a: int, k: int, mid: float) -> int:
    """The first point after ``a`` (at most ``k``) below ``mid`` whose next point is below it
    too and from which PAST_SHARE of the points to ``k`` stay below it."""
    below = y[a + 1:k + 1] < mid
    if len(below) < 2:
        return k
    share = np.cumsum(below[::-1])[::-1] / np.arange(len(below), 0, -1)
    ok = below & np.r_[below[1:], True] & (share >= PAST_SHARE)
    return a + 1 + int(np.argmax(ok)) if ok.any() else k


def midpoint_onset(v: np.ndarray, k: int, end: int) -> tuple[int, float | None]:
    """The first step of the regime a state found from point ``k`` (to ``end``) belongs to,
    for a positive quantity compared on the log scale: the first point of the run that
    holds ``k`` past the midpoint (geometric mean) between the lowest level the series held
    before ``k`` (``level_of``; its lowest point, when fewer than LEVEL_WINDOW came before)
    and the state's median, from which it stays past it (the
    onset protocol's "past the midpoint for good", benchmarks/data/real/README.md). A
    state read off a fixed line (a KL of 0.1 nats per update) starts where the series
    crossed that line, which lies anywhere in its climb: a KL that climbs from 1e-3 to 3
    crosses 0.1 a few rows after it is nearer 3 than 1e-3 (on the log scale), one that
    starts at 0.08 a few rows before. Returns the onset and that lowest level; ``(k, None)``
    when nothing was held before it (a state from the first point) or a level is not
    positive."""
    if k == 0:
        return k, None
    # the lowest level held before; fewer points than a level's window hold none, and
    # the lowest of them is where the climb started
    low = float(np.min(level_of(v[:k]) if k >= LEVEL_WINDOW else v[:k]))
    high = float(np.median(v[k:end]))
    if not (low > 0 and high > low):
        return k, None
    above = v >= np.sqrt(low * high)
    if above[k]:
        start = next(start for start, stop in _runs(above, 0) if start <= k < stop)
        return _paired(above, start, k + 1), low
    found = state_run(above, k)
    return (found[0] if found is not None and found[0] < end else k), low


def _paired(bad: np.ndarray, k: int, end: int) -> int:
    """The first point of ``bad[k:end]`` whose next point is in the state too (``k`` when
    no two consecutive points are)."""
    pairs = bad[k:end - 1] & bad[k + 1:end]
    return k + int(np.argmax(pairs)) if pairs.any() else k


def _runs(bad: np.ndarray, lo: int):
    """Maximal runs of ``bad`` from ``lo``, merging runs separated by short excursions."""
    idx = np.flatnonzero(bad[lo:]) + lo
    if not len(idx):
        return
    breaks = np.flatnonzero(np.diff(idx) > MAX_EXCURSION + 1)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks] + 1, [idx[-1] + 1]])
    yield from zip(starts.tolist(), ends.tolist())


def level_above(v, level, factor):
    """``(k, end, low)`` of a noisy series whose low points dip back under the line now and
    then: its level (``level_of``) above ``factor`` x ``low``, the lowest level it held,
    staying, from there on, from its first point that is itself above the line. A level
    held is a full window's rolling median (3 of LEVEL_WINDOW points at or under it): a
    low point or two at the start is no level."""
    half = LEVEL_WINDOW // 2
    if len(v) < LEVEL_WINDOW + 1:
        return None
    low_at = half + int(np.argmin(level[half:len(v) - half]))
    low = float(level[low_at])
    found = state_run(level > factor * low, low_at + 1) if low > 0 else None
    if found is None:
        return None
    k, end = found                  # the state's first point that is itself above the line
    return k + int(np.argmax(v[k:end] > factor * low)), end, low
