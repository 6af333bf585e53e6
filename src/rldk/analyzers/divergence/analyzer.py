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
        base = _series.source_of(store.run(params.baseline), store)
        others = [rid for rid in store.run_ids if rid != base.run_id]
        if not others:
            raise MissingEvents(f"the store holds only the baseline run {base.run_id!r}: "
                                "nothing to compare it with")
        comparisons, errors = [], []
        for run_id in others:
            try:
                comparisons.append(compare(base, _series.Source(store, run_id), [], [], params))
            except RldkError as exc:
                errors.append((run_id, str(exc)))
        if not comparisons:
            raise RldkError(f"no run could be compared with {base.run_id!r}: " + "; ".join(
                f"{r}: {m}" for r, m in errors))
        return DivergenceResult(base.run_id, tuple(comparisons), tuple(errors))

    def plots(self, result, out_dir) -> dict[str, str]:
        return plots(result, out_dir)
