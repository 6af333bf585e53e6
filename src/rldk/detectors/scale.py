"""The scale a quantity's noise lives on, and that noise, measured from the series itself.

``transform`` maps values onto a scale where the noise is roughly the same size in
every regime: the log for log-scale quantities (KL, grad norm, step time) and for
other positive ones (entropy, lengths: a collapse from 0.2 to 0.004 nats is a
factor of 50, not a shift of 0.2), the arcsine of the square root for ratios in
[0, 1] (the variance-stabilising transform of a proportion), the identity for
signed quantities.

``noise_sigma`` is the step-to-step noise, from the first differences (a difference
of two independent draws has twice the variance): a robust scale of them, divided
by sqrt(2). Differences cancel slow drifts and level shifts, and the median
ignores the few differences that straddle a change point, so the estimate holds
however the run behaves, from its first step (no "healthy warm-up" is assumed).
"""
from __future__ import annotations

import numpy as np

#: Consistency constant of the MAD for a normal distribution.
MAD_TO_SIGMA = 1.4826
#: Relative floor of the log transform: values below this share of the series' high
#: level (95th percentile of its positive values) are clipped. log 0 is not a number,
#: and below a thousandth of where a quantity ran, its relative noise is meaningless (an
#: entropy of 1e-16 vs 1e-12 nats is the same collapsed policy): a collapse to zero reads
#: as a fall of log(1/LOG_FLOOR) = 6.9 nats, with the noise of the collapsed stretch
#: bounded instead of exploding.
LOG_FLOOR = 1e-3


def transform(values: np.ndarray, kind: str) -> np.ndarray:
    """``values`` on the scale of ``kind`` (an ``rldk.semantics`` kind: logscale, nonneg,
    ratio, signed). Non-finite values must be removed first."""
    values = np.asarray(values, dtype=float)
    if kind in ("logscale", "nonneg"):
        positive = values[values > 0]
        if positive.size == 0:
            return values.copy()
        floor = LOG_FLOOR * float(np.quantile(positive, 0.95))
        return np.log(np.maximum(values, floor))
    if kind == "ratio":
        return np.arcsin(np.sqrt(np.clip(values, 0.0, 1.0)))
    return values.copy()


#: Mean of the lowest 90% of |Z| for a standard normal Z (consistency factor of the
#: trimmed mean absolute deviation below; computed over 10^7 draws).
TRIMMED_ABS_MEAN = 0.6568


def noise_sigma(y: np.ndarray) -> float:
    """Robust step-to-step noise of ``y`` (same units as ``y``; 0 for a constant series).

    The larger of two estimates from the first differences, each divided by sqrt(2):
    1.4826 x their median absolute deviation, and their mean absolute deviation over
    the lowest 90% (divided by its normal consistency factor). The MAD alone breaks
    down when the differences take a few repeated values (quantised counts, a
    periodic pattern, a series at a floor most of the time: the MAD is then about 0);
    the trimmed mean does not, and the trimming keeps the few differences that
    straddle change points out of it.
    """
    d = np.diff(np.asarray(y, dtype=float))
    return spread(d) / np.sqrt(2) if len(d) >= 2 else 0.0


def spread(d: np.ndarray) -> float:
    """Robust spread (a standard deviation) of the differences ``d``, as ``noise_sigma``
    takes that of the first differences: the larger of 1.4826 x their median absolute
    deviation and their mean absolute deviation over the lowest 90% (by its normal
    consistency factor); 0 for none."""
    if not len(d):
        return 0.0
    dev = np.sort(np.abs(d - np.median(d)))
    mad = MAD_TO_SIGMA * float(dev[len(dev) // 2])
    trimmed = float(dev[:max(1, int(0.9 * len(dev)))].mean()) / TRIMMED_ABS_MEAN
    return max(mad, trimmed)
