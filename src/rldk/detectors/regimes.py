"""Regimes of a series: the segments of constant level that its change points cut.

``regimes(steps, values, kind)`` transforms the finite values (``scale.transform``),
cuts them with PELT at a penalty of ``PENALTY`` x sigma^2 x log(n) (sigma from
``scale.noise_sigma``; the Schwarz criterion's log n with a margin, so that noise
alone rarely opens a new regime), and describes each segment. A regime may be a
single point (``min_size`` 1): a run whose very first logged value is its only
healthy one must still show a change at its second step; the rules never take a
regime shorter than MIN_REFERENCE points as a level the run held. A rule then asks when
the series entered the regime it is judging: that regime's first step is the onset.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rldk.detectors.changepoint import segment
from rldk.detectors.scale import noise_sigma, transform

#: Penalty per new regime, in units of sigma^2 x log(n). BIC for one mean is 2. Measured on
#: white noise (300 series each): a spurious split in 21% / 10% / 6% of series of 30 / 100
#: / 300 points at 2, 8.7% / 1% / 0.3% at 3, 3% / 0% / 0% at 4. 3 keeps noise in one
#: regime on all but short series, and the rules' level ratios absorb the rest, while a
#: shift of 1 sigma held for half of a 30-point run still opens its own regime at 2-3.
PENALTY = 3.0
#: Relative floor of sigma: a series that is exactly constant in places still gets a
#: finite penalty (a change of 1e-6 of its typical size is not a regime).
SIGMA_FLOOR = 1e-6


@dataclass(frozen=True)
class Regime:
    """One segment of constant level.

    first, last: its first and last logged step. start, end: its index range
    (``end`` exclusive) in the finite series. level: median on the transformed
    scale; raw: median of the raw values; spread: MAD of the transformed values.
    """

    first: int
    last: int
    start: int
    end: int
    level: float
    raw: float
    spread: float

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Regimes:
    """A series cut into regimes: ``steps``/``values`` (finite only), ``y`` (transformed),
    ``sigma`` (noise of ``y``) and the ``parts``, in step order."""

    steps: np.ndarray
    values: np.ndarray
    y: np.ndarray
    sigma: float
    parts: tuple[Regime, ...]

    @cached_property
    def starts(self) -> np.ndarray:
        """Each regime's first index into ``values`` (increasing)."""
        return np.array([p.start for p in self.parts], dtype=np.int64)

    def first_staying(self, inside) -> Regime | None:
        """The first regime from which every later regime satisfies ``inside(regime)``
        (the series entered a state and stayed), or None."""
        found = None
        for part in reversed(self.parts):
            if not inside(part):
                break
            found = part
        return found


def regimes(steps, values, kind: str = "signed", penalty: float = PENALTY,
            min_size: int = 1) -> Regimes:
    """The regimes of a series (non-finite values left out; ``kind`` as in rldk.semantics)."""
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    steps, values = steps[finite], values[finite]
    y = transform(values, kind)
    sigma = max(noise_sigma(y), SIGMA_FLOOR * (1.0 + float(np.median(np.abs(y)))) if len(y) else 1.0)
    starts = segment(y, penalty * sigma ** 2 * np.log(max(len(y), 2)), min_size) if len(y) else []
    bounds = list(starts) + [len(y)]
    parts = tuple(regime_of(steps, values, y, a, b) for a, b in zip(bounds, bounds[1:]) if b > a)
    return Regimes(steps, values, y, sigma, parts)


def regime_of(steps, values, y, a: int, b: int) -> Regime:
    """Points ``a`` to ``b`` (exclusive) of a series as one regime (``y`` transformed)."""
    part = y[a:b]
    level = _median(part)
    return Regime(int(steps[a]), int(steps[b - 1]), a, b, level, _median(values[a:b]),
                  _median(np.abs(part - level)))


def _median(x: np.ndarray) -> float:
    """``float(np.median(x))`` of a non-empty float array, computed as NumPy does (the
    same partition, the middle values' sum over their count, NaN when any value is NaN)
    without its per-call overhead: a series of a thousand regimes asks for 3,000."""
    n = len(x)
    half = n // 2
    low = half if n % 2 else half - 1
    part = np.partition(x, [half, -1] if low == half else [low, half, -1])
    if np.isnan(part[-1]):
        return float("nan")
    return float(np.add.reduce(part[low:half + 1]) / (half + 1 - low))
