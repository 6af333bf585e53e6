"""The refusal-rate curve by step and the step where the refusal rate changes."""
from __future__ import annotations

import math

import numpy as np

from rldk.analyzers.safety.classify import Classified, rate


def refusal_curve(c: Classified) -> tuple[dict, ...]:
    """Per-step refusal counts and rates with Wilson intervals (steps >= 0 only)."""
    refused = c.refused
    ok = c.step >= 0
    out = []
    for step in np.unique(c.step[ok]):
        m = ok & (c.step == step)
        r = rate(refused[m].sum(), m.sum())
        out.append({"step": int(step), "n": r.total, "refusals": r.count, "rate": r.rate,
                    "lower": r.lower, "upper": r.upper})
    return tuple(out)


def change_point(curve, alpha: float = 0.01, min_samples: int = 10) -> dict | None:
    """The split of per-step refusal counts maximizing the binomial likelihood ratio.

    For each split between consecutive steps (at least ``min_samples`` samples on
    each side), G = 2 [LL(p_before) + LL(p_after) - LL(p_all)]; its chi-square(1)
    p-value is multiplied by the number of candidate splits (Bonferroni). Returns
    the best split's step (first step after the change), rates before/after, G and
    the corrected p-value, with ``significant`` against ``alpha``; None with fewer
    than two candidate splits.
    """
    from scipy.stats import chi2

    if len(curve) < 3:
        return None
    k = np.array([row["refusals"] for row in curve], dtype=float)
    n = np.array([row["n"] for row in curve], dtype=float)
    ck, cn = np.cumsum(k), np.cumsum(n)
    splits = [i for i in range(1, len(curve)) if cn[i - 1] >= min_samples and cn[-1] - cn[i - 1] >= min_samples]
    if len(splits) < 2:
        return None
    total = _loglik(ck[-1], cn[-1])
    gains = [2.0 * (_loglik(ck[i - 1], cn[i - 1]) + _loglik(ck[-1] - ck[i - 1], cn[-1] - cn[i - 1]) - total)
             for i in splits]
    best = int(np.argmax(gains))
    i, g = splits[best], max(0.0, gains[best])
    p = min(1.0, float(chi2.sf(g, 1)) * len(splits))
    before, after = rate(int(ck[i - 1]), int(cn[i - 1])), rate(int(ck[-1] - ck[i - 1]), int(cn[-1] - cn[i - 1]))
    return {"step": int(curve[i]["step"]), "before": before.to_dict(), "after": after.to_dict(),
            "g": g, "p_value": p, "candidates": len(splits), "significant": bool(p < alpha)}


def _loglik(k: float, n: float) -> float:
    if n == 0 or k == 0 or k == n:
        return 0.0
    p = k / n
    return k * math.log(p) + (n - k) * math.log(1.0 - p)


def curve_windows(curve, windows: int) -> list[tuple]:
    """``(first_step, last_step, n, refusals, rate, lower, upper)`` of up to ``windows``
    contiguous chunks of the curve (the card's table)."""
    if not curve:
        return []
    rows = []
    for chunk in np.array_split(np.arange(len(curve)), min(windows, len(curve))):
        part = [curve[i] for i in chunk]
        r = rate(sum(p["refusals"] for p in part), sum(p["n"] for p in part))
        rows.append((part[0]["step"], part[-1]["step"], r.total, r.count, r.rate, r.lower, r.upper))
    return rows
