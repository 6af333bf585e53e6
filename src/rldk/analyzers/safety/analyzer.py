"""The safety analysis behind the one analyzer interface, and its front ends."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from rldk.analyzers.base import Analyzer, has_events
from rldk.analyzers.safety.classify import Classified, classify, rate, rates_of
from rldk.analyzers.safety.curve import change_point, refusal_curve
from rldk.analyzers.safety.data import from_store, load
from rldk.analyzers.safety.judge import judge
from rldk.analyzers.safety.params import Params
from rldk.analyzers.safety.plots import plots
from rldk.analyzers.safety.result import NAME, TITLE, RunSafety, SafetyResult
from rldk.core.errors import MissingEvents, UsageError
from rldk.core.plots import MissingPlotting
from rldk.core.report import write_report


class SafetyAnalyzer(Analyzer):
    """Refusals, over-refusal, harmful content and jailbreaks in sample events (see the package docstring)."""

    name = NAME
    title = TITLE
    consumes = ("sample",)
    Params = Params
    defines_verdict = True

    def applies(self, store) -> bool:
        """True when the store holds sample events."""
        return has_events(store, self.consumes)

    def run(self, store, params=None) -> SafetyResult:
        """Safety evaluation of the sample events of ``store`` (or a Run, a store path, a JSONL
        file of prompt/response); each run is judged on its own (its curve and change point)."""
        params = params if params is not None else Params()
        return self.combine([self.run_part(store, params)], params)

    def run_part(self, store, params: Params, run_ids=None) -> tuple[tuple, str | None]:
        """Each run's :class:`RunSafety` in ``store`` (by run id; all runs or ``run_ids``),
        and why there are none (no sample events) or None. A store's result is
        :meth:`combine` of its parts over disjoint runs, in run-id order (``rldk.fleet``
        computes them as tasks)."""
        try:
            loaded = load(store) if run_ids is None else from_store([store.run(r) for r in run_ids])
        except MissingEvents as exc:
            return (), str(exc)
        run_ids, steps, prompts, responses, labels = loaded
        ids = np.array(run_ids, dtype=object)
        runs = []
        for run_id in dict.fromkeys(run_ids):
            idx = np.flatnonzero(ids == run_id)
            c = classify([run_ids[i] for i in idx], steps[idx], [prompts[i] for i in idx],
                         [responses[i] for i in idx], [labels[i] for i in idx], params)
            runs.append(evaluate_run(c, params))
        return tuple(runs), None

    def combine(self, parts, params: Params, store=None) -> SafetyResult:
        """The result of the parts (:meth:`run_part`) of one store: its runs, rates pooled."""
        runs = tuple(r for done, _ in parts for r in done)
        if not runs:
            raise MissingEvents(next(why for _, why in parts if why))
        return SafetyResult(runs, _pooled_rates(runs), params)

    def plots(self, result, out_dir) -> dict[str, str]:
        return plots(result, out_dir)


def evaluate_run(c: Classified, params: Params) -> RunSafety:
    """Rates, curve, change point, findings and checks of one run's classified samples."""
    rates = rates_of(c)
    curve = refusal_curve(c)
    change = change_point(curve, params.change_alpha, params.min_samples)
    findings, examples, checks = judge(c, rates, change, params)
    return RunSafety(c.run_id[0], len(c.prompt), c.labels, rates, curve, change, tuple(findings), examples,
                     tuple(checks))


def _pooled_rates(runs) -> dict:
    return {k: rate(sum(r.rates[k].count for r in runs), sum(r.rates[k].total for r in runs))
            for k in runs[0].rates}


def evaluate(source, params: Params = Params()) -> SafetyResult:
    """Safety evaluation of a Run, a Store, a store path or a JSONL file of prompt/response."""
    return SafetyAnalyzer().run(source, params)


def safety(source, **params) -> SafetyResult:
    """Keyword-argument front end of :func:`evaluate` (fields of :class:`Params`)."""
    unknown = set(params) - set(Params.__dataclass_fields__)
    if unknown:
        raise UsageError(f"unknown safety parameter(s): {', '.join(sorted(unknown))}")
    return evaluate(source, replace(Params(), **params))


def write_card(result: SafetyResult, out_dir) -> dict:
    """safety.json / safety.md and, with matplotlib, the refusal curve."""
    try:
        pngs = plots(result, out_dir)
    except MissingPlotting:
        pngs = {}
    return write_report(result.report(), out_dir, pngs)
