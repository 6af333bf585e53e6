"""Leakage: validation prompts also in training (exact and normalized content hash), and a
validation reward that moves in lockstep with the training reward step to step."""
from __future__ import annotations

import hashlib
import unicodedata

import numpy as np

from rldk.analyzers.reward_health.context import Context
from rldk.analyzers.reward_health.data import (
    VAL_REWARD,
    VAL_SPLITS,
    Samples,
    load_samples,
)
from rldk.analyzers.reward_health.stats import fmt, spearman
from rldk.detectors.onsets import level_of


def check_leakage(ctx: Context, validation) -> dict | None:
    """Validation prompts found in training and lockstep rewards; ``validation``: a Run
    whose samples are the validation set, or None (samples with attrs split='val')."""
    s = ctx.all_samples
    val_mask = np.array([sp in VAL_SPLITS for sp in s.split], dtype=bool)
    train, val = s.select(~val_mask), s.select(val_mask)
    if validation is not None:
        val = load_samples(validation)
    out = {}
    if len(train) and len(val):
        out["overlap"] = prompt_overlap(train.prompt, val.prompt)
        _judge_overlap(ctx, out["overlap"])
    lock = _lockstep(ctx, train, val)
    if lock is not None:
        out["lockstep"] = lock
    if not out:
        ctx.skipped("leakage", "needs validation samples (attrs split='val', or validation= / "
                    "--validation RUN) or a validation reward metric (eval_reward, eval/reward)")
        return None
    ctx.ran("leakage", "; ".join(f"{k}: " + ", ".join(f"{kk} {fmt(v)}" for kk, v in d.items()
                                                      if isinstance(v, float))
                                 for k, d in out.items()))
    return out


def normalize_text(text: str) -> str:
    """Text for near-duplicate matching: NFKC, casefolded, punctuation dropped, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text)
    return " ".join(text.split())


def _hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def prompt_overlap(train_prompts, val_prompts) -> dict:
    """Share of distinct validation prompts whose content hash (exact, then normalized)
    also occurs among the training prompts."""
    val = {p for p in val_prompts if p}
    exact = {_hash(p) for p in train_prompts}
    norm = {_hash(normalize_text(p)) for p in train_prompts}
    hit_exact = [p for p in val if _hash(p) in exact]
    hit_norm = [p for p in val if _hash(normalize_text(p)) in norm]
    n = max(1, len(val))
    return {"val_prompts": len(val), "exact": len(hit_exact), "normalized": len(hit_norm),
            "exact_share": len(hit_exact) / n, "normalized_share": len(hit_norm) / n,
            "examples": sorted(hit_norm)[:5]}


def _judge_overlap(ctx: Context, ov: dict) -> None:
    if not ov["normalized"]:
        return
    share = ov["normalized_share"]
    ctx.find("prompt_leakage", "warning" if share > ctx.params.overlap_max else "info",
             f"{ov['normalized']} of {ov['val_prompts']} validation prompts also appear in training "
             f"({ov['exact']} exact, {ov['normalized']} after normalization)", "sample", None, ov,
             "Deduplicate the validation set against training by normalized content hash "
             "before trusting validation rewards.")


def _lockstep(ctx: Context, train: Samples, val: Samples) -> dict | None:
    """Spearman of the train and validation mean rewards' step-to-step noise: each
    series' deviations from its own rolling level (``level_of``), so that a learning curve
    both share (fast gains early, small ones late: changes that rank alike) is no
    lockstep; validation that scores the training batches shares their noise."""
    p = ctx.params
    tr, va = _train_and_val_rewards(ctx, train, val)
    if tr is None or va is None:
        return None
    common, ti, vi = np.intersect1d(tr[0], va[0], return_indices=True)
    if common.size < 2 * p.min_window:
        return None
    t, v = tr[1][ti], va[1][vi]
    rho_noise = spearman(t - level_of(t), v - level_of(v))
    out = {"steps": int(common.size), "level_rho": spearman(t, v),
           "change_rho": spearman(np.diff(t), np.diff(v)), "noise_rho": rho_noise,
           "note": "level_rho and change_rho rise whenever both improve along one curve; only "
                   "noise_rho (deviations from each series' rolling level) is judged"}
    if rho_noise is not None and rho_noise >= p.lockstep_rho:
        ctx.find("train_val_lockstep", "warning", f"validation reward moves in lockstep with training "
                 f"reward step to step (Spearman of their noise {rho_noise:.2f} over {common.size} steps)",
                 ctx.reward.name if ctx.reward is not None else "sample", (common[0], common[-1]), out,
                 "Validation tracks the training batches' noise, as if it scored the same items: "
                 "check that validation prompts are disjoint and scored separately.")
    return out


def _train_and_val_rewards(ctx: Context, train: Samples, val: Samples):
    """(steps, mean rewards) of training and of validation: the reward metrics where
    logged, else the per-step means of the samples."""
    tr = _per_step_mean(train) if len(train) else None
    va = _per_step_mean(val) if len(val) else None
    if va is None:
        metric = ctx.series(ctx.params.val_reward_col, VAL_REWARD)
        va = (metric.finite().steps, metric.finite().values) if metric is not None else None
    if ctx.reward is not None:
        tr = (ctx.reward.finite().steps, ctx.reward.finite().values)
    return tr, va


def _per_step_mean(s: Samples):
    ok = np.isfinite(s.reward) & (s.step >= 0)
    if not ok.any():
        return None
    steps, inverse = np.unique(s.step[ok], return_inverse=True)
    return steps, np.bincount(inverse, weights=s.reward[ok]) / np.bincount(inverse)
