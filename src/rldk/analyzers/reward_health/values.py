"""Is the reward a number at all? NaN/inf and constant per-step rewards; empty or broken texts."""
from __future__ import annotations

import numpy as np

from rldk.analyzers.reward_health.context import Context
from rldk.analyzers.reward_health.data import names_of


def check_values(ctx: Context) -> None:
    """NaN/inf and constant per-step rewards: the reward is not a signal at all."""
    if ctx.reward is None:
        return ctx.skipped("reward_values", f"needs a per-step reward metric ({names_of('reward')}, ...; "
                           "or reward_col / --reward-col)")
    s = ctx.reward
    bad = ~np.isfinite(s.values)
    if bad.any():
        ctx.find("reward_nan", "error", f"{s.name} is NaN/inf at {int(bad.sum())} of {s.values.size} steps, "
                 f"first at step {int(s.steps[bad][0])}", s.name, (s.steps[bad][0], s.steps[bad][-1]),
                 {"nonfinite_steps": s.steps[bad][:20].tolist(), "count": int(bad.sum())},
                 "Find where the reward function returns NaN (empty completions, division by zero, "
                 "failed parsing) and return a finite value; check the reward model's dtype.")
    good = s.values[~bad]
    if good.size >= ctx.params.min_window and np.ptp(good) == 0:
        ctx.find("reward_constant", "warning", f"{s.name} is {good[0]:.6g} at every one of "
                 f"{good.size} steps: the reward carries no signal", s.name, (s.steps[0], s.steps[-1]),
                 {"value": float(good[0]), "steps": int(good.size)},
                 "Check that the reward function is wired to the completions and is not clipped "
                 "or cached; log per-sample rewards with writer.log_samples to see them.")
    ctx.ran("reward_values", f"{s.values.size} steps, {int(bad.sum())} non-finite")


def check_texts(ctx: Context) -> None:
    """Empty responses and text that was not valid UTF-8 (stored with U+FFFD)."""
    s = ctx.all_samples
    if not len(s):
        return
    empty = sum(1 for r in s.response if not r.strip())
    broken = sum(1 for r, q in zip(s.response, s.prompt) if "\ufffd" in r or "\ufffd" in q)
    if empty:
        share = empty / len(s)
        ctx.find("empty_responses", "warning" if share >= 0.5 else "info",
                 f"{empty} of {len(s)} responses are empty", "sample", None,
                 {"empty": empty, "samples": len(s)},
                 "Empty completions usually mean generation stops at once (EOS first): check "
                 "the generation config and what reward they get.")
    if broken:
        ctx.find("undecodable_text", "info", f"{broken} of {len(s)} samples held bytes that were not "
                 "UTF-8 (stored as U+FFFD)", "sample", None, {"samples": broken},
                 "Decode completions with the tokenizer's decode() before logging them.")
