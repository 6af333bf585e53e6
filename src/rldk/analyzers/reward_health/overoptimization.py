"""Overoptimization (Goodhart): the gold / held-out reward falls after its peak while the
proxy reward keeps rising; with a KL logged, fits Gao et al. (2022)
R(d) = r0 + a d - b d ln d, d = sqrt(KL)."""
from __future__ import annotations

import math

import numpy as np

from rldk.analyzers.reward_health.context import Context
from rldk.analyzers.reward_health.data import GOLD, KL, names_of
from rldk.analyzers.reward_health.params import Params
from rldk.analyzers.reward_health.stats import fmt, spearman


def check_overoptimization(ctx: Context) -> None:
    """Gold / held-out reward falling after its peak while the proxy reward rises."""
    p = ctx.params
    gold = ctx.series(p.gold_col, GOLD)
    if gold is None or ctx.reward is None:
        return ctx.skipped("overoptimization", f"needs a gold or held-out reward metric "
                           f"({names_of('gold_reward')}; or gold_col / --gold-col) beside the proxy reward")
    gold, proxy = gold.finite(), ctx.reward.finite()
    common, gi, pi = np.intersect1d(gold.steps, proxy.steps, return_indices=True)
    if common.size < 2 * p.min_window:
        return ctx.skipped("overoptimization", f"{common.size} steps with both {gold.name} and "
                           f"{proxy.name}; needs {2 * p.min_window}")
    g, r = gold.values[gi], proxy.values[pi]
    fit = gao_fit(ctx, common, g)
    verdict = gold_peak(g, r, common, p)
    ctx.ran("overoptimization", f"gold peak at step {verdict['peak_step']}, drop "
            f"{fmt(verdict['drop_in_noise'])} noise units" + (f", Gao fit R2 {fmt(fit['r2'])}" if fit else ""))
    if verdict["overoptimized"]:
        ctx.find("overoptimization", "error",
                 f"{gold.name} fell {verdict['drop']:.3g} from its peak at step {verdict['peak_step']} "
                 f"while {proxy.name} rose {verdict['proxy_gain']:.3g}", gold.name,
                 (verdict["peak_step"], int(common[-1])), {**verdict, "gao_fit": fit},
                 "The policy is overoptimizing the proxy reward model (Goodhart): stop at or "
                 "restore the checkpoint near the gold peak, raise the KL coefficient, or "
                 "retrain the reward model on the policy's current samples.")


def gold_peak(g: np.ndarray, r: np.ndarray, steps: np.ndarray, p: Params) -> dict:
    """Peak of the (3-step smoothed) gold reward and how far it fell since, in units of
    its step-to-step noise (robust: MAD of second differences / sqrt 6, so a smooth
    trend is not counted as noise); the drop must also be >= 5% of the gold's range."""
    smooth = np.convolve(g, np.ones(3) / 3, mode="valid")
    peak = int(np.argmax(smooth)) + 1
    second = np.diff(g, 2)
    noise = float(1.4826 * np.median(np.abs(second - np.median(second))) / math.sqrt(6))
    tail = g[-max(3, p.min_window // 2):]
    drop = float(smooth[peak - 1] - tail.mean())
    in_noise = drop / noise if noise > 0 else (math.inf if drop > 0 else 0.0)
    rho_proxy = spearman(steps[peak:], r[peak:]) if g.size - peak >= 3 else None
    gain = float(r[-3:].mean() - r[max(0, peak - 1):peak + 2].mean())
    over = (in_noise >= p.gold_drop and drop >= 0.05 * float(np.ptp(g)) and rho_proxy is not None
            and rho_proxy >= 0.3 and gain > 0)
    return {"peak_step": int(steps[peak]), "drop": drop, "noise": noise,
            "drop_in_noise": in_noise if math.isfinite(in_noise) else None,
            "proxy_rho_after_peak": rho_proxy, "proxy_gain": gain, "overoptimized": bool(over)}


def gao_fit(ctx: Context, steps: np.ndarray, gold: np.ndarray) -> dict | None:
    """Least-squares fit of gold = r0 + a d - b d ln d, d = sqrt(KL) (Gao et al. 2022, RL form)."""
    kl = ctx.series(ctx.params.kl_col, KL)
    if kl is None:
        return None
    kl = kl.finite()
    common, gi, ki = np.intersect1d(steps, kl.steps, return_indices=True)
    d = np.sqrt(np.clip(kl.values[ki], 0.0, None))
    y = gold[gi]
    if common.size < 5 or np.ptp(d) == 0:
        return None
    dlogd = np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)
    design = np.column_stack([np.ones_like(d), d, -dlogd])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    total = float(np.sum((y - y.mean()) ** 2))
    r0, a, b = (float(c) for c in coef)
    peak_d = math.exp(a / b - 1.0) if b > 0 and a / b < 50 else None
    return {"r0": r0, "alpha": a, "beta": b, "r2": 1.0 - float(resid @ resid) / total if total else None,
            "peak_sqrt_kl": peak_d, "peak_kl": peak_d ** 2 if peak_d is not None else None,
            "kl_metric": kl.name, "points": int(common.size)}
