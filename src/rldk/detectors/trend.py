"""Sustained moves of a noisy level: did the series lose what it had gained, and stay down?

A noisy return (SB3's ``rollout/ep_rew_mean`` over the last 100 episodes, an eval mean
over a few episodes, one episode per row of a ``monitor.csv``) bounces around its level,
so "every point stays below a line" fails on real declines. The question is asked of
levels instead: the series is cut into regimes of constant level (PELT,
``rldk.detectors.regimes``), and a *decline* is

* a **held peak**: the highest level held over MIN_REFERENCE consecutive points (by
  every regime across them: a lone outlier is a regime of its own and never held);
* a **gain** before it: the peak over the lowest level held before it (a run whose peak
  is its first window gained nothing visible; a positive one must then lose
  HEADLESS_SHARE of the peak's size instead; a negative one, asked ``below_zero``,
  HEADLESS_FACTOR x as far below zero);
* a **tail**: the regimes from some point after the peak to the end, each below
  ``peak - share x gain`` (regimes shorter than MIN_REFERENCE points are single
  outliers and do not break it), covering at least MIN_TAIL logged values and MIN_STRETCH
  of the run, or fewer when the run never came back from a stretch below the line that
  long (``rldk.detectors.onsets.final_need``: a run stopped soon after it collapsed);
* **significance**: the gain and the drop are each at least SIGNIFICANCE standard
  errors of the difference of two levels (``level_se``): the series' white noise,
  averaged over the points of each level, plus its wander at that distance (a
  100-episode rolling mean drifts for dozens of rows with no change of the policy;
  that drift is measured from the series' own differences at the same lag, and from its
  two-sample variance there, which a steady learning trend does not inflate).

The onset is the first step of the fall that leads into the tail: the start of the first
regime after the peak that is no longer at the peak (below it by more than PLATEAU of
the gain, or by more than the noise of a level), from which every later regime stays
below the peak. Nothing assumes the start of the run is healthy: the peak is wherever
the run held its highest level.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from rldk.detectors.onsets import (LEVEL_WINDOW, MIN_REFERENCE, final_need, level_of, past_midpoint,
                                   starts_mid_run, stretch_need)
from rldk.detectors.regimes import Regimes, regimes
from rldk.detectors.scale import MAD_TO_SIGMA, noise_sigma, spread

#: Standard errors between two levels for a gain or a drop to count: 3 is a one-sided
#: rate of ~0.1% per comparison for normal noise; the held peak is a maximum over the
#: run, which inflates it, and the line (half the gain lost) and MIN_STRETCH carry the
#: rest. Measured on flat seeded noise of 300 points: 0 of 200 white-noise series and 1
#: of 200 AR(1) series with rho 0.9 fire (tests/test_trend.py); strongly correlated flat
#: noise of 30-100 points (rho 0.99, a rolling mean as long as the log) fires in 5-20%:
#: there a wander and a trend cannot be told apart from the series alone.
SIGNIFICANCE = 3.0
#: A decline the run recovers from may hold less than MIN_STRETCH of the run, down to this
#: share of it, when its drop passes SHORT_SIGNIFICANCE x SIGNIFICANCE standard errors: half
#: the duration, twice the evidence. Independent labellers of the real corpus call a return
#: that lost two thirds to all of its gain for 5-7% of the run and came back an event (a
#: REINFORCE evaluation at its cap that fell to 215 for 6 of 100 evaluations, z 194; an
#: rl_games FrankaCabinet return 9400 -> 900 for 35 of 500 epochs, z 13), while a dip of a
#: noisy return as long, barely significant (z 3.5), is one they list as benign.
SHORT_STRETCH = 0.05
SHORT_SIGNIFICANCE = 2.0
#: A decline the run recovers from may be shorter than SHORT_STRETCH of the run, down to
#: this share of it, when it crashed past CRASH_SHARE of the gain to its peak (with
#: SHORT_SIGNIFICANCE x SIGNIFICANCE standard errors): a policy that broke outright. A
#: labelled Spinning Up DDPG Ant return fell from a plateau of 612 to a median of -339 (its
#: untrained level -122) for 20 of 586 epochs, 3.4% of the run, and came back.
CRASH_STRETCH = 0.025
#: ``CRASH_STRETCH``: the share of the gain to the peak that a crash that short must lose
#: (the gain read from the lowest level held before, which for a noisy start lies under the
#: untrained median: that Ant run lost 114% of the gain over its median, 89% over its lowest).
CRASH_SHARE = 0.75
#: Fewest logged values a tail below the line must hold (with MIN_STRETCH of the run): a
#: noisy series sitting at the line has all of 3 values in a row below it 1 time in 8, all
#: of 5 1 time in 32; an evaluation logged every few thousand steps bounces like that.
MIN_TAIL = 5
#: Lower quartile of |Z| for a standard normal Z (consistency factor of the lag-difference
#: scale in ``level_se``).
Q25_ABS_NORMAL = 0.3186
#: A series is correlated (not white) when the variance of its differences over
#: MIN_REFERENCE points exceeds this many times that over one: 1 for white noise, 2.7 for
#: an AR(1) with rho 0.9, MIN_REFERENCE for a random walk; 1.5 leaves room for the sampling
#: noise of the estimates on short series.
CORRELATED = 1.5
#: Second-difference spread over first-difference spread above which a series' steps are
#: wander rather than a smooth trend (``_rough``): halfway from a ramp's 0 to the 1.4 of a
#: random walk.
ROUGH = 0.7
#: Longest lag (share of the run's points) at which the wander of a level is measured:
#: over longer lags most differences span the changes under test (a rise, a fall)
#: rather than noise, and the robust spread of the differences is no longer the noise's.
WANDER_LAG = 0.1
#: Fastest growth (a power of the lag) of the wander of a series from one lag to the next,
#: from what the shortest lag shows (or s^2 when it shows none): noise of any memory grows
#: the variance of a difference at most in proportion to the lag (a random walk's; an
#: AR(1)'s and a rolling mean's slower, to their limit), a trend or a curve with its square;
#: 1.58 (x3 per doubling) leaves room for two estimates of the same wander that differ by
#: chance.
WANDER_GROWTH = 1.58
#: A regime after the peak within this share of the gain of the peak level still belongs
#: to the plateau the run held (PELT cuts a long noisy plateau into steps a few percent
#: apart); the fall starts where the levels leave it.
PLATEAU = 0.1
#: When the peak is the run's first window (nothing gained visibly: the run starts at its
#: best), the tail must sit this share of the peak below it: a reward that starts at 0.6
#: and ends at 0.25 lost more than half of it. Only for a positive peak: a return of -100
#: has no zero to measure a share from (a negative one: HEADLESS_FACTOR, asked last).
HEADLESS_SHARE = 0.5
#: The same for a negative peak (a penalty-shaped return at its best from the start): the
#: tail must sit HEADLESS_FACTOR x as far below zero, the mirror on a log scale of losing
#: half of a positive peak (a real ML-Agents maze return: -1.05 at its first row, a slide
#: to a median of -25 as the agent stops ending its episodes).
HEADLESS_FACTOR = 2.0
#: ``recovered_decline``: a low stretch that went past the line of ``share`` of the gain
#: (a level held there) may be measured under the shallower line of SHALLOW x ``share``:
#: a rolling mean that slides past half its gain and climbs back slowly spends most of
#: its broken stretch between the two lines (a real SAC return: 1009 -> 453 and back over
#: 3.5M steps, under half its gain for 2% of the run, under a quarter for 10%).
SHALLOW = 0.5
#: ``settled_below``: the quantile of the points before a drop that the new level must be
#: under (with the lowest level held before).
LOW_TENTH = 0.1


@dataclass(frozen=True)
class Decline:
    """A sustained decline: ``onset`` and ``tail`` are indices into ``r.values`` (the
    first point of the fall, the first point of the tail below the line), ``peak`` the
    highest level held (``peak_step``: where it was first held), ``start`` the level the
    run started from (None when the peak is its first regime), ``now`` the median of the
    tail (of the low stretch), ``line`` the level the tail stays below, ``z`` the drop in
    standard errors, ``end`` the first point back above the line when the run recovered
    (``recovered_decline``; None when it stays down to the end)."""

    r: Regimes = field(repr=False)
    onset: int
    tail: int
    peak: float
    peak_step: int
    start: float | None
    now: float
    line: float
    z: float
    end: int | None = None


def recovered_decline(steps, values, share: float, r: Regimes | None = None) -> Decline | None:
    """The first decline of ``values`` by at least ``share`` of its gain that the run later
    recovers from (``end``: the first point back above the line), or None.

    The same test as ``decline``, with the peak taken as the highest level held *before*
    the fall (a run that crashes at step 26000 and later reaches a higher ceiling still
    crashed), a drop of at least LEARNED_SHARE of the largest gain the run held anywhere,
    and the low stretch closed where the levels come back above the line. A dip is
    not a collapse: the stretch must hold MIN_STRETCH of the run and MIN_TAIL values, as a
    state that lasts to the end must (a dip of a noisy return that recovers within a tenth
    of the run is a transient; a policy that stays broken for longer is the event the user
    must see), and its drop must pass the same SIGNIFICANCE against the series' own noise
    and wander as a final decline's; or hold SHORT_STRETCH of the run with a drop of
    SHORT_SIGNIFICANCE times that; or, in a log that starts with its run (not
    ``onsets.starts_mid_run``: read from later on, the gain is not all in view), hold
    CRASH_STRETCH of it with such a drop past CRASH_SHARE of the gain (a policy that broke
    outright, back to where it started, and was repaired). The stretch opens with
    MIN_REFERENCE values below the line (a lone low value is an outlier), not with a regime
    of as many: a smooth crash and recovery logged at a coarse cadence is cut into regimes
    of a point or two.

    A stretch that went past the line and held a level there, but came back over it
    within a tenth of the run, may be measured under the shallower line of SHALLOW x
    ``share`` of the gain (a hysteresis: the depth proves the break, the shallow line its
    duration), when each level it held in between is below the peak by more than the
    white noise of the two levels (a dip inside a noisy plateau, then a level back at the
    plateau, then the collapse, is not one stretch). The onset is then the start of the
    fall into the first level held past the deep line.

    A decline that lasts to the end (``end`` None: the search's last answer) is asked what
    ``decline`` asks of one, whether its peak was a burst of the run's own outliers
    (``_back_from_a_burst``); without it, a noisy flat reward thinned to every second row
    "fell" from a burst that ``decline`` had already set aside."""
    return next(_recovered(r if r is not None else regimes(steps, values, "signed"), share), None)


def recovered_declines(steps, values, share: float, r: Regimes | None = None) -> list[Decline]:
    """Every decline of ``values`` by at least ``share`` of its gain that the run recovered
    from, in order: a run can crash, relearn and crash again. Each is judged as
    ``recovered_decline`` judges the first (the highest level held before it, MIN_STRETCH
    of the whole run and MIN_TAIL values below the line, SIGNIFICANCE against the series'
    own noise); the search for the next starts where the run came back above the line."""
    r = r if r is not None else regimes(steps, values, "signed")
    return [d for d in _recovered(r, share) if d.end is not None]


def _recovered(r: Regimes, share: float):
    """The declines the run recovered from, in order, then the first that lasts to the
    end (``end`` None), if any: each low stretch searched for from where the run came back
    above the line of the one before."""
    held = _held_levels(r)
    if held is None:
        return
    top, low = held
    se = level_se(r)
    need = max(MIN_TAIL, int(np.ceil(SHORT_STRETCH * len(r.values))))   # a short stretch's
    best = np.maximum.accumulate(top)
    most = float(np.max(top - np.minimum.accumulate(low)))    # the largest gain the run held
    t = 1
    while t < len(r.parts):
        found = _recovered_at(r, t, top, low, best, se, share, need, most)
        if found is None:
            t += 1
            continue
        yield found
        if found.end is None:
            return
        t = part_at(r, found.end) + 1


def _recovered_at(r: Regimes, t: int, top, low, best, se, share, need, most) -> Decline | None:
    """The recovered decline whose low stretch starts with regime ``t``, or None. One
    shorter than MIN_STRETCH must also lose ``share`` of ``most``, the largest gain the
    run held anywhere (a wiggle of an untrained policy, under the highest level it had
    held so far but small beside what the run later learned, is no broken policy)."""
    s = r.parts[t].start
    if s < 2 * MIN_REFERENCE:
        return None
    head = s - MIN_REFERENCE + 1                 # windows that end before the stretch
    peak = float(best[head - 1])
    a = int(np.argmax(top[:head] >= peak))
    if a == 0:
        return None                              # no gain visible before the peak
    n_peak = _window_size(r, a)
    start, gain = _gain(r, low, a, peak, se, n_peak)
    if gain is None:
        return None
    deep = peak - share * gain

    def low_stretch(least: int):
        """``(line, end, fell)`` of the low stretch that holds ``least`` points, or None."""
        for line in (deep, peak - SHALLOW * share * gain):
            if r.parts[t].level >= line or not np.all(r.values[s:s + MIN_REFERENCE] < line):
                continue                          # a lone low point opens no stretch
            end = _stretch_end(r, low, t, line)   # outliers above the line inside it
            if end - s < least:
                continue
            if line == deep:
                return line, end, t
            held_deep = top[s:end - MIN_REFERENCE + 1] < deep
            if held_deep.any() and _all_off(r, t, end, peak, n_peak):
                # the fall starts where the stretch went past the deep line
                return line, end, part_at(r, s + int(np.argmax(held_deep)))
        return None

    # a stretch of MIN_STRETCH of the run under either line first; failing that, a short one
    found = low_stretch(stretch_need(len(r.values), MIN_TAIL))
    short = found is None
    found = found if found is not None else low_stretch(need)
    crash = found is None
    if crash and not starts_mid_run(r.steps):     # from later on, the gain is not all in view
        found = low_stretch(max(MIN_TAIL, int(np.ceil(CRASH_STRETCH * len(r.values)))))
    if found is None:
        return None
    line, end, fell = found
    low_part = r.values[s:end]
    z = (peak - float(np.mean(low_part))) / max(se(n_peak, len(low_part), s + len(low_part) // 2 - a),
                                                1e-300)
    drop = peak - float(np.median(low_part))
    if crash and (end >= len(r.values) or drop < CRASH_SHARE * gain):
        return None           # shorter than a short stretch: only a crash past most of its gain
    if short and (end >= len(r.values) or drop < share * most):
        return None           # a state that lasts to the end holds MIN_STRETCH; a short one is deep
    if end < len(r.values) and drop < LEARNED_SHARE * most:
        return None           # a dip small beside what the run learned anywhere: a policy still learning
    if z < SIGNIFICANCE * (SHORT_SIGNIFICANCE if short else 1):
        return None
    onset = _move_start(r, a, fell, peak, gain, se, end)
    to_end = end >= len(r.values)
    if to_end and _back_from_a_burst(r, a, peak, onset, s, se):
        return None           # a decline to the end from a burst of the run's outliers, as ``decline`` asks
    return Decline(r, onset, s, peak, int(r.steps[a]), start,
                   float(np.median(low_part)), line, float(z), None if to_end else end)


def _all_off(r: Regimes, t: int, end: int, peak: float, n_peak: int) -> bool:
    """Whether every regime of MIN_REFERENCE points or more from ``parts[t]`` to point
    ``end`` lies below the ``peak`` (a level held over ``n_peak`` points) by more than
    SIGNIFICANCE standard errors of the series' white noise for the two levels: none of
    them is the run back at its peak level, within the noise of the points."""
    for p in r.parts[t:part_at(r, end - 1) + 1]:
        if p.size >= MIN_REFERENCE and peak - p.level < SIGNIFICANCE * r.sigma * np.sqrt(1 / n_peak + 1 / p.size):
            return False
    return True


def _gain(r: Regimes, low, a: int, peak: float, se, n_peak: int) -> tuple[float, float | None]:
    """``(start, gain)``: what the run gained up to the ``peak`` held from window ``a``,
    from the lowest level it held before (``low``, over windows of MIN_REFERENCE points);
    failing that (no gain of SIGNIFICANCE standard errors of the two levels in sight), from
    its first row or two when the run left them at once for a level it held
    (``_first_level``: an untrained policy's first evaluation, which no window holds, of a
    run at its ceiling from the second); ``gain`` None when neither is significant."""
    s_at = int(np.argmin(low[:a + 1]))
    start = float(low[s_at])
    if peak - start >= SIGNIFICANCE * se(n_peak, _window_size(r, s_at), a - s_at):
        return start, peak - start
    first = _first_level(r)
    if first is not None and peak - first.level >= SIGNIFICANCE * se(n_peak, first.size, a):
        return first.level, peak - first.level
    return start, None


def _first_level(r: Regimes):
    """The series' first regime when it is shorter than MIN_REFERENCE points and the
    series leaves it at once for a level it then holds (the next regime lasts
    MIN_REFERENCE points): the run's starting level, as the onset protocol reads a run
    that moves from its first row; else None (a first value like the ones after it is no
    level of its own)."""
    if len(r.parts) < 2 or r.parts[0].size >= MIN_REFERENCE or r.parts[1].size < MIN_REFERENCE:
        return None
    return r.parts[0]


def _back_above(r: Regimes, low, u: int, line: float) -> bool:
    """Whether the run is back above ``line`` from regime ``u`` on: every regime over the
    MIN_REFERENCE points from its start is above it (as the stretch opens with that many
    points below: a smooth recovery logged at a coarse cadence is cut into regimes of a
    point or two, none of them alone as long; a lone high regime is an outlier)."""
    start = r.parts[u].start
    return r.parts[u].level >= line and start < len(low) and low[start] >= line


def decline(steps, values, share: float, r: Regimes | None = None, below_zero: bool = False) -> Decline | None:
    """The sustained decline of ``values`` (higher is better, finite) by at least
    ``share`` of its gain, or None. ``r``: their regimes, when already cut. ``below_zero``:
    a negative peak held from the first window may also fall HEADLESS_FACTOR x as far below
    zero (else such a run has no decline)."""
    r = r if r is not None else regimes(steps, values, "signed")
    held = _held_levels(r)
    if held is None:
        return None
    top, low = held
    a = int(np.argmax(top))                      # the peak: first point of its window
    peak = float(top[a])
    j = part_at(r, a + MIN_REFERENCE - 1)       # the peak's last regime
    se = level_se(r)
    n_peak = _window_size(r, a)
    if a > 0:
        start, gain = _gain(r, low, a, peak, se, n_peak)
        if gain is None:
            return None
    elif peak > 0:
        start, gain = None, HEADLESS_SHARE * peak / share
    elif peak < 0 and below_zero:
        start, gain = None, (HEADLESS_FACTOR - 1) * -peak / share
    else:
        return None
    line = peak - share * gain
    t = _tail(r, j, line)
    if t is None:
        return None
    tail = r.values[r.parts[t].start:]
    lag = r.parts[t].start + len(tail) // 2 - a
    z = (peak - float(np.mean(tail))) / max(se(n_peak, len(tail), lag), 1e-300)
    if z < SIGNIFICANCE:
        return None
    onset = _move_start(r, a, t, peak, gain, se)
    if _back_from_a_burst(r, a, peak, onset, r.parts[t].start, se):
        return None
    return Decline(r, onset, r.parts[t].start, peak, int(r.steps[a]), start,
                   float(np.median(tail)), line, float(z))


def _back_from_a_burst(r: Regimes, a: int, peak: float, onset: int, tail: int, se,
                       stop: int | None = None) -> bool:
    """Whether the ``peak`` held from point ``a`` was a burst of the series' own outliers:
    over the MIN_STRETCH of the run's points (and MIN_TAIL) just before the peak's regime
    the run held one level (no regime of MIN_REFERENCE points there below their median by
    SIGNIFICANCE standard errors with one back at it after: not a climb, nor stages;
    regimes above it are bursts like the peak, and a dip that is the stretch's last, just
    before the peak, is its noise as the peak is: a FruitBot evaluation return at -2.6,
    -3.7 for seven rows, 2.4 for three and -1.9 again), it left that level for fewer
    points than that before the fall (from ``onset``), the tail (from point ``tail`` to
    the end, or to ``stop``) is back at it (not below it by SIGNIFICANCE standard errors),
    and single rows (or pairs) of that stretch and of the tail reach halfway from it to the
    peak, at least MIN_REFERENCE of them: a peak of a few rows that the run's rows reach
    anyway, which it did not hold. A return whose rows
    are skewed up (epochs with a few long episodes: Spinning Up PPO on Hopper, 1100-2000
    with single epochs at 2500-3300) holds a "level" wherever four such rows fall
    together, and the rows after them are its plateau, not a decline. A run that climbed
    to its peak, falls below the level it held, or whose rows reach near its peak only as
    a level held (an SB3 DQN return at 0.7 for 112 rows, 13 -> 109 over 14, then back to
    0) is judged as before. Only a decline to the end is asked: a dip the run comes back
    from after a brief peak is also what a run that collapsed, relearned and collapsed
    again looks like (an EPyMARL QMIX return, 1.0, 0.1, 1.7 for ten rows, 0.1 again).
    Asked by ``decline`` and by ``recovered_decline`` of a decline to the end alike, and
    by ``first_stage_a_burst`` of the stretch between the two falls of one in two stages."""
    n = len(r.values)
    need = stretch_need(n, MIN_TAIL)
    x = r.parts[part_at(r, a)].start               # where the run left its level for the peak
    if x < need or onset - x >= need:
        return False
    before = r.y[x - need:x]
    level = float(np.median(before))
    low = False
    for p in r.parts[part_at(r, x - need):part_at(r, x - 1) + 1]:
        lo, hi = max(p.start, x - need), min(p.end, x)     # the part inside the stretch
        if hi - lo < MIN_REFERENCE:
            continue
        if level - float(np.median(r.y[lo:hi])) >= SIGNIFICANCE * se(hi - lo, need, 0):
            low = True                             # under the level held
        elif low:
            return False                           # and up again after it: a climb, or stages
    after = r.y[tail:stop]
    lag = (tail + len(after) // 2) - (x - need // 2)
    if level - float(np.mean(after)) >= SIGNIFICANCE * se(need, len(after), lag):
        return False
    mid = (level + peak) / 2
    return lone_rows(before >= mid) + lone_rows(after >= mid) >= MIN_REFERENCE


def first_stage_a_burst(steps, values, peak_step: int, peak: float, onset: int, second: int) -> bool:
    """Whether the first stage of a decline in two stages, from the ``peak`` held from
    ``peak_step`` and falling from step ``onset``, up to the second fall (from step
    ``second``), was a burst of the series' own outliers coming back down
    (``_back_from_a_burst``, asked of the stretch between the two falls): the run left one
    level for a few rows at the peak and came back to it, rows of that stretch reaching
    halfway to the peak as they did before; its decline is the second fall, from the level
    it held. A PyMARL QMIX test return at 10-20, three rows at 85 (32 test episodes), 20-40
    for a million steps with single rows up to 72, then -9 in one logged step to the end:
    the collapse is the step to -9, not the end of the burst."""
    steps = np.asarray(steps)
    r = regimes(steps, values, "signed")
    a, k, stop = (int(np.searchsorted(steps, x)) for x in (peak_step, onset, second))
    return _back_from_a_burst(r, a, peak, k, k, level_se(r), stop)


def spike_seen_before(v: np.ndarray, crossed: int, end: int, high: float) -> bool:
    """Whether a state that lasts to the end of the series from point ``crossed``, shorter
    than MIN_STRETCH of it, sits at a height (``high``, its median) that the series' rows
    reached before as single rows or pairs (``lone_rows``), MIN_REFERENCE times or more,
    and came back from each time. A heavy-tailed loss (a DQN's TD loss, a tenth of its rows
    over ten times its median) ends on two of its spikes now and then: on a log cut short
    there, the last rows are the spikes it always had, not a level it rose to. A loss that
    diverges rose to a height it never visited; one that spiked there before and now stays
    for MIN_STRETCH of the run is still a state. Asked of a loss's rise (``rules._rise``)
    and of a ratio's state (``ratios.high_ratio``: a zero-std share over one group per
    step, 0 or 1 on every row)."""
    n = len(v)
    if end < n or end - crossed >= stretch_need(n):
        return False
    return lone_rows(v[:crossed] >= high) >= MIN_REFERENCE


def lone_rows(high: np.ndarray) -> int:
    """Rows of ``high`` in runs of fewer than MIN_REFERENCE: single rows and pairs, bursts
    of a series' outliers, not a level it held there."""
    edges = np.diff(np.r_[0, high.astype(np.int8), 0])
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    return int(lengths[lengths < MIN_REFERENCE].sum())


