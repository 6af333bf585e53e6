"""Compute profile of a run: where step time goes, when steps got slower, throughput.

Reads ``span`` events (``with rldk.writer.span("rollout"): ...``; value = seconds)
and timing metrics that trainers log (TRL ``step_time``; verl ``timing_s/<phase>``,
``perf/time_per_step``, ``perf/total_num_tokens``, ``perf/throughput``,
``perf/mfu/actor``), plus ``checkpoint`` events to exclude checkpoint steps.

* **Breakdown**: each timed name is put in a phase (``PHASES``: rollout, reward,
  reference, train; anything else is "other") and its share of step time is its
  total seconds over the total step seconds. Step time per step comes from, in
  order: a span named ``step``, a ``timing_s/step`` or ``timing/step`` metric,
  ``perf/time_per_step``, ``step_time``, else the wall-clock gap between steps.
  Time the phases do not cover is "unaccounted" (part of "other").
* **Regressions**: change points of log step time (binary segmentation of a
  mean shift, each split kept when a Mann-Whitney test gives p < ``alpha`` and
  the medians differ by ``min_ratio``), leaving out warm-up steps and steps that
  saved a checkpoint or ran an evaluation.
* **Throughput**: tokens/s and samples/s from per-step counts (metrics in
  ``TOKEN_METRICS`` / ``SAMPLE_METRICS`` or the params); MFU = 6 x parameters x
  tokens/s / (peak FLOP/s x devices) when the model size and peak are known.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from rldk.analyzers.base import Analyzer
from rldk.core.errors import MissingEvents
from rldk.core.report import Finding, Report, ReportTable

NAME = "profile"
CONSUMES = ("span", "metric", "checkpoint")

#: phase -> names (the last path component, lower case) that belong to it
PHASES = {
    "rollout": ("rollout", "rollouts", "gen", "generate", "generation", "sample", "sampling",
                "actor_generate", "make_experience"),
    "reward": ("reward", "rewards", "reward_fn", "reward_model", "rm", "score", "scoring", "verify"),
    "reference": ("ref", "reference", "ref_logprob", "ref_log_prob", "old_log_prob", "logprob",
                  "logprobs", "values", "critic_values"),
    "train": ("train", "update", "update_actor", "update_critic", "update_policy", "ppo_update",
              "backward", "optimizer", "optimizer_step", "optim", "adv", "advantage", "loss"),
}
#: names of sections that make a step atypical (excluded from regression search)
EXCLUDED = ("save_checkpoint", "checkpoint", "save", "eval", "evaluate", "evaluation", "validation",
            "validate", "testing", "test")
TIMING_PREFIXES = ("timing_s/", "timing/")
STEP_TOTAL_METRICS = ("timing_s/step", "timing/step", "perf/time_per_step", "step_time")
TOKEN_METRICS = ("perf/total_num_tokens", "tokens", "tokens_per_step", "batch_tokens", "num_tokens_per_step")
CUMULATIVE_TOKEN_METRICS = ("num_tokens", "num_input_tokens_seen", "total_tokens")
SAMPLE_METRICS = ("samples", "num_samples", "samples_per_step", "batch_size")
CONFIG_MODEL_PARAMS = ("model_params", "n_params", "num_params", "num_parameters")

SPANS_SQL = """
SELECT step, name, sum(value) AS seconds
FROM spans
WHERE run_id = ? AND step IS NOT NULL AND value IS NOT NULL AND NOT starts_with(name, 'torch_op/')
  AND rank = (SELECT min(rank) FROM spans WHERE run_id = ?)
GROUP BY step, name
ORDER BY step, name
"""

#: operator summaries from rldk.writer.profile (torch.profiler windows)
OPERATORS_SQL = """
SELECT substr(name, 10) AS operator, sum(value) AS self_seconds, sum(ivalue) AS calls,
       count(DISTINCT step) AS steps
