"""Calibration of a reward model on preference pairs (sample events with attrs ``pair`` and
``preferred``): pairwise accuracy, ECE of the Bradley-Terry probability sigmoid(r_a - r_b)
over 10 bins, and the accuracy of "the longer response wins" as a length-only baseline."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rldk.analyzers.reward_health.context import Context
from rldk.analyzers.reward_health.data import Samples
from rldk.analyzers.reward_health.plots import plot_reliability
from rldk.core.naming import safe_file_stem

PREFERRED = frozenset(("1", "true", "yes", "chosen"))


def check_calibration(ctx: Context, out_dir=None) -> dict | None:
    """Accuracy, ECE and the length baseline of the run's preference pairs."""
    pairs = preference_pairs(ctx.all_samples)
    if pairs is None:
        ctx.skipped("calibration", "needs preference pairs: sample events with attrs pair and preferred "
                    "(two responses per pair, one preferred)")
        return None
    cal = calibration(*pairs)
    ctx.ran("calibration", f"{cal['pairs']} pairs: accuracy {cal['accuracy']:.2f}, ECE {cal['ece']:.3f}, "
            f"length-only {cal['length_accuracy']:.2f}")
    _judge(ctx, cal)
    if out_dir is not None:
        cal["plot"] = plot_reliability(cal, Path(out_dir) / f"reliability-{safe_file_stem(ctx.run.id)}.png",
                                       ctx.run.id)
    return cal


def _judge(ctx: Context, cal: dict) -> None:
    p = ctx.params
    if cal["accuracy"] < p.accuracy_min:
        ctx.find("reward_model_inaccurate", "warning", f"reward model ranks only {cal['accuracy']:.0%} "
                 f"of {cal['pairs']} preference pairs correctly", "sample", None,
                 {k: cal[k] for k in ("accuracy", "pairs")},
                 "Retrain or replace the reward model; check that chosen/rejected are not swapped.")
    if cal["ece"] > p.ece_max:
        ctx.find("reward_model_miscalibrated", "warning", f"reward margins are miscalibrated: "
                 f"ECE {cal['ece']:.3f} over 10 bins", "sample", None,
                 {k: cal[k] for k in ("ece", "accuracy", "pairs")},
                 "Rescale rewards (temperature-scale the margin on held-out pairs) before using "
                 "them as probabilities or mixing reward models.")
    if cal["length_accuracy"] >= 0.6 and cal["length_accuracy"] >= cal["accuracy"] - 0.05:
        ctx.find("length_shortcut", "warning", f"'the longer response wins' gets "
                 f"{cal['length_accuracy']:.0%} of pairs right, the reward model {cal['accuracy']:.0%}",
                 "sample", None, {k: cal[k] for k in ("length_accuracy", "accuracy", "pairs")},
                 "The labels (or the model) reward length: rebalance the preference data by "
                 "length and report length-controlled accuracy.")


def preference_pairs(s: Samples):
    """``(r_preferred, r_other, len_preferred, len_other)`` arrays, or None without pairs."""
    members_of: dict = {}
    for i, pair in enumerate(s.pair):
        if pair is not None and np.isfinite(s.reward[i]):
            members_of.setdefault(pair, []).append(i)
    rows = []
    for members in members_of.values():
        flags = [str(s.preferred[i]).lower() in PREFERRED for i in members]
        if len(members) == 2 and sum(flags) == 1:
            a, b = members if flags[0] else members[::-1]
            rows.append((s.reward[a], s.reward[b], len(s.response[a]), len(s.response[b])))
    if not rows:
        return None
    return tuple(np.array(col, dtype=float) for col in zip(*rows))


def calibration(r_pref, r_other, len_pref, len_other, bins: int = 10) -> dict:
    """Pairwise accuracy (ties count half), ECE of p = sigmoid(r_pref - r_other) over
    ``bins`` equal-width bins (both orderings of each pair, so the diagram is
    symmetric), and the accuracy of "the longer response is preferred"."""
    margin = r_pref - r_other
    accuracy = float(np.mean((margin > 0) + 0.5 * (margin == 0)))
    p = 1.0 / (1.0 + np.exp(-np.clip(margin, -50, 50)))
    conf = np.concatenate([p, 1.0 - p])
    outcome = np.concatenate([np.ones_like(p), np.zeros_like(p)])
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            c, a = float(conf[m].mean()), float(outcome[m].mean())
            ece += m.mean() * abs(a - c)
            rows.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "count": int(m.sum()),
                         "confidence": c, "accuracy": a})
    dl = len_pref - len_other
    length_accuracy = float(np.mean((dl > 0) + 0.5 * (dl == 0)))
    return {"pairs": int(margin.size), "accuracy": accuracy, "ece": float(ece), "bins": rows,
            "length_accuracy": length_accuracy}
