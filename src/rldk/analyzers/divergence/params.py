"""The parameters of the divergence analysis, and the names shared by its modules."""
from __future__ import annotations

import re
from dataclasses import dataclass

from rldk.core.errors import UsageError

NAME = "divergence"
CONSUMES = ("metric", "tensor", "rng")
MODES = ("auto", "exact", "statistical")
#: Metrics left out of the default signals: wall-clock timings differ between any two runs.
TIMING = re.compile(r"time|fps|per_second|throughput|elapsed|duration|runtime", re.IGNORECASE)


@dataclass(frozen=True)
class Params:
    """Parameters of the divergence analysis (defaults from the CUSUM literature).

    baseline: for ``rldk analyze``: the run every other run is compared against.
    signals: metric names (canonical, e.g. ``reward_mean``/``kl``, or as logged);
        None: every quantity both runs log except wall-clock timings (``TIMING``).
    mode: "auto", "exact" or "statistical" (see :mod:`rldk.analyzers.divergence`).
    k: CUSUM allowance in noise standard deviations without replicas (0.5: tuned to
        a 1-sigma shift). With replicas the allowance is the seed band's half-width
        (a Student-t quantile at ``alpha``; see ``statistical.replica_signal``).
    h: CUSUM threshold; None: ``max(5, ln(n m / alpha) - 1.166)`` for n compared
        steps and m signals (Siegmund's approximation: about ``alpha`` false alarms
        per comparison of two runs, split evenly over the signals), raised to
        ``margin`` x the largest CUSUM the replicas reach against each other.
    alpha: tolerated false-alarm rate per comparison (split over the signals): sets
        ``h`` when it is None and, with replicas, the seed band's width.
    clip: the most one step adds to a CUSUM beyond its allowance: standardized
        differences are clipped to +-(k + clip), or +-(band width + clip) with
        replicas (a 2-step blip cannot alarm).
    warmup: early common steps that estimate the band without replicas;
        None: n // 10, at least ``min_warmup``, at most 500.
    min_warmup: fewest common steps the statistical level accepts.
    smooth: width in steps of the rolling median that smooths the replica band.
    margin: factor over the replicas' own largest CUSUM when calibrating ``h``.
    bitwise: also compare tensor checksums and RNG digests when both runs log them.
    """

    baseline: str | None = None
    signals: tuple[str, ...] | None = None
    mode: str = "auto"
    k: float = 0.5
    h: float | None = None
    alpha: float = 0.01
    clip: float = 2.5
    warmup: int | None = None
    min_warmup: int = 10
    smooth: int = 11
    margin: float = 1.25
    bitwise: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise UsageError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.clip <= self.k:
            raise UsageError(f"clip ({self.clip}) must exceed k ({self.k})")
