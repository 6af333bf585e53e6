"""Where a move away from a held level starts: the first logged step of a fall (or rise).

A threshold rule (``rldk.detectors.rules``) finds where a series crossed its line; the
onset a person reads off the numbers is where it left the level it held before
(``fall_start``): after the last point inside the band of that level's own noise, or,
when one logged step carries the series past the midpoint of the move, that step
(``jump_start``). A run that moves from its first row or two (``moves_at_once``) has
those rows as its level.
"""
from __future__ import annotations

import numpy as np

from rldk.detectors.onsets import LEVEL_WINDOW, MIN_REFERENCE, past_midpoint, stretch_need
from rldk.detectors.regimes import Regimes, regimes
from rldk.detectors.scale import noise_sigma
from rldk.detectors.trend import PLATEAU, first_off, part_at

#: ``fall_start``: half-width of the band of a held level, in units of the series' noise
#: (its row-to-row jitter): a point inside it is still at that level.
BAND = 3.0


def fall_start(r: Regimes, a: int, k: int, up: bool = False, noisy: bool = True,
               jumps: bool = False, until: int | None = None, floor: float = 0.0) -> int:
    """The first point of the sustained move that leads from the level held around point
    ``a`` (a peak, or a trough when ``up``) into the state the series is in from point
    ``k`` (``a < k``; indices into ``r.values``): the start of the first regime after ``a``
    that has left the held level by more than PLATEAU of the whole move, from which no
    later regime is back at it, then walked back over the points already past that line.
    A threshold rule finds ``k``, where the series crossed its line; this is where it
    started to go. When the move is larger than the noise (BAND sigma under half of it),
    that start is the point after the last one before ``k`` that was still inside the
    band of the held level (the regime around ``a``, or the LEVEL_WINDOW points around it
    when that regime is shorter than MIN_REFERENCE; sigma their own row-to-row noise; with
    fewer than MIN_REFERENCE points, which give no noise, PLATEAU of the move), as
    a person reads it off the numbers: noise-level wobbles of the plateau before the fall
    are not part of it. When the noise hides where the move began (the band reaches half
    of it), the start is the first regime past the line (the points before ``k`` cut into
    regimes with their own noise), or ``k`` itself when ``noisy`` is False. A run that
    moves from its first row or two (``moves_at_once``) held no level over MIN_REFERENCE
    points: that row or two is the level (the onset protocol's
    prior regime of a run that declines from its first row), and its band, which no
    noise can be read from, FIRST_ROWS_BAND of the move (the LEVEL_WINDOW points around
    ``a`` would be the move itself). A jump (``jump_start``) into ``k`` is the start when
    the level held is too noisy to walk back from (a noisy point past the midpoint just
    before it is no jump), and, with ``jumps``, any jump: a rise after a
    slow drift started at its jump (the labelled entropy collapses in stages start at
    their first slide instead, so a fall walks back over a stage the run passed through;
    a level it held for a tenth of the run is where the caller starts the fall from:
    ``rldk.detectors.rules._last_stage``). ``floor``: the least band, for a series whose
    row-to-row noise reads smaller than its values' own (a share counted over a few hundred
    responses moves by whole responses)."""
    sign = -1.0 if up else 1.0
    y = sign * r.y
    held = float(np.median(y[max(0, a - 2):a + 3]))
    move = held - float(np.median(y[k:]))
    jump = jump_start(r, a, k, up, until if jumps else None)
    if jumps and jump is not None:
        return jump
    j, t = part_at(r, a), part_at(r, k)
    if move <= 0 or t <= j:
        return k
    part = r.parts[j]
    if moves_at_once(r, j, k):
        lo, hi, band = part.start, part.end, FIRST_ROWS_BAND * move
    else:
        lo, hi = (part.start, part.end) if part.size >= MIN_REFERENCE else (max(0, a - 2), min(a + 3, k))
        band = BAND * noise_sigma(r.y[lo:hi]) if hi - lo >= MIN_REFERENCE else PLATEAU * move
        band = max(band, floor)
    if band < move / 2:
        # the move stands out of the noise: it started one point after the last point
        # still inside the band of the level held (or above it) before the series was
        # past the midpoint for good
        level = sign * float(np.median(r.y[lo:hi]))
        return _left_level(y, a, k, level, (level + float(np.median(y[k:]))) / 2, band, a)
    if jump is not None and jump >= k:
        return k                             # the state begins with a jump out of the noise
    if not noisy:
        return k                             # ``noisy`` False: no start read off regimes
    line = held - PLATEAU * move
    # too noisy to walk back point by point: by regimes, cut with the noise of the points
    # before the crossing alone (a series pinned at a cap or floor after it, with no
    # jitter there, would set a scale under which every noisy point before is a regime)
    before = regimes(r.steps[:k], r.y[:k], "signed")
    i = first_off(before, part_at(before, a), len(before.parts), lambda p: sign * p.level < line)
    return min(k, before.parts[i].start) if i < len(before.parts) else k


