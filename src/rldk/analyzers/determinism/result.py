"""What a determinism check returns: per replica and level, the spread, the fixes.

``DeterminismResult.status`` is the card's status: "problems" when a replica's
outcomes differ (a tensor checksum, a metric, a logged step), "inconclusive" when
neither tensors nor metrics could be compared, else "ok"; ``passed`` is True only
for "ok". RNG digests are evidence that explains a difference, never the verdict
(:mod:`.rng`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rldk.analyzers.determinism.card import report, status_of
from rldk.analyzers.determinism.rng import OUTCOMES, RngRole, first_outcome, rng_roles
from rldk.core.result import Result, as_dict

NAME = "determinism"
CONSUMES = ("tensor", "rng", "metric", "run")
#: The levels compared, strongest first (the verdict comes from ``OUTCOMES``: tensor,
#: metric and steps; RNG digests explain a difference, see :mod:`.rng`).
LEVELS = ("tensor", "rng", "metric")
#: Tie order when several levels differ first at the same step.
ORDER = (*LEVELS, "steps")
EVIDENCE = ("observed", "setting", "unverified")       # strongest first


@dataclass(frozen=True)
class Params:
    """signals: metrics compared at the metric level, canonical (``reward_mean``, ``kl``)
    or as logged, resolved in each run through :mod:`rldk.semantics` (None: every
    quantity the replicas share, clock/throughput/memory aside).
    steps: compare only the first ``steps`` distinct steps; each replica must log that many.
    runs: the replica run ids in the store (None: every run in it; the first is the reference)."""

    signals: tuple[str, ...] | None = None
    steps: int | None = None
    runs: tuple[str, ...] | None = None


@dataclass(frozen=True)
class MetricSpread:
    """One metric across replicas, over the steps every replica logged.

    max_abs_diff: max over steps of (max - min) across replicas. max_rel_diff: the
    same divided by |mean| at that step. max_cv: max over steps of the coefficient
    of variation (sample std / |mean|; 0 where all agree, inf where the mean is 0).
    first_diff_step: first step whose values are not all bit-equal (None: never).
    """

    metric: str
    steps: int
    differing_steps: int
    first_diff_step: int | None
    max_abs_diff: float
    max_rel_diff: float
    max_cv: float


@dataclass(frozen=True)
class LevelDivergence:
    """The first difference between a replica and the reference replica at one level.

    level: tensor | rng | metric | steps (a step logged by one run only).
    step: first step that differs (None: none did, or the level was skipped).
    name: the first tensor / RNG source / metric that differs at that step (in
    logging order). detail: the evidence (every name differing there, how many
    entries were compared, the first step of the compared window).
    skipped: why the level could not be compared and what to log ("" when it was).
    """

    replica: str
    level: str
    step: int | None
    name: str | None
    detail: dict = field(default_factory=dict)
    skipped: str = ""

    @property
    def compared(self) -> bool:
        return not self.skipped

    def to_dict(self) -> dict:
        # the generic form; kept as a method because rldk.checkpoint serialises these directly
        return as_dict(self)


@dataclass(frozen=True)
class Fix:
    """One suggested fix. evidence: observed (the divergence points at it), setting
    (the audit shows a setting known to break determinism here) or unverified
    (rldk cannot see it; worth checking)."""

    action: str
    reason: str
    evidence: str


@dataclass(frozen=True)
class DeterminismResult(Result):
    """What the determinism check found.

    replicas: the run ids compared (the first is the reference).
    steps_compared: steps every replica logged (within ``Params.steps``).
    levels_compared: the levels of ``LEVELS`` compared for at least one replica.
    divergences: per replica and level, a :class:`LevelDivergence`.
    spread: per metric, a :class:`MetricSpread`. environment: the audit (setting ->
    value per replica). fixes: ranked, strongest evidence first. commands: the
    harness's runs (empty when the replicas were already in a store). store: the
    replicas' work directory (None when it was removed after the check).
    comparisons: each replica's comparison with the reference (divergence JSON).

    Derived: ``differs`` (an outcome differs), ``first_divergent_step`` (the first
    step an outcome differs), ``rng_roles`` (each differing RNG source as cause,
    consequence or unused, :class:`RngRole`).
    """

    replicas: tuple[str, ...]
    steps_compared: int
    levels_compared: tuple[str, ...]
    divergences: tuple[LevelDivergence, ...]
    spread: tuple[MetricSpread, ...]
    environment: tuple[dict, ...]
    fixes: tuple[Fix, ...]
    commands: tuple = ()
    store: str | None = None
    comparisons: tuple[dict, ...] = ()

    @property
    def differs(self) -> bool:
        """Whether an outcome (tensor, metric, logged steps) differs; RNG states alone do not count."""
        return first_outcome(self.divergences) is not None

    @property
    def rng_roles(self) -> tuple[RngRole, ...]:
        return tuple(rng_roles(self.divergences))

    @property
    def status(self) -> str:
        return status_of(self)

    @property
    def passed(self) -> bool:
        return self.status == "ok"

    @property
    def verdict(self) -> str:
        return {"ok": "deterministic", "problems": "nondeterministic"}.get(self.status, self.status)

    def first(self, level=None) -> LevelDivergence | None:
        """The earliest difference at ``level`` (None: at any outcome level), ties in ``ORDER``."""
        found = [d for d in self.divergences if d.step is not None
                 and (d.level == level if level is not None else d.level in OUTCOMES)]
        return min(found, key=lambda d: (d.step, ORDER.index(d.level))) if found else None

    @property
    def first_divergent_step(self) -> int | None:
        first = self.first()
        return first.step if first else None

    @property
    def first_tensor(self) -> str | None:
        return _name(self.first("tensor"))

    @property
    def first_rng_source(self) -> str | None:
        return _name(self.first("rng"))

    @property
    def first_metric(self) -> str | None:
        return _name(self.first("metric"))

    def to_dict(self) -> dict:
        # the generic fields plus the derived verdict figures the card's JSON has always
        # carried, with the spread under its documented key "metric_spread"
        out = as_dict(self)
        out["metric_spread"] = out.pop("spread")
        return {**out, "verdict": self.verdict, "passed": self.passed, "status": self.status,
                "first_divergent_step": self.first_divergent_step, "first_tensor": self.first_tensor,
                "first_rng_source": self.first_rng_source, "first_metric": self.first_metric,
                "rng_roles": [as_dict(r) for r in self.rng_roles]}

    def report(self):
        return report(self)


def _name(d):
    return d.name if d is not None else None
