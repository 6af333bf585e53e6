"""The ``profile`` analyzer: per timed run, where step time goes, when steps got
slower, and throughput (see the package docstring)."""
from __future__ import annotations

from pathlib import Path

from rldk.analyzers import _catalog
from rldk.analyzers.base import Analyzer
from rldk.analyzers.profile.breakdown import (
    STEP_TOTAL_METRICS,
    TIMED_RUNS_SQL,
    bottleneck_statement,
    by_phase,
    excluded_steps,
    load_timings,
    operators,
    phase_times,
    step_counters,
    step_totals,
)
from rldk.analyzers.profile.params import HOW_TO_TIME, Params
from rldk.analyzers.profile.regression import change_points
from rldk.analyzers.profile.result import ProfileResult, RunProfile
from rldk.analyzers.profile.throughput import throughput, work_per_step
from rldk.core.errors import MissingEvents
from rldk.core.naming import safe_file_stem


class ProfileAnalyzer(Analyzer):
    """Compute profile of every run with span events or timing metrics."""

    name = "profile"
    title = "Compute profile"
    consumes = ("span", "metric", "checkpoint")
    Params = Params

    def applies(self, store) -> bool:
        """True when some run has span events or timing metrics."""
        return bool(self._timed_runs(store))

    def run(self, store, params: Params | None = None) -> ProfileResult:
        """Profile ``params.run_id`` (or every run with timing events)."""
        params = params or Params()
        if params.run_id:
            store.run(params.run_id)                  # unknown run id: a UsageError naming the runs
            return ProfileResult(params, (profile_run(store, params.run_id, params),))
        timed = self._timed_runs(store)
        if not timed:
            raise MissingEvents(f"no run in the store has span events or timing metrics: {HOW_TO_TIME}")
        skipped = tuple(r for r in store.run_ids if r not in timed)
        return ProfileResult(params, tuple(profile_run(store, r, params) for r in timed), skipped)

    def plots(self, result: ProfileResult, out_dir) -> dict[str, str]:
        """One PNG per run: step time per step with its change points marked."""
        from rldk.core.plots import metric_plot

        out = {}
        for p in result.profiles:
            marks = [(c.step, f"{c.ratio:.2f}x at step {c.step}") for c in p.change_points]
            path = Path(out_dir) / f"profile-{safe_file_stem(p.run_id)}.png"
            out[f"{p.run_id}: step time (s)"] = metric_plot(
                p.curve["steps"], p.curve["seconds"], path, title=f"{p.run_id}: step time (s)",
                marks=marks)
        return out

    @staticmethod
    def _timed_runs(store) -> list[str]:
        catalog = _catalog.scanned(store)               # known when the store was scanned
        if catalog is not None and "span" not in catalog.kinds:   # then metric names tell
            return [r for r in store.run_ids
                    if any(map(_timing_metric, catalog.metric_names.get(r, ())))]
        return store.sql(TIMED_RUNS_SQL, [list(STEP_TOTAL_METRICS)])["run_id"].to_list()


def _timing_metric(name: str) -> bool:
    """A metric ``TIMED_RUNS_SQL`` counts as a timing."""
    return name.startswith(("timing_s/", "timing/")) or name in STEP_TOTAL_METRICS


def profile_run(store, run_id: str, params: Params | None = None) -> RunProfile:
    """The :class:`RunProfile` of one run (raises MissingEvents without timings)."""
    import numpy as np
    import polars as pl

    params = params or Params()
    timings = load_timings(store, run_id)
    totals, step_source = step_totals(store, run_id, timings)
    if totals.is_empty():
        counters = step_counters(timings)
        why = (f" ({', '.join(counters)} only counts up: a step counter or running total, not seconds "
               "per step)" if counters else "")
        raise MissingEvents(f"run {run_id!r}: its timings cover no step with a step time{why}: {HOW_TO_TIME}")
    total_seconds = float(totals["seconds"].sum())
    phases = phase_times(timings, totals, total_seconds)
    shares = by_phase(phases)
    excluded = excluded_steps(store, run_id, timings)
    series = totals.filter(~pl.col("step").is_in(list(excluded))
                           & (pl.col("step") >= totals["step"].min() + params.warmup_steps)
                           & (pl.col("seconds") > 0))
    steps = series["step"].to_numpy()
    cps = change_points(steps, series["seconds"].to_numpy(), params, work_per_step(store, run_id, steps))
    rate = throughput(store, run_id, totals, params)
    return RunProfile(run_id, step_source, totals.height, total_seconds,
                      float(np.median(totals["seconds"].to_numpy())), phases, shares,
                      tuple(sorted(excluded)), tuple(cps), rate.tokens_per_second,
                      rate.samples_per_second, rate.mfu, rate.logged,
                      bottleneck_statement(shares, total_seconds / totals.height),
                      rate.notes, operators(store, run_id),
                      {"steps": totals["step"].to_list(), "seconds": totals["seconds"].to_list()})