def jump_start(r: Regimes, a: int, k: int, up: bool = False, until: int | None = None) -> int | None:
    """The point where the series jumped into its new state: the first point past the
    midpoint for good between the level held around point ``a`` and the state from point
    ``k`` (as in ``fall_start``; for good: up to the state's deepest point, as the onset
    protocol reads it), when the one logged step into it covers more than half
    of the whole move (JUMP_SHARE); else None. A slow drift before such a jump is not the
    move: the onset protocol's step event passes the midpoint in one logged step, and a
    gradual window ends where the series is past the midpoint for good, so that point is
    the onset however the drift before it is read. With ``until`` (the end of the state,
    exclusive), the jump may lie inside the state: a threshold crossed by a drift that
    the jump then carries far past it (a TD loss that grows 100x as the returns do)."""
    sign = -1.0 if up else 1.0
    y = sign * r.y
    j = part_at(r, a)
    # a run that moves from its first row or two: they are its level (``fall_start``)
    held = sign * r.parts[j].level if moves_at_once(r, j, k) else float(np.median(y[max(0, a - 2):a + 3]))
    low = float(np.median(y[k:until]))
    move = held - low
    if move <= 0 or k <= a + 1:
        return None
    mid = (held + low) / 2
    # past the midpoint for good up to the deepest point of the state (the onset
    # protocol's), not to its end: a long stretch pinned there would outweigh any share
    # of noisy points before it
    c = past_midpoint(y, a, k if until is None else k + int(np.argmin(y[k:until])), mid)
    if c > k and np.any(y[k:c] < mid):
        return None                     # inside the state, only its first pass of the midpoint
    return c if c > a + 1 and y[c - 1] - y[c] > JUMP_SHARE * move else None


#: ``jump_start``: share of the whole move that one logged step must cover to be the move.
JUMP_SHARE = 0.5


def moves_at_once(r: Regimes, j: int, k: int) -> bool:
    """Whether the level held ``parts[j]`` is a first regime of the series shorter than
    MIN_REFERENCE points that the series leaves at once: each of the next regimes (up to
    MIN_REFERENCE of them, before point ``k``) further from it than the one before (the
    onset protocol's prior regime of a run that declines from its first row is that row;
    a noisy level that PELT cut into short pieces goes back and forth instead)."""
    if r.parts[j].start != 0 or r.parts[j].size >= MIN_REFERENCE:
        return False
    ahead = [p.level for p in r.parts[j + 1:] if p.start < k][:MIN_REFERENCE]
    if len(ahead) < 2:
        return False
    gaps = np.abs(np.asarray(ahead) - r.parts[j].level)
    return bool(np.all(np.diff(gaps) > 0))


#: ``fall_start`` of a run that moves from its first row or two (``moves_at_once``): the
#: half-width of the band of that level, as a share of the move. A row or two give no
#: noise; a point that has not gone half of the way to the midpoint may still be it.
#: Measured on the tuning half and its cadence variants: PLATEAU (0.1) moves onsets a
#: row early on thinned logs whose second kept row is a wobble; the midpoint (0.5)
#: puts slow entropy declines past their protocol window.
FIRST_ROWS_BAND = 0.25
def _left_level(y: np.ndarray, a: int, k: int, level: float, mid: float, band: float, lo: int) -> int:
    """One point after the last point still at ``level`` (inside ``band`` of it, or above
    it) before the series is past ``mid`` for good (``past_midpoint`` from point ``a`` to
    ``k``), walking back no further than point ``lo`` + 1: where the move started."""
    i = past_midpoint(y, a, k, mid) - 1
    while i > lo and y[i] < level - band:
        i -= 1
    return i + 1


