"""Ratios (zero-std groups, truncation, clip fraction): a state at or above a line, from its onset.

A ratio's units make an absolute line meaningful (half of the groups, half of the
responses, a third of the tokens); the state is the first run of points at or above it
that lasts to the end of the run, judged on the rolling level when single points stray
out of it (a ratio over a few groups moves by whole groups). The clip fraction is judged
against the clip range it was computed with (``clip_ratio_blowup``).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from rldk.detectors.event import Event
from rldk.detectors.moves import PRIOR_POINTS
from rldk.detectors.onsets import MIN_REFERENCE, level_of, starts_mid_run, state_run
from rldk.detectors.regimes import regimes
from rldk.detectors.scale import noise_sigma
from rldk.detectors.trend import SIGNIFICANCE, level_se, spike_seen_before

#: Ratios (zero-std groups, truncation, clip fraction): a stretch at or above this level.
#: Half of the groups without reward variance, half of the responses cut, a third of the
#: tokens clipped (PPO's clip fraction is 0.05-0.2 in healthy runs of every framework's docs).
ZERO_STD_HIGH = 0.5
TRUNCATION_HIGH = 0.5
CLIP_HIGH = 0.3
#: A ratio state whose median is at or above this share is an error: nearly every group
#: without reward variance (no learning signal left), nearly every response cut at the
#: length cap (no answer ends), nearly every token clipped (``TIED_NO_SIGNAL``, the line of
#: the reward-health check, is the same). On the real corpus no healthy
#: log, nor any thinned, late or stopped version of one, holds such a state; at 0.8 one
#: healthy log of the report half would.
NEARLY_ALL = 0.9
#: A clip range (PPO's epsilon) at or under this share of the widest range before a
#: clip-fraction rise explains the rise: half the range clips the ratios between the two
#: bounds too.
CLIP_RANGE_SHRINK = 0.5
#: A clip fraction that crosses CLIP_HIGH from a level already within this factor of its
#: new one drifted over the line (0.28 -> 0.33 over a million steps of PPO with minibatches
#: of 16, whose clip fraction rises with the policy's sharpening): no new regime, reported
#: as info. A blow-up's level is a multiple of the one before (the labelled one of the real
#: logs: 0.18 -> 0.80); a jump to 0.6 injected into every healthy log of the benchmark
#: (benchmarks/injection.py) is still one.
CLIP_RISE = 1.5


def high_ratio(code: str, metric: str, steps, values, high: float, what: str, later=None) -> Event | None:
    """A ratio quantity enters a state at or above ``high`` and stays to the end of the run
    (from the first step counts: no part of the run is assumed healthy). A stretch that
    the run leaves again is a transient of a rate, not a state it is stuck in, and so is a
    state at the end of the log shorter than a tenth of it at a height the ratio's rows
    reached as single rows or pairs three times or more before (``spike_seen_before``: a
    share over one GRPO group per step is 0 or 1, at 1 on a third of the steps, and a log
    cut on 1, 0, 1, 0, 1 ends on its noise). A ratio
    over a few groups moves by whole groups: when its points stray out of the state too
    often, its rolling level (``level_of``) is judged instead. A warning; an error when
    the state's median is NEARLY_ALL or more. A later, worse state inside the state (a
    ratio at its state from the first step, or one that drifted over the line and sat
    there, that then jumps) is the state reported, from its jump: ``later``, the line it
    must pass from the level P held in the state before it (``_worse_later``; default: the
    midpoint between P and 1)."""
    v = np.clip(np.asarray(values, float), 0, 1)
    # the points, or (a ratio over few groups jumps by whole groups) its rolling level
    found = state_run(v >= high, 0, final=True)
    if found is None:
        found = state_run(level_of(v) >= high, 0, final=True)
        if found is None:
            return None
        # a centred level rises a point or two before the points do: the state's first
        # step is its first point that is itself at or above the line
        found = (found[0] + int(np.argmax(v[found[0]:found[1]] >= high)), found[1])
    if spike_seen_before(v, found[0], found[1], float(np.median(v[found[0]:found[1]]))):
        return None     # a short end state at a height the ratio's rows reached as bursts before
    start = found[0]
    worse = _worse_later(v[start:], later)
    k, end = found if worse is None else (start + worse[0], start + worse[1])
    level = float(np.median(v[k:end]))
    before = float(np.median(v[start:k] if worse else v[:k])) if k > 0 else None
    since = "the first step" if start == 0 else f"step {int(steps[start])}"
    title = (f"{what} at {level:.2f} from step {int(steps[k])}"
             + (" (from the first step)" if before is None else
                f" (was {before:.2f}, at or above {high:g} from {since})" if worse else
                f" (was {before:.2f})"))
    evidence = {"level": level, "before": before, "threshold": high,
                "share_at_or_above": float(np.mean(v[k:end] >= high))}
    if worse:
        evidence = {**evidence, "from_first_step": True} if start == 0 else \
            {**evidence, "at_or_above_from": int(steps[start])}
    severity = "error" if level >= NEARLY_ALL else "warning"
    return Event(code, metric, int(steps[k]), int(steps[end - 1]), severity, title, evidence)


def _worse_later(v: np.ndarray, later=None) -> tuple[int, int] | None:
    """``(k, end)`` of a later, worse state of a ratio already at or above its line from
    the first step: from point ``k`` to the end it sits past the midpoint between the
    level it held before (P, the median of the points before ``k``) and 1, the whole of
    the groups or responses (``later(P)``, when given, instead of that midpoint), and the
    step up adds WORSE_STEP of the whole and passes
    SIGNIFICANCE standard errors of the two levels' difference (white noise,
    ``noise_sigma``). A TRL run cut 0.8 of its responses at the length cap from the first
    step and 0.95 from step 75; the step is the news, not the first row. ``k`` and P are
    found together (P decides the midpoint, the midpoint the state); None when there is no
    such state, or no level held before it (PRIOR_POINTS points)."""
    n = len(v)
    if n < 2 * PRIOR_POINTS:
        return None
    # the first guess: the split with the largest step up in mean, in standard errors
    cut = np.arange(PRIOR_POINTS, n - MIN_REFERENCE + 1)
    total = np.concatenate(([0.0], np.cumsum(v)))
    rise = (total[n] - total[cut]) / (n - cut) - total[cut] / cut
    k = int(cut[np.argmax(rise * np.sqrt(cut * (n - cut) / n))])
    level = level_of(v)
    for _ in range(4):
        held = float(np.median(v[:max(k, 1)]))
        mid = (held + 1) / 2 if later is None else later(held)
        # the points, or (a ratio over few groups jumps by whole groups) its rolling level,
        # as high_ratio reads a state
        found = state_run(v >= mid, PRIOR_POINTS, final=True)
        if found is None and (found := state_run(level >= mid, PRIOR_POINTS, final=True)) is not None:
            found = (found[0] + int(np.argmax(v[found[0]:found[1]] >= mid)), found[1])
        if found is None or found[0] == k:
            break
        k = found[0]
    if found is None or found[0] != k or k < PRIOR_POINTS:
        return None
    sigma = noise_sigma(v)
    step = float(np.mean(v[k:]) - np.mean(v[:k]))
    if step < WORSE_STEP or step < SIGNIFICANCE * sigma * np.sqrt(1 / k + 1 / (n - k)):
        return None
    return found


#: ``_worse_later``: the fewest of all the groups or responses a later, worse state of a
#: ratio must add to the level it held (a tenth of them, as SUCCESS_DROP is of episodes):
#: a share tied on 98% of groups that ties on all of them later changed nothing.
WORSE_STEP = 0.1


#: ``zero_std_onset`` and the reward-health check: at or above this share of tied groups
#: there are too few others to carry a signal, whatever the reward did (an error there).
TIED_NO_SIGNAL = NEARLY_ALL
#: ``learned_through``: the share of a state's points (first and last) whose levels are compared.
LEARNED_SHARE = 0.2
#: ``solved_ties``: a step's tied groups count as solved ones when the reward's level there
#: lies closer to the highest level it held over the run than to the lowest.
SOLVED_SHARE = 0.5
#: ``solved_ties``: the share of the tied groups (summed over the steps of the state,
#: weighted by each step's share) that must fall at such steps.
SOLVED_MOST = 0.75
#: ``solved_ties``: the ties must set in within this share of the run's steps after the
#: reward first reached the upper half of its range (they came with the rise; ties that
#: appear long after, with the reward unchanged, are not explained by it).
SOLVED_LAG = 0.1
#: ``solved_ties``: the run's reward range must span this many times its step-to-step
#: noise to be a range at all (a flat reward has no top to be near).
SOLVED_RANGE = 3.0


def solved_ties(reward_steps, reward_values, tie_steps, tie_shares) -> dict | None:
    """Evidence that the zero-std groups logged at ``tie_steps`` (their shares
    ``tie_shares``) are mostly *solved* ones (every completion of a prompt got the top
    reward), or None.

    A group's rewards tie at the bottom (no completion earns anything: no learning
    signal, the run is stuck) or at the top (every completion is right: the prompt is
    spent). Which one the log's share counts is read off the reward: at a step where its
    level (a centred rolling median, ``level_of``) lies closer to the highest level it held
    over the run than to the lowest, the ties are taken as solved ones; when SOLVED_MOST of
    all the tied groups fall at such steps, the reward's range spans SOLVED_RANGE times its
    own step-to-step noise, it started in the lower half of that range, and the ties set in
    within SOLVED_LAG of the run after it first reached the upper half, the run learned its
    way up to its ties. A run whose reward never rose has no top to tie at; one at its
    top from the first step (a reward that pays every completion) did not learn its ties;
    one that tied for long at the bottom before it rose lost signal there; all are
    reported as they are."""
    steps = np.asarray(reward_steps)
    values = np.asarray(reward_values, float)
    keep = np.isfinite(values)
    steps, values = steps[keep], values[keep]
    tie_steps, tie_shares = np.asarray(tie_steps), np.clip(np.asarray(tie_shares, float), 0, 1)
    if len(values) < 6 or not len(tie_steps) or tie_shares.sum() <= 0:
        return None
    level = level_of(values)
    low, high = float(np.min(level)), float(np.max(level))
    if high - low < SOLVED_RANGE * noise_sigma(values) or level[0] >= low + SOLVED_SHARE * (high - low):
        return None                     # no range, or no rise: at its top from the start
    top = level >= low + SOLVED_SHARE * (high - low)
    reached = float(steps[int(np.argmax(top))])
    if tie_steps[0] > reached + SOLVED_LAG * float(steps[-1] - steps[0]):
        return None                     # ties long after the reward got there: not its doing
    at = np.interp(tie_steps, steps, level)
    solved = float(np.sum(tie_shares * (at >= low + SOLVED_SHARE * (high - low))) / tie_shares.sum())
    if solved < SOLVED_MOST:
        return None
    return {"solved_share": solved, "reward_now": float(np.median(at)), "reward_low": low,
            "reward_high": high}


def solved_title(title: str, evidence: dict) -> str:
    return (f"{title}: {evidence['solved_share']:.0%} of the ties come where the reward is near its "
            f"top (median {evidence['reward_now']:.3g}; it held {evidence['reward_low']:.3g}.."
            f"{evidence['reward_high']:.3g}): mostly solved prompts, too easy to teach anything, "
            "not a lost signal")


#: How the share of tied groups is read off a run that logs only the reward's spread
#: (TRL GRPO before ``frac_reward_zero_std``: ``reward_std``, the mean of the groups' stds;
#: verl's ``critic/score/std``): a spread of exactly 0 is every group tied, a share of 1; a
#: positive spread says some group varied, a share under 1, read as 0 (a state of ties is
#: then found only where whole steps tie: never more than the log says).
TIED = "steps whose {metric} is exactly 0 (every group's rewards tied)"


def tied(spread) -> np.ndarray:
    """The share of tied groups as ``TIED`` reads it off the reward's ``spread``: 1 where
    it is exactly 0, 0 where it is positive, NaN where unknown."""
    spread = np.asarray(spread, float)
    return np.where(np.isfinite(spread), (spread == 0).astype(float), np.nan)


def zero_std_onset(metric: str, steps, values, partner=None) -> Event | None:
    """The share of zero-std groups enters a state at or above ZERO_STD_HIGH and stays
    (``high_ratio``); info when the reward (``partner``) shows the tied groups are mostly
    solved ones (``solved_ties``), or that the run learned through ties under
    TIED_NO_SIGNAL from its first step (``learned_through``). Ties under TIED_NO_SIGNAL from
    the first row of a log that starts mid-run (``onsets.starts_mid_run``: a resumed run, a
    log kept from late on) are info too while the reward did not fall through them
    (``reward_fell``): they began before the log, whatever the run learned then is not in
    view, and the other groups carry the signal (a ROLL GRPO run tied on 71% of its
    responses from its first row, its pass rate 0.35 -> 0.45, read from a third of its run
    on, where the rate is flat; a verl GSM8K run whose solved prompts tie 84% of its groups).
    A share of NEARLY_ALL or more stays an error wherever the log starts; solved ties at
    TIED_NO_SIGNAL or more are a warning: no group is left to carry a signal."""
    event = high_ratio("zero_std_onset", metric, steps, values, ZERO_STD_HIGH, "share of zero-std reward groups")
    if event is None or partner is None:
        return event
    steps, values = np.asarray(steps), np.asarray(values, float)
    inside = (steps >= event.onset) & (steps <= event.last)
    solved = solved_ties(*partner, steps[inside], values[inside])
    if solved is not None and event.evidence["level"] >= TIED_NO_SIGNAL:
        # solved, but (nearly) every group ties: nothing is left to learn from, whatever
        # the reward did (a real GRPO run of a VLM, every group tied at a reward of 1.0 on
        # 4124 of its 4129 steps, its gradient norm ~1e-9)
        return replace(event, severity="warning",
                       title=f"{event.title}: the run solved its prompts and has had no learning signal "
                             "since (no group's rewards differ); stop it, or train on harder prompts",
                       evidence={**event.evidence, **solved})
    if solved is not None:
        return replace(event, severity="info", title=solved_title(event.title, solved),
                       evidence={**event.evidence, **solved})
    some_tie = event.evidence["before"] is None and event.evidence["level"] < TIED_NO_SIGNAL
    why = from_start_explained(steps, *partner, event.onset, event.last) if some_tie else None
    if why is None:
        return event
    return replace(event, severity="info", title=ties_title(event.title, why, event.evidence["level"]),
                   evidence={**event.evidence, **why})


def from_start_explained(steps, reward_steps, reward_values, first: int, last: int) -> dict | None:
    """Why a ratio's state from the first row of its log (``steps``), over steps
    ``first``..``last``, is no alarm, as evidence: the reward rose through it
    (``learned_through``), or the log starts mid-run (``onsets.starts_mid_run``) and the
    reward did not fall through it (``reward_fell``: ``{"before_log": True}``, the state
    began before the log); None when neither."""
    learned = learned_through(reward_steps, reward_values, first, last)
    if learned is not None:
        return learned
    if starts_mid_run(steps) and not reward_fell(reward_steps, reward_values, first, last):
        return {"before_log": True}
    return None


def _early_late(reward_steps, reward_values, first: int, last: int) -> tuple[float, float, float] | None:
    """``(early, late, se)``: the mean of the reward's first and last LEARNED_SHARE of its
    points over steps ``first``..``last`` (at least MIN_REFERENCE each) and the standard
    error of their difference (``trend.level_se``: the reward's own noise and wander);
    None when there are too few points or no noise to judge by."""
    steps, values = np.asarray(reward_steps), np.asarray(reward_values, float)
    keep = np.isfinite(values) & (steps >= first) & (steps <= last)
    steps, values = steps[keep], values[keep]
    n = max(MIN_REFERENCE, int(np.ceil(LEARNED_SHARE * len(values))))
    if len(values) < 2 * n:
        return None
    se = level_se(regimes(steps, values, "signed"))(n, n, len(values) - n)
    return (float(np.mean(values[:n])), float(np.mean(values[-n:])), se) if se > 0 else None


def reward_fell(reward_steps, reward_values, first: int, last: int) -> bool:
    """Whether the reward's level at the end of steps ``first``..``last`` lies below its
    level at their start by SIGNIFICANCE standard errors (``_early_late``)."""
    found = _early_late(reward_steps, reward_values, first, last)
    return found is not None and found[0] - found[1] >= SIGNIFICANCE * found[2]


def ties_title(title: str, why: dict, share: float) -> str:
    """``title`` of tied groups from the first row, with ``why`` (``from_start_explained``)."""
    if why.get("before_log"):
        return (f"{title}, in a log that starts mid-run: the ties began before it, the reward did "
                f"not fall through them, and the other {1 - share:.0%} of the groups carry the signal")
    return learned_title(title, why)


def learned_through(reward_steps, reward_values, first: int, last: int) -> dict | None:
    """Evidence that the reward rose over steps ``first``..``last`` (a state of tied groups
    the run was in from its first step), or None: the level of its last LEARNED_SHARE of
    those points (at least MIN_REFERENCE) above that of its first by SIGNIFICANCE standard
    errors of the difference of two levels (``trend.level_se``: the reward's own noise and
    wander). Ties from the first step while the reward climbs are a share of prompts that
    give no signal, not a run without one (a ROLL GRPO run: 71% tied responses on every
    row, the pass rate 0.35 -> 0.45), unless nearly all tie (TIED_NO_SIGNAL, the callers'
    test); with a flat or falling reward they are the run getting nothing (TRL GRPO runs
    tied on 75-100% of their groups, reward 0.02 -> 0.003 and 0.87 -> 0.88)."""
    found = _early_late(reward_steps, reward_values, first, last)
    if found is None or found[1] - found[0] < SIGNIFICANCE * found[2]:
        return None
    early, late, se = found
    return {"reward_early": early, "reward_late": late, "reward_rise_z": round((late - early) / se, 2)}


def learned_title(title: str, evidence: dict) -> str:
    return (f"{title}, while the reward rose from {evidence['reward_early']:.3g} to "
            f"{evidence['reward_late']:.3g}: the other groups carry the signal (filter prompts "
            "that are always solved or never solved to spend less compute on ties)")


def clip_ratio_blowup(metric: str, steps, values, partner=None, returns=None) -> Event | None:
    """The clip fraction enters a state at or above CLIP_HIGH and stays (``high_ratio``),
    at CLIP_RISE x its level before or more (a fraction that drifted over the line: info).
    The fraction counts the ratios outside 1 +- epsilon, the clip range: where the run
    logs a clip range (``partner``) that was, at the onset, decayed to CLIP_RANGE_SHRINK or
    less of the widest range before it (rl-zoo's ``lin_`` schedules), the rise is the
    schedule's doing, reported as info; not a jump over points where the range shrank by
    less than CLIP_RISE x (a linear decay moves it a few percent there). A fraction at its
    state from the first step, under NEARLY_ALL, while the run's reward or return
    (``returns``) rose through it (``learned_through``) is the size of the updates the
    run's settings make (epochs, learning rate), with which it learns: info, as tied groups
    from the first step are; so is one at its state from the first row of a log that starts
    mid-run (``onsets.starts_mid_run``) while the reward did not fall through it
    (``reward_fell``): the updates were that large before the log (a ManiSkill PushCube PPO
    at 0.42 from a third of its run on, its success held at 1.0). A fraction over the line
    whose later, worse state only drifted there is judged from where it crossed the line,
    against the level just before, unless a clip-range schedule shrank the range over it
    (a real SB3 PPO clipping 0.18-0.27 over its first updates, over 0.3 from its ninth, ~0.8
    from a tenth of the run on, 0.86 from two thirds: a blow-up from the ninth)."""
    # a fraction clipping from the start that later jumps CLIP_RISE x over that level (not
    # only past the midpoint to 1): the jump is the news
    event = high_ratio("clip_ratio_blowup", metric, steps, values, CLIP_HIGH, "PPO clip fraction",
                       later=lambda held: min((held + 1) / 2, CLIP_RISE * held))
    before = None if event is None else _just_before(steps, values, event.onset)
    drifted = before is not None and event.evidence["level"] < CLIP_RISE * before
    if drifted and "at_or_above_from" in event.evidence \
            and not _range_shrank(partner, event.evidence["at_or_above_from"]):
        # the later, worse state was a drift over the state's own level, not a jump: the
        # news is the state itself, from where the fraction crossed the line, judged against
        # the level just before it, when no clip-range schedule shrank the range over it
        first = event.evidence["at_or_above_from"]
        state = np.clip(np.asarray(values, float), 0, 1)[np.asarray(steps) >= first]
        level, was = float(np.median(state)), _just_before(steps, values, first)
        if was is not None and level >= CLIP_RISE * was:
            event = replace(event, onset=first, severity="error" if level >= NEARLY_ALL else "warning",
                            title=f"PPO clip fraction at {level:.2f} from step {first} (was {was:.2f})",
                            evidence={"level": level, "before": was, "threshold": CLIP_HIGH,
                                      "share_at_or_above": float(np.mean(state >= CLIP_HIGH))})
            before = was
    if before is not None and event.evidence["level"] < CLIP_RISE * before:
        return replace(event, severity="info",
                       title=f"{event.title}: a drift over {CLIP_HIGH:g}, not a jump (under "
                             f"{CLIP_RISE:g}x the level just before, {before:.2f})",
                       evidence={**event.evidence, "just_before": before})
    if event is not None and before is None and returns is not None and event.evidence["level"] < NEARLY_ALL \
            and (why := from_start_explained(steps, *returns, event.onset, event.last)) is not None:
        how = ("in a log that starts mid-run: the updates were that large before it, and the reward did "
               "not fall under them" if why.get("before_log") else
               f"while the reward rose from {why['reward_early']:.4g} to {why['reward_late']:.4g}: large "
               "updates from the start, with which the run learns, not a blow-up")
        return replace(event, severity="info", title=f"{event.title}, {how}", evidence={**event.evidence, **why})
    if event is None or partner is None:
        return event
    c_steps, c_values = np.asarray(partner[0]), np.asarray(partner[1], float)
    at = np.flatnonzero(c_steps >= event.onset)
    if not len(at):
        return event
    was = float(np.max(c_values[:at[0] + 1]))           # the widest range before the onset
    now = float(c_values[at[0]])                          # the range the state began with
    if not was > 0 or now > CLIP_RANGE_SHRINK * was:
        return event
    if before is not None:
        # a jump (CLIP_RISE x the level just before) is the schedule's only where the range
        # shrank as much over the same points; a linear decay moves it a few percent there
        lo, _ = _prior_window(steps, event.onset)
        prior = c_values[(c_steps >= np.asarray(steps)[lo]) & (c_steps < event.onset)]
        just = float(np.median(prior)) if len(prior) else was
        if now > just / CLIP_RISE:
            return replace(event, title=f"{event.title}, in one jump: the clip range, decayed from "
                                        f"{was:.3g}, moved only from {just:.3g} to {now:.3g} over it",
                           evidence={**event.evidence, "clip_range_before": was, "clip_range_at_onset": now,
                                     "clip_range_just_before": just})
    return replace(event, severity="info",
                   title=f"{event.title}, as the clip range was decayed from {was:.3g} to {now:.3g} "
                         "(a schedule: a smaller range clips more ratios)",
                   evidence={**event.evidence, "clip_range_before": was, "clip_range_at_onset": now})


def _range_shrank(partner, since: int) -> bool:
    """Whether the run's clip range (``partner``: steps, values) shrank to CLIP_RANGE_SHRINK
    or less of its widest from step ``since`` on (a schedule such as rl-zoo's ``lin_``,
    under which a clip fraction rises on its own)."""
    if partner is None:
        return False
    c_steps, c_values = np.asarray(partner[0]), np.asarray(partner[1], float)
    widest = float(np.max(c_values)) if len(c_values) else 0.0
    later = c_values[c_steps >= since]
    return widest > 0 and len(later) > 0 and float(np.min(later)) <= CLIP_RANGE_SHRINK * widest


def _just_before(steps, values, onset: int) -> float | None:
    """The level a ratio held just before ``onset``: the median of the PRIOR_POINTS points
    before it (``rldk.detectors.moves``: the fewest that make a level) (None when there are
    none). Not the median of everything before: a clip
    fraction that drifts 0.10 -> 0.41 over a third of the run sits at 0.29 when it crosses
    0.3, whatever it was at the start."""
    lo, k = _prior_window(steps, onset)
    return float(np.median(np.asarray(values, float)[lo:k])) if k else None


def _prior_window(steps, onset: int) -> tuple[int, int]:
    """``(lo, k)``: the indices of the PRIOR_POINTS points before ``onset`` (``k``, the
    index of the onset; fewer points when fewer came before)."""
    k = int(np.searchsorted(np.asarray(steps), onset))
    return max(0, k - PRIOR_POINTS), k
