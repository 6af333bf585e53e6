"""Component divergence: one reward function's mean clearly rising while another falls."""
from __future__ import annotations

import re

import numpy as np

from rldk.analyzers.reward_health.context import Context
from rldk.analyzers.reward_health.data import Series, load_many
from rldk.analyzers.reward_health.params import Params
from rldk.analyzers.reward_health.stats import spearman

#: TRL's per-reward-function means: ``rewards/<function name>/mean``.
COMPONENT = re.compile(r"^rewards/(.+)/mean$")


def check_components(ctx: Context) -> None:
    """One ``rewards/<fn>/mean`` clearly rising while another clearly falls."""
    p = ctx.params
    names = [n for n in ctx.names if COMPONENT.match(n)]
    if len(names) < 2:
        return ctx.skipped("component_divergence", "needs two or more per-function reward metrics "
                           "rewards/<fn>/mean (TRL logs them with several reward_funcs)")
    loaded = load_many(ctx.run, names)
    trends = {n: trend(loaded[n].finite(), p) for n in names}
    rising = [n for n, t in trends.items() if t["direction"] == "up"]
    falling = [n for n, t in trends.items() if t["direction"] == "down"]
    ctx.ran("component_divergence", f"{len(names)} components: {len(rising)} rising, {len(falling)} falling")
    if rising and falling:
        s = loaded[rising[0]].finite()
        ctx.find("component_divergence", "warning",
                 f"{', '.join(rising)} rising while {', '.join(falling)} falling", rising[0],
                 (s.steps[0], s.steps[-1]), {"trends": trends},
                 "The policy trades one objective for another: reweight the reward functions "
                 "(reward_weights), gate the rising one on the falling one, or inspect samples "
                 "for the rising component being gamed.")


def trend(s: Series, p: Params) -> dict:
    """"up" / "down" / "flat": Spearman(value, step) beyond ``component_rho`` and the
    late-minus-early mean beyond ``component_shift`` standard deviations, both ways."""
    if s.values.size < 2 * p.min_window:
        return {"direction": "flat", "rho": None, "shift": None, "steps": int(s.values.size)}
    rho = spearman(s.steps, s.values)
    k = max(p.min_window, s.values.size // 4)
    sd = float(np.std(s.values))
    shift = float((s.values[-k:].mean() - s.values[:k].mean()) / sd) if sd > 0 else 0.0
    up = rho is not None and rho >= p.component_rho and shift >= p.component_shift
    down = rho is not None and rho <= -p.component_rho and shift <= -p.component_shift
    return {"direction": "up" if up else "down" if down else "flat", "rho": rho, "shift": shift,
            "first": float(s.values[:k].mean()), "last": float(s.values[-k:].mean())}
