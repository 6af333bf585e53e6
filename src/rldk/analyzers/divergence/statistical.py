"""The statistical level: for runs that differ by seed or by nondeterministic kernels.

The difference ``d = b - a`` per common step is standardized by a noise band
(from replicas when given, else from the early "warm-up" steps), clipped so
that one outlier cannot alarm alone, and fed to a two-sided CUSUM (allowance
``k``, threshold ``h``; :mod:`rldk.analyzers._cusum`). The reported
step is the change *start*: the first step of the CUSUM excursion that crossed
``h`` (the step after the last step where that CUSUM was zero), not the alarm step.

Without replicas the verdict is *weak*: the band is the early spread of one
difference, which says nothing of how far runs of one configuration drift apart
by seed (a seed's offset persists for the whole run and reads as a divergence).
With replicas (other seeds of each side's configuration) the band is the seed
band of :func:`replica_signal`.
"""
from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

import numpy as np

from rldk.analyzers import _series
from rldk.analyzers._cusum import (
    Alarm,
    Band,
    auto_threshold,
    cusum,
    floor_sigma,
    pooled_sd,
    standardize,
    t_width,
    warmup_band,
)
from rldk.analyzers.divergence.card import curve
from rldk.analyzers.divergence.result import SignalDivergence
from rldk.core.errors import UsageError


def warmup_signal(base: SignalDivergence, steps, va, vb, params):
    """``(signal, plot)``: band from the first ``warmup`` common steps, then CUSUM over all;
    ``plot()`` returns the signal's curve (only the plotted signal's is ever drawn)."""
    n = len(steps)
    if n < params.min_warmup:
        return replace(base, note=few_steps(n, params)), partial(curve, steps, va, vb, None)
    warm = params.warmup or min(max(n // 10, params.min_warmup), 500)
    band = warmup_band(vb[:warm] - va[:warm])
    h = params.h if params.h is not None else auto_threshold(n, params.alpha)
    z_up, z_down = standardize(va, vb, band.center, band.sigma, params.clip)
    alarm = cusum(z_up, z_down, params.k, h)
    result = with_alarm(base, steps, vb - va, band, h, alarm)
    return result, partial(band_curve, steps, va, vb, band)


def band_curve(steps, va, vb, band: Band) -> dict:
    """The curve of a signal with its warm-up band around run A's values."""
    lo, hi = va + band.center - 3 * band.sigma, va + band.center + 3 * band.sigma
    return curve(steps, va, vb, (lo, hi))


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
    """``(signal, curve)``: the sides' means compared with a per-step seed band.

    The band is ``mean_a +- width x sd x sqrt(1/m + 1/n)`` for m and n runs a side:
    ``sd`` the pooled within-side spread (:func:`rldk.analyzers._cusum.pooled_sd`),
    ``width`` the Student-t quantile for its degrees of freedom at ``alpha``. The
    CUSUM's allowance is the band's half-width itself, so only the part of a
    difference that leaves the band accumulates: a seed's offset that persists
    inside the band never alarms (a k = 0.5 allowance, right for independent noise,
    would add it up step after step). ``h`` is raised to ``margin`` x the largest
    CUSUM two runs of one side reach against each other (heavier tails than t).
    """
    side_a, side_b, steps = sides
    n = len(steps)
    if max(len(side_a), len(side_b)) < 2:
        raise UsageError("replicas need at least 2 runs on one side")
    if n < params.min_warmup:
        return replace(base, note=few_steps(n, params)), None
    sd, dof = pooled_sd((side_a, side_b), params.smooth)
    sd = _filled(sd, side_a)
    width = t_width(dof, params.alpha)
    scale = sd * math.sqrt(1.0 / len(side_a) + 1.0 / len(side_b))   # sd of the means' difference
    with np.errstate(invalid="ignore"):
        center_a, center_b = np.nanmean(side_a, axis=0), np.nanmean(side_b, axis=0)
    null_peak = max(_null_peak(side, sd * math.sqrt(2.0), width, params) for side in (side_a, side_b))
    h = params.h if params.h is not None else max(auto_threshold(n, params.alpha),
                                                  params.margin * null_peak)
    z_up, z_down = standardize(center_a, center_b, 0.0, scale, width + params.clip)
    alarm = cusum(z_up, z_down, width, h)
    band = Band("replicas", 0.0, float(np.median(scale)), n,
                f"{len(side_a)} run(s) A, {len(side_b)} run(s) B, {dof} degrees of freedom; "
                f"runs of one side reach a CUSUM of {null_peak:.3g} against each other", width, dof)
    result = with_alarm(base, steps, center_b - center_a, band, h, alarm)
    return result, partial(curve, steps, center_a, center_b,
                           (center_a - width * scale, center_a + width * scale))


def _filled(sd: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``sd`` with steps of no spread (every run equal, or too few finite) set to the
    median spread, or a floor when no step has any."""
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, np.nan)
    fill = np.nanmedian(sd) if np.isfinite(sd).any() else floor_sigma(values[np.isfinite(values)])
    return np.where(np.isnan(sd), fill, sd)


def _null_peak(side: np.ndarray, sigma, width: float, params) -> float:
    """Largest CUSUM statistic any two runs of one side reach against each other."""
    peak = 0.0
    for i in range(len(side)):
        for j in range(i + 1, len(side)):
            z_up, z_down = standardize(side[i], side[j], 0.0, sigma, width + params.clip)
            peak = max(peak, cusum(z_up, z_down, width, math.inf).peak)
    return peak
