"""Reward drift: two runs (reward models, reward versions) scoring the same (prompt,
response) items: Spearman, Kendall tau-b and the pairwise sign-flip rate."""
from __future__ import annotations

import hashlib

import numpy as np

from rldk.analyzers.reward_health.context import Context
from rldk.analyzers.reward_health.data import Samples, load_samples
from rldk.analyzers.reward_health.stats import fmt, kendall_tau_b, spearman


def check_drift(ctx: Context, other) -> dict | None:
    """Rewards of this run vs ``other`` (a Run or None) on shared (prompt, response) items."""
    if other is None:
        ctx.skipped("drift", "needs a second run scoring the same items (against= / --against RUN)")
        return None
    p = ctx.params
    a, b = item_rewards(ctx.samples), item_rewards(load_samples(other))
    shared = sorted(a.keys() & b.keys())
    if len(shared) < 3:
        ctx.skipped("drift", f"{len(shared)} shared (prompt, response) items with run {other.id!r}; needs 3")
        return None
    d = drift(np.array([a[k] for k in shared]), np.array([b[k] for k in shared]))
    d["against"] = other.id
    ctx.ran("drift", f"{d['items']} shared items with {other.id}: Spearman {fmt(d['spearman'])}, "
            f"sign flips {d['sign_flip_rate']:.2f}")
    rho = d["spearman"] if d["spearman"] is not None else 0.0
    if rho < p.drift_rho or d["sign_flip_rate"] > p.flip_max:
        ctx.find("reward_drift", "warning", f"rewards disagree with run {other.id} on {d['items']} shared "
                 f"items: Spearman {fmt(d['spearman'])}, {d['sign_flip_rate']:.0%} of pairs flip order",
                 "sample", None, d,
                 "The two reward models (or reward versions) rank completions differently: "
                 "do not compare rewards across them; re-score both runs with one model.")
    return d


def item_key(prompt: str, response: str) -> str:
    """Content hash of a (prompt, response) item."""
    return hashlib.blake2b(f"{prompt}\x00{response}".encode("utf-8", "surrogatepass"),
                           digest_size=16).hexdigest()


def item_rewards(s: Samples) -> dict:
    """item key -> mean reward over the samples of that item."""
    sums: dict = {}
    for i in np.flatnonzero(np.isfinite(s.reward)):
        k = item_key(s.prompt[i], s.response[i])
        total, n = sums.get(k, (0.0, 0))
        sums[k] = (total + float(s.reward[i]), n + 1)
    return {k: t / n for k, (t, n) in sums.items()}


def drift(a: np.ndarray, b: np.ndarray, max_items: int = 4000, seed: int = 0) -> dict:
    """Spearman, Kendall tau-b and the pairwise sign-flip rate of two reward vectors on the
    same items. The flip rate is the share of item pairs ordered oppositely, among pairs
    ordered (not tied) by both; above ``max_items`` a seeded random subset is used."""
    items = a.size
    if a.size > max_items:
        idx = np.random.default_rng(seed).choice(a.size, max_items, replace=False)
        a, b = a[idx], b[idx]
    i, j = np.triu_indices(a.size, k=1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    both = (da != 0) & (db != 0)
    return {"items": int(items), "spearman": spearman(a, b), "kendall": kendall_tau_b(da, db),
            "sign_flip_rate": float(np.mean(da[both] != db[both])) if both.any() else 0.0,
            "pairs_compared": int(both.sum()), "subsampled": bool(items > max_items)}
