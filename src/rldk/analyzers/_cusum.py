"""The statistics of the divergence analysis: noise bands and a two-sided CUSUM.

Plain NumPy on aligned series (no store access), so each piece is testable
alone. ``tests/test_divergence.py`` checks the vectorized CUSUM against the
textbook recursion and the whole statistical level against a NumPy reference.

Standardized differences ``z`` are in noise standard deviations; CUSUM
statistics are in the same units (the threshold ``h`` too).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_MAD_TO_SIGMA = 1.4826            # MAD of a normal sample x this = its standard deviation
_MEAN_ABS_TO_SIGMA = 1.2533       # mean |x - center| of a normal sample x this = sigma


@dataclass(frozen=True)
class Band:
    """The noise band of one signal: the difference b - a is noise within center +- 3 sigma.

    source: "replicas" (per step, from K runs per side) or "warmup" (first ``steps`` steps).
    sigma: standard deviation of the single-run difference (median over steps for replicas).
    """

    source: str
    center: float
    sigma: float
    steps: int
    note: str = ""


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


def replica_band(side_a: np.ndarray, side_b: np.ndarray, smooth: int) -> np.ndarray:
    """Per-step sigma of one run from the spread of replicas around their side's median.

    side_*: arrays (runs, steps). Sides with one run add nothing. The per-step MAD
    (x 1.4826) is smoothed with a centred rolling median of ``smooth`` steps.
    """
    resid = [np.abs(s - np.median(s, axis=0)) for s in (side_a, side_b) if len(s) >= 2]
    raw = _MAD_TO_SIGMA * np.nanmedian(np.concatenate(resid), axis=0)
    return rolling_median(raw, smooth)


def rolling_median(x: np.ndarray, width: int) -> np.ndarray:
    """Centred rolling median (window shrinks at the ends), NaN ignored."""
    if width <= 1 or len(x) < 2:
        return x.copy()
    from numpy.lib.stride_tricks import sliding_window_view

    half = width // 2
    padded = np.concatenate([np.full(half, np.nan), x, np.full(half, np.nan)])
    return np.nanmedian(sliding_window_view(padded, 2 * half + 1), axis=1)
