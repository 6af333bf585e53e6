"""``DivergenceAnalyzer``: every run of a store compared with a baseline run."""
from __future__ import annotations

from rldk.analyzers import _series
from rldk.analyzers.base import Analyzer, has_events
from rldk.analyzers.divergence.card import plots
from rldk.analyzers.divergence.compare import compare
from rldk.analyzers.divergence.params import CONSUMES, NAME, Params
from rldk.analyzers.divergence.result import DivergenceResult
from rldk.core.errors import MissingEvents, RldkError


class DivergenceAnalyzer(Analyzer):
    """The ``divergence`` analysis: where each run stops agreeing with ``Params.baseline``
    (``rldk analyze --baseline RUN``). Two runs alone: :func:`first_divergence`."""

    name = NAME
    title = "First divergence"
    consumes = CONSUMES
    Params = Params
    defines_verdict = True

    def applies(self, store) -> bool:
        """The store has metrics (``run`` then says what else it needs: a baseline, a 2nd run)."""
        return has_events(store, ("metric",))

    def run(self, store, params: Params | None = None) -> DivergenceResult:
        """Compare every run of ``store`` with ``params.baseline`` (required)."""
        params = params if params is not None else Params()
        if params.baseline is None:
            raise MissingEvents("first divergence needs a baseline run: pass --baseline RUN")
        base = store.run(params.baseline).id
        others = [rid for rid in store.run_ids if rid != base]
        if not others:
            raise MissingEvents(f"the store holds only the baseline run {base!r}: "
                                "nothing to compare it with")
        return self.combine([self.run_part(store, params, others)], params)

    def run_part(self, store, params: Params, run_ids) -> tuple[tuple, tuple]:
        """``run_ids`` of ``store`` (which holds the baseline too) compared with the
        baseline: ``(comparisons, errors)``, errors as (run id, message). A store's
        result is :meth:`combine` of its parts over disjoint runs, in run-id order
        (``rldk.fleet`` computes the parts as separate tasks)."""
        base = _series.source_of(store.run(params.baseline), store)
        comparisons, errors = [], []
        for run_id in run_ids:
            if run_id == base.run_id:
                continue
            try:
                comparisons.append(compare(base, _series.Source(store, run_id), [], [], params))
            except RldkError as exc:
                errors.append((run_id, str(exc)))
        return tuple(comparisons), tuple(errors)

    def combine(self, parts, params: Params, store=None) -> DivergenceResult:
        """The result of the parts (:meth:`run_part`) of one store, in run-id order."""
        comparisons = tuple(c for done, _ in parts for c in done)
        errors = tuple(e for _, failed in parts for e in failed)
        if not comparisons and not errors:
            raise MissingEvents(f"the store holds only the baseline run {params.baseline!r}: "
                                "nothing to compare it with")
        if not comparisons:
            raise RldkError(f"no run could be compared with {params.baseline!r}: " + "; ".join(
                f"{r}: {m}" for r, m in errors))
        return DivergenceResult(params.baseline, comparisons, errors)

    def plots(self, result, out_dir) -> dict[str, str]:
        return plots(result, out_dir)