#: ``prior_exit``: how far below the peak (a share of the move from the peak to the low
#: state) a level the run held may sit and still be the level the fall started from; a
#: level further down is a stage of the fall (an entropy that falls in two stages, half
#: way and then to zero, started to fall at the first).
PRIOR_SHARE = 0.25
#: ``prior_exit``: fewest points of a regime that can be the level a fall started from. A
#: slide logged over a dozen points is cut into regimes of 3-5 (``regimes``' PELT): pieces
#: of the move, not a level held; twice the rolling level window (LEVEL_WINDOW).
PRIOR_POINTS = 2 * LEVEL_WINDOW


def prior_exit(r: Regimes, onset: int, tail: int, peak: float, stop: int | None = None,
               up: bool = False) -> int:
    """The onset protocol's start of a fall first placed at point ``onset`` (where the
    series left its peak), into a low state that the series is in from point ``tail``
    (to ``stop``, exclusive, when the run recovered): one point after the last point,
    before the series is past the midpoint for good, that is still at the level the
    series held just before the move. That level is the last regime of PRIOR_POINTS
    points or more of the series before ``tail`` that lies within PRIOR_SHARE of the
    whole move of the ``peak`` (a plateau the run settled on after a slow drift, or the
    peak itself; failing that, the last one above the whole move's midpoint: a peak that
    was a short burst over the plateau), the regimes cut with the noise of that part alone (a collapse to a
    floor of 1e-4 would set a scale under which every point of the noisier level before
    it is a regime of its own); "at" it is inside BAND sigma of it (sigma its own
    row-to-row noise) or above it (``_left_level``, as ``fall_start`` reads a move out of
    the noise). A rolling mean that wobbles under its plateau for a while, or an entropy
    that drifts from 7 to 5 nats before it drops to zero, is at its level until the drop:
    the wobble and the drift are not the move, nor is a short wobble that PELT cut as a
    regime of its own between that level and the fall when a point of it is back at the
    level. Earlier than ``onset`` only when the regimes from that point to where the
    series is past the midpoint step down, none back up by more than the band (one
    sustained slide; ``_slides``), and then at the step that carried the series past
    the midpoint when that one step covers JUMP_SHARE of the move: a return that left
    its plateau and slid through a stage it never came back from started at the plateau,
    however far down the significance of a wandering series put ``onset`` (the first
    regime off the peak by SIGNIFICANCE standard errors), while a noise dip just before a
    jump is no part of it, nor is a wandering plateau's walk under a higher level held
    long before. Otherwise, when one logged step carries the series past the midpoint
    covering JUMP_SHARE of the move from points (the MIN_REFERENCE before it) still within
    PRIOR_SHARE of the move of that level, that step (after ``onset``): a drift off the level
    before a jump is the level the run sat at, not the move (a Procgen entropy back at 2.15
    after a first collapse, drifting to 1.9 over 15 updates, then 0.7 and ~0.03: the
    onset protocol's prior regime is the rows just before the move, and the step past the
    midpoint is in its window whichever level it names). ``onset`` itself when the noise
    band of that level reaches the midpoint (no point can be placed by it). ``up``: a rise
    into a high state from a trough (``peak``, the trough's level, and the levels read
    with their sign flipped, as ``fall_start`` reads a rise): a loss that drifts up from
    its lowest level to a plateau it holds, then blows up, started where it left that
    plateau; a stair of a slow climb (``_stair``) is no level held there. (A fall keeps
    every regime of PRIOR_POINTS as a level: read as stairs, the stages of the tuning
    half's reward and entropy declines moved five onsets out of their windows.)"""
    sign = -1.0 if up else 1.0
    y = sign * r.y
    if tail < onset:
        return onset
    low = float(np.median(y[tail:stop]))
    before = regimes(r.steps[:tail], y[:tail], "signed")
    held = [p for i, p in enumerate(before.parts)
            if p.size >= PRIOR_POINTS and not (up and _stair(before, i, len(y)))]
    # failing a level near the peak, the peak was a short excursion over the plateau the
    # run held (a return at ~240 for 30 evaluations with a 9-row burst to 367 just before
    # the fall): the last level still on the peak's side of the whole move's midpoint
    near = next((p for p in reversed(held) if p.level >= peak - PRIOR_SHARE * (peak - low)), None)
    part = near or next((p for p in reversed(held) if p.level >= (peak + low) / 2), None)
    if part is None:
        return onset
    # a jump from the plateau under a burst must carry JUMP_SHARE of the fall from the peak
    move = (part.level if part is near else peak) - low
    band = BAND * noise_sigma(y[part.start:part.end])
    mid = (part.level + low) / 2
    if band >= part.level - mid:
        return onset
    end = (len(y) if stop is None else stop) - 1
    at = _held_floor(y, before, held, part)
    # where the series left that level, however late ``onset`` (the first regime that is
    # off the peak by its significance, which a wandering series' wander puts far down)
    # placed the fall, when the points from there to the midpoint slide down
    k = _left_level(y, part.start - 1, end, at, mid, 0.0, part.start - 1)
    past = past_midpoint(y, part.start - 1, end, mid)
    jump = past > 0 and y[past - 1] - y[past] > JUMP_SHARE * move
    if k < onset and _slides(r, k, past, band, sign):
        return min(onset, past) if jump else k
    # the points before the jump still near the level held: the drift off it is no move
    before_jump = float(np.median(y[max(0, past - MIN_REFERENCE):past]))
    if jump and part.level - before_jump < PRIOR_SHARE * (part.level - low):
        return max(onset, past)
    return max(onset, _left_level(y, max(onset, part.start) - 1, end, at, mid, 0.0, onset - 1))


