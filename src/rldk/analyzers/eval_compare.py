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
effect with 80% power.
"""
from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rldk import stats
from rldk.core.errors import MissingEvents, UsageError
from rldk.core.report import Finding, Report, ReportTable

NAME = "eval_compare"
CONSUMES = ("metric", "run")


@dataclass(frozen=True)
class Params:
    """Comparison parameters (defaults in brackets).

    metric: the score metric [None: the first of rldk's reward names every run logs].
    last: final logged values averaged into a run's score [10].
    task_key: config key naming a run's task ["task"].
    reps: bootstrap resamples [2000]. confidence: interval coverage [0.95].
    seed: bootstrap RNG seed [0]. power: target power of the seeds-needed estimate [0.8].
    alpha: two-sided significance level of the t-test and power analysis [0.05].
    """

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

    def to_dict(self) -> dict:
        return {"label": self.label, "tasks": list(self.tasks), "runs": [list(r) for r in self.runs],
                "scores": self.scores.tolist(), "metrics": list(self.metrics)}


@dataclass(frozen=True)
class Comparison:
    """The comparison of side A against side B.

    a, b: the sides. metric: the score metric. aggregates: side label -> statistic
    -> Interval. improvement: P(A > B) as an Interval. per_task: one dict per task
    (effect sizes, Welch test, seeds needed). notes: caveats in words.
    """

    a: Side
    b: Side
    metric: str
    aggregates: dict
    improvement: stats.Interval
    per_task: tuple
    notes: tuple
    params: Params = field(default_factory=Params)

    def to_dict(self) -> dict:
        return {"analyzer": NAME, "metric": self.metric, "a": self.a.to_dict(), "b": self.b.to_dict(),
                "aggregates": {side: {k: v.to_dict() for k, v in d.items()}
                               for side, d in self.aggregates.items()},
                "probability_of_improvement": self.improvement.to_dict(),
                "per_task": list(self.per_task), "notes": list(self.notes), "params": asdict(self.params)}

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
        findings = [Finding("underpowered", "warning", note, metric=self.metric) for note in self.notes
                    if note.startswith("underpowered")]
        findings += [Finding("no_interval", "warning", note, metric=self.metric) for note in self.notes
                     if "no confidence interval" in note]
        head = ("side", "statistic", "point", "lower", "upper", "runs", "tasks")
        task_cols = ("task", "mean_a", "mean_b", "cohens_d", "hedges_g", "cliffs_delta", "t", "df",
                     "p_value", "seeds_needed")
        tables = (ReportTable("Aggregates", head, tuple(tuple(r[c] for c in head) for r in self.rows())),
                  ReportTable("Per task", task_cols, tuple(tuple(t.get(c) for c in task_cols)
                                                          for t in self.per_task)))
        return Report(NAME, f"{self.a.label} vs {self.b.label}", "ok", summary, tuple(findings), tables,
                      {k: v for k, v in self.to_dict().items() if k not in ("per_task",)})


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
    """``(task, run_id, score, metric)`` of every run in an event store."""
    from rldk.core.store import open_store

    out = []
    for run in open_store(source).runs():
        metric = params.metric or _auto_metric(run)
        values = run.metric(metric)["value"].to_numpy()
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise MissingEvents(f"run {run.id!r}: metric {metric!r} has no finite value to score")
        task = (run.meta.get("config") or {}).get(params.task_key, "all")
        out.append((str(task), run.id, float(values[-params.last:].mean()), metric))
    return out


def _auto_metric(run) -> str:
    from rldk import semantics

    names = run.metric_names()
    found = semantics.resolve_name("reward", names)
    if found is None:
        raise UsageError(f"run {run.id!r}: pass --metric; it logs no reward "
                         f"({', '.join(semantics.quantity('reward').names)}); "
                         f"metrics: {', '.join(names) or 'none'}")
    return found


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
    return Comparison(a, b, metric, aggregates, improvement, per_task, tuple(_notes(a, b, per_task)), params)


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


def compare(a_sources, b_sources, labels=("A", "B"), **params) -> Comparison:
    """Compare the runs of ``a_sources`` with those of ``b_sources`` (paths; see module doc)."""
    unknown = set(params) - set(Params.__dataclass_fields__)
    if unknown:
        raise UsageError(f"unknown compare parameter(s): {', '.join(sorted(unknown))}")
    p = Params(**params)
    if p.last < 1 or p.reps < 1:
        raise UsageError("--last and --reps must be positive")
    a, b = side_scores(a_sources, labels[0], p), side_scores(b_sources, labels[1], p)
    return compare_sides(a, b, p, ", ".join(sorted(set(a.metrics) | set(b.metrics))))


def plot_profiles(result: Comparison, path) -> str:
    """Performance profiles of both sides with bootstrap bands (PNG)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return stats.plot_performance_profiles({result.a.label: result.a.scores, result.b.label: result.b.scores},
                                           path, reps=result.params.reps, confidence=result.params.confidence,
                                           xlabel=f"{result.metric} threshold tau")
