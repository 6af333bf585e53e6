"""The statistical level: for runs that differ by seed or by nondeterministic kernels.

The difference ``d = b - a`` per common step is standardized by a noise band
(from replicas when given, else from the early "warm-up" steps), clipped to
``+-clip`` so that one outlier cannot alarm alone, and fed to a two-sided CUSUM
(allowance ``k``, threshold ``h``; :mod:`rldk.analyzers._cusum`). The reported
step is the change *start*: the first step of the CUSUM excursion that crossed
``h`` (the step after the last step where that CUSUM was zero), not the alarm step.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from rldk.analyzers import _series
from rldk.analyzers._cusum import (
    Alarm,
    Band,
    auto_threshold,
    cusum,
    floor_sigma,
    replica_band,
    standardize,
    warmup_band,
)
from rldk.analyzers.divergence.card import curve
from rldk.analyzers.divergence.result import SignalDivergence
from rldk.core.errors import UsageError


def warmup_signal(base: SignalDivergence, steps, va, vb, params):
    """``(signal, curve)``: band from the first ``warmup`` common steps, then CUSUM over all."""
    n = len(steps)
    if n < params.min_warmup:
        return replace(base, note=few_steps(n, params)), curve(steps, va, vb, None)
    warm = params.warmup or min(max(n // 10, params.min_warmup), 500)
    band = warmup_band(vb[:warm] - va[:warm])
    h = params.h if params.h is not None else auto_threshold(n, params.alpha)
    z_up, z_down = standardize(va, vb, band.center, band.sigma, params.clip)
    alarm = cusum(z_up, z_down, params.k, h)
    lo, hi = va + band.center - 3 * band.sigma, va + band.center + 3 * band.sigma
    result = with_alarm(base, steps, vb - va, band, h, alarm)
    return result, curve(steps, va, vb, (lo, hi))


def few_steps(n, params) -> str:
    return (f"only {n} common step(s): the statistical level needs at least "
            f"{params.min_warmup}")


def with_alarm(base, steps, d, band, h, alarm: Alarm) -> SignalDivergence:
    """``base`` with the band, threshold and (when it alarmed) the CUSUM's change."""
    if alarm.alarm is None:
        return replace(base, threshold=h, band=band)
    window = d[alarm.start:alarm.alarm + 1] - band.center
    window = window[np.isfinite(window)]
    magnitude = float(np.median(window)) if len(window) else None
    return replace(base, threshold=h, band=band, change_start=int(steps[alarm.start]),
                   alarm_step=int(steps[alarm.alarm]), direction=alarm.side,
                   magnitude=magnitude,
                   z=magnitude / band.sigma if magnitude is not None and band.sigma else None)


def headline_stat(compared):
    """``(step, signal, "statistical")`` of the earliest change start (the largest |z|
    on a tie), or Nones."""
    found = [(s.change_start, -abs(s.z or 0.0), i, s.signal) for i, s in enumerate(compared)
             if s.change_start is not None]
    if not found:
        return None, None, None
    step, _, _, signal = min(found)
    return step, signal, "statistical"


# ------------------------------------------------------------------ replicas
def with_replicas(a, b, reps_a, reps_b, pairs, compared, curves, params):
    """The statistical level with the band from replicas, for every signal."""
    by_signal = {s.signal: s for s in compared}
    out, new_curves = [], dict(curves)
    for pair, sides in load_replicas(a, b, reps_a, reps_b, pairs):
        result, plotted = replica_signal(by_signal[pair.signal], sides, params)
        out.append(result)
        new_curves[pair.signal] = plotted or curves[pair.signal]
    return out, new_curves


def load_replicas(a, b, reps_a, reps_b, pairs):
    """Yield ``(pair, (matrix_a, matrix_b, steps))`` aligned on steps all runs logged."""
    for pair in pairs:
        side_a = [(a, pair.name_a)] + list(zip(reps_a, pair.replicas[:len(reps_a)]))
        side_b = [(b, pair.name_b)] + list(zip(reps_b, pair.replicas[len(reps_a):]))
        series = [_series.load_series(src, [name])[name] for src, name in side_a + side_b]
        steps = series[0].steps
        for s in series[1:]:
            steps = np.intersect1d(steps, s.steps, assume_unique=True)
        values = np.stack([s.values[np.searchsorted(s.steps, steps)] for s in series])
        yield pair, (values[:len(side_a)], values[len(side_a):], steps)


def replica_signal(base, sides, params):
    """``(signal, curve)``: per-step band from the replicas' spread, CUSUM of the medians."""
    side_a, side_b, steps = sides
    n = len(steps)
    if max(len(side_a), len(side_b)) < 2:
        raise UsageError("replicas need at least 2 runs on one side")
    if n < params.min_warmup:
        return replace(base, note=few_steps(n, params)), {}
    sigma = replica_band(side_a, side_b, params.smooth)
    sigma = np.where(np.isfinite(sigma) & (sigma > 0), sigma, np.nan)
    fill = np.nanmedian(sigma) if np.isfinite(sigma).any() else floor_sigma(side_a.ravel())
    sigma = np.where(np.isnan(sigma), fill, sigma) * math.sqrt(2.0)   # scale of a difference
    center_a, center_b = np.median(side_a, axis=0), np.median(side_b, axis=0)
    null_peak = max((_null_peak(side, sigma, params) for side in (side_a, side_b)), default=0.0)
    h = params.h if params.h is not None else max(auto_threshold(n, params.alpha),
                                                  params.margin * null_peak)
    z_up, z_down = standardize(center_a, center_b, 0.0, sigma, params.clip)
    alarm = cusum(z_up, z_down, params.k, h)
    band = Band("replicas", 0.0, float(np.median(sigma)), n,
                f"{len(side_a)} run(s) A, {len(side_b)} run(s) B; replicas' own CUSUM peak "
                f"{null_peak:.3g}")
    result = with_alarm(base, steps, center_b - center_a, band, h, alarm)
    return result, curve(steps, center_a, center_b, (center_a - 3 * sigma, center_a + 3 * sigma))


def _null_peak(side: np.ndarray, sigma, params) -> float:
    """Largest CUSUM statistic any two replicas of one side reach against each other."""
    peak = 0.0
    for i in range(len(side)):
        for j in range(i + 1, len(side)):
            z_up, z_down = standardize(side[i], side[j], 0.0, sigma, params.clip)
            peak = max(peak, cusum(z_up, z_down, params.k, math.inf).peak)
    return peak
