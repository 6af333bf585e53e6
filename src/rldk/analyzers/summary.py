"""Run summary: what each run holds, how it ended, and every metric's range.

Consumes all event kinds (``metric`` for the per-metric table, ``run`` for status
and the writer's counters). A run imported from logs takes its status and wall time
from its import event (``rldk.core.run_facts``), never from the import's clock. Per-metric figures are over each metric's series
(``rldk.analyzers._series``: one value per step, the last logged; non-numeric
values counted apart), computed with NumPy from the series the other analyzers
share; run-level figures come from one aggregate query. Findings: a run that ended ``failed`` or
``killed`` (warning), a writer that dropped events or could not write
(warning), values the writer stored as text (info), a run with no end event (info:
still running, killed hard), an imported run whose logs stop before their planned
end (info, with the logs' evidence).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np

from rldk.analyzers import _series
from rldk.analyzers.base import Analyzer
from rldk.core import run_facts
from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import Result

#: Per run, rank and event kind other than metric: events and wall-clock span. Row
#: groups holding only metrics are skipped (Parquet statistics); metric counts come
#: from the metric series.
RUNS_SQL = """
SELECT run_id, rank, kind, count(*) AS events, min(wall_time) AS started,
       max(wall_time) AS last_event
FROM read_parquet($files, union_by_name = true)
WHERE kind <> 'metric'
GROUP BY run_id, rank, kind
ORDER BY run_id, rank, kind
"""

#: Metric events per run and rank with their wall-clock span: only for runs that
#: have no run events to date them (imported logs without start/end records).
METRIC_SPAN_SQL = """
SELECT rank, 'metric' AS kind, count(*) AS events, min(wall_time) AS started,
       max(wall_time) AS last_event
