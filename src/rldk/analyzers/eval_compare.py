"""Compare two groups of runs (seeds) with the statistics of ``rldk.stats``.

Each side is a list of sources: event stores (every run in them is one seed) or
CSV score tables (columns ``score`` and optionally ``task`` and ``run``/``seed``).
A run's score on its task is the mean of the last ``last`` finite values of
``metric``; its task is ``config[task_key]`` from the run's ``start`` event, or
"all". Scores form a ``(runs, tasks)`` matrix per side, so every task needs the
same number of runs on a side (a stratified bootstrap resamples runs per task).

Reported: mean, median and IQM of each side with stratified-bootstrap percentile
intervals, P(A > B) with its interval, per task Cohen's d, Hedges' g, Cliff's
delta, Welch's t-test and the seeds per side needed to detect the observed
effect with 80% power. Without two runs per task on each side no interval is
possible: the comparison is then "inconclusive" (its checks say so); an
underpowered task is a warning.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from rldk import semantics, stats
from rldk.analyzers.base import Analyzer
from rldk.core.errors import MissingEvents, UsageError
from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import Result
from rldk.data import open_input

NAME = "eval_compare"
#: The check that defines a comparison: intervals need two or more runs per task on each side.
DEFINING = ("confidence_intervals",)


@dataclass(frozen=True)
class Params:
    """Comparison parameters (defaults in brackets).

    a_sources, b_sources: the two sides: event stores, globs, foreign logs (every run
        is one seed) or CSV score tables [(): the analysis does not apply].
    labels: names of the two sides [("A", "B")].
    metric: the score metric, a run's own name or a canonical one (``rldk.semantics``)
        [None: the ``reward`` quantity every run logs].
    last: final logged values averaged into a run's score [10].
    task_key: config key naming a run's task ["task"].
    reps: bootstrap resamples [2000]. confidence: interval coverage [0.95].
    seed: bootstrap RNG seed [0]. power: target power of the seeds-needed estimate [0.8].
    alpha: two-sided significance level of the t-test and power analysis [0.05].
    """

    a_sources: tuple = ()
    b_sources: tuple = ()
    labels: tuple = ("A", "B")
    metric: str | None = None
    last: int = 10
    task_key: str = "task"
    reps: int = 2000
    confidence: float = 0.95
    seed: int = 0
    power: float = 0.8
    alpha: float = 0.05


@dataclass(frozen=True)
class Side:
    """One side's scores: ``label``, ``tasks`` names, ``runs`` labels (per task, in
    order), ``scores`` shaped (runs, tasks) and the ``metrics`` they came from."""

    label: str
    tasks: tuple
    runs: tuple
    scores: np.ndarray
    metrics: tuple = ()


@dataclass(frozen=True)
class Comparison(Result):
    """The comparison of side A against side B.

    a, b: the sides. metric: the score metric. aggregates: side label -> statistic
    -> Interval. improvement: P(A > B) as an Interval. per_task: one dict per task
    (effect sizes, Welch test, seeds needed). notes: caveats in words. checks: what
    could be computed (intervals need two runs per task on each side).
    """

    a: Side
    b: Side
    metric: str
    aggregates: dict
    improvement: stats.Interval
    per_task: tuple
    notes: tuple
    params: Params = field(default_factory=Params)
    checks: tuple = ()

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(Finding("underpowered", "warning", note, metric=self.metric) for note in self.notes
                     if note.startswith("underpowered"))

    @property
    def status(self) -> str:
        """"inconclusive" without confidence intervals (one run per task on a side),
        "problems" when underpowered, else "ok"."""
        return verdict(self.findings, self.checks, required=DEFINING)

    @property
    def passed(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        # status is derived, but CI gates read it from the JSON.
        return {"analyzer": NAME, "status": self.status, **super().to_dict()}

    def rows(self) -> list[dict]:
        """The headline table: one row per side and statistic, then P(A > B)."""
        out = [{"side": side, "statistic": k, "point": v.point, "lower": v.lower, "upper": v.upper,
                "runs": v.runs, "tasks": v.tasks}
               for side, d in self.aggregates.items() for k, v in d.items()]
        i = self.improvement
        out.append({"side": f"P({self.a.label} > {self.b.label})", "statistic": "probability_of_improvement",
                    "point": i.point, "lower": i.lower, "upper": i.upper, "runs": i.runs, "tasks": i.tasks})
        return out

    def report(self) -> Report:
        i = self.improvement
        ci = f" [{i.lower:.2f}, {i.upper:.2f}]" if i.lower is not None else " (no interval: one run per task)"
        summary = f"P({self.a.label} > {self.b.label}) = {i.point:.2f}{ci} on {self.metric}."
        head = ("side", "statistic", "point", "lower", "upper", "runs", "tasks")
        task_cols = ("task", "mean_a", "mean_b", "cohens_d", "hedges_g", "cliffs_delta", "t", "df",
                     "p_value", "seeds_needed")
        tables = (ReportTable("Aggregates", head, tuple(tuple(r[c] for c in head) for r in self.rows())),
                  ReportTable("Per task", task_cols, tuple(tuple(t.get(c) for c in task_cols)
                                                          for t in self.per_task)))
        details = {k: v for k, v in self.to_dict().items() if k not in ("per_task", "checks")}
        return Report(NAME, f"{self.a.label} vs {self.b.label}", self.status, summary, self.findings, tables,
                      details, tuple(self.checks))


# ====================================================================== scores
def side_scores(sources, label: str, params: Params) -> Side:
    """A :class:`Side` from store paths and/or CSV score tables."""
    records = []            # (task, run label, score, metric)
    for source in sources:
        if str(source).lower().endswith(".csv"):
            records += read_score_csv(source)
        else:
            records += store_scores(source, params)
    if not records:
        raise MissingEvents(f"side {label}: no scores in {', '.join(map(str, sources))}")
    return _matrix(label, records)


def store_scores(source, params: Params) -> list[tuple]:
    """``(task, run_id, score, metric)`` of every run of ``source`` (opened with
    ``rldk.data.open_input``)."""
    out = []
    for run in open_input(source).runs():
        metric = _metric_of(run, params.metric)
        values = run.metric(metric)["value"].to_numpy()
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise MissingEvents(f"run {run.id!r}: metric {metric!r} has no finite value to score")
        task = (run.meta.get("config") or {}).get(params.task_key, "all")
        out.append((str(task), run.id, float(values[-params.last:].mean()), metric))
    return out


def _metric_of(run, wanted: str | None) -> str:
    """The run's own name of the score metric: ``wanted`` (resolved through
    ``rldk.semantics``) or the run's ``reward`` quantity."""
    names = run.metric_names()
    found = semantics.resolve_name(wanted or "reward", names)
    if found is not None:
        return found
    if wanted is not None:
        raise UsageError(f"run {run.id!r} has no metric {wanted!r}; metrics: {', '.join(names) or 'none'}")
    raise UsageError(f"run {run.id!r}: pass --metric; it logs no reward "
                     f"({', '.join(semantics.quantity('reward').names)}); "
                     f"metrics: {', '.join(names) or 'none'}")


