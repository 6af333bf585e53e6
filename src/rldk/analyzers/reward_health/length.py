"""Length hacking: does the reward follow response length rather than quality?

Two kinds of evidence. Samples: Spearman(length, reward) among the completions of
one step (policy progress cancels out), per window. Metrics only: Spearman of the
step-to-step *changes* of the mean length (the ``response_length`` quantity:
``completions/mean_length``, ``response_length``, ...) and of the reward, so a
shared upward trend does not count.
"""
from __future__ import annotations

import numpy as np

from rldk.analyzers.reward_health.context import Context
from rldk.analyzers.reward_health.data import LENGTH, Samples, Series, names_of
from rldk.analyzers.reward_health.stats import demean_by, fmt, in_window, spearman


def check_length(ctx: Context) -> None:
    """Does reward follow response length? Within steps (samples) or step-to-step (metrics)."""
    s = ctx.samples.rewarded()
    if len(s) >= ctx.params.min_window * 2:
        return _length_from_samples(ctx, s)
    length = ctx.series(ctx.params.length_col, LENGTH)
    if length is None or ctx.reward is None:
        return ctx.skipped("length_hacking", f"needs {ctx.params.min_window * 2} sample events with "
                           "rewards (writer.log_samples), or a per-step reward and a mean response-length "
                           f"metric ({names_of('response_length')}, ...; or length_col / --length-col)")
    _length_from_metrics(ctx, length)


def _length_from_samples(ctx: Context, s: Samples) -> None:
    p = ctx.params
    lengths, rewards = s.lengths, s.reward.copy()
    per_step = np.bincount(np.unique(s.step, return_inverse=True)[1]).astype(float)
    within = float(np.median(per_step)) >= 3
    if within:             # compare completions of the same step: policy progress cancels out
        lengths, rewards = demean_by(s.step, lengths), demean_by(s.step, rewards)
    rhos = []
    for w in ctx.windows:
        m = in_window(s.step, (w["first_step"], w["last_step"]))
        w["length_rho"] = spearman(lengths[m], rewards[m]) if m.sum() >= p.min_window else None
        if w["length_rho"] is not None:
            rhos.append((w, w["length_rho"], float(s.lengths[m].mean())))
    how = "within steps" if within else "pooled per window"
    if len(rhos) < 2:
        return ctx.skipped("length_hacking", f"fewer than 2 windows with varied lengths and rewards ({how}): "
                           "log more sample steps, or a mean response-length metric")
    _judge_length(ctx, rhos, how, "sample")


def _length_from_metrics(ctx: Context, length: Series) -> None:
    """Batch-level evidence: step-to-step changes of mean length and mean reward.

    Weaker than the within-step sample test (a reward that merely gives empty or
    truncated answers less also correlates here), so it needs corroboration:
    Spearman of changes over the later half >= ``length_rho`` *and* either mean
    length grown by 20% or Spearman >= 0.8.
    """
    p = ctx.params
    reward = ctx.reward.finite()
    length = length.finite()
    common, ri, li = np.intersect1d(reward.steps, length.steps, return_indices=True)
    r, ln = reward.values[ri], length.values[li]
    if common.size < 2 * p.min_window:
        return ctx.skipped("length_hacking", f"{common.size} steps with both {reward.name} and "
                           f"{length.name}; needs {2 * p.min_window}")
    for w in ctx.windows:
        m = in_window(common, (w["first_step"], w["last_step"]))
        if m.sum() >= 4:
            w["length_rho"] = spearman(np.diff(ln[m]), np.diff(r[m]))   # changes: shared trends cancel
    half = common.size // 2
    rho = spearman(np.diff(ln[half:]), np.diff(r[half:]))
    q = max(2, common.size // 4)
    growth = float(ln[-q:].mean() / ln[:q].mean()) if ln[:q].mean() > 0 else None
    how = f"step-to-step changes of {length.name}, later half"
    ctx.ran("length_hacking", f"Spearman(length, reward) {fmt(rho)} ({how}), length x{fmt(growth)}")
    if rho is None or rho < p.length_rho or not ((growth or 0) >= 1.2 or rho >= 0.8):
        return
    _length_finding(ctx, rho, growth, how, length.name, (common[half], common[-1]),
                    {"window_rho": [w["length_rho"] for w in ctx.windows]})


def _judge_length(ctx: Context, rhos: list, how: str, metric: str) -> None:
    values = [r for _, r, _ in rhos]
    late = rhos[len(rhos) // 2:]
    late_rho = float(np.median([r for _, r, _ in late]))
    growth = rhos[-1][2] / rhos[0][2] if rhos[0][2] > 0 else None
    ctx.ran("length_hacking", f"late-window Spearman(length, reward) {late_rho:.2f} ({how})")
    if late_rho >= ctx.params.length_rho:
        trend = spearman(np.arange(len(values)), values) if len(values) >= 3 else None
        _length_finding(ctx, late_rho, growth, how, metric,
                        (late[0][0]["first_step"], late[-1][0]["last_step"]),
                        {"window_rho": values, "rho_trend": trend})


def _length_finding(ctx: Context, rho, growth, how, metric, steps, extra) -> None:
    severity = "error" if growth is not None and growth >= 1.5 else "warning"
    ctx.find("length_hacking", severity,
             f"reward follows response length: Spearman {rho:.2f} in the later steps ({how})"
             + (f", mean length x{growth:.2f}" if growth is not None else ""), metric, steps,
             {"late_rho": rho, "length_growth": growth, "method": how,
              "threshold": ctx.params.length_rho, **extra},
             "The policy can raise reward by writing more: add a length penalty or normalise "
             "the reward by length, check the reward model with a length-controlled "
             "evaluation, and cap max_completion_length.")