FROM spans
WHERE run_id = ? AND starts_with(name, 'torch_op/')
GROUP BY name
ORDER BY self_seconds DESC, operator
LIMIT 15
"""

TIMING_METRICS_SQL = """
SELECT step, name, arg_max(value, (wall_time, seq)) AS value
FROM metrics
WHERE run_id = ? AND step IS NOT NULL AND value IS NOT NULL
  AND (starts_with(name, 'timing_s/') OR starts_with(name, 'timing/') OR list_contains(?, name))
  AND rank = (SELECT min(rank) FROM metrics WHERE run_id = ?)
GROUP BY step, name
ORDER BY step, name
"""

STEP_STARTS_SQL = """
SELECT step, epoch_ms(min(wall_time)) / 1000.0 AS started
FROM events
WHERE run_id = ? AND step IS NOT NULL AND kind IN ('metric', 'span', 'memory')
  AND rank = (SELECT min(rank) FROM events WHERE run_id = ? AND step IS NOT NULL)
GROUP BY step
ORDER BY step
"""

CHECKPOINT_STEPS_SQL = "SELECT DISTINCT step FROM checkpoints WHERE run_id = ? AND step IS NOT NULL"
RANKS_SQL = "SELECT count(DISTINCT rank) AS ranks FROM events WHERE run_id = ?"
TIMED_RUNS_SQL = """
SELECT DISTINCT run_id FROM events
WHERE (kind = 'span' AND NOT starts_with(name, 'torch_op/')) OR (kind = 'metric' AND (starts_with(name, 'timing_s/') OR starts_with(name, 'timing/')
                                             OR list_contains(?, name)))
