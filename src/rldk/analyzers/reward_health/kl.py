"""KL band: the reward rising while the KL to the reference sits above ``kl_band``.

The KL is the ``kl_to_ref`` quantity only (TRL ``kl`` / ``objective/kl``, verl
``actor/reward_kl_penalty`` or ``actor/kl_loss``); the PPO update's old-to-new
estimate (verl ``actor/ppo_kl``, SB3 ``approx_kl``) is another quantity and is never used.
"""
from __future__ import annotations

import numpy as np

from rldk.analyzers.reward_health.context import Context
from rldk.analyzers.reward_health.data import KL, names_of
from rldk.analyzers.reward_health.stats import (
    fmt,
    mean_or_none,
    rolling_median,
    spearman,
)


def check_kl(ctx: Context) -> None:
    """Reward rising while KL to the reference (3-step rolling median) is above ``kl_band``."""
    p = ctx.params
    kl = ctx.series(p.kl_col, KL)
    if kl is None or ctx.reward is None:
        need = "a per-step reward metric and " if ctx.reward is None else ""
        return ctx.skipped("kl_band", f"needs {need}a KL-to-reference metric ({names_of('kl_to_ref')}, ...; "
                           "or kl_col / --kl-col); a PPO approx_kl / actor/ppo_kl is not one")
    kl, reward = kl.finite(), ctx.reward.finite()
    above = np.flatnonzero(rolling_median(kl.values, 3) > p.kl_band)
    ctx.ran("kl_band", f"max {kl.name} {fmt(float(kl.values.max()) if kl.values.size else None)} "
            f"vs band {p.kl_band:g}")
    if not above.size:
        return
    cross = int(kl.steps[above[0]])
    rho = spearman(reward.steps, reward.values)
    before, after = reward.values[reward.steps < cross], reward.values[reward.steps >= cross]
    rising = rho is not None and rho >= 0.3 and after.size and before.size and after.mean() > before.mean()
    ctx.find("kl_band_exceeded", "warning" if rising else "info",
             f"{kl.name} above {p.kl_band:g} from step {cross} (max {kl.values.max():.3g})"
             + (f" while {reward.name} kept rising" if rising else ""), kl.name,
             (cross, int(kl.steps[-1])),
             {"band": p.kl_band, "first_step_above": cross, "max_kl": float(kl.values.max()),
              "reward_rho_step": rho, "reward_before": mean_or_none(before),
              "reward_after": mean_or_none(after)},
             "Reward bought with a large KL is often reward hacking: raise the KL coefficient "
             "(beta), lower the learning rate, or evaluate samples past this step with a "
             "held-out judge. Set kl_band to your framework's scale (per-token vs per-sequence).")
