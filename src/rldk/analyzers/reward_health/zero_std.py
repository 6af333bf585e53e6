"""Zero-std groups: GRPO groups (same prompt, same step) whose rewards all tie give no gradient."""
from __future__ import annotations

import numpy as np

from rldk.analyzers.reward_health.context import Context
from rldk.analyzers.reward_health.data import REWARD_STD, ZERO_STD, Samples
from rldk.analyzers.reward_health.stats import in_window
from rldk.detectors.ratios import TIED_NO_SIGNAL, from_start_explained, solved_ties, solved_title, ties_title
from rldk.detectors.scale import noise_sigma
from rldk.detectors.trend import SIGNIFICANCE


def check_zero_std(ctx: Context) -> None:
    """Share of GRPO groups whose rewards are all equal, per step and window."""
    p = ctx.params
    steps, shares, source = _zero_std_per_step(ctx)
    if steps is None:
        return ctx.skipped("zero_std_groups", "needs frac_reward_zero_std (TRL GRPO) or grouped sample "
                           "events (several completions per prompt and step, with rewards)")
    flagged = []
    # a window is flagged when its share is over the line beyond its own noise: a share
    # over one group per step is 0 or 1 on every row, and a window of a dozen such rows
    # averages 0.5 in a run that ties a third of its groups throughout. A row's noise: the
    # series' step-to-step noise, or its spread where that is smaller (a 0/1 series, whose
    # differences the robust estimate reads as larger than the rows' own spread)
    sigma = min(noise_sigma(shares), float(np.std(shares)))
    for w in ctx.windows:
        m = in_window(steps, (w["first_step"], w["last_step"]))
        if m.any():
            w["zero_std_share"] = float(shares[m].mean())
            if w["zero_std_share"] - SIGNIFICANCE * sigma / np.sqrt(m.sum()) >= p.zero_std_share:
                flagged.append(w)
    _window_group_std(ctx)
    overall = float(shares.mean())
    ctx.ran("zero_std_groups", f"mean share {overall:.2f} over {steps.size} steps ({source})")
    if flagged or overall >= p.zero_std_share:
        _zero_std_finding(ctx, steps, shares, source, flagged, overall)


def _zero_std_finding(ctx: Context, steps, shares, source, flagged, overall) -> None:
    p = ctx.params
    at_or_above = shares >= p.zero_std_share
    bad = steps[at_or_above]
    # the first step at or above the line (in the first flagged window): where the
    # problem shows, not where the window that averaged it happens to begin
    first = int(bad[bad >= flagged[0]["first_step"]][0]) if flagged else int(bad[0])
    last = flagged[-1]["last_step"] if flagged else int(bad[-1])
    title = (f"{overall:.0%} of GRPO groups have identical rewards on average ({source}); "
             f"{int(at_or_above.sum())} of {steps.size} steps at or above {p.zero_std_share:.0%}")
    evidence = {"mean_share": overall, "steps_at_or_above": int(at_or_above.sum()),
                "steps": int(steps.size), "threshold": p.zero_std_share}
    reward = None if ctx.reward is None else ctx.reward.finite()
    # ties at the top of a reward the run learned its way up to are spent prompts (info)
    inside = (steps >= first) & (steps <= last)
    solved = None if reward is None else solved_ties(reward.steps, reward.values, steps[inside], shares[inside])
    # ties from the first step on while the reward still climbed (part of the prompts give
    # no signal, the run learns from the rest), or from the first row of a log that starts
    # mid-run while the reward did not fall (they began before it): info
    why = None
    if not solved and reward is not None and first == int(steps[0]) and overall < TIED_NO_SIGNAL:
        why = from_start_explained(steps, reward.steps, reward.values, first, last)
    severity = "info" if solved or why else "error" if overall >= TIED_NO_SIGNAL else "warning"
    if solved:
        title, evidence = solved_title(title, solved), {**evidence, **solved}
    elif why:
        title, evidence = ties_title(title, why, overall), {**evidence, **why}
    ctx.find("zero_std_groups", severity, title, source, (first, last), evidence,
             "Groups with one reward value give zero advantage and no gradient: make the "
             "reward graded (partial credit), raise num_generations or the sampling "
             "temperature, or filter prompts that are always solved or never solved.")


def groups(s: Samples) -> dict:
    """(step, prompt) -> the finite rewards of that GRPO group."""
    out: dict = {}
    for i in np.flatnonzero(np.isfinite(s.reward)):
        out.setdefault((int(s.step[i]), s.prompt[i]), []).append(float(s.reward[i]))
    return out


def _per_step_over_groups(s: Samples, statistic):
    """Steps and the mean of ``statistic(rewards)`` over that step's groups of >= 2 samples."""
    per_step: dict = {}
    for (step, _), rewards in groups(s).items():
        if len(rewards) >= 2:
            per_step.setdefault(step, []).append(float(statistic(rewards)))
    if not per_step:
        return None, None
    steps = np.array(sorted(per_step))
    return steps, np.array([np.mean(per_step[k]) for k in steps])


def _zero_std_per_step(ctx: Context):
    metric = ctx.series(None, ZERO_STD)
    if metric is not None and metric.finite().steps.size:
        m = metric.finite()
        return m.steps, m.values, metric.name
    if not len(ctx.samples):
        return None, None, None
    steps, shares = _per_step_over_groups(ctx.samples, lambda r: np.ptp(r) == 0)
    return (None, None, None) if steps is None else (steps, shares, "sample groups")


def _window_group_std(ctx: Context) -> None:
    """Mean within-group reward std per window: from sample groups, else TRL's ``reward_std``."""
    steps, stds = _per_step_over_groups(ctx.samples, np.std)
    if steps is None:
        metric = ctx.series(None, REWARD_STD)
        if metric is None:
            return
        steps, stds = metric.finite().steps, metric.finite().values
    for w in ctx.windows:
        m = in_window(steps, (w["first_step"], w["last_step"]))
        if m.any():
            w["group_std"] = float(stds[m].mean())
