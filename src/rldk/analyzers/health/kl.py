"""Rules on the KL to the reference policy and its controller (need the run's config).

negative_kl      any logged mean KL below ``-negative_kl_tol``. With exact
                 sampling the mean KL(policy || reference) is >= 0; TRL's PPO docs
                 name negative KL a bug signal (generation kwargs such as top_k or
                 min_length that change the sampling distribution). Error.
kl_above_target  the median KL of the last third above ``(1 + kl_band)`` x the
                 target (the +-20% proportional band of the adaptive KL controller,
                 Ziegler et al. 2019). Needs a target: ``kl_target`` or the run's
                 config (``target_kl``, ``kl_target``, ``kl_ctrl.target_kl``, ...).
kl_controller_stuck  an adaptive KL coefficient (one that changed at least once)
                 frozen for the last ``stuck_fraction`` (25%, >= 10 rows) of the run
                 while the KL is outside the target band (or, with no target, moved
                 by more than 50% over that stretch); or a coefficient pinned near 0.
"""
from __future__ import annotations

import numpy as np

from rldk.analyzers.health.data import RunData
from rldk.analyzers.health.params import (
    NotApplicable,
    Params,
    at_least,
    finding,
    finite,
)


def _kl_target(run: RunData, params: Params):
    if params.kl_target is not None:
        return params.kl_target
    return find_key(run.config, ("target_kl", "kl_target", "adap_kl_target")) or \
        find_key(find_key(run.config, ("kl_ctrl",)) or {}, ("target", "target_kl"))


def find_key(obj, keys, depth=0, skip=()):
    """First value under any of ``keys`` in a nested config dict, not looking inside the
    sections named in ``skip``."""
    if not isinstance(obj, dict) or depth > 4:
        return None
    for key in keys:
        if obj.get(key) is not None:
            return obj[key]
    for name, value in obj.items():
        found = None if name in skip else find_key(value, keys, depth + 1, skip)
        if found is not None:
            return found
    return None


def negative_kl(run: RunData, params: Params):
    steps, values = finite(run.get("kl_to_ref"))
    at_least(values, 1)
    bad = values < -params.negative_kl_tol
    if bad.any():
        at = steps[bad]
        yield finding("negative_kl", "error",
                       f"mean KL negative at {int(bad.sum())} of {len(values)} steps "
                       f"(first {int(at[0])}, min {values.min():.4g})", run, "kl_to_ref", at,
                       {"count": int(bad.sum()), "rows": len(values), "first_step": int(at[0]),
                        "min": float(values.min()), "steps": at[:20].tolist()},
                       "The policy's samples do not come from the distribution the KL assumes: "
                       "check generation kwargs (top_k, top_p, min_length, suppressed EOS) and "
                       "that reference and policy log-probs use the same tokens and masks.")


def kl_above_target(run: RunData, params: Params):
    target = _kl_target(run, params)
    if target is None:
        raise NotApplicable("no KL target: pass kl_target or record target_kl in the run's config")
    steps, values = finite(run.get("kl_to_ref"))
    n = max(3, len(values) // 3)
    late = float(np.median(values[-n:]))
    limit = (1 + params.kl_band) * float(target)
    if late > limit:
        above = steps[values > limit]
        yield finding("kl_above_target", "warning",
                       f"KL {late:.4g} over the last third, above the target band "
                       f"(target {target}, +{params.kl_band:.0%})", run, "kl_to_ref", above,
                       {"late_median": late, "target": float(target), "limit": limit,
                        "rows_above": int(len(above)), "rows": len(values)},
                       "Raise the KL coefficient (or the adaptive controller's horizon), lower "
                       "the learning rate, or check that the reference model is the initial policy.")


def kl_controller_stuck(run: RunData, params: Params):
    steps, coef = finite(run.get("kl_coef"))
    at_least(coef, 10)
    if np.all(coef == coef[0]):
        raise NotApplicable("the KL coefficient never changes: fixed, not adaptive")
    if coef[-1] <= 1e-8:
        yield _stuck(run, steps[coef <= 1e-8], coef, "collapsed to 0")
        return
    changes = np.flatnonzero(coef[1:] != coef[:-1])
    frozen_from = int(changes[-1]) + 1
    tail = len(coef) - frozen_from
    if tail < max(10, params.stuck_fraction * len(coef)):
        return
    kl = run.get("kl_to_ref")
    target = _kl_target(run, params)
    reason = _kl_outside(kl, steps[frozen_from], target, params)
    if reason:
        yield _stuck(run, steps[frozen_from:], coef, f"frozen at {coef[-1]:.4g} for the last "
                                                     f"{tail} rows while {reason}")


def _kl_outside(kl, start_step, target, params):
    ks, kv = finite(kl)
    kv = kv[ks >= start_step]
    if len(kv) < 3:
        return None
    if target is not None:
        outside = np.abs(kv / float(target) - 1) > params.kl_band
        return f"KL is outside the target band in {outside.mean():.0%} of them" if outside.mean() > 0.5 else None
    first, last = np.median(kv[:3]), np.median(kv[-3:])
    moved = abs(last - first) / max(abs(first), 1e-12)
    return f"KL moved from {first:.4g} to {last:.4g}" if moved > 0.5 else None


def _stuck(run, steps, coef, what):
    return finding("kl_controller_stuck", "warning", f"adaptive KL coefficient {what}", run,
                    "kl_coef", steps, {"first": float(coef[0]), "last": float(coef[-1]),
                                       "min": float(coef.min()), "max": float(coef.max())},
                    "Check the controller's target and horizon, and that it is updated every step "
                    "(a coefficient clamped at a bound or never updated no longer controls KL).")