FROM read_parquet($files, union_by_name = true)
WHERE kind = 'metric' AND run_id = $run_id GROUP BY rank
"""

#: The run ``end`` and ``import`` events (row groups without run events are skipped).
ENDS_SQL = """
SELECT run_id, name, attrs FROM read_parquet($files, union_by_name = true)
WHERE kind = 'run' AND name IN ('end', 'import')
ORDER BY wall_time, seq
"""


@dataclass(frozen=True)
class Params:
    """No parameters: the summary reports what is there."""


@dataclass(frozen=True)
class RunSummary:
    """One run: status ("complete", "failed", "killed", "incomplete"; imported runs
    "complete", "incomplete" or "unknown") and the evidence for it (imported runs), ranks,
    events, event kinds, metric count, step range, wall-clock seconds between its first
    and last event (imported runs: from the logs' timestamps, None without them), and the
    writer's counters from its end events."""

    run_id: str
    status: str
    ranks: tuple[int, ...]
    events: int
    kinds: tuple[str, ...]
    metrics: int
    first_step: int | None
    last_step: int | None
    seconds: float | None
    dropped_events: int
    write_errors: int
    malformed: dict
    imported: bool = False
    status_evidence: str | None = None


@dataclass(frozen=True)
class SummaryResult(Result):
    """runs: one RunSummary per run; metrics: one ``metric_stats`` dict per (run, metric)."""

    runs: tuple[RunSummary, ...]
    metrics: tuple[dict, ...]

    def report(self) -> Report:
        findings = tuple(f for r in self.runs for f in _findings(r))
        checks = tuple(Check("run_status", "ran", f"{_status_text(r)}, {r.metrics} metric(s)",
                             r.run_id) for r in self.runs)
        steps = ", ".join(f"{r.run_id} ({r.status}, steps {r.first_step}-{r.last_step}, "
                          f"{r.metrics} metrics)" for r in self.runs)
        return Report(analyzer=SummaryAnalyzer.name, title=SummaryAnalyzer.title,
                      status=verdict(findings, checks),
                      summary=f"{len(self.runs)} run(s): {steps}", findings=findings,
                      tables=(_runs_table(self.runs), _metrics_table(self.metrics)),
                      details=self.to_dict(), checks=checks)


class SummaryAnalyzer(Analyzer):
    """What each run holds and how it ended (see the module docstring). It describes,
    it does not check for training problems: its verdict does not make ``rldk analyze``
    conclusive."""

    name = "summary"
    title = "Run summary"
    consumes = ("metric", "run", "writer")
    Params = Params
    defines_verdict = False

    def applies(self, store) -> bool:
        return bool(store.run_ids)

    def run(self, store, params: Params | None = None) -> SummaryResult:
        """Summarize every run of ``store``."""
        runs = _series.rows(store, RUNS_SQL)
        ends: dict[str, list] = {}
        imports: dict[str, dict] = {}
        for run_id, name, attrs in _series.rows(store, ENDS_SQL):
            attrs = json.loads(attrs) if attrs else {}
            if name == "import":
                imports[run_id] = attrs
            else:
                ends.setdefault(run_id, []).append(attrs)
        summaries, metrics = [], []
        for run_id in store.run_ids:
            source = _series.Source(store, run_id)
            rows = [metric_stats(run_id, s) for batch in _series.iter_series(source)
                    for s in batch.values()]
            metrics += sorted(rows, key=lambda m: m["name"])
            summary = _run_summary(run_id, _event_rows(store, runs, source),
                                   ends.get(run_id, []), rows)
            if run_id in imports:
                summary = _as_imported(summary, imports[run_id])
            summaries.append(summary)
        return SummaryResult(tuple(summaries), tuple(metrics))


def _event_rows(store, runs, source) -> list[tuple]:
    """Rows of (rank, kind, events, started, last_event) for one run, metrics included."""
    own = [row[1:] for row in runs if row[0] == source.run_id]
    if not any(kind == "run" for _, kind, *_ in own):
        return own + _series.rows(store.for_run(source.run_id), METRIC_SPAN_SQL, run_id=source.run_id)
    counts = _series.metric_counts(source)
    return own + ([(min(rank for rank, *_ in own), "metric", sum(counts.values()), None, None)]
                  if counts else [])


def metric_stats(run_id: str, s) -> dict:
    """One metric's row of the table: rows logged, step range, last/min/max/mean of the
    finite values, non-finite and non-numeric counts."""
    finite = np.isfinite(s.values)
    values = s.values if finite.all() else s.values[finite]
    some = bool(len(values))
    return {"run_id": run_id, "name": s.name, "rows": len(s) + s.duplicates + s.non_numeric,
            "first_step": int(s.steps[0]) if len(s) else s.first_non_numeric,
            "last_step": int(s.steps[-1]) if len(s) else s.first_non_numeric,
            "last": float(values[-1]) if some else None,
            "min": float(values.min()) if some else None, "max": float(values.max()) if some else None,
            "mean": float(values.mean()) if some else None,
            "non_finite": int(len(s) - finite.sum()), "non_numeric": s.non_numeric}


def _run_summary(run_id: str, rows, ends: list[dict], metrics: list[dict]) -> RunSummary:
    # as the store's run summary reads it (a run closed "terminated" was killed)
    status = run_facts.native_status(ends[-1].get("status", "complete") if ends else None)
    stats = [e.get("stats", {}) for e in ends]
    malformed: dict = {}
    for e in ends:
        for name, n in e.get("counters", {}).get("malformed", {}).items():
            malformed[name] = malformed.get(name, 0) + n
    started = min((r[3] for r in rows if r[3] is not None), default=None)
    last = max((r[4] for r in rows if r[4] is not None), default=None)
    steps = [m["first_step"] for m in metrics] + [m["last_step"] for m in metrics]
    steps = [x for x in steps if x is not None]
    signal = ends[-1].get("signal") if ends else None
    return RunSummary(
        run_id=run_id, status=status, ranks=tuple(sorted({r[0] for r in rows})),
        events=sum(r[2] for r in rows if r[2] is not None), kinds=tuple(sorted({r[1] for r in rows})),
        metrics=len(metrics), first_step=min(steps) if steps else None,
        last_step=max(steps) if steps else None,
        seconds=(last - started).total_seconds() if started is not None and last is not None else None,
        dropped_events=sum(s.get("dropped_events", 0) for s in stats),
        write_errors=sum(s.get("write_errors", 0) for s in stats), malformed=malformed,
        status_evidence=f"signal {signal}" if isinstance(signal, str) else None)


def _status_text(r: RunSummary) -> str:
    if r.status_evidence:
        return f"{r.status} ({r.status_evidence})"
    if r.imported and r.status == "unknown":
        return "unknown (imported: the logs do not show whether it reached its planned end)"
    return r.status


def _as_imported(r: RunSummary, attrs: dict) -> RunSummary:
    """``r`` with the status and wall time its logs show (the writer's end event and
    clock only date the import)."""
    status, evidence, seconds = run_facts.imported(attrs)
    return replace(r, status=status, status_evidence=evidence, seconds=seconds, imported=True)


def _findings(r: RunSummary):
    if r.imported and r.status == "incomplete":
        yield _stopped_early(r)
    elif r.status in ("failed", "killed", "terminated"):
        # an error ended the run: a problem; a signal (Ctrl-C, a scheduler's SIGTERM) stopped
        # it from outside, as SIGKILL or the OOM killer does a run with no end event: info
        failed = r.status == "failed"
        how = f" ({r.status_evidence})" if r.status_evidence else ""
        yield Finding("run_status", "warning" if failed else "info",
                      f"run {r.run_id} ended {r.status}{how}" + ("" if failed else
                                                                 ": stopped from outside, not by an error"),
                      r.run_id,
                      steps=(r.last_step, r.last_step) if r.last_step is not None else None,
                      evidence={"status": r.status, **({"evidence": r.status_evidence} if how else {})},
                      fix="Read the program's output around its last step; its events up to "
                          "the end are complete and the other analyses cover them.")
    elif r.status == "incomplete":
        yield Finding("run_incomplete", "info", f"run {r.run_id} has no end event", r.run_id,
                      evidence={"status": r.status},
                      fix="Still running or killed hard (SIGKILL/OOM); the events written so far "
                          "are complete.")
    yield from _writer_findings(r)


def _stopped_early(r: RunSummary) -> Finding:
    """An imported run whose logs end before the planned length (the converter's evidence)."""
    return Finding("run_incomplete", "info",
                  f"run {r.run_id} stopped before its planned end"
                  + (f": {r.status_evidence}" if r.status_evidence else ""), r.run_id,
                  steps=(r.last_step, r.last_step) if r.last_step is not None else None,
                  evidence={"status": r.status, "evidence": r.status_evidence},
                  fix="The logs end early (stopped, crashed or copied mid-run): the analyses "
                      "cover the steps they hold; import the final logs for the whole run.")


def _writer_findings(r: RunSummary):
    if r.dropped_events or r.write_errors:
        yield Finding("writer_dropped", "warning",
                      f"writer of run {r.run_id} dropped {r.dropped_events} event(s) after "
                      f"{r.write_errors} write error(s)", r.run_id,
                      evidence={"dropped_events": r.dropped_events, "write_errors": r.write_errors},
                      fix="The store directory was unwritable (disk full?): free space or point "
                          "RLDK_DIR at a writable disk.")
    if r.malformed:
        yield Finding("non_numeric_values", "info",
                      f"run {r.run_id} logged {sum(r.malformed.values())} non-numeric value(s) "
                      f"for {len(r.malformed)} metric(s)", r.run_id, evidence=dict(r.malformed),
                      fix="They are stored as text; log numbers (or pass strict=True to the "
                          "writer to raise at the call).")


def _runs_table(runs) -> ReportTable:
    cols = ("run", "status", "ranks", "events", "metrics", "first_step", "last_step", "seconds",
            "status_evidence")
    rows = tuple((r.run_id, r.status, list(r.ranks), r.events, r.metrics, r.first_step,
                  r.last_step, r.seconds, r.status_evidence) for r in runs)
    return ReportTable("Runs", cols, rows)


def _metrics_table(metrics) -> ReportTable:
    cols = ("run", "metric", "rows", "first_step", "last_step", "last", "min", "max", "mean",
            "non_finite", "non_numeric")
    rows = tuple((m["run_id"], m["name"], m["rows"], m["first_step"], m["last_step"], m["last"],
                  m["min"], m["max"], m["mean"], m["non_finite"], m["non_numeric"]) for m in metrics)
    return ReportTable("Metrics", cols, rows)

