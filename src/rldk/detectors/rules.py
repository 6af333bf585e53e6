"""Onset-aware rules: what a regime change of each quantity means, and from which step.

Each rule reads one quantity (``rldk.semantics``), cuts its series into regimes
(``rldk.detectors.regimes``) and answers one question, e.g. "did the entropy fall
to a fifth of a level it held, and stay there?". The onset it reports is the first
logged step in that state from which the series stays there
(``rldk.detectors.onsets``). No rule compares with "the first tenth of the run":
the reference is a level the run actually held (its highest, for a collapse),
wherever it lies, so a collapse at step 12 of 200 is found at step 12, and a state
the run is in from its first step is reported from its first step.

Thresholds are ratios between levels (or absolute bounds where the quantity's units
make one meaningful: a fraction of truncated responses, nats of KL), each named
below with the measurement or convention behind it; the scale of "a regime" comes
from the series' own noise.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from rldk.detectors.event import Event
from rldk.detectors.moves import (
    BAND, JUMP_SHARE, PRIOR_POINTS, PRIOR_SHARE, fall_start, moves_at_once, prior_exit,
)
from rldk.detectors.onsets import (
    LEVEL_WINDOW,
    MIN_REFERENCE,
    MIN_STRETCH,
    PAST_SHARE,
    final_need,
    held_before,
    level_above,
    level_of,
    midpoint_onset,
    onset_in,
    past_midpoint,
    rolling_median,
    state_run,
    starts_mid_run,
    stretch_need,
)
from rldk.detectors.ratios import (
    SOLVED_LAG,
    SOLVED_RANGE,
    SOLVED_SHARE,
    TRUNCATION_HIGH,
    clip_ratio_blowup,
    high_ratio,
    zero_std_onset,
)
from rldk.detectors.regimes import Regime, Regimes, regime_of, regimes
from rldk.detectors.scale import noise_sigma
from rldk.detectors.trend import (
    PLATEAU,
    SHORT_SIGNIFICANCE,
    SIGNIFICANCE,
    Decline,
    decline,
    first_stage_a_burst,
    level_se,
    part_at,
    recovered_decline,
    recovered_declines,
    settled_below,
    spike_seen_before,
)

#: Entropy collapse: the entropy stays below this share of the highest level it held.
#: A fifth: healthy runs lose up to ~75% of their entropy as they learn (the real healthy
#: logs in benchmarks/data/real: meal planner 3.36 -> 0.84 nats), collapses fall 5-1000x.
ENTROPY_COLLAPSE = 0.2
#: Entropy collapse: the level the entropy must end under, in nats, for the policy to be
#: near-deterministic: the entropy of a two-way choice made 90/10 (-0.9 ln 0.9 - 0.1 ln 0.1).
#: A share of the level held alone does not say it: a policy over a large (multi-discrete)
#: action space starts at 7-11 nats and healthy runs of the real corpus end at 0.4-1.3 (a
#: fifth to a fifteenth of it) with 1.5-3.6 effective choices left, while every labelled
#: collapse ends at 0.18 nats or below. A fall to a fifth that stays above this is info.
ENTROPY_FLOOR = 0.325
#: Entropy collapse: under ENTROPY_FLOOR, the level under which the policy is deterministic:
#: 0.09 nats, a two-way choice made 98/2 (1.09 effective choices).
#: Between the two, a policy that converged as the reward rose to a new level and held it
#: (``_converged_while_learning``) is info; under it, only one whose reward kept improving
#: after it got there (``_learned_since_dead``). The line is a judgement the real corpus's
#: labels make, with a thin margin: healthy runs that learn their task spend three quarters of
#: their state at 0.094-0.2 nats or more (a PPO hopper, ML-Agents snake, a MiniGrid key
#: corridor, slime volley, a Pythia RLHF run), while a labelled Flappy Bird collapse (a
#: two-action policy at 0.073-0.1 as its return rose) spends a quarter of it under 0.086,
#: and policies frozen before they learned sit at 0.015 nats or below.
ENTROPY_DEAD = 0.09
#: ``_converged_while_learning``: the share of a collapse's rows that may lie under
#: ENTROPY_DEAD (the noise of a policy near its floor) for it to stay above it.
DEAD_SHARE = 0.25
#: ``_converged_while_learning``: the share of a fall (on the log scale) that one row's step
#: of the entropy's rolling level may carry for the fall to be gradual (a policy that
#: learned); a one-update drop of the rest is a broken update.
AT_ONCE_SHARE = 0.5
#: An entropy series is a differential entropy (continuous actions, no collapse to zero)
#: when a value lies below minus this many nats. A discrete policy's entropy, computed in
#: float32, reads a hair under zero once the policy is deterministic (a real ML-Agents
#: run: -2.3e-07..-3.6e-07 on every row after its first update); a Gaussian's is negative
#: only for a standard deviation under 0.24 per dimension, and then by tenths of a nat
#: or more, not by a rounding error.
ENTROPY_ROUNDING = 1e-4
#: ``reward_ceiling``: a reward's maximum is a ceiling when it is hit exactly in at least
#: this many separate stretches, on at least CEILING_SHARE of the rows from its first hit.
#: A float reward that is not bounded repeats its maximum by chance once; an average of
#: rewards bounded above reaches its bound only when every sample does, and a solved task
#: does so again and again (an accuracy of 1.0 on 59 of 100 GRPO steps, a bandit's +2 on 16
#: of 98 summaries, each between rows just under it).
CEILING_VISITS = 3
CEILING_SHARE = 0.1
#: Length collapse / explosion: the mean response length falls below a third of, or rises
#: above three times, a level it held.
LENGTH_FACTOR = 3.0
#: ``length_at_cap``: a mean response length at or above this share of the generation cap
#: is responses that run to it: nearly every answer cut before it ends. From a level at
#: or under CAP_FROM of the cap (most answers ended before it); no healthy log of the
#: corpus holds a mean over 0.8 of its cap to its end.
CAP_SHARE = 0.95
CAP_FROM = 0.8
#: ``_halved_with_the_reward``: a length below this share of a level it held is a
#: collapse when the reward degrades over the same stretch.
LENGTH_HALVED = 0.5
#: ``_shorter_and_better``: a length collapse to this many tokens or fewer is a degenerate
#: answer (an option letter, a lone EOS: every labelled collapse of the real corpus ends at
#: 1-10 tokens) whatever the reward did; a few sentences of text are more than this.
LENGTH_DEGENERATE = 32.0
#: ``_shorter_and_better``: the reward's rise from before a length fall to after it counts
#: when it clears this many noise sigmas of the series itself (a new level outside the
#: noise band of the old one, not a drift inside it).
RISE_SIGMAS = 3.0
#: Reward degradation: the reward falls back by at least this share of what the run had
#: gained (its peak minus its first level) and stays below that line to the end.
DEGRADATION_SHARE = 0.5
#: Reward degradation, failing the above: a decline by at least this share of the gain
#: that lasts to the end of the log (not one the run recovers from: a dip of a third
#: that comes back is a sag). Independent labellers of the real corpus call a sustained
#: loss of a fifth to two fifths of the gain a degradation (a TD3 reach task, a recurrent
#: PPO LunarLander, an ML-Agents SAC run, an SB3 racetrack PPO); judged first against half
#: the gain, a run that did lose half keeps the onset of that fall, not of an earlier sag.
#: A quarter, not a fifth: on 200 seeded runs that learn to 10 and wander (AR(1), rho 0.99,
#: sd 1) the rule fires on 2 at 0.3, 4 at 0.25 and 10 at 0.2 (white noise and rho 0.9: 0-3
#: at each); a loss of 15% stays a sag.
MODERATE_SHARE = 0.25
#: Reward degradation: the longest series judged on points (``_points_below``) at
#: MODERATE_SHARE of the gain. That test is for short series that hold no levels (a
#: Tianshou test return of 17 evaluations); over thousands of rows the highest window is an
#: extreme that many windows reach by chance, and a quarter of the "gain" up to it is lost
#: by returning to the series' own level (a flat Pong score of 7604 episodes, -20 to a
#: 5-episode peak of -18 and back; seeded flat integer scores: 11 of 20 series of 7600
#: rows, 4 of 20 of 2000, none of 40 of 1000). Half the gain on points stays judged at any
#: length. 1000, not 100: at 100 the tuning half's late and stopped variants lost an event.
MODERATE_POINTS_ROWS = 1000
#: Reward degradation on points (``_points_below``): a series of at least this many rows
#: that the change points read as one level over the whole run held no level it could
#: lose; its highest window is an extreme of its own noise. The test on points is for
#: short series the change points cannot cut (30 rows); a pixel SAC return flat at 4.2
#: over 642 episodes (0.9-9.6 each), whose 5-episode median peaks at 7.1 near the end,
#: "fell by a quarter" from that peak. A hundred: ten times the shortest level
#: (``moves.PRIOR_POINTS``), so a tenth of the run can be a level of its own.
ONE_LEVEL_ROWS = 100
#: ``_last_stage``: in a short run, a stage need hold only this share of its points (at least
#: MIN_REFERENCE) where PRIOR_POINTS would be most of the run: an SB3 run of 15 updates whose
#: entropy held 1.34 for 5 of them before it collapsed.
SHORT_RUN_STAGE = 0.25
#: ``_success_held``: a return decline is the task's only while the success rate falls by
#: more than this (a tenth of all episodes) or ends under SUCCESS_HELD (most episodes fail).
SUCCESS_DROP = 0.1
SUCCESS_HELD = 0.5
#: Reward degradation: a decline whose gain and fall are both under this share of the
#: reward's size (the largest of its start, peak and level after the fall, in absolute
#: value) is no degradation, however many standard errors they span. A long, precise log
#: measures a plateau's wander of a percent or two as significant; read from a third of
#: its run on (a resumed run, or ``rldk watch`` on its late stretch) a healthy plateau's
#: drift of 165.9 -> 171.5 -> 166.9 was "all it had gained is lost". A twentieth: the
#: smallest real fall labelled in benchmarks/data/real gave back 4% of a validation
#: accuracy's size (0.636 -> 0.609), after a gain of a fifth of it (0.51 -> 0.65).
SLIGHT = 0.05
#: Reward collapse: share of the values from the onset on that sit exactly at the floor.
FLOOR_SHARE = 0.8
#: KL to the reference: a regime above this many nats, at least KL_JUMP times the level
#: before it. Healthy GRPO/PPO runs stay below ~0.1-0.3 nats (the real fixtures: 0.05).
KL_HIGH = 1.0
KL_JUMP = 10.0
#: Gradient norm: a regime at least this many times every level the run was at before.
GRAD_JUMP = 10.0
#: PPO's old-to-new approx KL: a stretch at or above this many nats per update. PPO
#: implementations stop or shrink updates at target_kl 0.01-0.05 (SB3, CleanRL, TRL docs);
#: a sustained 0.1 means the clipping no longer bounds the policy change.
APPROX_KL_HIGH = 0.1
#: ``approx_kl_blowup`` is an error when its state lies this many times over its line: at
#: the default line, a nat per update, the KL_HIGH that marks a policy far from its
#: reference, now between two consecutive policies (clipping bounds nothing). On the real
#: corpus no healthy log, and no thinned, late or stopped version of one, holds such a state.
APPROX_KL_BROKEN = 10.0
#: ``approx_kl_blowup``: a burst of two rows or more at or above this many nats per update,
#: and BURST_OVER x the run's median, is a blow-up however short: an update that moved the
#: policy by e^10 in probability ratio is no longer a trust-region step (real PPO runs
#: whose policy broke: 12-5e6 nats for 2-3 updates, then collapse; the largest burst of
#: the corpus's healthy logs is 7 nats at 26x its median, an LLM PPO run with a median of
#: 0.27).
KL_BURST = 10.0
BURST_OVER = 100.0
#: A run whose config sets ``target_kl`` stops a PPO update once the approx KL passes it
#: (CleanRL and ManiSkill at the target, checked once per epoch; SB3 at 1.5x it), so its
#: KL sits at the target by design: a blow-up is a state at or above this many times it.
EARLY_STOP_MARGIN = 1.5
#: A positive loss (DQN's TD loss, a value loss) that rises to this many times a level it
#: held and stays there diverges: value losses of healthy runs move 10x with the returns
#: they fit (the real healthy logs), not 100x for good.
LOSS_JUMP = 100.0
#: A value loss that rises to this many times a level it held and stays there while the
#: episode return falls (``rldk.detectors.trend.decline``) has blown up: an order of
#: magnitude, the least that the healthy real logs' value losses move *with* their returns
#: (biosearch 0.5 -> 37 as the return rises; flappy bursts to 4894 with the return's
#: bursts), so the return, not the size, tells the two apart.
VALUE_JUMP = 10.0
#: A squared error of the returns whose root is under this share of their size is a fit
#: to the precision of the numbers, whatever it rose from: an A2C critic on a Breakout
#: policy that no longer moves (returns 3.7) logs value losses of 0 to 1e-14 and then
#: 4e-7 (a root of 6e-4), a rise of ten million times that no prediction notices. The
#: size is the return's (median absolute value) or 1, whichever is smaller: a critic
#: trained on normalised returns (rl_games, VecNormalize) logs its loss in units of about
#: 1 whatever the returns' size (an rl_games critic at 1.8e-6 then 0.33 with returns of
#: -600 diverged). A run without returns has no such scale; its loss is judged on its own.
NEGLIGIBLE_ERROR = 1e-3
#: ``_rise``: a state found on the series' rolling level over the level of a dip (a few
#: near-zero rows of a noisy loss) must also lie this many times over the level the series
#: held before the dip, or it only came back: a real SB3 value loss at 0.042 that logged
#: 1e-7 and two zeros "blew up from 0.04219 to 0.04218". Twice, not the rule's own factor:
#: a loss that first fell from an untrained start holds a level up to a tenth of its later
#: divergence (4 of the 430 tuning-half injections are found only under the full factor),
#: and a length pinned at its 1024-token cap from a noisy ~340 lies only 3x over it.
RISE_OVER_HELD = 2.0


def _event(code, metric, r: Regimes, k: int, last: int, severity, title, evidence) -> Event:
    return Event(code, metric, int(r.steps[k]), int(last), severity, title, evidence)


def _fall(code, metric, steps, values, share, severity_share, what) -> Event | None:
    """The series falls below ``share`` x the highest level it held and stays there (to
    the end, or for a stretch of the run); the held level is its first row, when the
    series falls below the line at its second row and stays (the rolling median of the
    first rows is then the fallen level), else the highest centred rolling median before
    it. Bursts back over the line may take STRAY_DEEP of a state that lies mostly under
    half the line (``state_run``'s ``deep``). Onset: the first step of the fall that led
    there (``fall_start``) from the last level it held above the line (``_last_stage``:
    the peak, or a lower level it sat at for a tenth of the run before the fall), not
    where it crossed the line (``below_from`` in the evidence). The threshold is a
    ratio, but the start of the fall is placed on the linear scale: a fall to (near) zero
    leaves its held level where it has lost PLATEAU of it, however many decades deep the
    floor it ends on (on the log scale that line sinks with the floor: an entropy that ends
    at 1e-5 would be "still at its level" at half of it)."""
    v = np.asarray(values, float)
    if len(v) < 2 * MIN_REFERENCE:
        return None
    found = None
    if v[1] < share * v[0]:
        # fallen at its second row and for good: the first row is the only level it held
        # (the rolling median of the first rows is already the fallen level)
        first = state_run(v < share * v[0], 1, deep=v < share * v[0] / 2)
        if first is not None and first[0] == 1:
            peak_at, ref, found = 0, float(v[0]), first
    if found is None:
        level = level_of(v)
        peak_at = int(np.argmax(level))
        ref = float(level[peak_at])
        found = state_run(v < share * ref, peak_at + 1, deep=v < share * ref / 2) if ref > 0 else None
    if found is None:
        return None
    crossed, end = found
    low = float(np.median(v[crossed:end]))
    r = regimes(steps, v, "signed")
    stage = _last_stage(r, peak_at, crossed, share * ref, low)
    if stage is not None and stage.raw ** 2 <= ref * max(low, 0.0):
        # a level held under the midpoint (geometric) between the peak and the state: the
        # move past the midpoint came before it (the onset protocol's onset), and what is
        # left is the tail of that fall (an entropy 2.45 -> 0.41 over half the run, held
        # there, ending at 0.31: the collapse is the first fall, not the last 0.1 nats)
        stage = None
    a, top = (peak_at, ref) if stage is None else (stage.end - 1, stage.raw)
    k = prior_exit(r, fall_start(r, a, crossed), crossed, top, end if end < len(v) else None)
    severity = "error" if low < severity_share * ref else "warning"
    held = "" if stage is None else f" (after it held {stage.raw:.4g} over steps {stage.first}-{stage.last})"
    return Event(code, metric, int(steps[k]), int(steps[end - 1]), severity,
                 f"{metric} {what} from {ref:.4g} to {low:.4g} from step {int(steps[k])}{held}",
                 {"held": ref, "held_step": int(steps[peak_at]), "now": low, "threshold": share * ref,
                  "below_from": int(steps[crossed]),
                  **({} if stage is None else {"stage": stage.raw, "stage_steps": [stage.first, stage.last]})})


def _last_stage(r: Regimes, peak_at: int, crossed: int, line: float, low: float) -> Regime | None:
    """The level a fall into a state (crossing ``line`` at point ``crossed``; ``low``, the
    state's median) started from, when it is not the peak (point ``peak_at``): the last
    level the series held above the line after its peak, or None when it held none. A
    level held is a regime of MIN_STRETCH of the run (and PRIOR_POINTS, or SHORT_RUN_STAGE
    of a short run: an SB3 run of 15 updates whose entropy left its first value 1.90 for
    1.34, held that for 5 updates and collapsed in one) above the line that every later
    regime before the crossing lies under: the run sat there for a tenth of its length, so
    the move into the state began when it left it (the onset protocol's prior regime is
    the level just before the move), not at the peak (a verl DAPO entropy 0.82 -> 0.25 over
    its first 30 steps, flat at 0.25 for 44 steps, then to 0.07: the collapse is the second
    fall). Failing one regime, the regimes just before the crossing that wander around
    their common level for as long (``_held_stretch``). A slide that wobbles back up (a
    length 5300 -> 4300 -> 4600 -> 3000) holds no level on its way down."""
    n = len(r.values)
    held = min(PRIOR_POINTS, max(MIN_REFERENCE, int(np.ceil(SHORT_RUN_STAGE * n))))
    need = stretch_need(n, held)
    parts = [p for p in r.parts[part_at(r, peak_at) + 1:] if p.end <= crossed]
    later = -np.inf                               # the highest regime after the one asked
    for p in reversed(parts):
        if p.size >= need and p.raw > line and p.raw > later:
            return p
        later = max(later, p.raw)
    return _held_stretch(r, parts, line, low, need)


def _held_stretch(r: Regimes, parts: list[Regime], line: float, low: float, need: int) -> Regime | None:
    """The regimes at the end of ``parts`` (those between a peak and a crossing of
    ``line``) that lie around one level (the median of their points), the last of them
    above the line: none under the level by more than PRIOR_SHARE of the fall from it to
    ``low`` (a part there under the line is the level's noise), none over it by more
    than BAND sigma of the row-to-row noise of the points from that regime on (a regime
    that high is the series still coming down: a slide, not a level it held). As one
    regime when they cover ``need`` points and the median of their first half lies no
    more than PRIOR_SHARE of the fall over that of their second, else None: a level the
    run held that its change points cut into pieces as it wandered (a length that fell
    from 6400 to 1500 tokens as the model shed its base's rambling, then held 2200-2900
    for 160 steps before it fell to 270: the collapse left 2800, not the 6400 of the first
    rows), not a noisy slow slide whose pieces each lie inside its noise (an agent's
    trajectories, 2200 -> 1700 -> 900 tokens over 300 steps as it learned shorter
    solutions, logged every third step)."""
    first = len(parts)                          # the stretch so far: parts[first:]
    for i in range(len(parts) - 1, -1, -1):
        if first == len(parts):
            if parts[i].raw <= line:
                break
        else:
            # a part under the line but inside the band below is the level's noise (a
            # length held at 9.1 +- 0.3 tokens, its line 8.7: the change points cut lone
            # rows at 8.4-8.7 out of it when the collapse after it is quieter still); only
            # the part just before the crossing must lie above the line
            level = float(np.median(r.values[parts[first].start:parts[-1].end]))
            band = BAND * noise_sigma(r.values[parts[i].start:parts[-1].end])
            if not -PRIOR_SHARE * (level - low) <= parts[i].raw - level <= band:
                break
        first = i
    if first == len(parts) or parts[-1].end - parts[first].start < need:
        return None
    held = r.values[parts[first].start:parts[-1].end]
    level, half = float(np.median(held)), len(held) // 2
    if np.median(held[:half]) - np.median(held[half:]) > PRIOR_SHARE * (level - low):
        return None             # its first half that much over its second: a slow slide
    return regime_of(r.steps, r.values, r.y, parts[first].start, parts[-1].end)


def _first_row_held(v: np.ndarray, factor: float) -> float:
    """The first row of a series as a level it held, when it left it at once by ``factor``
    or more at its second row (the rolling median of its first rows is then already the
    level it fell to, as for ``_fall``'s first row); else 0. A value loss at 0.18 at its
    first update, 1e-3 -> 2e-13 while no episode has ended (the critic fits zero returns),
    0.1-1 once rewards arrive, read at every other update: back under its first row, it has
    not diverged from the dip."""
    return float(v[0]) if len(v) > 1 and v[1] < v[0] / factor else 0.0


def _rise(code, metric, steps, values, factor, what, since_trough: bool = False,
          first_row: bool = False) -> Event | None:
    """The series rises above ``factor`` x the lowest level it held (its first row or two,
    when it rises from them at once: ``moves_at_once``) and stays there, above every level
    it held before (``since_trough``: since that lowest level; a loss that starts high
    while its model is untrained has not "risen" back to that start, it diverged), and,
    with ``first_row`` (a loss: its first row is the untrained model's, not a noisy row
    of a length), above its first row when it left that at once (``_first_row_held``).
    Onset: the first step of the rise that led there (``fall_start`` upwards, on the log
    scale; a jump after a drift, at the jump), not where it crossed the line (``above_from``
    in the evidence), and, when it drifted from the trough to a level it then held, where it
    left that level (``prior_exit`` upwards; ``left_trough`` in the evidence is where it
    left the trough's band); when the lowest level is a dip under the level the series held
    before it, the rise starts after the last point back at or under that level (the
    climb out of the dip is no part of it), and a state found only on the rolling level
    over the dip's must also lie RISE_OVER_HELD x over the level held. A jump inside the
    state is the onset only when it covers JUMP_SHARE of the rise on the series' own log
    scale, from the level held to the state's median (the regimes' scale is floored at a
    thousandth of the series' high: a critic loss at 3-9 that blows up to 1e11 is flat
    under that floor before it diverges, and a late jump from 7.5e7 to 9e8 looks like all
    of the move there)."""
    v = np.asarray(values, float)
    if len(v) < 2 * MIN_REFERENCE:
        return None
    level = level_of(v)
    # the lowest level held over a whole window: the edges' medians of 3 or 4 points are
    # the noisiest levels of a noisy series, and the lowest of them is the most extreme
    h = LEVEL_WINDOW // 2 if len(v) > 2 * LEVEL_WINDOW else 0
    trough_at = h + int(np.argmin(level[h:len(v) - h]))
    ref = max(float(level[trough_at]), float(np.median(v[:trough_at + 1])))
    r = regimes(steps, v, "nonneg") if trough_at == h and 0 < v[0] < level[trough_at] else None
    if r is not None and moves_at_once(r, 0, len(v)) and r.parts[0].raw < ref:
        trough_at, ref = 0, r.parts[0].raw      # risen from its first row or two: they are its level
    if ref <= 0:
        # a level of exactly zero (a KL at the first step, where the policy is the
        # reference) is no scale for a ratio: the lowest positive level it held is
        positive = np.flatnonzero(level > 0)
        if not len(positive):
            return None
        trough_at = int(positive[np.argmin(level[positive])])
        ref = float(level[trough_at])
    found, low = state_run(v > factor * ref, trough_at + 1), None
    if found is None:
        # a noisy series: its rolling level, over the lowest level it held
        above = level_above(v, level, factor)
        if above is None:
            return None
        *found, low = above
    crossed, end = found
    high = float(np.median(v[crossed:end]))
    if low is not None and high < RISE_OVER_HELD * ref:
        return None     # the rolling level rose over a dip's, not over the level the series held
    if spike_seen_before(v, crossed, end, high):
        return None     # a short end state as high as single rows the series came back from
    first = trough_at if since_trough else 0
    if high <= float(np.max(level[first:max(first + 1, crossed - LEVEL_WINDOW // 2)])):
        return None     # back to (or under) a level held before (windows wholly before it): no rise
    if first_row and first == 0 and high <= _first_row_held(v, factor):
        return None     # under its first row, a level it held (a loss: ``first_row``)
    r = r if r is not None else regimes(steps, v, "nonneg")
    start = trough_at
    if ref > level[trough_at] and np.max(level[max(0, trough_at - 2 * LEVEL_WINDOW):trough_at + 1],
                                         initial=0.0) * RISE_OVER_HELD >= ref:
        # the lowest window is a dip under the level the series held just before it (not
        # the end of a fall from an untrained start): the rise left that level, after the
        # last point at or under it
        back = np.flatnonzero(v[trough_at:crossed] <= ref)
        start = trough_at + int(back[-1]) if len(back) else trough_at
    k = fall_start(r, start, crossed, up=True, jumps=True, until=end)
    if k > crossed and v[k - 1] > 0 and np.log(v[k] / v[k - 1]) <= JUMP_SHARE * np.log(high / ref):
        # a jump inside the state that only the regimes' floored log scale makes half the
        # move (the level the rise left lies flat under the floor there): on the series' own
        # scale it is a small part of the rise (a critic loss at 3-9 diverging to 1e11, 7.5e7
        # -> 9e8 in one logged step), and the rise started where it crossed
        k = fall_start(r, start, crossed, up=True, jumps=True)
    # a rise that drifted from the trough to a level it then held, and left that level for
    # the state: the move started where it left it (``prior_exit``, as ``_fall`` places a
    # fall), on the series' own log scale (under the regimes' floor, a loss that climbs for
    # decades is flat until its last few); never earlier than the start read from the
    # trough, nor later than where the series was past the midpoint of the whole rise for
    # good (the onset protocol's "clearly in the bad state")
    left = k
    logs = regimes(steps, np.log(np.maximum(v, np.min(v[v > 0]))), "signed")
    trough = float(np.median(logs.y[max(0, start - 2):start + 3]))
    held = prior_exit(logs, k, crossed, -trough, end if end < len(v) else None, up=True)
    if held > k:
        top = crossed + int(np.argmax(v[crossed:end]))
        k = max(k, min(held, past_midpoint(-logs.y, start, top, -0.5 * (trough + float(np.log(high))))))
    # the line the state was found over, when it is not ``factor`` x the level named
    judged = "" if low is None else f" (its rolling level over {factor:g}x the lowest level it held, {low:.4g})"
    return Event(code, metric, int(steps[k]), int(steps[end - 1]), "error",
                 f"{metric} {what} from {ref:.4g} to {high:.4g} from step {int(steps[k])}{judged}",
                 {"held": ref, "held_step": int(steps[trough_at]), "now": high, "factor": factor,
                  "above_from": int(steps[crossed]), "left_trough": int(steps[left]),
                  **({} if low is None else {"judged_from": low})})


def entropy_collapse(metric: str, steps, values, partner=None) -> Event | None:
    """Entropy (positive: discrete policies) falls below ENTROPY_COLLAPSE x the highest
    level it held and stays (error below ENTROPY_COLLAPSE^2), to under ENTROPY_FLOOR nats
    (above it: info). A differential entropy (``differential_entropy``: Gaussian
    policies) has no collapse to zero; values a rounding error under zero are zero. A
    collapse that comes with the reward (``partner``) at a ceiling it learned its way up
    to (``reward_ceiling``) is info: a deterministic policy on a solved task; so is one
    that stays above ENTROPY_DEAD while the reward rose with it, or whose reward rose with
    it and kept improving after it went under ENTROPY_DEAD (``_converged_while_learning``).
    After a fall that is info, a later fall from the level the entropy then held may still
    be a collapse (after one to under ENTROPY_FLOOR, only a later fall that lasts to the
    end of the log)."""
    values = np.asarray(values, float)
    if differential_entropy(values) or np.max(values) <= 0:
        return None
    values = np.maximum(values, 0.0)
    event = _fall("entropy_collapse", metric, steps, values, ENTROPY_COLLAPSE, ENTROPY_COLLAPSE ** 2,
                  "collapsed")
    if event is None:
        return None
    steps = np.asarray(steps)
    settled = event.evidence["now"] < ENTROPY_FLOOR
    if settled:
        event = _solved(event, partner, steps, values)
        if event.severity != "info":
            return event
    else:
        now = event.evidence["now"]
        event = replace(event, severity="info",
                        title=f"{metric} fell from {event.evidence['held']:.4g} to {now:.4g} from step "
                              f"{event.onset}: a sharper policy, still {np.exp(now):.2g} effective choices "
                              "(not near-deterministic)",
                        evidence={**event.evidence, "floor": ENTROPY_FLOOR})
    c = int(np.searchsorted(steps, event.evidence["below_from"]))
    later = _fall("entropy_collapse", metric, steps[c:], values[c:], ENTROPY_COLLAPSE, ENTROPY_COLLAPSE ** 2,
                  "collapsed")
    if later is None or later.evidence["now"] >= ENTROPY_FLOOR:
        return event
    if settled and later.last < steps[-1]:
        return event        # a dip of a policy that had settled, which it came back from: its noise
    return _solved(later, partner, steps, values)


def entropy_collapses(metric: str, steps, values, partner=None) -> list[Event]:
    """Every collapse of the entropy (``entropy_collapse``) that the entropy came back from
    before the next, in order: a run whose policy collapsed, recovered and collapsed again
    has two events (a Procgen Jumper entropy 1.76 -> 0.15 for 50 updates, back at 1.9,
    then 0.03 to the end). ``entropy_collapse`` finds the collapse from the highest level
    the entropy held; the log before that level, and the log after the collapse's state,
    are searched the same way (when no collapse follows the highest level, the log before
    it is searched if the entropy dipped there under ENTROPY_COLLAPSE x a level it held).
    The entropy came back from a collapse when the level the next fall starts from is
    1/ENTROPY_COLLAPSE x the level it fell to or more: the collapse undone by the factor
    that makes one (a settled MiniGrid policy's wobble from 0.12 to 0.5 nats and down to
    0.05 again is its noise, not a new collapse). A collapse found in a stretch of the log
    must hold MIN_STRETCH of the whole run, or last to its end (a short stretch of a log is
    no run of its own), and start from ENTROPY_DEAD or more (a policy already
    near-deterministic: a Tinker GRPO token entropy that jumps between 1e-4 and 1e-2 nats
    row to row). The collapse ``entropy_collapse`` finds on the whole log is reported as
    it does."""
    steps, values = np.asarray(steps), np.asarray(values, float)
    need = stretch_need(len(values))

    def collapse_in(lo: int, hi: int) -> Event | None:
        return entropy_collapse(metric, steps[lo:hi], values[lo:hi], partner) if hi - lo >= 2 * MIN_REFERENCE \
            else None

    def search(lo: int, hi: int, event: Event | None) -> list[Event]:
        """``event`` (the collapse of points ``lo:hi``) and those before and after it."""
        if event is None:
            if hi - lo < 2 * MIN_REFERENCE:
                return []
            # none after the highest level: one before it, that the entropy came back from?
            level = level_of(np.maximum(values[lo:hi], 0.0))
            top = lo + int(np.argmax(level))
            dipped = values[lo:top] < ENTROPY_COLLAPSE * np.maximum.accumulate(level[:top - lo])
            return search(lo, top, collapse_in(lo, top)) if dipped.any() else []
        end = int(np.searchsorted(steps, event.last, side="right"))
        if event is not main and (event.evidence["held"] < ENTROPY_DEAD or end < len(values)
                                  and end - int(np.searchsorted(steps, event.onset)) < need):
            return []
        peak = int(np.searchsorted(steps, event.evidence["held_step"]))
        before = [e for e in search(lo, peak, collapse_in(lo, peak))
                  if ENTROPY_COLLAPSE * event.evidence["held"] > e.evidence["now"]]
        after = [e for e in search(end, hi, collapse_in(end, hi))
                 if ENTROPY_COLLAPSE * e.evidence["held"] > event.evidence["now"]]
        return before + [event] + after

    main = collapse_in(0, len(values))
    return search(0, len(values), main)


def differential_entropy(values) -> bool:
    """Whether an entropy series is a differential entropy (of continuous actions): a
    value below -ENTROPY_ROUNDING nats. Zero, or a rounding error under it, is the
    entropy of a deterministic discrete policy."""
    return bool(np.min(np.asarray(values, float)) < -ENTROPY_ROUNDING)


def _solved(event: Event, partner, steps, values) -> Event:
    """``event`` (an entropy collapse) as info when the reward reached its ceiling
    (``reward_ceiling``) by the time the entropy crossed its collapse line, or when the
    entropy stays above ENTROPY_DEAD and the reward rose with its fall
    (``_converged_while_learning``)."""
    if partner is None:
        return event
    ceiling = reward_ceiling(*partner, event.evidence["below_from"])
    if ceiling is None:
        return _converged_while_learning(event, partner, steps, values)
    top = ceiling["ceiling"]
    how = (f"sat at its ceiling {top:.4g} from the first step of a log that starts mid-run"
           if ceiling.get("before_log") else f"reached its ceiling {top:.4g}")
    return replace(event, severity="info",
                   title=f"{event.title}, as the reward {how} (hit exactly on {ceiling['share']:.0%} of "
                         f"the steps since, in {ceiling['visits']} separate stretches): a deterministic "
                         "policy on a solved task",
                   evidence={**event.evidence, **ceiling})


def _converged_while_learning(event: Event, partner, steps, values) -> Event:
    """``event`` (an entropy collapse to under ENTROPY_FLOOR) as info when the reward
    (``partner``) rose over its fall to a new level and held it (``_rose_with``), and the
    entropy either stays above ENTROPY_DEAD (under it on no more than DEAD_SHARE of the
    rows of its state) or the reward kept learning after the entropy went under it
    (``_learned_since_dead``): a policy that grew confident as it learned. A policy at
    ENTROPY_DEAD or under whose reward then holds has stopped exploring whatever it
    learned (a state whose median sits above it may hide a long stretch at 0.01 nats that
    a late re-rise pulls up), and one whose reward did not rise with the fall converged
    on nothing."""
    steps = np.asarray(steps)
    values = np.asarray(values, float)
    state = values[(steps >= event.evidence["below_from"]) & (steps <= event.last)]
    if not len(state):
        return event
    since = None
    if float(np.quantile(state, DEAD_SHARE)) <= ENTROPY_DEAD:
        since = _learned_since_dead(steps, values, partner)
        if since is None:
            return event
    # a fall by ln(held/now) nats of which one row's step of the rolling level carries
    # AT_ONCE_SHARE or more came in one update: a broken update, not a policy learning
    fall = (steps >= event.onset) & (steps <= event.last)
    level = np.log(np.maximum(level_of(values)[fall], ENTROPY_DEAD / 10))
    total = np.log(event.evidence["held"] / max(event.evidence["now"], ENTROPY_DEAD / 10))
    if len(level) < 2 or float(np.max(-np.diff(level))) >= AT_ONCE_SHARE * total:
        return event
    rose = _rose_with(event.onset, event.evidence["below_from"], partner, points=MIN_REFERENCE)
    if rose is None:
        return event
    how = (f"above {ENTROPY_DEAD:g} nats (a 98/2 choice) on {1 - DEAD_SHARE:.0%} of the rows since"
           if since is None else
           f"and kept improving after its entropy went under {ENTROPY_DEAD:g} nats at step "
           f"{since['dead_from']} (the reward from {since['reward_then']:.4g} to {since['reward_late']:.4g})")
    return replace(event, severity="info",
                   title=f"{event.title}, while the reward rose from {rose['reward_before']:.4g} to "
                         f"{rose['reward_after']:.4g} and held: a policy that grew confident as it "
                         f"learned, {how}",
                   evidence={**event.evidence, **rose, "dead": ENTROPY_DEAD, **(since or {})})


def _learned_since_dead(steps, values, partner) -> dict | None:
    """Evidence that the reward (``partner``: steps, values) kept learning after the
    entropy's rolling level first went under ENTROPY_DEAD, or None: its median over the
    last quarter of the rows since is above its median over the first quarter by
    SIGNIFICANCE standard errors of two levels (``level_se``: its own noise and wander)
    and by MODERATE_SHARE of the span of the levels it held over the whole run (what a
    degradation must lose, gained again). A near-deterministic policy that keeps
    improving has not stopped exploring what it needs (a MountainCar PPO at 0.02-0.06
    nats whose return climbs from -145 to the solved -109); one that collapsed holds its
    reward (an A2C Breakout stuck at a return of 3.7, whose 100-episode mean moves by a
    tenth of its range, significant against the noise of a mean that repeats itself)."""
    dead = np.flatnonzero(level_of(values) < ENTROPY_DEAD)
    if not len(dead):
        return None
    r_steps, r = np.asarray(partner[0]), np.asarray(partner[1], float)
    after = r[r_steps >= steps[dead[0]]]
    if len(after) < 4 * MIN_REFERENCE:
        return None
    q = max(MIN_REFERENCE, len(after) // 4)
    se = level_se(regimes(r_steps, r, "signed"))(q, q, len(after) - q)
    then, late = float(np.median(after[:q])), float(np.median(after[-q:]))
    level = level_of(r)
    if se <= 0 or late - then < max(SIGNIFICANCE * se, MODERATE_SHARE * float(np.max(level) - np.min(level))):
        return None
    return {"dead_from": int(steps[dead[0]]), "reward_then": then, "reward_late": late}


def _rose_with(onset: int, crossed: int, partner, points: int = 2 * MIN_REFERENCE) -> dict | None:
    """Evidence that the reward (``partner``: steps, values) rose over a fall that started
    at step ``onset`` and crossed its line at ``crossed``, or None: the fall took
    ``points`` reward points or more (one that came at once is a switch of behaviour, not
    learning), and the reward's median from ``crossed`` on, and over the last quarter of
    that stretch, are both above its median just before ``onset`` (as many points as the
    fall took, at least ``points``; a fall from the run's first rows, the reward's first
    ``points``: an untrained policy's) by RISE_SIGMAS noise sigmas (``noise_sigma``:
    outside the old level's noise band)."""
    r_steps, r = np.asarray(partner[0]), np.asarray(partner[1], float)
    fall = int(np.sum((r_steps >= onset) & (r_steps < crossed)))
    before = r[r_steps < onset][-max(fall, points):]
    if len(before) < points:
        before = r[:points]
    after = r[r_steps >= crossed]
    if fall < points or min(len(before), len(after)) < points:
        return None
    sigma = noise_sigma(r)
    then = float(np.median(before))
    now, late = float(np.median(after)), float(np.median(after[-max(1, len(after) // 4):]))
    if sigma <= 0 or min(now, late) - then < RISE_SIGMAS * sigma:
        return None
    return {"reward_before": then, "reward_after": now, "reward_late": late, "reward_noise": sigma}


def reward_ceiling(steps, values, at_step: int) -> dict | None:
    """Evidence that a reward sits at a ceiling it learned its way up to by ``at_step``,
    or None. A bounded reward (an accuracy of 1.0, a bandit's +2) that the policy has
    solved is hit *exactly*, again and again: its maximum recurs in CEILING_VISITS
    separate stretches and on CEILING_SHARE of the rows from its first visit (a logger
    that repeats a stale value, SB3's episode mean while no episode ends, makes one
    stretch), and no other value is as frequent from then on (values pile up at a bound;
    a noisy plateau logged with few digits hits its top rounded value no more often than
    the values under it). The reward must have risen to it (a range of SOLVED_RANGE noise sigma, the
    first level in the lower half: one that pays everything from step 1 learned nothing),
    reached the upper half of that range by ``at_step`` or within SOLVED_LAG of the run
    after it (the two came together), and be there at the end; or, in a log that starts
    mid-run (``onsets.starts_mid_run``: its first step STARTS_MID_RUN of its step spacings
    past 0; a resumed run, a log kept from late on), be at it from the first row to the
    end (``before_log`` in the evidence): the rise lies before the log (a MAPPO SMAC run
    whose evaluation return is 20, its maximum, on 99% of the rows of the log kept from a
    fifth of its run on). A
    return that levels off below a value it never repeats has no ceiling the log can show:
    premature convergence and a solved task then look alike, and the collapse is reported."""
    steps = np.asarray(steps)
    v = np.asarray(values, float)
    keep = np.isfinite(v)
    steps, v = steps[keep], v[keep]
    if len(v) < 2 * MIN_REFERENCE:
        return None
    top = float(np.max(v))
    at_top = np.abs(v - top) <= 1e-9 * max(1.0, abs(top))
    visits = int(np.sum(at_top[1:] & ~at_top[:-1]) + at_top[0])
    first = int(np.argmax(at_top))
    share = float(np.mean(at_top[first:]))
    _, counts = np.unique(v[first:], return_counts=True)
    if visits < CEILING_VISITS or share < CEILING_SHARE or int(at_top[first:].sum()) < int(counts.max()):
        return None
    level = level_of(v)
    low = float(np.min(level))
    mid = low + SOLVED_SHARE * (top - low)
    if top - low < SOLVED_RANGE * noise_sigma(v) or level[0] >= mid:
        # no rise to the ceiling: at it (or nowhere) from the start. At it from the first
        # row of a log that starts mid-run, and still there at the end, the rise lies before
        # the log; from the start of a run, the reward paid everything and nothing was learned
        if not (at_top[0] and level[-1] >= mid and starts_mid_run(steps)):
            return None
        return {"ceiling": top, "visits": visits, "share": share, "reward_reached": int(steps[0]),
                "before_log": True}
    reached = float(steps[int(np.argmax(level >= mid))])
    if reached > at_step + SOLVED_LAG * float(steps[-1] - steps[0]) or level[-1] < mid:
        return None                     # the policy set long before the reward got there, or lost it
    return {"ceiling": top, "visits": visits, "share": share, "reward_reached": reached}


def length_change(metric: str, steps, values, partner=None, cap=None) -> Event | None:
    """Mean response length falls below 1/LENGTH_FACTOR of the highest level it held, or
    rises above LENGTH_FACTOR times the lowest, or to the generation cap (``cap``:
    ``length_at_cap``), and stays. A fall that came with the reward (``partner``) rising
    to a new level and holding it is info (``_shorter_and_better``); a fall below
    LENGTH_HALVED while the reward degrades is a warning (``_halved_with_the_reward``)."""
    def collapse(steps, values) -> Event | None:
        fall = _fall("length_collapse", metric, steps, values, 1 / LENGTH_FACTOR, 1 / LENGTH_FACTOR, "fell")
        return None if fall is None else _shorter_and_better(replace(fall, severity="error"), partner)

    fall = collapse(steps, values)
    if fall is None:
        return _rise("length_explosion", metric, steps, values, LENGTH_FACTOR, "grew") or length_at_cap(
            metric, steps, values, cap) or _halved_with_the_reward(metric, steps, values, partner)
    if fall.severity == "info":
        # shorter and better at first; a later fall from the level it then held may not be
        steps = np.asarray(steps)
        c = int(np.searchsorted(steps, fall.evidence["below_from"]))
        later = collapse(steps[c:], np.asarray(values, float)[c:])
        if later is not None and later.severity == "error":
            return later
    return fall


#: ``truncation_onset``: a share of truncated responses that rises from at most
#: TRUNCATION_LOW (nearly no answer cut) to a rolling level of TRUNCATION_RISE or more and
#: stays there to the end: one answer in ten now runs into the generation cap, the reward
#: of those is computed on a cut answer (a verl rubric DAPO run: 0 on 25 of its first 45
#: steps, 0.1-0.15 from step 61 to the end as its answers grew eightfold). No healthy log of
#: the tuning half leaves under 0.02 for a state at 0.1 (the highest ends at 0.05).
TRUNCATION_LOW = 0.02
TRUNCATION_RISE = 0.1


def truncation_onset(metric: str, steps, values, partner=None) -> Event | None:
    """The share of truncated responses enters a state at or above TRUNCATION_HIGH and
    stays (``high_ratio``); failing that, it rises from a level at or under TRUNCATION_LOW
    (the median of the points before, PRIOR_POINTS of them at least) to a rolling level at
    or above TRUNCATION_RISE that lasts to the end (a warning). Onset: the first step of
    the rise (``fall_start`` upwards)."""
    event = high_ratio("truncation_onset", metric, steps, values, TRUNCATION_HIGH, "share of truncated responses")
    if event is not None:
        return event
    steps, v = np.asarray(steps), np.clip(np.asarray(values, float), 0, 1)
    found = state_run(level_of(v) >= TRUNCATION_RISE, PRIOR_POINTS, final=True)
    if found is None:
        return None
    crossed, end = found
    before = float(np.median(v[:crossed]))
    if before > TRUNCATION_LOW:
        return None
    # a share over n responses moves by 1/n (its smallest step): its band is at least
    # BAND binomial standard deviations at the level before, sqrt(p (1 - p) / n), about
    # sqrt(p / n) at p of 0.02 or less
    steps_up = np.diff(np.unique(v))
    quantum = float(steps_up.min()) if len(steps_up) else 0.0
    floor = BAND * float(np.sqrt(max(before, quantum) * quantum))
    # on the share's own scale (a log scale would make 0 -> 1/n a move as large as the
    # rise), from the last level held near zero (PRIOR_POINTS points), else its lowest point
    r = regimes(steps, v, "signed")
    low = [p for p in r.parts if p.end <= crossed and p.size >= PRIOR_POINTS and p.level <= TRUNCATION_LOW]
    a = low[-1].end - 1 if low else crossed - 1 - int(np.argmin(v[crossed - 1::-1]))
    k = fall_start(r, a, crossed, up=True, until=end, floor=floor)
    now = float(np.median(v[crossed:end]))
    return Event("truncation_onset", metric, int(steps[k]), int(steps[end - 1]), "warning",
                 f"share of truncated responses rose to {now:.2f} from step {int(steps[k])} (was {before:.2g}): "
                 f"about one answer in {max(1, round(1 / now))} now runs into the generation cap",
                 {"level": now, "before": before, "threshold": TRUNCATION_RISE, "above_from": int(steps[crossed])})


def length_at_cap(metric: str, steps, values, cap: float | None) -> Event | None:
    """The mean response length rises to CAP_SHARE of the generation cap ``cap`` and stays
    to the end, from a level at or under CAP_FROM of it: (nearly) every response is cut
    at the cap, an explosion that the LENGTH_FACTOR line misses when the cap lies under
    that factor over the level before (a real NeMo-RL GRPO run: 551 tokens at step 1,
    997-1024 of a 1024-token cap from step 2 on). A warning. A run at the cap from its
    first row was set up so (a caption model's 10-token cap), not a rise. A long run whose
    batches dip under the line for a few steps now and then is at the cap from its first
    point at the line whose next point is too, when PAST_SHARE of the points from there to
    the end are (the onset protocol's reading). The caller
    passes a cap only when the run logs no truncation share, which says this directly
    (``truncation_onset``). Onset: the first step of the rise (``fall_start`` upwards)."""
    if cap is None or not cap > 0:
        return None
    steps, v = np.asarray(steps), np.asarray(values, float)
    found = state_run(v >= CAP_SHARE * cap, 0, final=True)
    if found is None or found[0] == 0 or float(np.median(v[:found[0]])) > CAP_FROM * cap:
        # a long run whose batches dip under the line for a few steps now and then (a real
        # GRPO console at exactly 256 of 256 tokens on 91% of its 4129 steps, under 243 for
        # 4 steps at a time): at the cap for good as the onset protocol reads it, from its
        # first point at the line whose next point is too, with PAST_SHARE of the points
        # from there to the end at it
        at = v >= CAP_SHARE * cap
        tail = np.cumsum(at[::-1])[::-1] / np.arange(len(v), 0, -1)
        good = np.flatnonzero(at[:-1] & at[1:] & (tail[:-1] >= PAST_SHARE))
        if not len(good) or len(v) - good[0] < MIN_REFERENCE:
            return None
        found = (int(good[0]), len(v))
    if found[0] == 0:
        return None
    crossed, end = found
    before = float(np.median(v[:crossed]))
    if before > CAP_FROM * cap:
        return None
    k = fall_start(regimes(steps, v, "nonneg"), int(np.argmin(v[:crossed])), crossed, up=True,
                   jumps=True, until=end)
    now = float(np.median(v[crossed:end]))
    return Event("length_explosion", metric, int(steps[k]), int(steps[end - 1]), "warning",
                 f"{metric} ran to the generation cap from step {int(steps[k])}: {now:.4g} of "
                 f"{cap:.4g} tokens (was {before:.4g}), nearly every response cut before it ends",
                 {"held": before, "now": now, "cap": cap, "above_from": int(steps[crossed])})


def _halved_with_the_reward(metric: str, steps, values, partner) -> Event | None:
    """A length that falls below LENGTH_HALVED x the highest level it held and stays, over
    a stretch where the reward (``partner``) degrades too (``reward_degradation``, its
    onset before the length's state ends and its own state after the length's onset): a
    warning. Alone, a halving is what healthy reasoning runs do as they shed a base
    model's rambling (with a rising reward); with a falling one it is the same failure
    seen in the answers (a real verl DAPO run: 5300 -> 2800 tokens as the score fell
    -0.29 -> -0.83)."""
    if partner is None:
        return None
    fall = _fall("length_collapse", metric, steps, values, LENGTH_HALVED, 0.0, "fell")
    if fall is None:
        return None
    worse = reward_degradation("reward", *partner)
    if worse is None or not _overlap(worse, fall):
        return None
    return replace(fall, severity="warning",
                   title=f"{fall.title} while the reward fell from {worse.evidence['peak']:.4g} to "
                         f"{worse.evidence['now']:.4g} (from step {worse.onset})",
                   evidence={**fall.evidence, "reward_fall_step": worse.onset})


def _overlap(a: Event, b: Event) -> bool:
    """Whether events ``a`` and ``b`` share a stretch of steps (each one's onset before the
    other's last step): a fall of one quantity over the same stretch as another's."""
    return a.onset <= b.last and a.last >= b.onset


def episode_length_collapse(metric: str, steps, values, partner=None, success=None) -> Event | None:
    """The mean length of finished episodes falls below 1/LENGTH_FACTOR of the highest level
    it held and stays (``_fall``), over a stretch where the episode return (``partner``)
    collapses (``reward_degradation`` at error: back to the lowest level it held before,
    all it had gained lost; its onset before the length's state ends, its own state after
    the length's onset): episodes that end sooner because the policy fails
    sooner (falls over, crashes: a real rl-zoo PPO on InvertedDoublePendulum whose episodes
    went from 700-1000 steps to 4 as its return fell 6600 -> 26). A warning: the return's
    own finding is the failure, this says how it fails. Alone, a shorter episode means
    nothing either way (a reach task ends sooner at success, a penalty per step rewards
    ending early), so a run that logs no return, or whose return did not collapse with it
    (a shaped return gives back part of its gain as successful episodes shorten), has no
    finding; nor has one whose return fell while its success rate (``success``) held
    (``_success_held``: a shaped return of a task whose episodes end at success)."""
    if partner is None:
        return None
    fall = _fall("episode_length_collapse", metric, steps, values, 1 / LENGTH_FACTOR, 0.0, "fell")
    if fall is None:
        return None
    worse = reward_degradation("episode_return", *partner)
    worse = None if worse is None else _success_held(worse, success)
    if worse is None or worse.severity != "error" or not _overlap(worse, fall):
        return None
    return replace(fall, severity="warning",
                   title=f"{fall.title} while the episode return fell from {worse.evidence['peak']:.4g} to "
                         f"{worse.evidence['now']:.4g} (from step {worse.onset}): episodes end sooner, "
                         "the policy fails early",
                   evidence={**fall.evidence, "return_fall_step": worse.onset})


def _shorter_and_better(event: Event, partner) -> Event:
    """``event`` (a length collapse) as info when the reward (``partner``: steps, values)
    rose with it, gradually (``_rose_with``: over 2 x MIN_REFERENCE reward points or more,
    to a new level that held). The policy learned shorter answers that score better (an
    agent learning shorter solutions: a real TextCraft run went 2100 -> 600 tokens over 175
    steps as its success rose 0.56 -> 0.87; reasoning runs shed a base model's rambling as
    they learn the format). A
    length that drops at once is a switch of behaviour, not learning, and stays an
    error, as do a fall to LENGTH_DEGENERATE tokens or fewer (an answer of a letter or an
    EOS) and one with a flat or falling reward (a reward that rose earlier in the run
    does not count: the window before is the fall's own)."""
    if partner is None or event.evidence["now"] <= LENGTH_DEGENERATE:
        return event
    rose = _rose_with(event.onset, event.evidence["below_from"], partner)
    if rose is None:
        return event
    return replace(event, severity="info",
                   title=f"{event.title}, while the reward rose from {rose['reward_before']:.4g} to "
                         f"{rose['reward_after']:.4g} and held: shorter answers that score better (read "
                         "a few of them to rule out a length exploit of the reward)",
                   evidence={**event.evidence, **rose})


def reward_degradation(metric: str, steps, values, points: bool = True) -> Event | None:
    """The reward (or episode return) falls back by DEGRADATION_SHARE of what it had gained
    (the highest level it held over the lowest it held before) and stays down to the end.
    A fall SLIGHT of the reward's size is a plateau's wander (``_sized``).

    Judged on levels first (``rldk.detectors.trend.decline``: regimes, the series' own
    noise and wander), so a noisy return that bounces above the line now and then still
    counts; onset: the first step of the fall that leads down. Failing that, unless not
    ``points``, on points (``_points_below``), which a short, very noisy series (30 rows,
    no regime in it) needs. Failing both, a decline the run recovers from
    (``rldk.detectors.trend.recovered_decline``: below the line for MIN_STRETCH of the run,
    from the highest level held before it): a policy broken for a tenth of the run is an
    event even when training later repairs it; ``last`` is then the last step below the
    line and ``recovered_at`` the first step back above it. Failing those, a decline by
    MODERATE_SHARE of the gain that lasts to the end, on levels as the first and then, unless
    not ``points``, on points for a series of MODERATE_POINTS_ROWS rows or fewer (a
    Tianshou test return of 17 evaluations that rose -868 -> -90 and gave back 70% of it
    over its last four: past half the gain at two, a quarter at three, too few rows for a
    level). Failing
    all (a run with no gain to lose: flat, or no significant rise), a reward that settles below every
    level it held before and stays there to the end (``rldk.detectors.trend.settled_below``),
    or falls far under them for a tenth of the run and comes back (its ``recovered``); last,
    a negative return at its best from the start that ends twice as far below zero
    (``decline``'s ``below_zero``: a penalty-shaped return whose noise grows tenfold as it
    falls, so that no level of the fall is below every level held before it).
    """
    v = np.asarray(values, float)
    if len(v) < 2 * MIN_REFERENCE:
        return None
    steps = np.asarray(steps)
    r = regimes(steps, v, "signed")
    d = _sized(decline(steps, v, DEGRADATION_SHARE, r))
    if d is None and points:
        found = _sized(_points_below(metric, steps, v, r))
        if found is not None:
            return found
    d = d if d is not None else _sized(recovered_decline(steps, v, DEGRADATION_SHARE, r))
    if d is None and (d := _sized(decline(steps, v, MODERATE_SHARE, r))) is not None:
        return _declined(metric, steps, d, MODERATE_SHARE)
    if d is None and points and len(v) <= MODERATE_POINTS_ROWS \
            and (found := _sized(_points_below(metric, steps, v, r, MODERATE_SHARE))) is not None:
        return found
    d = d if d is not None else _sized(settled_below(steps, v, r))
    d = d if d is not None else _sized(settled_below(steps, v, r, recovered=True))
    d = d if d is not None else _sized(decline(steps, v, DEGRADATION_SHARE, r, below_zero=True))
    return None if d is None else _declined(metric, steps, d)


def _sized(found):
    """``found`` (a ``Decline``, or a degradation ``Event`` with its ``peak``, ``now`` and
    ``start`` evidence), or None when its fall (peak over now) is SLIGHT of the reward's
    size (the largest of its start, peak and level after the fall, in absolute value): the
    wander of the level it held, whatever it gained before (healthy SB3 returns read from
    late in their runs, 36.1 -> 38.7 -> 37.1, 4181 -> 4472 -> 4275: half of a gain of
    6-7% of the return given back; the smallest labelled real degradation, a validation
    accuracy 0.6475 -> 0.6061, falls 6.4% of its size). A decline with no start in sight
    (a run at its best from the first window, ``settled_below``) is sized by its peak and
    its level after the fall (a healthy SB3 CubeBot return read from a third of its run
    on, 4399 -> 4234 for a tenth of it and back)."""
    if found is None:
        return None
    if isinstance(found, Decline):
        peak, now, start = found.peak, found.now, found.start
    else:
        peak, now, start = found.evidence["peak"], found.evidence["now"], found.evidence.get("start")
    size = max(abs(peak), abs(now), abs(start or 0.0))
    return found if peak - now >= SLIGHT * size else None


def reward_declines(metric: str, steps, values, points: bool = True, partner=None) -> list[Event]:
    """``reward_degradation``'s event, and every other decline the run recovered from
    (``rldk.detectors.trend.recovered_declines``) outside its steps: a run that crashes,
    relearns to a higher level and crashes again for good has two events, the first
    judged against what it had learned before it, not against the later, higher peak.
    A decline that fell again from the level it held after the fall (``_later_stage``) is
    reported in both stages, unless its first was a burst of the series' own outliers
    coming back down to the level it held before (``first_stage_a_burst``): then its
    decline is the second fall alone. A decline of an episode return while the task's
    success rate (``partner``) held is info (``_success_held``)."""
    main = reward_degradation(metric, steps, values, points)
    if main is None:
        return []
    steps, v = np.asarray(steps), np.asarray(values, float)
    later = _later_stage(metric, steps, v, main)
    if later is not None and first_stage_a_burst(steps, v, main.evidence["peak_step"], main.evidence["peak"],
                                                 main.onset, later.onset):
        main, later = later, None      # the first fall was a burst's end: the decline is the second
    elif later is not None:
        later = replace(later, title=f"{later.title}, after the fall from {main.evidence['peak']:.4g} "
                                     f"from step {main.onset}",
                        evidence={**later.evidence, "after_fall_from_step": main.onset})
    others = [_declined(metric, steps, d) for d in recovered_declines(steps, v, DEGRADATION_SHARE) if _sized(d)]
    apart = [e for e in others if e.last < main.onset or e.onset > main.last]
    found = sorted([main, *apart, *([later] if later else [])], key=lambda e: e.onset)
    return [_success_held(e, partner) for e in found]


def _success_held(event: Event, partner) -> Event:
    """``event`` (a decline of the episode return) as info when the run's success rate
    (``partner``: steps, values) held through it: its median over the decline is at least
    SUCCESS_HELD and at most SUCCESS_DROP under its median from the return's peak to the
    onset (its value at the onset when it logged none there). A return is a shaped proxy
    for the task: episodes that end sooner at success collect less dense reward (a
    ManiSkill PushCube run: return 7.5 -> 4.0 while success rose 0.68 -> 1.0 and episodes
    shortened 50 -> 11 steps). A return that fell with the success rate stays a decline."""
    if partner is None:
        return event
    s_steps, s = np.asarray(partner[0]), np.asarray(partner[1], float)
    during = s[(s_steps >= event.onset) & (s_steps <= event.last)]
    peak = event.evidence.get("after_fall_from_step", event.evidence.get("peak_step", event.onset))
    before = s[(s_steps >= min(peak, event.onset)) & (s_steps < event.onset)]
    if len(during) < MIN_REFERENCE or not len(s):
        return event
    then = float(np.median(before)) if len(before) else float(np.interp(event.onset, s_steps, s))
    now = float(np.median(during))
    if now < SUCCESS_HELD or now < then - SUCCESS_DROP:
        return event
    return replace(event, severity="info",
                   title=f"{event.title}, while the success rate held ({then:.2f} -> {now:.2f}): "
                         "episodes that succeed sooner collect less shaped reward, the task did not fail",
                   evidence={**event.evidence, "success_before": then, "success_during": now})


def _later_stage(metric: str, steps, v, main: Event) -> Event | None:
    """A run that declined for good and then, from the level it held after the fall, fell
    again and stayed there (a degradation, then a collapse): the second fall, found as
    ``settled_below`` finds a drop below every level held before, on the points from the
    first fall's low stretch on, when the run held a level there first (a regime of
    PRIOR_POINTS points above the second drop's line: the rest of one slide is no level).
    None when the first decline recovered, or no such second drop is significant against
    the noise and wander of that stretch, or it falls less than SLIGHT of the reward's size
    (the larger of the level it fell from and the level it fell to, in absolute value: a
    wander of that level, as a decline's fall that slight is)."""
    if main.evidence.get("recovered_at") is not None or "below_line_from" not in main.evidence:
        return None
    k = int(np.searchsorted(steps, main.evidence["below_line_from"]))
    d = settled_below(steps[k:], v[k:]) if len(v) - k >= 2 * MIN_REFERENCE else None
    if d is None or not any(p.size >= PRIOR_POINTS and p.level >= d.line
                            for p in d.r.parts if p.end <= d.tail):
        return None
    if d.peak - d.now < SLIGHT * max(abs(d.peak), abs(d.now)):
        return None     # a fall SLIGHT of the reward's size: the wander of the level it held
    event = _declined(metric, steps[k:], d)
    return None if event.onset <= main.onset else event   # (from where the first did: the same fall)


def _declined(metric: str, steps, d: Decline, share: float = DEGRADATION_SHARE) -> Event:
    """The ``reward_degradation`` event of decline ``d``, judged at ``share`` of the gain
    (``last``: its last step below the line when the run recovered, else the run's last step).
    A warning; an error when the run lost everything it had gained and stayed there to the
    end (``_lowest_before``: back within PLATEAU of the gain of the lowest level it held
    before, or under it: a collapse, as the truth's labellers call a fall to the start
    level, not a partial loss)."""
    k, last = prior_exit(d.r, d.onset, d.tail, d.peak, d.end), len(steps) - 1 if d.end is None else d.end - 1
    if int(steps[k]) < d.peak_step or k > d.tail and k >= last:
        # a level held before the peak is where the run climbed from, not fell from; a move
        # past its midpoint for good only at the state's last point showed no state there
        k = d.onset
    back = "" if d.end is None else f", back above {d.line:.4g} from step {int(steps[d.end])}"
    lowest = _lowest_before(d) if d.end is None else None
    # (a level "held before" over fewer points than a rolling window is their median, which
    # may lie above the peak of a decline measured from a median: no gain, nothing lost)
    lost_all = lowest is not None and lowest < d.peak and d.now <= lowest + PLATEAU * (d.peak - lowest)
    below = (f", back to the lowest level it held before ({lowest:.4g}): all it had gained is lost"
             if lost_all else "")
    return Event("reward_degradation", metric, int(steps[k]), int(steps[last]),
                 "error" if lost_all else "warning",
                 f"{metric} fell from {d.peak:.4g} (step {d.peak_step}) to {d.now:.4g} "
                 f"from step {int(steps[k])}{back}{below}",
                 {"peak": d.peak, "peak_step": d.peak_step, "start": d.start, "now": d.now,
                  "line": d.line, "threshold": d.line, "share": share,
                  "z": round(d.z, 2),
                  "below_line_from": int(steps[d.tail]),
                  "recovered_at": None if d.end is None else int(steps[d.end])})


def _lowest_before(d: Decline) -> float | None:
    """The lowest level the series held before decline ``d``'s fall: the level it rose from
    to its peak (``d.start``), or, for a decline with no gain in sight (a run at its best from
    its first window, ``settled_below``), the lowest centred rolling median of the points
    before the onset (None when fewer than MIN_REFERENCE)."""
    if d.start is not None:
        return d.start
    if d.onset < MIN_REFERENCE:
        return None
    return float(np.min(level_of(d.r.values[:d.onset])))


def _points_below(metric: str, steps, v, r: Regimes, share: float = DEGRADATION_SHARE) -> Event | None:
    """The points stay below the line (``share`` of the gain lost) from some step after the peak
    to the end; the onset is where the fall that led there started (``fall_start`` over
    the regimes ``r``), the crossing is ``below_from`` in the evidence. Levels are centred rolling medians (``level_of``): a lone high value of a
    noisy reward is not a level the run reached. The gain needs a noise floor: a rise of
    less than 3 standard errors of a level (a median of LEVEL_WINDOW points: 1.2533 sigma
    / sqrt(LEVEL_WINDOW), sigma the series' own step-to-step noise) is no gain to lose.
    The gain and the drop must then pass SIGNIFICANCE standard errors of two levels
    (``level_se``: noise and wander), as in the level test: without it, flat AR(1) noise
    of rho 0.9 (a 100-episode rolling mean that wanders) "degraded" in 106 of 200 seeded
    series of 300 points; with it, 9.

    This is the rule the level test (``decline``) was added to: on the real logs it finds
    declines of short, noisy returns (30 rows, no regime in them) that the level test
    cannot cut into levels. A series of ONE_LEVEL_ROWS or more that the change points read
    as one level from its first row to its last has none to lose."""
    if len(r.parts) == 1 and len(v) >= ONE_LEVEL_ROWS:
        return None                 # one level held over the whole run: no level to lose
    level = level_of(v)
    peak_at = int(np.argmax(level))
    peak, start = float(level[peak_at]), float(level[0])
    gain = max(peak - start, DEGRADATION_SHARE * abs(peak) if peak_at < MIN_REFERENCE else 0.0)
    if gain < 3 * 1.2533 * r.sigma / np.sqrt(LEVEL_WINDOW):
        return None
    line = peak - share * gain
    # sustained: at least a stretch of the run (a warning, not a stop: no need to be early)
    below = v < line
    final_start = len(v) - (int(np.argmin(below[::-1])) if not below.all() else len(v))
    found = state_run(below, peak_at + 1, final=True,
                      min_final=final_need(below, int(np.argmin(below)), final_start, MIN_REFERENCE))
    if found is None:
        return None
    # the gain and the drop against the series' noise and wander (``level_se``), as the
    # level test judges them: a wandering flat return ends below a line half the time
    se, tail = level_se(r), v[found[0]:]
    if (gain < SIGNIFICANCE * se(LEVEL_WINDOW, LEVEL_WINDOW, peak_at)
            or peak - float(np.mean(tail)) < SIGNIFICANCE * se(LEVEL_WINDOW, len(tail),
                                                               found[0] + len(tail) // 2 - peak_at)):
        return None
    # from the level held just before the move, as the level test places it (``prior_exit``),
    # into the state past the midpoint of the whole move for good: the line may lie above
    # the level the run held before the fall, when the peak was a burst of a row or two
    now = float(np.median(v[found[0]:]))
    past = state_run(v < (peak + now) / 2, found[0], final=True)
    k = prior_exit(r, fall_start(r, peak_at, found[0]), found[0] if past is None else past[0], peak)
    return Event("reward_degradation", metric, int(steps[k]), int(steps[-1]), "warning",
                 f"{metric} fell from {peak:.4g} (step {int(steps[peak_at])}) to {now:.4g} "
                 f"from step {int(steps[k])}",
                 {"peak": peak, "peak_step": int(steps[peak_at]), "start": start, "now": now,
                  "line": line, "threshold": line, "share": share,
                  "below_from": int(steps[found[0]])})


def reward_collapse(metric: str, steps, values) -> Event | None:
    """The reward sits at one value, its floor, from some step on: no signal left.

    At the floor from: of the steps at the floor from which at least FLOOR_SHARE of the
    values to the end are at the floor, over at least a stretch of the run, the one that
    best splits the run into two at-the-floor rates (``_floor_onset``: a noisy reward that
    touched its floor now and then went there to stay later). Onset: where the slide to
    the floor left the level before, or the first value at the floor joined to it by
    values past the midpoint (``_first_at_floor``), whichever is earlier (a reward at its
    floor for the whole run is constant: reported from its first step). "At the floor" is
    exact up to 1e-9 relative: collapsed rewards sit on a value (0, a format penalty), not
    near one. The floor's share from the onset must pass the share before it significantly
    (``_floor_rate_rose``). A reward whose level is the floor from the first step and never
    moves off it is flat (``_flat_at_floor``: no signal, a warning from the first step).
    """
    v = np.asarray(values, float)
    steps = np.asarray(steps)
    n = len(v)
    if n < 2 * MIN_REFERENCE:
        return None
    floor = float(np.min(v))
    at = np.abs(v - floor) <= 1e-9 * max(1.0, abs(floor))
    share = np.cumsum(at[::-1])[::-1] / np.arange(n, 0, -1)
    need = max(MIN_REFERENCE, int(np.ceil(0.1 * n)))
    # from a value at the floor whose next value is there too (a reward that touches its
    # lowest value once is not yet at its floor)
    ok = at & np.append(at[1:], True) & (share >= FLOOR_SHARE) & (np.arange(n) <= n - need)
    if not ok.any():
        return _flat_at_floor(metric, steps, v, at)
    k = _floor_onset(at, np.flatnonzero(ok))
    if (k == 0 and np.ptp(v) > 0) or (k > 0 and not _floor_rate_rose(at, k)):
        # at the floor from the start, some values above, or as often before the split as
        # after it: no fall; perhaps never off it
        return _flat_at_floor(metric, steps, v, at)
    before = float(np.median(v[:k])) if k else None
    # the slide that led to the floor starts where the reward left its level
    onset = fall_start(regimes(steps, v, "signed"), int(np.argmax(level_of(v)[:k])), k, noisy=False) if k else 0
    if k:
        onset = min(onset, _first_at_floor(v, at, k, (floor + before) / 2))
    title = (f"{metric} collapsed to {floor:.4g} from step {int(steps[onset])}"
             + (f" (was {before:.4g}; at the floor from step {int(steps[k])})" if before is not None
                else ": constant for the whole run"))
    return Event("reward_collapse", metric, int(steps[onset]), int(steps[-1]), "error", title,
                 {"floor": floor, "before": before, "share_at_floor": float(share[k]),
                  "at_floor_from": int(steps[k])})


def _floor_rate_rose(at: np.ndarray, k: int) -> bool:
    """Whether the share of the values at the floor from point ``k`` on is SIGNIFICANCE
    standard errors (two proportions, pooled) above the share before it: a sparse reward
    at its floor on 85% of the steps throughout has a stretch at 90% somewhere by chance,
    which is no step it went to its floor."""
    before, after = float(np.mean(at[:k])), float(np.mean(at[k:]))
    pooled = float(np.mean(at))
    se = np.sqrt(pooled * (1 - pooled) * (1 / k + 1 / (len(at) - k)))
    return se == 0 or after - before >= SIGNIFICANCE * se


def _flat_at_floor(metric: str, steps, v: np.ndarray, at: np.ndarray) -> Event | None:
    """A reward at its floor from the first step that never rose from it: its level (the
    centred rolling median, ``level_of``) is the floor on FLOOR_SHARE of the steps, and the
    means of its first and last fifths are within SIGNIFICANCE standard errors of each
    other (from the two fifths' own spread: the values off the floor are the signal here,
    which the series' robust noise scale leaves out). A GRPO run whose 40 rollouts score
    the format penalty on three steps in four, and one rollout in 40 scores on the others,
    has no signal to learn from; a run that starts at its floor and learns rises, and a
    reward that hits its floor as often as not has a level off it. Asked only where
    ``reward_collapse`` found no step at which the reward went to its floor to stay (one
    that collapses early in the run is at its floor on most steps too, and falls). A
    reward at one value on every step is "constant for the whole run" there."""
    if np.ptp(v) == 0 or np.mean(level_of(v) == v.min()) < FLOOR_SHARE:
        return None
    fifth = max(MIN_REFERENCE, len(v) // 5)
    first, last = v[:fifth], v[-fifth:]
    rise = float(np.mean(last) - np.mean(first))
    se = float(np.sqrt((np.var(first, ddof=1) + np.var(last, ddof=1)) / fifth))
    if abs(rise) >= SIGNIFICANCE * se:
        return None                    # it learned its way up from the floor, or fell to it
    share = float(np.mean(at))
    return Event("reward_flat", metric, int(steps[0]), int(steps[-1]), "warning",
                 f"{metric} at its floor {float(v.min()):.4g} from the first step, on {share:.0%} of "
                 f"the steps, and never rose: no learning signal",
                 {"floor": float(v.min()), "share_at_floor": share, "rise": rise})


def _first_at_floor(v: np.ndarray, at: np.ndarray, k: int, mid: float) -> int:
    """The earliest value at the floor joined to the floor from ``k`` by values past
    ``mid`` (the midpoint between the floor and the level before): a reward of 0, 0.125,
    0, 0... went to its floor at the first 0 (the onset protocol's "past the midpoint, and
    the next row too"); a noisy value near the floor before it is not the floor."""
    j, i = k, k - 1
    while i >= 0 and v[i] < mid:
        j = i if at[i] else j
        i -= 1
    return j


def _floor_onset(at: np.ndarray, candidates: np.ndarray) -> int:
    """The candidate index that best splits ``at`` (whether each value is at the floor)
    into a stretch before and a stretch from it, each at its own rate (the largest
    two-segment Bernoulli likelihood): the step where the reward went to its floor to
    stay, not the first of the zeros a noisy reward always had (a group of 8 rollouts of
    one problem scores 0 on a quarter of the steps of a healthy run)."""
    n = len(at)
    ones = np.concatenate(([0], np.cumsum(at)))

    def ll(count, size):              # count log p + (size - count) log(1 - p), 0 log 0 = 0
        p = count / np.maximum(size, 1)
        return count * np.log(np.where(p > 0, p, 1.0)) + (size - count) * np.log(np.where(p < 1, 1 - p, 1.0))
    k = candidates
    score = ll(ones[k], k) + ll(ones[n] - ones[k], n - k)
    return int(k[np.argmax(score)])


def kl_blowup(metric: str, steps, values) -> Event | None:
    """KL to the reference enters a regime (two points or more: one is a spike, which the
    spikes analyzer reports) above KL_HIGH nats, KL_JUMP x the level before; or climbs
    there over several regimes (each step of the climb under KL_JUMP): it rises to
    KL_JUMP x the lowest level it held, above KL_HIGH, and stays (``_rise``); or it sits
    at KL_HIGH or more, KL_JUMP x a level it held before (``_over_held``: a ramp after a
    drift from zero), which is also where a climb starts when the series jumped from that
    level after it (``_jumped_later``)."""
    v = np.maximum(np.asarray(values, float), 0)
    r = regimes(steps, v, "logscale")
    for j in range(1, len(r.parts)):
        before, p = r.parts[j - 1], r.parts[j]
        if p.size >= 2 and p.raw >= KL_HIGH and p.raw >= KL_JUMP * max(before.raw, 1e-12):
            k = onset_in(r, (j, j + 1), r.values >= KL_HIGH)
            return _event("kl_blowup", metric, r, k, p.last, "error",
                          f"{metric} jumped from {before.raw:.3g} to {p.raw:.3g} at step {int(r.steps[k])}",
                          {"before": before.raw, "after": p.raw, "threshold": KL_HIGH})
    rise = _rise("kl_blowup", metric, steps, v, KL_JUMP, "climbed")
    held = _over_held(metric, steps, v, r)
    if rise is not None and rise.evidence["now"] >= KL_HIGH and not _jumped_later(held, rise, r):
        return replace(rise, evidence={**rise.evidence, "threshold": KL_HIGH})
    return held


def _jumped_later(held: Event | None, rise: Event, r: Regimes) -> bool:
    """Whether a KL blow-up found as a jump from a level it held (``held``, from
    ``_over_held``) starts after the climb ``_rise`` read (``rise``) with one logged step
    that covers JUMP_SHARE of the move on the log scale: the climb before it was the KL's
    drift under a nat (a GRPO run's KL to its reference grows 0.017 -> 0.2 over 90 steps
    as it learns), and the blow-up is the jump from there."""
    if held is None or held.onset <= rise.onset:
        return False
    k = int(np.searchsorted(r.steps, held.onset))
    before, after = held.evidence["before"], held.evidence["after"]
    return k > 0 and r.values[k - 1] > 0 and before > 0 and \
        np.log(r.values[k] / r.values[k - 1]) > JUMP_SHARE * np.log(after / before)


def _over_held(metric: str, steps, v: np.ndarray, r) -> Event | None:
    """A KL that sits at KL_HIGH or more (a state that stays, ``state_run``), KL_JUMP x a
    level it held before for PRIOR_POINTS points or more: a ramp into the state that PELT
    cuts into short pieces has no single jump of KL_JUMP, and a KL that grew from exact
    zero (the policy is the reference at step 0) over decades has its lowest level too far
    back for ``_rise``'s climb to end in the state. Onset: the start of the climb from the
    last such level (``fall_start`` upwards)."""
    found = state_run(v >= KL_HIGH)
    if found is None:
        return None
    k, end = found
    level = float(np.median(v[k:end]))
    held = [p for p in r.parts if p.end <= k and p.size >= PRIOR_POINTS and KL_JUMP * p.raw <= level]
    if not held:
        return None
    prior = held[-1]
    onset = fall_start(r, prior.end - 1, k, up=True, jumps=True, until=end)
    return _event("kl_blowup", metric, r, onset, r.steps[end - 1], "error",
                  f"{metric} rose to {level:.3g} from {prior.raw:.3g} at step {int(r.steps[onset])}",
                  {"before": prior.raw, "after": level, "threshold": KL_HIGH})


def grad_norm_explosion(metric: str, steps, values, partner=None) -> Event | None:
    """Gradient norm rises to a regime GRAD_JUMP x every level the run held before it (a
    regime of at least MIN_REFERENCE points) and stays above sqrt(GRAD_JUMP) x that level
    (``_stays_above``: a leap of a row or three that comes back is a spike, and no level
    held either). A run that starts high and settles (warm-up) is not an explosion, nor
    a return to a level the run already had, nor a rise from exact zeros (GRPO's
    near-zero norms at steps without reward variance are removed before:
    ``rldk.analyzers.health.onset``). Nor, as a warning, is a rise in the run's first
    MIN_STRETCH, from the levels of its untrained start (no reference for what follows),
    after which the norm settles sqrt(GRAD_JUMP) x under the risen level (a later regime
    of MIN_STRETCH of the run there), within GRAD_JUMP^2 of the start or with returns
    that grew with it: that is a start-up transient (info), and a later
    rise is judged against the levels held after it, not the start's. A Q-learner's norm
    sits at 0.2-1 while epsilon decays and its returns are still low, at 15 as the Q values
    grow with the first rewards, at 3 once they converge (PyMARL IQL on SMAC 3m). One that
    stays up, or starts later, is a warning; info when the episode return (``partner``) grew
    in size with it at least as many times as the norm's rise over GRAD_JUMP
    (``_with_the_returns``). A rise in stages, each under GRAD_JUMP, is judged against
    the highest level held for MIN_STRETCH of the run, when the norm stays above it (a
    real verl run: 0.07 for 92 steps, a climb of five rows to 0.5, then 1-8 for the rest
    of the run); a norm that grows in stages each held that long (with learning) is not."""
    values = np.asarray(values, float)
    if np.max(values) <= 0:
        return None
    r = regimes(steps, np.maximum(values, 0), "logscale")
    top = None                                    # the first of the highest held parts so far
    spikes = set()                                # leaps the norm came back from: no level held
    transient = None                              # a start-up transient: info, unless more follows
    settle = stretch_need(len(r.values))
    base = None                                   # the highest part held for MIN_STRETCH of the run
    for j in range(1, len(r.parts)):
        q = r.parts[j - 1]
        if q.size >= MIN_REFERENCE and j - 1 not in spikes and (top is None or q.level > top.level):
            top = q
        if q.size >= settle and j - 1 not in spikes and (base is None or q.level > base.level):
            base = q
        if top is None:
            continue                              # a point or two is no level the run held
        p = r.parts[j]
        staged = (p.size >= 2 and base is not None and base.raw > 0 and p.level - top.level < np.log(GRAD_JUMP)
                  and p.level - base.level >= np.log(GRAD_JUMP) and _stays_above(r.values, p, base.raw))
        if staged:
            # a rise in stages: the stage before is a few rows of the climb, no level the
            # run held; the rise is judged against the last level held for MIN_STRETCH
            top = base
        if p.size >= 2 and top.raw > 0 and p.level - top.level >= np.log(GRAD_JUMP):
            if not staged and not _stays_above(r.values, p, top.raw):   # (a staged rise was checked)
                spikes.add(j)
                continue
            k = j                                 # the rows just before, already up there
            while r.parts[k - 1].size < MIN_REFERENCE and r.parts[k - 1].level - top.level >= np.log(GRAD_JUMP):
                k -= 1
            # and the regimes since the level held that the norm never came back from: the
            # rise began where it left that level (sqrt(GRAD_JUMP) over it, the line
            # ``_stays_above`` keeps), though a regime between was too short-lived or not
            # high enough to be the explosion (a verl run: 0.07 for 92 steps, 0.15-0.5 over
            # five, 10 at one, 0.2-2 for a dozen, 0.4 for seventeen, 1.5 from step 125 on)
            while r.parts[k - 1].start > top.start and r.parts[k - 1].level - top.level >= 0.5 * np.log(GRAD_JUMP):
                k -= 1
            event = _event("grad_norm_explosion", metric, r, r.parts[k].start, p.last, "warning",
                           f"{metric} rose to {p.raw:.3g} at step {r.parts[k].first}, {p.raw / top.raw:.0f}x "
                           f"anything before (at most {top.raw:.3g})",
                           {"before_max": top.raw, "level": p.raw, "factor": GRAD_JUMP})
            early = p.start < MIN_STRETCH * len(r.values)
            later = [q for q in r.parts[j + 1:]
                     if early and q.size >= settle and q.raw * np.sqrt(GRAD_JUMP) <= p.raw]
            prev = next(q for q in reversed(r.parts[:j]) if q.size >= MIN_REFERENCE)
            if later and later[0].raw >= GRAD_JUMP ** 2 * top.raw:
                # settled, but two orders of magnitude over the start still: the settled
                # level is the explosion, when the returns were logged and did not grow with
                # it (a Q-learner's settles within one, PyMARL IQL on SMAC 3m: 0.2 -> 15 -> 3)
                growth = _return_growth(partner, (prev.first, prev.last), event.onset, int(r.steps[-1]))
                if growth is not None and later[0].raw / top.raw > GRAD_JUMP * max(growth[2], 1.0):
                    return event
            if later:
                # in the run's first tenth, from its untrained start's levels, and down again:
                # neither it nor the start is a level a later rise is judged against
                spikes.add(j)
                top = None
                transient = transient or replace(
                    event, severity="info",
                    title=f"{event.title}, then settled at {later[0].raw:.3g} from step {later[0].first}: "
                          "a start-up transient (the levels before it are the untrained start's), not "
                          "an explosion",
                    evidence={**event.evidence, "settled": later[0].raw, "settled_step": later[0].first})
                continue
            event = _with_the_returns(event, p.raw / top.raw, (prev.first, prev.last), int(r.steps[-1]), partner)
            if event.severity != "info":
                return event
            # grown with the returns: a level the norm now holds, against which a later
            # rise is judged (the next round takes it as the highest held)
            transient = transient or event
    return transient


def _with_the_returns(event: Event, factor: float, held: tuple, last: int, partner) -> Event:
    """``event`` (a grad-norm explosion by ``factor`` over the highest level held before)
    as info when the episode return (``partner``: steps, values) grew in size (median
    absolute value) from the steps ``held`` (the level the norm held just before the rise)
    to the onset..``last`` by at least ``factor`` / GRAD_JUMP: the gradient of a squared
    TD or value error grows with the error, and the error with the returns it fits (a
    PyMARL Q-learner on SMAC 3m, logged before clipping: 0.2-0.4 while the test return is
    0, 10-90 once it wins every battle at 20, never back). A norm that grows more than
    that, or while the returns stand still (a 50x jump injected into a plateau), stays a
    warning."""
    found = _return_growth(partner, held, event.onset, last)
    if found is None:
        return event
    size_then, size_now, growth = found
    if factor > GRAD_JUMP * max(growth, 1.0):
        return event
    return replace(event, severity="info",
                   title=f"{event.title}, as the episode return's size grew from {size_then:.3g} to "
                         f"{size_now:.3g}: the gradient of a value or TD error grows with the returns it fits",
                   evidence={**event.evidence, "return_size_then": size_then, "return_size_now": size_now})


def _return_growth(partner, held: tuple, onset: int, last: int) -> tuple[float, float, float] | None:
    """``(size_then, size_now, growth)``: the median absolute episode return (``partner``:
    steps, values) over the steps ``held`` and over ``onset``..``last``, and their ratio
    (1.0 when the return grew in size by falling: ``_grew_by_falling``); None when no
    return was logged in either stretch."""
    if partner is None:
        return None
    r_steps, r = np.asarray(partner[0]), np.asarray(partner[1], float)
    then = r[(r_steps >= held[0]) & (r_steps <= held[1])]
    now = r[(r_steps >= onset) & (r_steps <= last)]
    if len(then) == 0 or len(now) == 0:
        return None
    size_then, size_now = float(np.median(np.abs(then))), float(np.median(np.abs(now)))
    if _grew_by_falling(then, now):
        return size_then, size_now, 1.0
    return size_then, size_now, size_now / max(size_then, 1e-12)


def _grew_by_falling(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether returns grew in size (median absolute value) from ``before`` to ``after`` by
    falling (their median went down): a return blown up to -1e6 from -600 (a simulation
    gone unstable, a real rl_games AlienGo run) is the run failing, and the errors of a
    critic fitting it, or their gradients, grow because of that, not because the run
    learned larger returns. Such growth explains no rise of a loss or a grad norm."""
    return (float(np.median(after)) < float(np.median(before))
            and float(np.median(np.abs(after))) > float(np.median(np.abs(before))))


def _stays_above(values: np.ndarray, p, held: float) -> bool:
    """Whether the series' level (``level_of``), from regime ``p`` on, stays above
    sqrt(GRAD_JUMP) x the ``held`` level (to the end, or for MIN_STRETCH of the run:
    ``state_run``) in a state that starts inside ``p``. Rows GRAD_JUMP x under the held
    level are left out: a GRPO norm is near zero at steps without reward variance,
    whatever its level at the others. A norm that leaps for a row or three and is back
    at its level on the next rows is a spike (the spikes analyzer reports it), not a
    regime the run entered."""
    rows = np.flatnonzero(values >= held / GRAD_JUMP)
    start, end = np.searchsorted(rows, [p.start, p.end])
    if start == end:
        return False
    above = level_of(values[rows]) > held * np.sqrt(GRAD_JUMP)
    found = state_run(above, start, min_final=final_need(above, 0, start, MIN_REFERENCE))
    return found is not None and found[0] < end


def approx_kl_blowup(metric: str, steps, values, target_kl: float | None = None) -> Event | None:
    """PPO's per-update approx KL enters a state at or above APPROX_KL_HIGH nats (from the
    first step counts) and stays (to the end, or for a stretch of the run); its onset is
    where the climb into it passed the midpoint (log scale) from the lowest level held
    before (``midpoint_onset``). A run that
    stops its updates early at ``target_kl`` (its config) holds its KL near that target
    by design: the line is then at least EARLY_STOP_MARGIN x the target. A warning; an
    error when the state's median is APPROX_KL_BROKEN x the line or more (a nat per update
    at the default line)."""
    v = np.asarray(values, float)
    line = APPROX_KL_HIGH if not target_kl else max(APPROX_KL_HIGH, EARLY_STOP_MARGIN * target_kl)
    found = state_run(v >= line)
    if found is None:
        return _burst(metric, steps, v)
    crossed, end = found
    level = float(np.median(v[crossed:end]))
    # the state starts where the climb into it passed its midpoint, not where it crossed the line
    k, low = midpoint_onset(v, crossed, end)
    severity = "error" if level >= APPROX_KL_BROKEN * line else "warning"
    how = (f" (halfway up from {low:.3g} on the log scale; over {line:g} from step {int(steps[crossed])})"
           if k != crossed else "")
    return Event("kl_blowup", metric, int(steps[k]), int(steps[end - 1]), severity,
                 f"{metric} at {level:.3g} nats per update from step {int(steps[k])}{how}"
                 + (f" (the run's target_kl is {target_kl:.3g})" if target_kl else ""),
                 {"level": level, "threshold": line, "target_kl": target_kl, "low": low,
                  "over_line_from": int(steps[crossed])})


def _burst(metric: str, steps, v: np.ndarray) -> Event | None:
    """The first run of two rows or more of PPO's approx KL at or above KL_BURST nats per
    update and BURST_OVER x the run's median (a warning: the run may recover), or None."""
    finite = v[np.isfinite(v)]
    if len(finite) < 2 * MIN_REFERENCE:
        return None
    line = max(KL_BURST, BURST_OVER * float(np.median(finite)))
    high = np.isfinite(v) & (v >= line)
    starts = np.flatnonzero(high[:-1] & high[1:] & ~np.r_[False, high[:-2]])
    if not len(starts):
        return None
    k = int(starts[0])
    end = k + int(np.argmin(np.r_[high[k:], False]))
    # the burst's climb starts where it passed the midpoint (log scale) from the level before
    onset, low = midpoint_onset(np.where(np.isfinite(v), v, 0.0), k, end)
    return Event("kl_blowup", metric, int(steps[onset]), int(steps[end - 1]), "warning",
                 f"{metric} burst to {np.max(v[k:end]):.3g} nats per update at step {int(steps[k])} "
                 f"({end - k} updates at {line:.3g} or more)"
                 + (f", climbing from step {int(steps[onset])}" if onset != k else ""),
                 {"level": float(np.max(v[k:end])), "threshold": line, "rows": end - k, "burst": True,
                  "low": low, "over_line_from": int(steps[k])})


def approx_kl_bursts(metric: str, steps, values, target_kl: float | None = None) -> list[Event]:
    """Every run of two rows or more of PPO's approx KL at or above a nat per update (the
    error line of a state, APPROX_KL_BROKEN x APPROX_KL_HIGH) and BURST_OVER x the level
    the KL held just before it (the median of the PRIOR_POINTS rows before), outside the
    stretch of ``approx_kl_blowup``'s event: warnings (a run can break, relearn and break
    again). ``_burst``'s line is run-wide (KL_BURST nats, BURST_OVER x the run's median); a
    Procgen PPO whose KL sat at 0.015 for 80 updates, then 1.95 and 6.5 nats, broke there
    (its entropy fell 1.66 -> 0.29 and its return collapsed in the same two updates), under
    that line. A healthy CleanRL PPO's 1.57 nats rose 12x from a level of 0.13 it held, and
    a run's first PRIOR_POINTS updates hold no level to burst from. Onset: where the climb
    into the burst passed the midpoint (log scale) between that level and the burst's
    median."""
    return _local_bursts(metric, steps, values, approx_kl_blowup(metric, steps, values, target_kl))


def approx_kl_events(metric: str, steps, values, target_kl: float | None = None) -> list[Event]:
    """``approx_kl_blowup``'s event, then ``approx_kl_bursts``' (the rule table's entry:
    the first is found once)."""
    first = approx_kl_blowup(metric, steps, values, target_kl)
    return [e for e in (first,) if e is not None] + _local_bursts(metric, steps, values, first)


def _local_bursts(metric: str, steps, values, first: Event | None) -> list[Event]:
    """``approx_kl_bursts`` outside the stretch of ``first``."""
    v = np.asarray(values, float)
    w, steps = np.where(np.isfinite(v), v, 0.0), np.asarray(steps)
    n, out = len(w), []
    if n < PRIOR_POINTS + 2:
        return out
    before = np.full(n, np.inf)             # the level held over the PRIOR_POINTS rows before each
    before[PRIOR_POINTS:] = np.median(sliding_window_view(w[:-1], PRIOR_POINTS), axis=1)
    over = np.maximum(APPROX_KL_BROKEN * APPROX_KL_HIGH, BURST_OVER * before)
    pair = np.r_[(w[:-1] >= over[:-1]) & (w[1:] >= over[:-1]), False]
    if first is not None:
        pair &= (steps < first.onset) | (steps > first.last)
    k = 0
    while (hits := np.flatnonzero(pair[k:])).size:
        k += int(hits[0])
        line, level = float(over[k]), float(before[k])
        end = k + int(np.argmin(np.r_[w[k:] >= line, False]))
        onset, mid = k, np.sqrt(level * float(np.median(w[k:end])))
        while onset > 0 and w[onset - 1] >= mid:
            onset -= 1
        out.append(Event("kl_blowup", metric, int(steps[onset]), int(steps[end - 1]), "warning",
                         f"{metric} burst to {np.max(w[k:end]):.3g} nats per update at step {int(steps[k])} "
                         f"({end - k} updates at {line:.3g} or more, {BURST_OVER:g}x the {level:.3g} it held "
                         "before)" + (f", climbing from step {int(steps[onset])}" if onset != k else ""),
                         {"level": float(np.max(w[k:end])), "threshold": line, "rows": end - k, "burst": True,
                          "low": level, "over_line_from": int(steps[k])}))
        k = end
    return out


def loss_divergence(metric: str, steps, values, partner=None) -> Event | None:
    """A positive loss rises to LOSS_JUMP x the lowest level it held (never below its
    level up to there: a critic that fits trivial returns to ~0 and then to a small
    number has not diverged) and stays. Signed losses (policy gradients) have no such
    level, nor has a loss that held exact zeros (GRPO's before its KL term grows): their
    size must jump over every level of it held before (``_size_jump``).

    With the run's episode return (``partner``), a positive loss is an error of the
    returns it fits (a Q-learner's TD loss, logged as ``loss`` by SB3's DQN and PyMARL):
    a squared error scales with the square of their size. A climb that the growth of the
    return's size explains (VALUE_JUMP x its square, as ``_unexplained_climb`` allows a
    value loss) is a critic fitting larger returns, not a divergence, unless the loss also
    jumps past what the returns explain at that point (``_unexplained_jump``: the growth
    of a return that started at 0 explains any climb, not a jump at its plateau)."""
    values = np.asarray(values, float)
    if np.min(values) < 0:
        return _size_jump(metric, steps, values)
    if np.max(values) <= 0:
        return None
    event = _rise("loss_divergence", metric, steps, values, LOSS_JUMP, "diverged", first_row=True)
    if event is None:
        return _size_jump(metric, steps, values)      # e.g. from a level of exact zeros
    if partner is not None:
        if _negligible(event, partner):
            return None
        growth = _size_growth(partner, event.evidence["held_step"] + 1, int(np.asarray(steps)[-1]))
        if growth is not None and event.evidence["now"] / event.evidence["held"] <= _explained(growth):
            return _unexplained_jump(metric, steps, values, partner) or _over_the_rise(
                event, steps, values, partner)
    return replace(event, severity="error")


def _size_jump(metric: str, steps, values) -> Event | None:
    """A loss whose size jumps to LOSS_JUMP x the highest level of its size held before
    (regimes of MIN_REFERENCE points, and the centred rolling medians before the jump)
    and stays an order of magnitude (VALUE_JUMP) above it: the size of a loss that
    crosses zero, or sat at exact zeros, has no low level to rise from, but the highest
    level it held bounds what the run's updates were."""
    steps, size = np.asarray(steps), np.abs(np.asarray(values, float))
    level = level_of(size)
    if len(size) < LEVEL_WINDOW or not level[-1] > VALUE_JUMP * level[0]:
        return None     # it must end above every level held before the jump, level[0] among them
    r = regimes(steps, size, "logscale")
    highest = np.maximum.accumulate(level)          # the highest rolling level up to each point
    for _, top, p in held_before(r):
        if p.start <= LEVEL_WINDOW // 2:
            continue
        held = max(top.raw, float(highest[p.start - LEVEL_WINDOW // 2 - 1]))
        if held <= 0 or p.raw < LOSS_JUMP * held:
            continue
        stays = state_run(level > VALUE_JUMP * held, p.start, final=True)
        if stays is None or stays[0] >= p.end:
            continue
        return _event("loss_divergence", metric, r, p.start, steps[-1], "error",
                      f"{metric} jumped to a size of {p.raw:.4g} at step {p.first}, "
                      f"{p.raw / held:.0f}x the highest level it held before ({held:.4g})",
                      {"held": held, "now": p.raw, "factor": LOSS_JUMP})
    return None


def value_loss_divergence(metric: str, steps, values, partner=None) -> Event | None:
    """The critic's loss rises to VALUE_JUMP x the lowest level it held and stays while the
    episode return (``partner``: its steps and values) degrades (``reward_degradation``
    fires on it) over the same stretch. A value loss that grows with the returns it fits
    is healthy, however far it grows, unless it jumps LOSS_JUMP x the level just before by
    far more than the return's size grew (``_unexplained_jump``), or climbs there
    (``_unexplained_climb``); with no return logged, the loss must rise LOSS_JUMP x
    (``loss_divergence``)."""
    if partner is None:
        return loss_divergence(metric, steps, values)
    values = np.asarray(values, float)
    if np.min(values) < 0 or np.max(values) <= 0:
        return None
    rise = _rise("loss_divergence", metric, steps, values, VALUE_JUMP, "blew up", since_trough=True)
    if rise is not None and _negligible(rise, partner):
        return None
    fall = reward_degradation("episode return", *partner) if rise is not None else None
    if fall is None or not _overlap(fall, rise):
        return _unexplained_jump(metric, steps, values, partner) or _unexplained_climb(
            metric, steps, values, partner) or (None if rise is None else _over_the_rise(
            rise, steps, values, partner))
    peak, now = fall.evidence["peak"], fall.evidence["now"]
    return replace(rise, severity="error",
                   title=f"{rise.title} while the episode return fell from {peak:.4g} "
                         f"to {now:.4g} (from step {fall.onset})",
                   evidence={**rise.evidence, "return_fall_step": fall.onset,
                             "return_peak": peak, "return_now": now})


def _unexplained_jump(metric: str, steps, values, partner) -> Event | None:
    """A value loss that jumps to LOSS_JUMP x the level it held just before (a regime of
    MIN_REFERENCE points), to an order of magnitude (VALUE_JUMP) above every level it held
    before (its first row among them when it left it at once: ``_first_row_held``), stays
    there (on its rolling level: a critic's loss is heavy-tailed), and grew
    by far more than the returns it fits. A squared error scales with the square of the
    returns: the loss may grow VALUE_JUMP x (the noise of a critic's fit) times the square
    of the growth of the return's size; beyond that the critic, not the task, changed."""
    steps, values = np.asarray(steps), np.asarray(values, float)
    r, level = regimes(steps, values, "logscale"), level_of(values)
    first = _first_row_held(values, LOSS_JUMP)
    for prev, top, p in held_before(r):
        highest = max(top.raw, first)
        if p.raw < LOSS_JUMP * prev.raw or p.raw < VALUE_JUMP * highest:
            continue
        stays = state_run(level > VALUE_JUMP * highest, p.start, final=True)
        if stays is None or stays[0] >= p.end:
            continue
        growth = _size_growth(partner, p.first, int(steps[-1]))
        jump = p.raw / prev.raw
        if growth is None or jump <= _explained(growth):
            continue
        # where the series left the level held: the jump's own row when its one logged
        # step covers JUMP_SHARE of the move from that level (log scale), else the first
        # row of a climb that the change points cut into pieces too short to be levels
        k = p.start
        if r.y[k] - r.y[k - 1] < JUMP_SHARE * (p.level - prev.level):
            k = min(k, fall_start(r, max(prev.start, prev.end - MIN_REFERENCE), k, up=True))
        event = _event("loss_divergence", metric, r, k, steps[-1], "error",
                       f"{metric} jumped from {prev.raw:.4g} to {p.raw:.4g} at step {int(steps[k])} "
                       f"({jump:.0f}x) while the episode return's size changed {growth:.2g}x",
                       {"held": prev.raw, "held_step": prev.first, "highest_before": highest,
                        "now": p.raw, "factor": LOSS_JUMP, "return_growth": growth,
                        "allowed": _explained(growth)})
        return None if _negligible(event, partner) else event
    return None


def _unexplained_climb(metric: str, steps, values, partner) -> Event | None:
    """A value loss that climbs (in any number of steps) to LOSS_JUMP x the lowest level
    it held and stays, by far more than the returns it fits grew: VALUE_JUMP x the square
    of the growth of the return's size, as ``_unexplained_jump`` allows one jump (a DDPG
    critic whose TD error climbs 22 -> 1.3e6 while the return stays at 1-5: its Q
    estimates diverged). The growth is that of the returns over the loss's state (from
    where it crossed its line), which its level there fits: over the whole climb, a return
    that crossed zero on its way from -1 to 34 (an ML-Agents Walker) would have "grown"
    1.6x."""
    rise = _rise("loss_divergence", metric, steps, values, LOSS_JUMP, "climbed", since_trough=True)
    if rise is None or _negligible(rise, partner):
        return None
    growth = _size_growth(partner, rise.evidence["held_step"] + 1, int(np.asarray(steps)[-1]),
                          since=rise.evidence["above_from"])
    factor = rise.evidence["now"] / rise.evidence["held"]
    if growth is None:
        return None
    if factor <= _explained(growth):
        return _over_the_rise(rise, steps, values, partner)
    return replace(rise, severity="error",
                   title=f"{rise.title} ({factor:.0f}x) while the episode return's size changed {growth:.2g}x",
                   evidence={**rise.evidence, "return_growth": growth,
                             "allowed": _explained(growth)})


def _over_the_rise(rise: Event, steps, values, partner) -> Event | None:
    """``rise`` (a loss's climb to LOSS_JUMP x the lowest level it held, which the growth
    of the returns since that level explains, or a value loss's to VALUE_JUMP x that no
    other rule reports) as an error when the climb itself, from the loss's level over the
    PRIOR_POINTS rows before its onset (a level held, not the dip of a few rows a noisy
    critic's loss takes now and then) to the state, is LOSS_JUMP x or more, more than the
    returns' growth over the same rows explains (``_explained``), and an order of
    magnitude (VALUE_JUMP) over every level it held before over a stretch of the run
    (``_highest_held``: a loss near 0 while no episode ends, at 5-100 when one does, has
    been there before; an untrained critic's first few updates have not): the lowest
    level is the untrained critic's, from before the run learned, and what the run
    learned then explains nothing of a later climb (a TD loss at 3.5 that climbs to 4000
    over a tenth of the run while the return holds). None when the climb is explained."""
    steps, values = np.asarray(steps), np.asarray(values, float)
    # the climb from before its earliest start: where it left its trough's band (the onset
    # may lie later, where it left a level it held on the way up, or inside a noisy climb)
    start = rise.evidence.get("left_trough", rise.onset)
    k = int(np.searchsorted(steps, start))
    before = values[max(0, k - PRIOR_POINTS):k]
    level = float(np.median(before)) if len(before) >= MIN_REFERENCE else 0.0
    growth = _size_growth(partner, start, int(steps[-1]), spread=True)
    if level <= 0 or growth is None:
        return None
    factor = rise.evidence["now"] / level
    highest = _highest_held(values[:k], len(values)) if k else level
    if factor < LOSS_JUMP or factor <= _explained(growth) or rise.evidence["now"] < VALUE_JUMP * highest:
        return None
    return replace(rise, severity="error",
                   title=f"{rise.title}: {factor:.0f}x the {level:.4g} it held before the climb, "
                         f"while the episode return's size changed {growth:.2g}x",
                   evidence={**rise.evidence, "before_climb": level, "return_growth": growth,
                             "allowed": _explained(growth)})


def _highest_held(values: np.ndarray, n: int) -> float:
    """The highest level a series held over a stretch (``stretch_need``: MIN_STRETCH of
    the run's ``n`` points, as a state must last): the largest median of that many
    consecutive ``values``. An untrained critic's loss that decays from 4.7 to 0.01 over
    its first ten updates of 1200 held none of those levels; one at 10-24 for its first
    thirty updates of 137 did (a critic that never fits its returns, back at that size
    later)."""
    need = stretch_need(n)
    if len(values) <= need:
        return float(np.median(values))
    return float(np.nanmax(rolling_median(values, need, min_samples=need)))


def _negligible(event: Event, partner) -> bool:
    """Whether the level a loss rose to (``event``'s ``now``) is a squared error under
    NEGLIGIBLE_ERROR of the size of the returns it fits (``partner``) over its stretch,
    or of 1 when they are larger (the loss may be of normalised returns)."""
    r_steps, r_size = np.asarray(partner[0]), np.abs(np.asarray(partner[1], float))
    during = r_size[(r_steps >= event.onset) & (r_steps <= event.last)]
    if not len(during):
        return False
    size = min(float(np.median(during)), 1.0)
    return float(np.sqrt(max(event.evidence["now"], 0.0))) < NEGLIGIBLE_ERROR * size


def _explained(growth: float) -> float:
    """How many times a squared error of the returns may grow when their size grew
    ``growth`` times: VALUE_JUMP (the noise of a critic's fit) times the square of the
    growth (of at least 1: a shrinking return explains no less)."""
    return VALUE_JUMP * max(growth, 1.0) ** 2


def _size_growth(partner, onset: int, last: int, spread: bool = False,
                 since: int | None = None) -> float | None:
    """How many times the return's size (median absolute value) grew from the
    LEVEL_WINDOW values before step ``onset`` to those in ``[onset, last]`` (``[since,
    last]`` when given: the stretch a loss's state covers). With
    ``spread``, the larger of that and the growth of the returns' row-to-row noise
    (``noise_sigma`` of the PRIOR_POINTS values before and of those after): a squared
    error scales with what the critic cannot predict, and a return that held one value
    (a timeout's penalty every episode) and then varies at the same size asks more of it.
    Returns that grew in size by falling explain nothing (1.0: ``_grew_by_falling``)."""
    r_steps, r = np.asarray(partner[0]), np.asarray(partner[1], float)
    before = r[r_steps < onset]
    after = r[(r_steps >= (onset if since is None else since)) & (r_steps <= last)]
    if len(before) == 0 or len(after) == 0:
        return None
    recent = before[-LEVEL_WINDOW:]
    if _grew_by_falling(recent, after):
        return 1.0
    size = float(np.median(np.abs(after)))
    growth = size / max(float(np.median(np.abs(recent))), 1e-12)
    if spread:
        noise = max(noise_sigma(before[-PRIOR_POINTS:]), 1e-12 * (1.0 + size))
        growth = max(growth, noise_sigma(after) / noise)
    return growth


def loss_divergences(metric: str, steps, values, partner=None) -> Event | None:
    """``loss_divergence``, or failing it the divergence the run recovered from
    (``recovered_divergence``)."""
    return loss_divergence(metric, steps, values, partner) or recovered_divergence(
        loss_divergence, metric, steps, values, partner)


def value_loss_divergences(metric: str, steps, values, partner=None) -> Event | None:
    """``value_loss_divergence``, or failing it the divergence the run recovered from
    (``recovered_divergence``)."""
    return value_loss_divergence(metric, steps, values, partner) or recovered_divergence(
        value_loss_divergence, metric, steps, values, partner)


def recovered_divergence(rule, metric: str, steps, values, partner=None) -> Event | None:
    """A loss divergence the run came back from: ``rule`` (``loss_divergence`` or
    ``value_loss_divergence``), which asks that a loss stay diverged to the end of the
    log, run on the log up to the end of a stretch where the loss's rolling level sat
    VALUE_JUMP x over the lowest level it had held, for MIN_STRETCH of the run or more
    (what ``rldk watch`` would have seen had it stopped the run there). A critic that
    diverged for a fifth of the run and then refit is an event even when training
    repaired it, as a reward decline the run recovered from is (``recovered_decline``);
    a warning. The level it rose to must also stand VALUE_JUMP x over every rolling
    level the loss held after it came back: a heavy-tailed TD loss that keeps returning
    to that size was never out of its range (a healthy SB3 DQN loss at 0.001-0.1 with
    stretches at 1.7 throughout the run)."""
    steps, values = np.asarray(steps), np.asarray(values, float)
    if len(values) < 2 * LEVEL_WINDOW or np.min(values) < 0 or np.max(values) <= 0:
        return None
    level = level_of(values)
    high = level > VALUE_JUMP * np.minimum.accumulate(np.maximum(level, 0.0))
    need, i = stretch_need(len(values)), 0
    if partner is not None:
        partner = (np.asarray(partner[0]), np.asarray(partner[1]))
    while (found := state_run(high, i)) is not None and found[1] < len(values):
        k, end = found
        i = end
        if end - k < need:
            continue
        cut = None if partner is None else tuple(x[partner[0] < steps[end]] for x in partner)
        event = rule(metric, steps[:end], values[:end], cut)
        if event is None or event.evidence["now"] <= VALUE_JUMP * float(np.max(level[end:])):
            continue
        # the stretch it came back from is the state: its last step is the stretch's last
        return replace(event, last=int(steps[end - 1]), severity="warning",
                       title=f"{event.title}; back under {VALUE_JUMP:g}x its level from step {int(steps[end])}",
                       evidence={**event.evidence, "recovered_at": int(steps[end])})
    return None


def eval_degradation(metric: str, steps, values, partner=None) -> Event | None:
    """``reward_degradation`` of an evaluation series on levels only: evaluations are few
    (one every few thousand steps), noisy and often quantised (a few episodes, discrete
    outcomes), and three of them in a row below a line is a coincidence the point test
    cannot tell from a decline. A decline the run recovers from needs SHORT_SIGNIFICANCE x
    the significance (a sag of 30 evaluations' plateau 281 -> 204 for six of them and back,
    z 4.7, is their noise; a REINFORCE evaluation at its cap that fell to 141-321 for 6 of
    100, z 194, is a broken policy). Info while the success rate held (``_success_held``)."""
    event = reward_degradation(metric, steps, values, points=False)
    if event is not None and event.evidence.get("recovered_at") is not None \
            and event.evidence.get("z", np.inf) < SHORT_SIGNIFICANCE * SIGNIFICANCE:
        return None
    return None if event is None else _success_held(event, partner)


#: quantity -> the rules that read its evaluation series (``eval/...`` names), when not RULES'.
EVAL_RULES = {"episode_return": (eval_degradation,)}
#: quantity -> the quantity its rules judge it against (passed as ``partner``).
PAIRED = {"value_loss": "episode_return", "loss": "episode_return", "grad_norm": "episode_return",
          "clip_ratio": "clip_range", "zero_std_frac": "reward",
          "entropy": ("reward", "episode_return"), "episode_return": "success_rate",
          "response_length": "reward", "episode_length": "episode_return"}


#: What a run learns, for rules that ask whether it kept learning through a state (the
#: clip fraction's): the first of these it logs.
RETURNS = ("reward", "episode_return")


def paired(quantity: str) -> tuple:
    """The quantities ``quantity``'s rules judge it against (``PAIRED``), in order of
    preference: the first one a run logs is passed."""
    other = PAIRED[quantity]
    return (other,) if isinstance(other, str) else tuple(other)


def partners() -> set:
    """Every quantity some rule reads as a partner (loaded with the run)."""
    return {p for q in PAIRED for p in paired(q)} | set(RETURNS)

#: quantity -> the rules that read it, in order.
RULES = {
    "entropy": (entropy_collapses,),
    "response_length": (length_change,),
    "episode_length": (episode_length_collapse,),
    "reward": (reward_collapse, reward_declines),
    "episode_return": (reward_declines,),
    "kl_to_ref": (kl_blowup,),
    "ppo_approx_kl": (approx_kl_events,),
    "grad_norm": (grad_norm_explosion,),
    "loss": (loss_divergences,),
    "value_loss": (value_loss_divergences,),
    "dpo_accuracy": (reward_collapse,),
    "zero_std_frac": (zero_std_onset,),
    "truncation_ratio": (truncation_onset,),
    "clip_ratio": (clip_ratio_blowup,),
}
