"""``DeterminismAnalyzer``: the replica runs of one command in a store, compared."""
from __future__ import annotations

import json

from rldk.analyzers.base import Analyzer
from rldk.analyzers.determinism.compare import (
    compare_replicas,
    replica_runs,
    step_window,
)
from rldk.analyzers.determinism.environment import environment_audit, start_meta
from rldk.analyzers.determinism.fixes import rank_fixes
from rldk.analyzers.determinism.metrics import compared_metrics, metric_spread
from rldk.analyzers.determinism.result import CONSUMES, NAME, DeterminismResult, Params


class DeterminismAnalyzer(Analyzer):
    """The ``determinism`` analysis: replicas of one command (same argv, config and seed)
    compared with the first (by run id) at the tensor, RNG, metric and steps levels.

    ``rldk.check_determinism(cmd)`` runs the command and then this analyzer on the
    replicas' store.
    """

    name = NAME
    title = "Determinism check"
    consumes = CONSUMES
    Params = Params
    defines_verdict = True

    def applies(self, store) -> bool:
        """True when the store holds at least two runs of the same argv, config and seed."""
        groups = {}
        for run_id, meta in start_meta(store).items():
            key = json.dumps([meta.get("argv"), meta.get("config"), meta.get("seed")],
                             sort_keys=True, default=str)
            groups.setdefault(key, []).append(run_id)
        return any(len(ids) >= 2 for ids in groups.values())

    def run(self, store, params: Params | None = None) -> DeterminismResult:
        """Compare the replica runs in ``store`` (``params.runs``, or all; the first is the
        reference). Levels a run does not log are listed as skipped checks; the result is
        inconclusive when no level could be compared."""
        params = params if params is not None else Params()
        runs = replica_runs(store, params.runs)
        ids = [r.id for r in runs]
        steps = step_window(store, ids, params.steps)
        window = (steps[0], steps[-1] if params.steps is not None else None)
        levels, divergences, comparisons = compare_replicas(store, runs, params.signals, window)
        signals, _ = compared_metrics(store, ids, params.signals)
        audit = environment_audit(store, ids)
        return DeterminismResult(
            tuple(ids), len(steps), levels, tuple(divergences),
            tuple(metric_spread(store, ids, signals, steps)), tuple(audit),
            tuple(rank_fixes(divergences, audit, levels)), comparisons=tuple(comparisons))
