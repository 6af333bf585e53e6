"""The statistics of the divergence analysis: noise bands and a two-sided CUSUM.

Plain NumPy on aligned series (no store access), so each piece is testable
alone. ``tests/test_divergence.py`` checks the vectorized CUSUM against the
textbook recursion and the whole statistical level against a NumPy reference.

Standardized differences ``z`` are in noise standard deviations; CUSUM
statistics are in the same units (the threshold ``h`` too).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

_MAD_TO_SIGMA = 1.4826            # MAD of a normal sample x this = its standard deviation
_MEAN_ABS_TO_SIGMA = 1.2533       # mean |x - center| of a normal sample x this = sigma


@dataclass(frozen=True)
class Band:
    """The noise band of one signal: the difference b - a is noise within center +- width x sigma.

    source: "replicas" (per step, from the runs of both sides) or "warmup" (first ``steps`` steps).
    sigma: standard deviation of the difference b - a (with replicas: of the difference of
        the two sides' means, median over steps).
    width: the band's half-width in sigmas (3 for the warm-up band; with replicas a
        Student-t quantile for ``dof`` degrees of freedom, see :func:`t_width`).
    dof: degrees of freedom of the replicas' spread (None for the warm-up band).
    """

    source: str
    center: float
    sigma: float
    steps: int
    note: str = ""
    width: float = 3.0
    dof: int | None = None


def warmup_band(d: np.ndarray) -> Band:
    """Robust sigma of the early differences ``d`` (finite values only), centred on 0.

    The runs should agree, so the band is centred on a zero difference: an offset
    present from the first step is a divergence from the first step, not noise.
    sigma = 1.4826 x MAD about the early median; when more than half the early
    differences are equal (MAD 0), 1.2533 x mean |deviation|; when all are, a floor.
    """
    d = d[np.isfinite(d)]
    if not len(d):
        return Band("warmup", 0.0, floor_sigma(d), 0, "no finite early differences")
    dev = np.abs(d - np.median(d))
    sigma, note = _MAD_TO_SIGMA * float(np.median(dev)), ""
    if sigma == 0:
        sigma, note = _MEAN_ABS_TO_SIGMA * float(dev.mean()), "MAD is 0: mean |deviation| used"
    if sigma == 0:
        sigma, note = floor_sigma(d), "early steps identical: band of zero width (floor used)"
    return Band("warmup", 0.0, sigma, len(d), note)


def floor_sigma(values) -> float:
    scale = float(np.max(np.abs(values))) if len(values) else 0.0
    return max(scale, 1.0) * 1e-12


def auto_threshold(n: int, alpha: float) -> float:
    """CUSUM threshold with about ``alpha`` false alarms over ``n`` steps (k = 0.5).

    Siegmund: the two-sided in-control run length of a k = 0.5 CUSUM is about
    ``exp(h + 1.166)``; setting it to ``n / alpha`` gives ``h = ln(n / alpha) - 1.166``.
    """
    return max(5.0, math.log(max(n, 1) / alpha) - 1.166)


def standardize(va, vb, center, sigma, clip):
    """Clipped standardized differences for the up and down CUSUMs.

    Where exactly one run is NaN/inf (or they differ in how), both get ``+clip``:
    the runs disagree but the sign is unknown. Where both are equally non-finite, 0.
    """
    sigma = np.asarray(sigma, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (vb - va - center) / sigma
    bad = ~np.isfinite(z)
    if not bad.any():                     # the usual case: no mixing needed
        return np.clip(z, -clip, clip), np.clip(-z, -clip, clip)
    same = (va == vb) | (np.isnan(va) & np.isnan(vb))
    up = np.where(bad, np.where(same, 0.0, clip), np.clip(z, -clip, clip))
    down = np.where(bad, np.where(same, 0.0, clip), np.clip(-z, -clip, clip))
    return up, down


@dataclass(frozen=True)
class Alarm:
    """A CUSUM result over indices: alarm (None: none), start, side, peak statistic."""

    alarm: int | None
    start: int | None
    side: str | None
    peak: float


def lindley(x: np.ndarray) -> np.ndarray:
    """``S_t = max(0, S_{t-1} + x_t)``, ``S_{-1} = 0``, in closed form:
    ``S_t = C_t - min(0, min_{j<=t} C_j)`` with ``C`` the cumulative sum of ``x``."""
    c = np.cumsum(x)
    return c - np.minimum.accumulate(np.minimum(c, 0.0))


def cusum(z_up: np.ndarray, z_down: np.ndarray, k: float, h: float) -> Alarm:
    """Two-sided CUSUM on standardized differences (vectorized, O(n))."""
    if not len(z_up):
        return Alarm(None, None, None, 0.0)
    up, down = lindley(z_up - k), lindley(z_down - k)
    peak = float(max(up.max(), down.max()))
    over = np.flatnonzero((up > h) | (down > h))
    if not len(over):
        return Alarm(None, None, None, peak)
    t = int(over[0])
    side, stat = ("up", up) if up[t] > h and up[t] >= down[t] else ("down", down)
    zeros = np.flatnonzero(stat[:t] == 0)
    return Alarm(t, int(zeros[-1]) + 1 if len(zeros) else 0, side, peak)


def pooled_sd(sides, smooth: int) -> tuple[np.ndarray, int]:
    """``(sd, dof)``: per step, the standard deviation of one run from the spread of the
    runs of each side around their side's mean, pooled over both sides (sides with one
    run add nothing) and over a centred window of ``smooth`` steps.

    sides: arrays (runs, steps). The pooled within-side variance is the classical
    one-way ANOVA estimate: a real difference between the sides does not widen it,
    and with ``dof = sum(runs - 1)`` degrees of freedom the standardized difference
    of the sides' means is Student-t under "same configuration" (:func:`t_width`).
    Averaging over steps is not counted as extra degrees of freedom: a seed's
    offset usually persists for many steps, so neighbouring steps are not
    independent evidence. Not a MAD: with 2-3 runs a side it has no usable
    small-sample law and is 0 whenever most runs tie (a GRPO loss of exactly 0).
    """
    squares, counts = [], []
    for side in sides:
        if len(side) < 2:
            continue
        with np.errstate(invalid="ignore"):
            resid = side - np.nanmean(side, axis=0)
        finite = np.isfinite(resid)
        squares.append(np.where(finite, resid, 0.0) ** 2)
        counts.append(np.maximum(finite.sum(axis=0) - 1, 0) * np.ones(side.shape[1]))
    dof = sum(len(side) - 1 for side in sides if len(side) >= 2)
    total = np.sum([q.sum(axis=0) for q in squares], axis=0)
    n = np.sum(counts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(n > 0, total / np.where(n > 0, n, 1), np.nan)
    return np.sqrt(rolling_mean(var, smooth)), dof


def t_width(dof: int, alpha: float) -> float:
    """Two-sided Student-t quantile: ``|t_dof| > width`` with probability ``alpha``."""
    from scipy.stats import t

    return float(t.ppf(1.0 - alpha / 2.0, max(dof, 1)))


def rolling_mean(x: np.ndarray, width: int) -> np.ndarray:
    """Centred rolling mean (window shrinks at the ends), NaN ignored."""
    if width <= 1 or len(x) < 2:
        return x.copy()
    from numpy.lib.stride_tricks import sliding_window_view

    half = width // 2
    padded = np.concatenate([np.full(half, np.nan), x, np.full(half, np.nan)])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # all-NaN windows stay NaN
        return np.nanmean(sliding_window_view(padded, 2 * half + 1), axis=1)