ORDER BY run_id
"""


@dataclass(frozen=True)
class Params:
    """Parameters of the compute profile.

    run_id: profile this run only (None: every run with spans or timing metrics).
    warmup_steps: first steps left out of the regression search (compilation, caches).
    min_ratio: smallest slowdown (median after / median before) reported as a regression.
    alpha: significance level of a change point (two-sided Mann-Whitney U).
    min_segment: fewest steps on each side of a change point.
    max_change_points: at most this many change points per run.
    model_params, peak_flops, num_devices: for MFU (peak FLOP/s of one device;
        devices default to the run's ranks); model_params also read from the run
        config keys in ``CONFIG_MODEL_PARAMS``.
    tokens_per_step, samples_per_step: counts when the run does not log them.
    """

    run_id: str | None = None
    warmup_steps: int = 1
    min_ratio: float = 1.25
    alpha: float = 0.01
    min_segment: int = 5
    max_change_points: int = 3
    model_params: float | None = None
    peak_flops: float | None = None
    num_devices: int | None = None
    tokens_per_step: float | None = None
    samples_per_step: float | None = None


@dataclass(frozen=True)
class PhaseTime:
    """Seconds spent in one timed name: ``name`` as logged, its ``phase``, where from."""

    name: str
    phase: str
    source: str
    seconds: float
    steps: int
    share: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ChangePoint:
    """Step time changed at ``step``: medians before/after (seconds), their ratio, p-value."""

    step: int
    before: float
    after: float
    ratio: float
    p_value: float

    @property
    def regression(self) -> bool:
        return self.ratio > 1

    def to_dict(self) -> dict:
        return {**self.__dict__, "regression": self.regression}


@dataclass(frozen=True)
class RunProfile:
    """The profile of one run.

    step_source: where step time came from ("span:step", "metric:<name>", "wall-clock").
    steps, step_seconds: steps with a step time and their total seconds.
    median_step: median seconds per step. phases: per timed name. by_phase:
    phase -> share of step time (incl. "unaccounted" when positive).
    excluded_steps: steps left out of the regression search (checkpoint/eval).
    change_points: step-time changes (slowdowns are regressions).
    tokens_per_second, samples_per_second, mfu: None when unknown; logged: the
    medians of throughput metrics the trainer logged itself.
    bottleneck: one sentence naming the dominant phase.
    operators: the top operators of ``rldk.writer.profile`` windows:
        ``{"operator", "self_seconds", "calls", "steps", "share"}`` (share of the
        profiled self time of these operators).
    curve: ``{"steps": [...], "seconds": [...]}`` step time per step, for plots
        (not part of ``to_dict``).
    """

    run_id: str
    step_source: str
    steps: int
    step_seconds: float
    median_step: float
    phases: tuple[PhaseTime, ...]
    by_phase: dict
    excluded_steps: tuple[int, ...]
    change_points: tuple[ChangePoint, ...]
    tokens_per_second: float | None
    samples_per_second: float | None
    mfu: float | None
    logged: dict = field(default_factory=dict)
    bottleneck: str = ""
    notes: tuple[str, ...] = ()
    operators: tuple[dict, ...] = ()
    curve: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def regressions(self) -> list[ChangePoint]:
        return [c for c in self.change_points if c.regression]

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "step_source": self.step_source, "steps": self.steps,
                "step_seconds": self.step_seconds, "median_step": self.median_step,
                "phases": [p.to_dict() for p in self.phases], "by_phase": self.by_phase,
                "excluded_steps": list(self.excluded_steps),
                "change_points": [c.to_dict() for c in self.change_points],
                "tokens_per_second": self.tokens_per_second, "samples_per_second": self.samples_per_second,
                "mfu": self.mfu, "logged": self.logged, "bottleneck": self.bottleneck, "notes": list(self.notes),
                "operators": list(self.operators)}


@dataclass(frozen=True)
class Result:
    """Profiles of the runs that have timing events; ``skipped``: runs without any."""

    params: Params
    profiles: tuple[RunProfile, ...]
    skipped: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"analyzer": NAME, "params": dict(self.params.__dict__),
                "profiles": [p.to_dict() for p in self.profiles], "skipped": list(self.skipped)}

    def report(self) -> Report:
        return _report(self)


HOW_TO_TIME = ("wrap each phase in `with rldk.writer.span('rollout'):` (also 'reward', 'reference', "
               "'train', and 'step' around the whole step), or log step_time / timing_s/<phase> metrics")


def applies(store) -> bool:
    """True when some run has span events or timing metrics."""
    return bool(store.sql(TIMED_RUNS_SQL, [list(STEP_TOTAL_METRICS)]).height)


def run(store, params: Params = Params()) -> Result:
    """Profile ``params.run_id`` (or every run with timing events)."""
    if params.run_id:
        store.run(params.run_id)
        profile = profile_run(store, params.run_id, params)
        return Result(params, (profile,))
    timed = store.sql(TIMED_RUNS_SQL, [list(STEP_TOTAL_METRICS)])["run_id"].to_list()
    if not timed:
        raise MissingEvents(f"no run in the store has span events or timing metrics: {HOW_TO_TIME}")
    skipped = tuple(r for r in store.run_ids if r not in timed)
    return Result(params, tuple(profile_run(store, r, params) for r in timed), skipped)


def phase_of(name: str) -> str:
    """The phase a timed name belongs to ("other" when unknown); "step" for step totals."""
    leaf = name.rsplit("/", 1)[-1].lower()
    if leaf == "step" or name in STEP_TOTAL_METRICS:
        return "step"
    for phase, names in PHASES.items():
        if leaf in names:
            return phase
    return "other"


def _timings(store, run_id: str):
    """Per-step seconds by timed name: Polars frame step, name, seconds, source."""
    import polars as pl

    spans = store.sql(SPANS_SQL, [run_id, run_id]).with_columns(pl.lit("span").alias("source"))
    metrics = (store.sql(TIMING_METRICS_SQL, [run_id, list(STEP_TOTAL_METRICS), run_id])
               .rename({"value": "seconds"}).with_columns(pl.lit("metric").alias("source")))
    frames = [f for f in (spans, metrics) if not f.is_empty()]
    if not frames:
        raise MissingEvents(f"run {run_id!r} has no span events or timing metrics: {HOW_TO_TIME}")
    return pl.concat([f.select("step", "name", pl.col("seconds").cast(pl.Float64), "source") for f in frames])


def _step_totals(store, run_id: str, timings):
    """Seconds per step and the source used (see the module docstring)."""
    import polars as pl

    for source, name in [("span", "step")] + [("metric", m) for m in STEP_TOTAL_METRICS]:
        part = timings.filter((pl.col("source") == source) & (pl.col("name") == name))
        if not part.is_empty():
            return part.select("step", "seconds").sort("step"), f"{source}:{name}"
    starts = store.sql(STEP_STARTS_SQL, [run_id, run_id])
    gaps = starts.with_columns(
        ((pl.col("started").shift(-1) - pl.col("started")) / (pl.col("step").shift(-1) - pl.col("step")))
        .alias("seconds")).drop_nulls("seconds")
    phase_sum = timings.group_by("step").agg(pl.col("seconds").sum().alias("phases"))
    totals = (gaps.join(phase_sum, on="step", how="inner")
              .select("step", pl.max_horizontal("seconds", "phases").alias("seconds")).sort("step"))
    return totals, "wall-clock"


def profile_run(store, run_id: str, params: Params = Params()) -> RunProfile:
    """The :class:`RunProfile` of one run (raises MissingEvents without timings)."""
    import numpy as np
    import polars as pl

    timings = _timings(store, run_id)
    totals, step_source = _step_totals(store, run_id, timings)
    if totals.is_empty():
        raise MissingEvents(f"run {run_id!r}: its timings cover no step with a step time: {HOW_TO_TIME}")
    total_seconds = float(totals["seconds"].sum())
    phases = _phase_times(timings, totals, total_seconds)
    by_phase = _by_phase(phases, total_seconds)
    excluded = _excluded_steps(store, run_id, timings)
    series = totals.filter(~pl.col("step").is_in(list(excluded))
                           & (pl.col("step") >= totals["step"].min() + params.warmup_steps)
                           & (pl.col("seconds") > 0))
    cps = change_points(series["step"].to_numpy(), series["seconds"].to_numpy(), params)
    tps, sps, mfu, logged, notes = _throughput(store, run_id, totals, params)
    return RunProfile(run_id, step_source, totals.height, total_seconds,
                      float(np.median(totals["seconds"].to_numpy())), phases, by_phase,
                      tuple(sorted(excluded)), tuple(cps), tps, sps, mfu, logged,
                      bottleneck_statement(by_phase, total_seconds / totals.height), tuple(notes),
                      _operators(store, run_id),
                      {"steps": totals["step"].to_list(), "seconds": totals["seconds"].to_list()})


def _operators(store, run_id: str) -> tuple[dict, ...]:
    rows = store.sql(OPERATORS_SQL, [run_id]).to_dicts()
    total = sum(r["self_seconds"] for r in rows)
    return tuple({**r, "share": r["self_seconds"] / total if total else 0.0} for r in rows)


def _phase_times(timings, totals, total_seconds: float) -> tuple[PhaseTime, ...]:
    import polars as pl

    on_steps = timings.filter(pl.col("step").is_in(totals["step"].to_list()))
    rows = (on_steps.group_by("name", "source")
            .agg(pl.col("seconds").sum(), pl.col("step").n_unique().alias("steps")).sort("seconds", descending=True))
    out = []
    for name, source, seconds, steps in rows.iter_rows():
        phase = phase_of(name)
        if phase == "step":
            continue
        out.append(PhaseTime(name, phase, source, float(seconds), int(steps),
                             float(seconds) / total_seconds if total_seconds else 0.0))
    return tuple(out)


def _by_phase(phases, total_seconds: float) -> dict:
    shares = {p: 0.0 for p in (*PHASES, "other")}
    for p in phases:
        shares[p.phase] += p.share
    covered = sum(shares.values())
    shares["unaccounted"] = max(0.0, 1.0 - covered)
    return {k: round(v, 6) for k, v in shares.items()}


def _excluded_steps(store, run_id: str, timings) -> set[int]:
    import polars as pl

    leaf = pl.col("name").str.split("/").list.last().str.to_lowercase()
    atypical = timings.filter(leaf.is_in(list(EXCLUDED)) & (pl.col("seconds") > 0))["step"].to_list()
    saved = store.sql(CHECKPOINT_STEPS_SQL, [run_id])["step"].to_list()
    return set(atypical) | set(saved)


def change_points(steps, seconds, params: Params = Params()) -> list[ChangePoint]:
    """Step-time change points by binary segmentation on log seconds.

    A split is kept when both sides have ``min_segment`` steps, a two-sided
    Mann-Whitney U test gives p < ``alpha`` and the medians differ by at least
    ``min_ratio`` either way. Returns them sorted by step.
    """
    import numpy as np

    y = np.log(np.asarray(seconds, dtype=float))
    found: list[ChangePoint] = []
    stack = [(0, len(y))]
    while stack and len(found) < params.max_change_points:
        lo, hi = stack.pop()
        k = best_split(y[lo:hi], params.min_segment)
        if k is None:
            continue
        cp = _test_split(np.asarray(steps), np.asarray(seconds, dtype=float), lo, lo + k, hi, params)
        if cp is not None:
            found.append(cp)
            stack += [(lo, lo + k), (lo + k, hi)]
    return sorted(found, key=lambda c: c.step)


def best_split(y, min_segment: int) -> int | None:
    """Index k that best splits ``y`` into two constant means (least squares), or None."""
    import numpy as np

    n = len(y)
    if n < 2 * min_segment:
        return None
    csum, csq = np.cumsum(y), np.cumsum(y * y)
    k = np.arange(min_segment, n - min_segment + 1)
    left = csq[k - 1] - csum[k - 1] ** 2 / k
    right = (csq[-1] - csq[k - 1]) - (csum[-1] - csum[k - 1]) ** 2 / (n - k)
    return int(k[np.argmin(left + right)])


def _test_split(steps, seconds, lo: int, k: int, hi: int, params: Params) -> ChangePoint | None:
    import numpy as np
    from scipy.stats import mannwhitneyu

    before, after = seconds[lo:k], seconds[k:hi]
    p = float(mannwhitneyu(before, after, alternative="two-sided").pvalue)
    ratio = float(np.median(after) / np.median(before))
    if p >= params.alpha or max(ratio, 1 / ratio) < params.min_ratio:
        return None
    return ChangePoint(int(steps[k]), float(np.median(before)), float(np.median(after)), ratio, p)


def _metric(store, run_id: str, names):
    """The first of ``names`` the run logged, as (name, Polars step/value frame) or (None, None)."""
    from rldk.core.errors import UsageError

    run = store.run(run_id)
    available = set(run.metric_names())
    for name in names:
        if name in available:
            try:
                return name, run.metric(name)
            except UsageError:
                continue
    return None, None


def _throughput(store, run_id: str, totals, params: Params):
    """tokens/s, samples/s, MFU, logged medians, notes."""
    notes = []
    tokens = _per_step(store, run_id, params.tokens_per_step, TOKEN_METRICS, CUMULATIVE_TOKEN_METRICS)
    samples = _per_step(store, run_id, params.samples_per_step, SAMPLE_METRICS, ())
    tps = _rate(tokens, totals)
    sps = _rate(samples, totals)
    if tps is None:
        notes.append("tokens/s unknown: log tokens per step as metric 'tokens' or pass tokens_per_step")
    meta = store.run(run_id).meta
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    n_params = params.model_params or next((config[k] for k in CONFIG_MODEL_PARAMS if k in config), None)
    peak = params.peak_flops or config.get("peak_flops")
    devices = params.num_devices or int(store.sql(RANKS_SQL, [run_id])["ranks"][0]) or 1
    mfu = None
    if tps is not None and n_params and peak:
        mfu = 6.0 * float(n_params) * tps / (float(peak) * devices)
    elif tps is not None:
        notes.append("MFU unknown: pass the model's parameter count and the device peak FLOP/s")
    logged = {}
    for name in ("perf/throughput", "perf/mfu/actor", "perf/mfu/critic"):
        found, frame = _metric(store, run_id, [name])
        if frame is not None:
            logged[name] = float(frame["value"].median())
    return tps, sps, mfu, logged, notes


def _per_step(store, run_id: str, fixed, per_step_names, cumulative_names):
    """Counts per step (Polars step, count) from params, per-step or cumulative metrics."""
    import polars as pl

    if fixed is not None:
        return ("param", float(fixed))
    name, frame = _metric(store, run_id, per_step_names)
    if frame is not None:
        return (name, frame.rename({"value": "count"}))
    name, frame = _metric(store, run_id, cumulative_names)
    if frame is not None and frame.height > 1:
        diff = frame.with_columns((pl.col("value").diff() / pl.col("step").diff()).alias("count"))
        return (name, diff.drop_nulls("count").select("step", "count"))
    return None


def _rate(counts, totals) -> float | None:
    """Sum of counts over the summed step seconds of the same steps."""
    if counts is None:
        return None
    source, data = counts
    if isinstance(data, float):
        seconds = float(totals["seconds"].sum())
        return data * totals.height / seconds if seconds > 0 else None
    joined = data.join(totals, on="step", how="inner")
    seconds = float(joined["seconds"].sum())
    return float(joined["count"].sum()) / seconds if seconds > 0 and joined.height else None


def bottleneck_statement(by_phase: dict, mean_step: float) -> str:
    """One sentence: the dominant phase, its share and seconds per step."""
    named = {k: v for k, v in by_phase.items() if k != "unaccounted"}
    top = max(named, key=named.get)
    if by_phase.get("unaccounted", 0) > named[top]:
        return (f"{by_phase['unaccounted']:.0%} of step time ({by_phase['unaccounted'] * mean_step:.3g} s "
                "per step) is outside every timed phase: add spans around the untimed work")
    return (f"{top} dominates: {named[top]:.0%} of step time "
            f"({named[top] * mean_step:.3g} s of {mean_step:.3g} s per step)")


# ------------------------------------------------------------------------- report
def _report(result: Result) -> Report:
    findings = []
    for p in result.profiles:
        for c in p.change_points:
            findings.append(_change_finding(p.run_id, c))
        findings.append(Finding("bottleneck", "info", p.bottleneck, p.run_id, None, None, dict(p.by_phase)))
    problems = [f for f in findings if f.is_problem]
    lines = [f"{p.run_id}: {p.bottleneck}" for p in result.profiles]
    summary = "; ".join(f.title for f in problems) if problems else "no step-time regression; " + "; ".join(lines)
    if result.skipped:
        summary += f". Not profiled (no span events or timing metrics): {', '.join(result.skipped)}"
    tables = (_phase_table(result), _throughput_table(result))
    if any(p.operators for p in result.profiles):
        tables += (_operator_table(result),)
    return Report(NAME, "Compute profile", "problems" if problems else "ok", summary, tuple(findings),
                  tables, result.to_dict())


def _change_finding(run_id: str, c: ChangePoint) -> Finding:
    verb = "rose" if c.regression else "fell"
    title = (f"step time {verb} {max(c.ratio, 1 / c.ratio):.2f}x at step {c.step} "
             f"({c.before:.3g} s -> {c.after:.3g} s median)")
    fix = ("compare the phases before and after this step (rldk profile --format json), and what "
           "changed then: sequence lengths, batch, a new eval or logging call, memory pressure")
    return Finding("step_time_regression" if c.regression else "step_time_speedup",
                   "warning" if c.regression else "info", title, run_id, "step_time", (c.step, c.step),
                   c.to_dict(), fix if c.regression else "")


def _phase_table(result: Result) -> ReportTable:
    rows = []
    for p in result.profiles:
        for ph in p.phases:
            rows.append((p.run_id, ph.phase, ph.name, ph.source, round(ph.seconds, 4),
                         round(ph.seconds / max(ph.steps, 1), 5), f"{ph.share:.1%}"))
        if p.by_phase.get("unaccounted", 0) > 0:
            share = p.by_phase["unaccounted"]
            rows.append((p.run_id, "other", "(unaccounted)", p.step_source, round(share * p.step_seconds, 4),
                         round(share * p.step_seconds / p.steps, 5), f"{share:.1%}"))
    return ReportTable("Time by phase", ("run", "phase", "name", "source", "seconds", "s/step",
                                         "share of step"), tuple(rows))


def _throughput_table(result: Result) -> ReportTable:
    rows = tuple((p.run_id, p.steps, p.step_source, round(p.median_step, 5),
                  _round(p.tokens_per_second), _round(p.samples_per_second),
                  None if p.mfu is None else f"{p.mfu:.1%}", json.dumps(p.logged, sort_keys=True) if p.logged else "")
                 for p in result.profiles)
    return ReportTable("Step time and throughput", ("run", "steps", "step time from", "median s/step",
                                                   "tokens/s", "samples/s", "MFU", "logged"), rows)


def _operator_table(result: Result) -> ReportTable:
    rows = tuple((p.run_id, o["operator"], o["calls"], o["steps"], round(o["self_seconds"], 6),
                  f"{o['share']:.1%}") for p in result.profiles for o in p.operators)
    return ReportTable("Top operators (torch.profiler windows)",
                       ("run", "operator", "calls", "steps", "self seconds", "share"), rows)


def _round(v):
    return None if v is None or not math.isfinite(v) else round(v, 3)


def plots(result: Result, out_dir) -> dict[str, str]:
    """One PNG per run: step time per step with its change points marked."""
    from pathlib import Path

    from rldk.core.plots import metric_plot

    out = {}
    for p in result.profiles:
        marks = [(c.step, f"{c.ratio:.2f}x at step {c.step}") for c in p.change_points]
        path = Path(out_dir) / f"profile-{p.run_id}.png"
        out[f"{p.run_id}: step time (s)"] = metric_plot(p.curve["steps"], p.curve["seconds"], path,
                                                        title=f"{p.run_id}: step time (s)", marks=marks)
    return out


# ------------------------------------------------------------------ with memory
@dataclass(frozen=True)
class ComputeProfile:
    """What ``rldk profile`` shows: the time profile, the memory trends, and what was
    missing (one line per analysis that lacked its events)."""

    timing: Result | None
    memory: object | None          # rldk.analyzers.memory_leak.Result
    missing: tuple[str, ...] = ()

    def reports(self) -> list[Report]:
        return [r.report() for r in (self.timing, self.memory) if r is not None]

    @property
    def problems(self) -> bool:
        return any(r.status == "problems" for r in self.reports())

    def bottlenecks(self) -> list[str]:
        """Per run: the dominant phase and what grew."""
        out = {}
        for p in (self.timing.profiles if self.timing else ()):
            out[p.run_id] = p.bottleneck
        for t in (self.memory.trends if self.memory else ()):
            if t.leak:
                grew = f"memory leak: {t.describe()}"
                out[t.run_id] = f"{out[t.run_id]}; {grew}" if t.run_id in out else grew
        return [f"{run}: {text}" for run, text in sorted(out.items())]

    def to_dict(self) -> dict:
        return {"profile": self.timing.to_dict() if self.timing else None,
                "memory_leak": self.memory.to_dict() if self.memory else None,
                "bottleneck": self.bottlenecks(), "missing": list(self.missing)}


def compute_profile(store, params: Params = Params(), memory_params=None) -> ComputeProfile:
    """Time profile and memory trends of a store; MissingEvents only when both lack events."""
    from rldk.analyzers import memory_leak

    memory_params = memory_params or memory_leak.Params(run_id=params.run_id)
    timing = memory = None
    missing = []
    try:
        timing = run(store, params)
    except MissingEvents as exc:
        missing.append(f"time profile skipped: {exc}")
    try:
        memory = memory_leak.run(store, memory_params)
    except MissingEvents as exc:
        missing.append(f"memory analysis skipped: {exc}")
    if timing is None and memory is None:
        raise MissingEvents("; ".join(m.split(": ", 1)[1] for m in missing))
    return ComputeProfile(timing, memory, tuple(missing))


class ProfileAnalyzer(Analyzer):
    """The ``profile`` analysis (this module's ``run``) behind the one analyzer interface."""

    name = NAME
    title = "Compute and memory profile"
    consumes = CONSUMES
    Params = Params
    defines_verdict = True

    def applies(self, store) -> bool:
        return applies(store)

    def run(self, store, params=None):
        return run(store, params if params is not None else Params())

    def plots(self, result, out_dir) -> dict[str, str]:
        return plots(result, out_dir)