#: ``recovered_decline``: a dip the run recovered from must lose at least this share of the
#: largest gain the run held anywhere (a short one: ``share`` of it). A dip smaller than that
#: beside what the run learned is a policy still learning, however long: a DQN's CartPole
#: return that sags 26 -> 15 for a third of the run while epsilon decays, before it learns to
#: 200, and a DQN's 69 -> 29 dip shortly after its epsilon floor, before 200 (the tuning
#: half's truth lists both as healthy; none of its labelled recovered declines loses less).
LEARNED_SHARE = 0.25


#: ``settled_below(recovered=True)``: the low stretch's median lies under the line by at
#: least this many times the line's distance under the median before it. A wandering
#: series (AR(1) noise, rho 0.9, 60 points) crosses its worst tenth for a stretch a tenth
#: of the run long and comes back, 1-2 times that distance under it; a policy that broke
#: falls many times that far (a real ML-Agents return: 0.7 -> -40 against a line at -3.4).
FAR_BELOW = 2.0


def settled_below(steps, values, r: Regimes | None = None, recovered: bool = False) -> Decline | None:
    """A series that settles below every level it held before and stays there to the end:
    the decline of a run that gained nothing to lose (flat, or no visible gain), which
    ``decline`` cannot measure by its gain. Levels held are the centred rolling medians
    (``level_of``) of the points before the drop; the line is the lowest of them, or the
    LOW_TENTH quantile of those points when lower (a noisy series' new level must sit
    where its worst tenth was); the low stretch is the trailing run of
    regimes whose held ones (MIN_REFERENCE points) all sit below the line,
    starting with a held one, covering MIN_STRETCH of the run and MIN_TAIL values, with at
    least half as many points before it (and MIN_TAIL): a log kept from late on (a resumed
    run) may open on a plateau held for less than a tenth of what is left. Its drop from
    the median before must pass SIGNIFICANCE standard errors (``level_se``: noise and
    wander). The onset is the first point of the stretch, walked back over the points just
    before it that have left the level before (below its 3-sigma band; past the midpoint
    of the move, when the level before is so noisy that its band reaches that midpoint:
    its own low rows are no part of the fall). A stretch that lasts to the end with every
    point below every point logged before it is significant however large the wander
    estimate: on a short log the estimate is inflated by the very moves under test (a verl
    PPO score of 57 steps, 0.57 -> 0.69 -> 0.54 -> 0.40, whose wander at lag 3 came out 7x
    its white noise), and a new low held to the end is what a settled decline is. Failing
    that, a series still sliding there when its log ends (``_sliding_below``).

    ``recovered``: instead, the first such low stretch that the run comes back from
    (``end``: its first regime back above the line, as ``recovered_decline`` closes one),
    holding MIN_STRETCH of the run (and as many points before it), opening with
    MIN_REFERENCE values below the line, whose median lies under the line by FAR_BELOW
    times the line's distance under the median before (a wandering series crosses its
    worst tenth for a stretch, and comes back): a return that held a plateau, with no gain
    in sight (a log kept from late on), and fell far under every level it held for a
    tenth of the run before it came back."""
    r = r if r is not None else regimes(steps, values, "signed")
    n = len(r.values)
    need = stretch_need(n, MIN_TAIL)
    if n < 2 * need or len(r.parts) < 2:
        return None
    level, se = level_of(r.values), level_se(r)
    for t in range(1, len(r.parts)):
        s = r.parts[t].start
        if s < max(MIN_TAIL, need // 2) or n - s < MIN_TAIL or r.parts[t].size < MIN_REFERENCE:
            continue
        line = min(float(np.min(level[:s - LEVEL_WINDOW // 2])), float(np.quantile(r.values[:s], LOW_TENTH)))
        if r.parts[t].level >= line:
            continue
        if recovered:
            end = _stretch_end(r, level, t, line)
            if end == n or min(s, end - s) < need or not np.all(r.values[s:s + MIN_REFERENCE] < line):
                continue
        else:
            end = n
            if n - s < final_need(r.values < line, 0, s, MIN_TAIL):
                continue
            if any(p.level >= line for p in r.parts[t:] if p.size >= MIN_REFERENCE):
                continue
        before, tail = r.values[:s], r.values[s:end]
        if recovered and float(np.median(tail)) > line - FAR_BELOW * (float(np.median(before)) - line):
            continue        # not far outside what the run held: a wander it came back from
        found = _stretch_below(r, s, end, line, se)
        if found is not None:
            return found
    return None if recovered else _sliding_below(r, level, se, need)


def _stretch_below(r: Regimes, s: int, end: int, line: float, se) -> Decline | None:
    """The ``settled_below`` decline of the low stretch ``s:end`` under ``line``, when its
    drop from the median before passes SIGNIFICANCE standard errors (``se``), or the
    stretch lasts to the end with every point below every point before it; else None."""
    n = len(r.values)
    before, tail = r.values[:s], r.values[s:end]
    z = ((float(np.median(before)) - float(np.mean(tail)))
         / max(se(s, end - s, (end - s) // 2 + s // 2), 1e-300))
    if z < SIGNIFICANCE and not (end == n and float(np.max(tail)) < float(np.min(before))):
        return None
    # the points just before the stretch that have left the level before (below its
    # 3-sigma band) are part of the fall: a slide whose points are regimes of a point or
    # two opens no stretch itself and sets the line at its own bottom. When the level
    # before is too noisy to tell (its band reaches the midpoint of the move), only
    # points past the midpoint are
    held, low, sigma = float(np.median(before)), float(np.median(tail)), noise_sigma(before)
    noisy = SIGNIFICANCE * sigma >= (held - low) / 2
    onset = _walk_back(r.values, s, (held + low) / 2 if noisy else held - SIGNIFICANCE * sigma, 0)
    if noisy:
        onset = min(onset, _past_for_good(r, s, end, (held + low) / 2))
    return Decline(r, onset, s, held, int(r.steps[0]), None, low, line, float(z),
                   end if end < n else None)


def _past_for_good(r: Regimes, s: int, end: int, mid: float) -> int:
    """Where a fall into the low stretch ``s:end`` went past ``mid`` for good
    (``past_midpoint``, to the stretch's deepest point), searched from the end of the last
    held regime (MIN_REFERENCE points) above ``mid`` before ``s``; ``s`` when that is later
    or there is none (the onset protocol's window end: where a slide out of a level too
    noisy to show its first step is clearly in its new state)."""
    above = [p for p in r.parts if p.end <= s and p.size >= MIN_REFERENCE and p.level >= mid]
    if not above:
        return s
    deepest = s + int(np.argmin(r.values[s:end]))
    return min(s, past_midpoint(r.values, above[-1].end - 1, deepest, mid))


def _sliding_below(r: Regimes, level, se, need: int) -> Decline | None:
    """``settled_below`` of a series still sliding at the end of its log: its trailing
    points all lie below every level it held before (the line as ``settled_below`` draws
    it), each a regime of its own (a smooth slide is cut point by point, so no held regime
    opens the stretch), for as long as a final state must last (``final_need``), their
    median FAR_BELOW times the line's distance under the median before, by SIGNIFICANCE
    standard errors (a run stopped while its return was still falling: a TD3 return flat
    at -82 that slid to -250 within its last 15 of 154 rows)."""
    v, n = r.values, len(r.values)
    found = None
    for s in range(n - MIN_TAIL, max(MIN_TAIL, need // 2) - 1, -1):
        line = min(float(np.min(level[:max(1, s - LEVEL_WINDOW // 2)])), float(np.quantile(v[:s], LOW_TENTH)))
        if v[s] >= line:
            break
        if np.all(v[s:] < line):
            found = (s, line)
    if found is None:
        return None
    s, line = found
    held, low = float(np.median(v[:s])), float(np.median(v[s:]))
    if n - s < final_need(v < line, 0, s, MIN_TAIL) or low > line - FAR_BELOW * (held - line):
        return None
    return _stretch_below(r, s, n, line, se)


def _stretch_end(r: Regimes, level, t: int, line: float) -> int:
    """The end (exclusive) of the low stretch that opens with regime ``t``: the start of
    the first regime back above ``line`` for good (``_back_above``), short regimes above
    it inside the stretch left in; ``len(r.values)`` when the run never comes back."""
    u = t
    while u < len(r.parts) and not _back_above(r, level, u, line):
        u += 1
    while r.parts[u - 1].level >= line:
        u -= 1
    return r.parts[u - 1].end


def _move_start(r: Regimes, a: int, t: int, peak: float, gain: float, se, stop: int | None = None) -> int:
    """The first point of the fall from the peak held from point ``a`` into the low regimes
    from ``parts[t]``: the start of the first regime after the peak that is no longer at it,
    from which no later held regime is back, walked back over the points already off it.

    A level is off the peak when it is below it by more than PLATEAU of the gain (of the
    whole move, when the fall goes deeper than the gain: a level a few percent of a collapse
    under the peak is still the level the run held before it) and by
    more than SIGNIFICANCE standard errors (``level_se``). Their white part is the larger
    of the series' noise and the noise of the points from the peak to the low stretch: a
    return that sat near 0 for half the run and bounces by 5 around its peak is judged by
    the peak's own noise whether a point has left it (the onset protocol's prior band is
    the prior regime's noise, for the same reason); a quieter neighbourhood changes nothing.
    ``stop``: the end of a low stretch the run recovered from (what follows is not part of
    this fall)."""
    s = r.parts[t].start
    plateau = PLATEAU * max(gain, peak - float(np.median(r.y[s:])))
    n_peak = _window_size(r, a)
    local = noise_sigma(r.y[a:s]) if s - a > 2 else 0.0
    extra = max(0.0, local ** 2 - r.sigma ** 2)

    def off(size: int) -> float:          # below this, a level has left the peak
        white = extra * (1.0 / n_peak + 1.0 / max(size, 1))
        return peak - max(plateau, SIGNIFICANCE * float(np.sqrt(se(n_peak, size, s - a) ** 2 + white)))
    j = part_at(r, a + MIN_REFERENCE - 1)
    k = first_off(r, j, t, lambda p: p.level < off(p.size))
    onset = _walk_back(r.values, r.parts[k].start, off(1), r.parts[j].start)
    return _after_last_stage(r, onset, peak, n_peak, stop)


def _after_last_stage(r: Regimes, onset: int, peak: float, n_peak: int, stop: int | None = None) -> int:
    """A fall in stages whose first stage stays closer to the peak than to the bottom: the
    run held that intermediate level (a regime above the midpoint between the peak and the
    bottom, of MIN_STRETCH of the run, MIN_TAIL points, and at least as many points as the
    peak's: it became the run's level) before the move into the bad state, which starts
    after it (the onset protocol's prior regime is the level just before the move). The
    level may be cut into regimes at single outliers (``_flat_runs``: held regimes within
    SIGNIFICANCE noise sigmas of each other, and within PLATEAU of the move, with only
    shorter ones between them): a MARLlib return held at 3.8 for a sixth of its run with a low
    row every twenty is one level, not five pieces too short to be one.
    ``onset`` when there is no such stage. The bottom is the lowest level held after the
    peak, or the median of the run's last MIN_REFERENCE points when lower: a run stopped
    while it was still falling fast ends in regimes too short to be held. Only regimes
    before ``stop`` (the end of a low stretch the run recovered from) belong to the fall,
    and then the run's end is not its bottom."""
    need = max(stretch_need(len(r.values), MIN_TAIL), n_peak)
    i = part_at(r, onset)
    parts = r.parts if stop is None else r.parts[:part_at(r, stop - 1) + 1]
    held = [p for p in parts[i:] if p.size >= MIN_REFERENCE]
    if not held:
        return onset
    bottom = min(p.level for p in held)
    if stop is None:
        bottom = min(bottom, float(np.median(r.values[-MIN_REFERENCE:])))
    mid = (peak + bottom) / 2
    last = None
    for first, end in _flat_runs(parts, i, min(PLATEAU * (peak - bottom), SIGNIFICANCE * r.sigma)):
        size = sum(p.size for p in parts[first:end] if p.size >= MIN_REFERENCE)
        if size >= need and float(np.median(r.y[parts[first].start:parts[end - 1].end])) > mid:
            last = end
    if last is None or last >= len(parts):
        return onset
    return r.parts[last].start


def _flat_runs(parts, i: int, width: float):
    """``(first, end)`` index ranges of ``parts[i:]`` that hold one level: consecutive
    regimes of MIN_REFERENCE points or more whose levels lie within ``width`` of the first
    one's, with the single outliers between them (shorter regimes; PELT cuts a level at
    each one). A stretch ends with its last held regime. Three or more regimes that step
    the same way every time are a slide cut into steps, each its own range."""
    held = [q for q in range(i, len(parts)) if parts[q].size >= MIN_REFERENCE]
    runs, group = [], []
    for q in held:
        if group and abs(parts[q].level - parts[group[0]].level) > width:
            runs.append(group)
            group = []
        group.append(q)
    if group:
        runs.append(group)
    for group in runs:
        levels = np.diff([parts[q].level for q in group])
        if len(group) > 2 and (np.all(levels < 0) or np.all(levels > 0)):
            for q in group:                     # a slide: each step is its own regime
                yield q, q + 1
        else:
            yield group[0], group[-1] + 1


def _walk_back(v: np.ndarray, k: int, plateau: float, lo: int) -> int:
    """The first point of the fall: PELT places a cut where a step fits best, which on a
    fast ramp can be a few points into it; the points just before it that are already
    below the plateau belong to the fall."""
    while k - 1 > lo and v[k - 1] < plateau:
        k -= 1
    return k


def _held_levels(r: Regimes):
    """``(top, low)``: for each window of MIN_REFERENCE consecutive points, the lowest and
    the highest regime level in it (a level the run held over the whole window is at most
    ``top`` and at least ``low``); None when the series is shorter than two windows. A
    lone outlier is a regime of its own and never a level held."""
    n = len(r.values)
    if n < 2 * MIN_REFERENCE or len(r.parts) < 2:
        return None
    level = _point_levels(r)
    # the window's k-th points, for each k: a few whole-array passes (a reduction over
    # a strided view of short windows costs ten times more)
    shifted = [level[k:n - MIN_REFERENCE + 1 + k] for k in range(MIN_REFERENCE)]
    return functools.reduce(np.minimum, shifted), functools.reduce(np.maximum, shifted)


def _point_levels(r: Regimes) -> np.ndarray:
    """Each point's regime level (on the transformed scale)."""
    return np.repeat([p.level for p in r.parts], [p.size for p in r.parts])


def _window_size(r: Regimes, a: int) -> int:
    """Points behind the level of the window from point ``a``: its longest regime."""
    held = np.searchsorted(r.starts, np.arange(a, a + MIN_REFERENCE), side="right") - 1
    return max(MIN_REFERENCE, max(r.parts[i].size for i in held.tolist()))


def part_at(r: Regimes, k: int) -> int:
    """Index of the regime holding point ``k``."""
    return int(np.searchsorted(r.starts, k, side="right") - 1)


def _tail(r: Regimes, j: int, line: float) -> int | None:
    """Index of the first regime of the trailing run (after ``j``) whose held regimes are
    all below ``line``, when it starts with one below the line and is long enough
    (``final_need``: MIN_STRETCH of the run, or longer than any stretch below the line the
    run came back from since it first reached it, at a level as deep); else None."""
    t = None
    for i in range(len(r.parts) - 1, j, -1):
        p = r.parts[i]
        if p.level < line:
            t = i
        elif p.size >= MIN_REFERENCE:
            break
    if t is None or not any(p.size >= MIN_REFERENCE for p in r.parts[t:]):
        return None
    start, below = r.parts[t].start, r.values < line
    lo = int(np.argmin(below))                  # from where the run first reached the line
    # a stretch the run came back from counts against the final one only where its level
    # (the regimes', not the noisy points') went as deep: half way from the line to the
    # final stretch's median (a return that sagged under the line for a long while and
    # recovered, then crashed far below that sag at the end, has never been there before)
    deep = _point_levels(r) < (line + float(np.median(r.y[start:]))) / 2
    return t if len(r.values) - start >= final_need(below & deep, lo, start, MIN_TAIL) else None


def first_off(r: Regimes, j: int, t: int, off) -> int:
    """The first regime after ``j`` (at most ``t``) that is ``off`` the peak from which no
    later held regime is back on it."""
    k = t
    for i in range(t - 1, j, -1):
        p = r.parts[i]
        if off(p):
            k = i
        elif p.size >= MIN_REFERENCE:
            break
    return k


def level_se(r: Regimes):
    """``se(n_a, n_b, lag)``: the standard error of the difference of two levels held over
    ``n_a`` and ``n_b`` points, ``lag`` points apart.

    Two parts: the white noise of the points, s^2 (1/n_a + 1/n_b) with s the step-to-step
    noise (``noise_sigma``), which averaging over a level removes; and, for a correlated
    series, its wander, which it does not (a rolling mean over the last 100 episodes
    drifts for dozens of rows with no change of the policy). A series is correlated when
    its differences over MIN_REFERENCE points are clearly larger than those over one
    (CORRELATED; by their median, or by their spread as ``noise_sigma`` takes it, which a
    quantised series needs: a Pong score's 100-episode mean moves by one rounding step a
    row, and the median difference is that step over one row and over three alike); its
    wander at a lag is then the smaller of two estimates: the variance of
    its differences at that lag beyond the 2 s^2 that white noise gives, and its
    two-sample (Allan) variance at that lag (``_allan_var``) beyond the 3 s^2 that white
    noise gives, and the largest of that over MIN_REFERENCE and doubling lags up to it
    (``_lags``): the wander of a difference does not shrink with the distance (an AR(1)'s
    grows to its limit, a random walk's in proportion), and at a single long lag the
    robust estimates come out near zero on some flat correlated series, which a shorter
    lag measures steadily. Each is inflated by a different real change. The plain
    differences take a steady trend for wander: a learning curve that climbs 5 a row for
    50 rows differs by 50 over 10 rows with no wander at all (a smoothly rising CartPole
    return's collapse from 189 to 11 was "not significant" against its own climb); the
    Allan variance is blind to a trend, but on a short series a step of the level spans
    many of its second differences. A white series' wander is 0, and so is a smooth
    one's (``_rough``): there, large differences at long lags are the trend under test,
    not noise. Up the ladder of lags the wander grows no faster than WANDER_GROWTH allows
    from one lag to the next (from what the shortest lag shows, or s^2 when it shows none):
    faster growth is the changes under test. A verl DAPO score (a batch mean per step, no
    wander at the shortest lag) that learned -1.0 -> -0.66, fell back to -0.98 for 60 steps
    and climbed again changes over most windows of 20 steps, and its "wander" there hid
    the fall; an SB3 100-episode rolling return thinned to every second row showed 3.6 at a
    lag of 3 rows and 4578 at 96 (a growth with the square of the lag: its learning curve
    and its fall), which hid a fall from 200 to 47."""
    y, s2 = r.y, r.sigma ** 2
    correlated = _rough(y) and (_lag_var(y, MIN_REFERENCE, 0.5) > CORRELATED * _lag_var(y, 1, 0.5)
                                or _lag_spread(y, MIN_REFERENCE) ** 2 > CORRELATED * _lag_spread(y, 1) ** 2)

    wanders: dict[int, float] = {}

    def at(lag: int) -> float:
        if lag not in wanders:
            wanders[lag] = max(0.0, min(_lag_var(y, lag) - 2.0 * s2, _allan_var(y, lag) - 3.0 * s2))
        return wanders[lag]

    def wander_over(lags: list[int]) -> float:
        # up the ladder, no faster than WANDER_GROWTH from the lag before (or from s^2,
        # the least a lag resolves)
        w = top = at(lags[0])
        for prev, lag in zip(lags, lags[1:]):
            w = min(at(lag), max(w, s2) * (lag / prev) ** WANDER_GROWTH)
            top = max(top, w)
        return top

    def se(n_a: int, n_b: int, lag: int) -> float:
        wander = 0.0
        if correlated:
            lag = int(min(max(lag, 1), WANDER_LAG * len(y)))
            wander = wander_over(_lags(lag))
        return float(np.sqrt(s2 * (1.0 / max(n_a, 1) + 1.0 / max(n_b, 1)) + wander))
    return se


def _lag_spread(y: np.ndarray, lag: int) -> float:
    """``scale.spread`` of ``y[t + lag] - y[t]`` (as ``noise_sigma`` takes the spread of
    the first differences: the median alone sits at a series' rounding step, or at 0,
    when most differences are one step or none). A rolling mean of 100 episodes logged
    after each moves by one rounding step a row: the median of its differences is that
    step at lag 1 and at lag 3 alike, while their spread grows with the lag as its
    wander does."""
    lag = int(min(max(lag, 1), len(y) - 1))
    return spread(y[lag:] - y[:-lag]) if lag >= 1 else 0.0


def _lags(lag: int) -> list[int]:
    """The lags at which a wander up to ``lag`` is measured: MIN_REFERENCE, then doubling,
    and ``lag`` itself (or ``lag`` alone, when shorter)."""
    out, l = [], MIN_REFERENCE
    while l < lag:
        out.append(l)
        l *= 2
    return out + [lag]


def _rough(y: np.ndarray) -> bool:
    """Whether the steps of ``y`` are rough (wander) rather than smooth (a trend): the
    robust spread of its second differences is at least ROUGH x that of its first. A
    random walk's is sqrt(2) times, white noise's sqrt(3); a ramp's is near 0, so a
    smooth, noiseless fall is not mistaken for wander however far its differences grow
    with the lag."""
    d1 = np.diff(y)
    d2 = np.diff(d1)
    mad = lambda d: float(np.median(np.abs(d - np.median(d)))) if len(d) else 0.0   # noqa: E731
    return mad(d2) >= ROUGH * mad(d1) and mad(d1) > 0


def _allan_var(y: np.ndarray, lag: int) -> float:
    """Robust two-sample (Allan) variance of ``y`` at ``lag``: half the variance of
    ``y[t + lag] - 2 y[t] + y[t - lag]``, the change of the change over ``lag`` points, from
    the lower quartile of their absolute values (as ``_lag_var``: the large ones span a real
    change). A random walk's equals its variance of differences at that lag (lag x its
    step variance); a linear trend adds nothing to it; white noise of variance s^2 gives
    3 s^2."""
    lag = int(min(max(lag, 1), (len(y) - 1) // 2))
    if lag < 1:
        return 0.0
    d = y[2 * lag:] - 2.0 * y[lag:-lag] + y[:-2 * lag]
    return (float(np.quantile(np.abs(d), 0.25)) / Q25_ABS_NORMAL) ** 2 / 2.0


def _lag_var(y: np.ndarray, lag: int, q: float = 0.25) -> float:
    """Robust variance of ``y[t + lag] - y[t]``: from the ``q`` quantile of their absolute
    values (divided by its normal consistency factor). The lower quartile (the default)
    leaves out the differences that span a real change (a rise, the fall under test: the
    large ones), even when they are most of them; the median (``q`` 0.5, for the short
    lags of the correlation test) is not stuck at the value's rounding step when most
    differences are one or two steps of it (a mean of 100 episodes logged after each)."""
    lag = int(min(max(lag, 1), len(y) - 1))
    if lag < 1:
        return 0.0
    scale = {0.25: Q25_ABS_NORMAL, 0.5: 1 / MAD_TO_SIGMA}[q]
    return (float(np.quantile(np.abs(y[lag:] - y[:-lag]), q)) / scale) ** 2
