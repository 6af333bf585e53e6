"""Saturation: nearly all of a window's sample rewards at one value, a clip bound or a sigmoid extreme."""
from __future__ import annotations

import numpy as np

from rldk.analyzers.reward_health.context import Context
from rldk.analyzers.reward_health.stats import in_window


def check_saturation(ctx: Context) -> None:
    """Windows where >= ``saturation_share`` of the sample rewards sit at one value, at the
    clip ``bounds``, or (rewards in [0, 1]) beyond 0.01 / 0.99."""
    s = ctx.samples.rewarded()
    p = ctx.params
    if len(s) < p.min_window:
        return ctx.skipped("saturation", f"needs at least {p.min_window} sample events with rewards "
                           "(writer.log_samples(step, prompts, responses, rewards))")
    sigmoid = bool(s.reward.min() >= 0 and s.reward.max() <= 1 and np.unique(s.reward).size > 2)
    flagged = []
    for w in ctx.windows:
        r = s.reward[in_window(s.step, (w["first_step"], w["last_step"]))]
        if r.size >= p.min_window:
            share, why = _window_share(w, r, p.bounds, sigmoid)
            if share >= p.saturation_share:
                flagged.append((w, share, why))
    ctx.ran("saturation", f"{len(s)} sample rewards in {len(ctx.windows)} windows, {len(flagged)} saturated")
    if flagged:
        w0, share, why = flagged[0]
        ctx.find("reward_saturated", "warning", f"reward saturated in {len(flagged)} of "
                 f"{len(ctx.windows)} windows from step {w0['first_step']}: {why}", "sample",
                 (w0["first_step"], flagged[-1][0]["last_step"]),
                 {"windows": [{"first_step": w["first_step"], "last_step": w["last_step"],
                               "share": sh} for w, sh, _ in flagged]},
                 "A saturated reward no longer ranks completions: widen or rescale the reward "
                 "(remove clipping, use a margin), harden the prompts, or stop training here.")


def _window_share(w: dict, r: np.ndarray, bounds, sigmoid: bool) -> tuple[float, str]:
    """The largest saturated share of one window's rewards and why (also sets ``top_share``)."""
    values, counts = np.unique(r, return_counts=True)
    w["top_share"] = float(counts.max() / r.size)
    share, why = w["top_share"], f"{w['top_share']:.0%} of rewards equal {values[counts.argmax()]:.6g}"
    if bounds is not None:
        at = float(np.mean((r <= bounds[0]) | (r >= bounds[1])))
        share, why = max(share, at), why if share >= at else f"{at:.0%} of rewards at the clip bounds"
    if sigmoid:
        ext = float(np.mean((r < 0.01) | (r > 0.99)))
        share, why = max(share, ext), why if share >= ext else f"{ext:.0%} of rewards beyond 0.01/0.99"
    return share, why
