"""The scale a quantity's noise lives on, and that noise, measured from the series itself.

``transform`` maps values onto a scale where the noise is roughly the same size in
every regime: the log for log-scale quantities (KL, grad norm, step time) and for
other positive ones (entropy, lengths: a collapse from 0.2 to 0.004 nats is a
factor of 50, not a shift of 0.2), the arcsine of the square root for ratios in
[0, 1] (the variance-stabilising transform of a proportion), the identity for
signed quantities.

``noise_sigma`` is the step-to-step noise: 1.4826 x the median absolute deviation of
the first differences, divided by sqrt(2) (a difference of two independent draws has
twice the variance). Differences cancel slow drifts and level shifts, and the median
ignores the few differences that straddle a change point, so the estimate holds
however the run behaves, from its first step (no "healthy warm-up" is assumed).
"""
from __future__ import annotations

import numpy as np

#: Consistency constant of the MAD for a normal distribution.
MAD_TO_SIGMA = 1.4826
#: Relative floor of the log transform: values below this share of the series'
#: typical positive value are clipped (log 0 is not a number; a collapse to zero
#: reads as a fall of log(1/LOG_FLOOR) = 9.2 nats).
LOG_FLOOR = 1e-4


def transform(values: np.ndarray, kind: str) -> np.ndarray:
    """``values`` on the scale of ``kind`` (an ``rldk.semantics`` kind: logscale, nonneg,
    ratio, signed). Non-finite values must be removed first."""
    values = np.asarray(values, dtype=float)
    if kind in ("logscale", "nonneg"):
        positive = values[values > 0]
        if positive.size == 0:
            return values.copy()
        floor = LOG_FLOOR * float(np.median(positive))
        return np.log(np.maximum(values, floor))
    if kind == "ratio":
        return np.arcsin(np.sqrt(np.clip(values, 0.0, 1.0)))
    return values.copy()


def noise_sigma(y: np.ndarray) -> float:
    """Robust step-to-step noise of ``y`` (same units as ``y``; 0 for a constant series).

    When more than half of the differences are equal (a series that repeats values:
    counts, zero-heavy fractions) the MAD is 0; the mean absolute deviation of the
    differences (times sqrt(pi/2), its normal consistency factor) is used instead.
    """
    d = np.diff(np.asarray(y, dtype=float))
    if len(d) < 2:
        return 0.0
    dev = np.abs(d - np.median(d))
    sigma = MAD_TO_SIGMA * float(np.median(dev)) / np.sqrt(2)
    if sigma == 0.0:
        sigma = float(np.mean(dev)) * np.sqrt(np.pi / 2) / np.sqrt(2)
    return sigma