def _held_floor(y: np.ndarray, before: Regimes, held: list, part) -> float:
    """The lowest value still at the level held before a move (``prior_exit``): BAND sigma
    under ``part``, or under the level of ``part`` and the held regimes just before it
    whose levels lie within that band of it (their median and noise together, as the
    onset protocol reads a prior regime). A plateau that PELT cut in two (a return at 107
    for 13 evaluations, then 112.5 for 12, then 105.6 before the fall: 5.7 apart, inside
    3 sigma of 2.0) is one level the run held: a point back at its lower half is at it,
    not the move; a plateau that stepped up by more than its noise is not."""
    band = BAND * noise_sigma(y[part.start:part.end])
    i = next(i for i, p in enumerate(before.parts) if p is part)
    first = i
    while first > 0 and before.parts[first - 1] in held \
            and abs(before.parts[first - 1].level - part.level) <= band:
        first -= 1
    if first == i:
        return part.level - band
    span = y[before.parts[first].start:part.end]
    return min(part.level - band, float(np.median(span)) - BAND * noise_sigma(span))


def _stair(r: Regimes, i: int, n: int) -> bool:
    """Whether regime ``i`` of ``r`` (the points before a fall's crossing, cut into regimes)
    is a stair of the fall: shorter than MIN_STRETCH of the series (``n`` points), with the
    regime before it above it and the one after it (or the fall itself, after the last)
    below it. A slide or climb logged over hundreds of rows is cut by the change points
    into stairs of 10-30 rows, each of PRIOR_POINTS or more (x1000 over 300 rows climbs a
    quarter of a nat in 20): a level the run held before the move was not passed through
    on the way, it was wandered around (a critic loss at 8.6, 9.8, 10.9, 9.8, 11 before it
    blows up) or held for a tenth of the run."""
    parts = r.parts
    if i == 0 or parts[i].size >= stretch_need(n):
        return False
    return parts[i - 1].level > parts[i].level and (i + 1 == len(parts) or parts[i + 1].level < parts[i].level)


def _slides(r: Regimes, a: int, b: int, band: float, sign: float = 1.0) -> bool:
    """Whether the regimes from the one holding point ``a`` to the one holding point ``b``
    step down, none of PRIOR_POINTS points or more back up by more than ``band`` over the
    one before: one sustained move (the onset protocol's), not a wandering level that went
    up and down under its band. A shorter regime back up is a bounce inside the move, not a
    level the run held again (a real rl_games return: 380 -> 74, back to ~220 in short
    steps with a 5-row bump to 344, then -> 50 at the end; it left its plateau at the
    first fall and never came back to it). ``sign`` -1: the regimes of a rise, read flipped."""
    parts = r.parts[part_at(r, a):part_at(r, b) + 1]
    return all(sign * later.level <= sign * earlier.level + band or later.size < PRIOR_POINTS
               for earlier, later in zip(parts, parts[1:]))
