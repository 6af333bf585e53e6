"""Determinism: run a training command N times and show whether, where and why it differs.

``check_determinism(cmd)`` (:mod:`.harness_runs`) runs ``cmd`` as replicas, each
writing its own store, then compares them with :class:`DeterminismAnalyzer`
(:mod:`.analyzer`), which also compares replicas already in a store: every
replica against the first at three levels, tensor checksums and RNG digests
(bitwise) and metrics (exact, names resolved through :mod:`rldk.semantics`), plus
the steps each logged (:mod:`.compare`, :mod:`.metrics`).

The card (``determinism.json`` / ``.md``, :mod:`.card`) gives the verdict
(inconclusive when no level could be compared); the first nondeterministic step
with the first tensor, RNG source and metric that differ; the spread of each
metric across replicas; an audit of the training process's determinism settings
(:mod:`.environment`); and fixes ranked by the evidence behind them (:mod:`.fixes`).
"""
from rldk.analyzers.determinism.analyzer import DeterminismAnalyzer
from rldk.analyzers.determinism.compare import compare_runs
from rldk.analyzers.determinism.environment import environment_audit
from rldk.analyzers.determinism.fixes import rank_fixes
from rldk.analyzers.determinism.harness_runs import check_determinism
from rldk.analyzers.determinism.metrics import VOLATILE_METRIC, compared_metrics
from rldk.analyzers.determinism.result import (
    CONSUMES,
    EVIDENCE,
    LEVELS,
    NAME,
    DeterminismResult,
    Fix,
    LevelDivergence,
    MetricSpread,
    Params,
)


def run(store, params: Params | None = None) -> DeterminismResult:
    """``DeterminismAnalyzer().run(store, params)``: the replicas in ``store`` compared."""
    return DeterminismAnalyzer().run(store, params)


__all__ = ["CONSUMES", "DeterminismAnalyzer", "DeterminismResult", "EVIDENCE", "Fix", "LEVELS",
           "LevelDivergence", "MetricSpread", "NAME", "Params", "VOLATILE_METRIC", "check_determinism",
           "compare_runs", "compared_metrics", "environment_audit", "rank_fixes", "run"]