def read_score_csv(path) -> list[tuple]:
    """``(task, run, score, "score")`` rows of a CSV with a ``score`` column
    (``task`` and ``run`` or ``seed`` optional)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 (byte {exc.start}); re-encode it") from None
    if not rows or "score" not in rows[0]:
        raise UsageError(f"{path}: needs a header with a 'score' column (optional: task, run or seed)")
    out = []
    for n, row in enumerate(rows, 2):
        try:
            score = float(row["score"])
        except (TypeError, ValueError):
            raise UsageError(f"{path}:{n}: score {row['score']!r} is not a number") from None
        if not math.isfinite(score):
            raise UsageError(f"{path}:{n}: score is {row['score']}; drop or fix that run")
        out.append((row.get("task") or "all", row.get("run") or row.get("seed") or f"row{n}", score, "score"))
    return out


def _matrix(label: str, records) -> Side:
    tasks = sorted({rec[0] for rec in records})
    per_task = {t: [(rec[1], rec[2]) for rec in records if rec[0] == t] for t in tasks}
    counts = {t: len(v) for t, v in per_task.items()}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{t}: {c}" for t, c in counts.items())
        raise UsageError(f"side {label}: tasks have different numbers of runs ({shown}); a stratified "
                         "bootstrap needs the same number of runs per task")
    scores = np.array([[per_task[t][i][1] for t in tasks] for i in range(counts[tasks[0]])])
    runs = tuple(tuple(per_task[t][i][0] for t in tasks) for i in range(counts[tasks[0]]))
    return Side(label, tuple(tasks), runs, scores, tuple(sorted({rec[3] for rec in records})))


# ================================================================== comparison
def compare_sides(a: Side, b: Side, params: Params = Params(), metric: str = "score") -> Comparison:
    """All statistics of A against B."""
    if a.tasks != b.tasks:
        raise UsageError(f"the sides have different tasks ({', '.join(a.tasks)} vs {', '.join(b.tasks)}); "
                         "compare the same tasks")
    aggregates = {side.label: {k: stats.bootstrap_ci(side.scores, k, params.reps, params.confidence,
                                                     params.seed)
                               for k in ("mean", "median", "iqm")} for side in (a, b)}
    improvement = stats.probability_of_improvement_ci(a.scores, b.scores, params.reps,
                                                      params.confidence, params.seed)
    per_task = tuple(_task_row(t, a.scores[:, j], b.scores[:, j], params) for j, t in enumerate(a.tasks))
    return Comparison(a, b, metric, aggregates, improvement, per_task, tuple(_notes(a, b, per_task)), params,
                      _checks(a, b, per_task))


def _checks(a: Side, b: Side, per_task) -> tuple[Check, ...]:
    """Intervals and effect sizes need two runs per task on each side; power needs an effect."""
    few = [side.label for side in (a, b) if side.scores.shape[0] < 2]
    shape = f"{a.scores.shape[0]} vs {b.scores.shape[0]} runs per task, {len(a.tasks)} task(s)"
    if few:
        why = f"side {' and '.join(few)} has one run per task: run more seeds (two or more per task)"
        return (Check("confidence_intervals", "skipped", why), Check("effect_sizes", "skipped", why),
                Check("power", "skipped", why))
    powered = [row["task"] for row in per_task if row["seeds_needed"] is not None]
    power = (Check("power", "ran", f"seeds needed computed for {len(powered)} task(s)") if powered else
             Check("power", "skipped", "no task shows an effect (d = 0 or undefined): nothing to size"))
    return (Check("confidence_intervals", "ran", f"stratified bootstrap, {shape}"),
            Check("effect_sizes", "ran", f"Cohen's d, Hedges' g, Cliff's delta, Welch t on {len(per_task)} "
                  "task(s)"), power)


def _task_row(task: str, x: np.ndarray, y: np.ndarray, p: Params) -> dict:
    row = {"task": task, "mean_a": float(x.mean()), "mean_b": float(y.mean()), "runs_a": int(x.size),
           "runs_b": int(y.size), "cliffs_delta": stats.cliffs_delta(x, y)}
    if x.size < 2 or y.size < 2:
        return {**row, "cohens_d": None, "hedges_g": None, "t": None, "df": None, "p_value": None,
                "seeds_needed": None}
    d = stats.cohens_d(x, y)
    test = stats.welch_t_test(x, y)
    needed = stats.seeds_needed(d, p.alpha, p.power) if math.isfinite(d) else None
    return {**row, "cohens_d": d, "hedges_g": stats.hedges_g(x, y), "t": test.t, "df": test.df,
            "p_value": test.p_value, "seeds_needed": needed}


def _notes(a: Side, b: Side, per_task) -> list[str]:
    notes = []
    for side in (a, b):
        if side.scores.shape[0] < 2:
            notes.append(f"side {side.label} has one run per task: no confidence interval is possible "
                         "and no effect size or t-test; run more seeds")
    for row in per_task:
        have = min(row["runs_a"], row["runs_b"])
        if row["seeds_needed"] is not None and row["seeds_needed"] > have:
            notes.append(f"underpowered on task {row['task']}: detecting the observed effect "
                         f"(d = {row['cohens_d']:.2f}) with 80% power needs {row['seeds_needed']} runs "
                         f"per side; there are {have}")
    return notes


class EvalCompareAnalyzer(Analyzer):
    """Trusted comparison of two groups of runs (seeds). It reads its own inputs, the
    two sides in ``Params.a_sources`` / ``b_sources``, not the store it is given, so
    ``rldk analyze`` skips it; ``rldk eval compare A... --vs B...`` runs it."""

    name = NAME
    title = "Evaluation comparison"
    consumes = ("metric", "run")
    Params = Params
    defines_verdict = True

    def applies(self, store=None, params: Params | None = None) -> bool:
        """True only when both sides are given in ``params``."""
        return params is not None and bool(params.a_sources) and bool(params.b_sources)

    def run(self, store=None, params: Params | None = None) -> Comparison:
        """Compare side A with side B of ``params``; ``store`` is not read."""
        p = params if params is not None else Params()
        if not self.applies(store, p):
            raise UsageError("eval compare needs both sides: Params(a_sources=..., b_sources=...) "
                             "or rldk eval compare A... --vs B...")
        if p.last < 1 or p.reps < 1:
            raise UsageError("--last and --reps must be positive")
        a, b = side_scores(p.a_sources, p.labels[0], p), side_scores(p.b_sources, p.labels[1], p)
        return compare_sides(a, b, p, ", ".join(sorted(set(a.metrics) | set(b.metrics))))


def compare(a_sources, b_sources, labels=("A", "B"), **params) -> Comparison:
    """Compare the runs of ``a_sources`` with those of ``b_sources`` (paths; see module doc)."""
    unknown = set(params) - set(Params.__dataclass_fields__)
    if unknown:
        raise UsageError(f"unknown compare parameter(s): {', '.join(sorted(unknown))}")
    p = replace(Params(), a_sources=tuple(a_sources), b_sources=tuple(b_sources), labels=tuple(labels),
                **params)
    return EvalCompareAnalyzer().run(None, p)


def plot_profiles(result: Comparison, path) -> str:
    """Performance profiles of both sides with bootstrap bands (PNG)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return stats.plot_performance_profiles({result.a.label: result.a.scores, result.b.label: result.b.scores},
                                           path, reps=result.params.reps, confidence=result.params.confidence,
                                           xlabel=f"{result.metric} threshold tau")
