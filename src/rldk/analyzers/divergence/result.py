"""What a divergence comparison returns: per signal, bitwise evidence, the verdict.

Frozen dataclasses with the generic ``to_dict`` of :class:`rldk.core.result.Result`;
``str()`` of a :class:`Divergence` is one line naming the runs by id.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rldk.analyzers._cusum import Band
from rldk.analyzers.divergence.card import card
from rldk.core.result import Result, as_dict


@dataclass(frozen=True)
class SignalDivergence:
    """One signal compared between the runs.

    signal: the name asked for; name_a, name_b: the metric names in each run.
    common_steps / first_step / last_step: the aligned steps; only_a / only_b:
        steps logged by one run only (left out).
    exact_step: first common step where the values differ at all (None: identical);
        value_a / value_b: the values there.
    change_start: statistical level, first step of the alarming CUSUM excursion
        (None: no alarm); alarm_step: where the CUSUM crossed ``threshold``;
        direction: "up" (b above a) or "down".
    magnitude: median of (d - center) from change_start to alarm_step, in the
        metric's units; z: magnitude / band sigma.
    max_abs_delta: largest |b - a| over the common steps (finite values).
    duplicates_*, non_numeric_*: rows left out (see ``_series``).
    precision: "float64", or "float32" when one run stores the signal rounded to
        float32 (TensorBoard) and the exact level compared at that precision.
    note: why a level could not run for this signal (empty when both could).
    """

    signal: str
    name_a: str
    name_b: str
    common_steps: int
    first_step: int | None
    last_step: int | None
    only_a: int
    only_b: int
    exact_step: int | None
    value_a: float | None
    value_b: float | None
    change_start: int | None = None
    alarm_step: int | None = None
    direction: str | None = None
    magnitude: float | None = None
    z: float | None = None
    max_abs_delta: float | None = None
    threshold: float | None = None
    band: Band | None = None
    duplicates_a: int = 0
    duplicates_b: int = 0
    non_numeric_a: int = 0
    non_numeric_b: int = 0
    precision: str = "float64"
    note: str = ""


@dataclass(frozen=True)
class BitwiseEvidence:
    """Tensor checksums or RNG digests compared per (rank, step, name).

    kind: "tensor" or "rng". compared: (rank, step, name) entries both runs logged;
    steps: distinct steps among them; first_common: the first of them. first_step:
    the first step where any differs (None: all equal); names: those differing
    there, in run A's logging order (at most 20); differing: how many differ there.
    only_a / only_b: entries logged by one run only.
    """

    kind: str
    compared: int
    steps: int
    first_common: int | None
    first_step: int | None
    names: tuple[str, ...]
    differing: int
    only_a: int
    only_b: int

    @property
    def first_name(self) -> str | None:
        return self.names[0] if self.names else None

    def to_dict(self) -> dict:
        # the generic fields plus the derived first_name, which the cards' JSON carries
        return {**as_dict(self), "first_name": self.first_name}


@dataclass(frozen=True)
class Divergence(Result):
    """Where runs ``run_a`` and ``run_b`` stop agreeing.

    diverged: whether they do; step: the first divergent step (None when not);
    signal: what diverged there (a metric, ``tensor/<name>`` or ``rng/<source>``);
    level: "bitwise", "exact" or "statistical" (the evidence behind ``step``);
    mode: the level the verdict was taken from ("exact" covers bitwise too).
    verdict: the finding in words. signals: per-signal comparison; tensors, rng:
    bitwise evidence (None when a run logs none); replicas_a / replicas_b: extra
    runs used for the band. curve: the plotted signal, downsampled (steps, a, b,
    band_low, band_high). weak: the verdict came from the statistical level without
    replicas, whose band (the early spread of one difference) does not measure how
    far runs of one configuration drift apart by seed (``card.WEAK_REASON``).
    """

    run_a: str
    run_b: str
    diverged: bool
    step: int | None
    signal: str | None
    level: str | None
    mode: str
    verdict: str
    signals: tuple[SignalDivergence, ...]
    tensors: BitwiseEvidence | None = None
    rng: BitwiseEvidence | None = None
    replicas_a: tuple[str, ...] = ()
    replicas_b: tuple[str, ...] = ()
    curve: dict = field(default_factory=dict)
    weak: bool = False

    def report(self):
        """The drift card (an ``rldk.core.report.Report``)."""
        return card([self])

    def __str__(self) -> str:
        runs = f"runs {self.run_a} and {self.run_b}"
        n = max((s.common_steps for s in self.signals), default=0)
        if self.diverged:
            return f"{runs} diverge at step {self.step} on {self.signal} ({self.level}){_weak(self)}"
        if self.mode == "exact":
            return f"{runs} are identical over {n} common steps ({len(self.signals)} signal(s))"
        return f"{runs} do not diverge over {n} common steps ({len(self.signals)} signal(s)){_weak(self)}"

    def __repr__(self) -> str:
        return f"<Divergence: {self}>"


def _weak(d) -> str:
    return "; weak verdict: no replicas" if d.weak else ""


@dataclass(frozen=True)
class DivergenceResult(Result):
    """Every run compared against ``baseline`` (``rldk analyze --baseline``); runs that
    could not be compared are in ``errors`` as (run id, message)."""

    baseline: str
    comparisons: tuple[Divergence, ...]
    errors: tuple[tuple[str, str], ...] = ()

    def report(self):
        return card(list(self.comparisons), baseline=self.baseline, errors=self.errors)
