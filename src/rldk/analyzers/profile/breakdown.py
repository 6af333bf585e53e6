"""Where step time goes: timed names (spans, timing metrics) per step, the step total,
each phase's share, the steps that saved a checkpoint or evaluated (left out of the
regression search), the top operators of profiler windows, and the bottleneck sentence.
Timing metrics count as sections of the step at the top level only (``timing_s/gen``);
nested ones (``timing_s/agent_loop/...``) are parts or statistics of a section.

Step time per step comes from, in order: a span named ``step``, a ``timing_s/step``
or ``timing/step`` metric, ``perf/time_per_step``, ``step_time`` (one that only ever counts up,
a step counter or running total under such a name, is not a time per step: ``counts_up``),
else the wall-clock gap between steps. Time the phases do not cover is "unaccounted".
"""
from __future__ import annotations

from dataclasses import dataclass

from rldk import semantics
from rldk.analyzers.profile.params import HOW_TO_TIME
from rldk.core.errors import MissingEvents

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
#: the names a trainer logs its whole step's seconds under, in order of preference
STEP_TOTAL_METRICS = semantics.quantity("step_time").names

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
#: runs with span events (other than profiler operators) or timing metrics
TIMED_RUNS_SQL = """
SELECT DISTINCT run_id FROM events
WHERE (kind = 'span' AND NOT starts_with(name, 'torch_op/')) OR (kind = 'metric' AND (starts_with(name, 'timing_s/') OR starts_with(name, 'timing/')
                                             OR list_contains(?, name)))
ORDER BY run_id
"""


@dataclass(frozen=True)
class PhaseTime:
    """Seconds spent in one timed name: ``name`` as logged, its ``phase``, where from
    ("span" or "metric"), total seconds, steps it was timed at, share of step time."""

    name: str
    phase: str
    source: str
    seconds: float
    steps: int
    share: float


def phase_of(name: str) -> str:
    """The phase a timed name belongs to ("other" when unknown); "step" for step totals."""
    leaf = name.rsplit("/", 1)[-1].lower()
    if leaf == "step" or name in STEP_TOTAL_METRICS:
        return "step"
    for phase, names in PHASES.items():
        if leaf in names:
            return phase
    return "other"


def load_timings(store, run_id: str):
    """Per-step seconds by timed name: Polars frame step, name, seconds, source."""
    import polars as pl

    spans = store.sql(SPANS_SQL, [run_id, run_id]).with_columns(pl.lit("span").alias("source"))
    metrics = (store.sql(TIMING_METRICS_SQL, [run_id, list(STEP_TOTAL_METRICS), run_id])
               .rename({"value": "seconds"}).with_columns(pl.lit("metric").alias("source")))
    frames = [f for f in (spans, metrics) if not f.is_empty()]
    if not frames:
        raise MissingEvents(f"run {run_id!r} has no span events or timing metrics: {HOW_TO_TIME}")
    return pl.concat([f.select("step", "name", pl.col("seconds").cast(pl.Float64), "source") for f in frames])


def step_totals(store, run_id: str, timings):
    """Seconds per step and the source used (see the module docstring)."""
    import polars as pl

    counters = step_counters(timings)           # step counters or running totals: no step time
    for source, name in [("span", "step")] + [("metric", m) for m in STEP_TOTAL_METRICS]:
        part = timings.filter((pl.col("source") == source) & (pl.col("name") == name))
        if not part.is_empty() and not (source == "metric" and name in counters):
            return part.select("step", "seconds").sort("step"), f"{source}:{name}"
    timings = timings.filter(~pl.col("name").is_in(counters))
    starts = store.sql(STEP_STARTS_SQL, [run_id, run_id])
    gaps = starts.with_columns(
        ((pl.col("started").shift(-1) - pl.col("started")) / (pl.col("step").shift(-1) - pl.col("step")))
        .alias("seconds")).drop_nulls("seconds")
    phase_sum = timings.group_by("step").agg(pl.col("seconds").sum().alias("phases"))
    totals = (gaps.join(phase_sum, on="step", how="inner")
              .select("step", pl.max_horizontal("seconds", "phases").alias("seconds")).sort("step"))
    return totals, "wall-clock"


#: ``counts_up``: how many times its first value a never-decreasing series must end at to be
#: a running total, not a time per step.
COUNTS_UP = 10.0


def counts_up(values, steps=None) -> bool:
    """Whether a step-time metric is a running total instead: it never decreases over three
    rows or more and ends at COUNTS_UP x its first value, or equals the step on every row
    (``steps``: ManiSkill's PPO logs the global step counter as ``time/step`` beside
    ``time/total_rollout_time``; read from a later step on, a resumed run's or a window of
    it, the counter does not grow tenfold, but it is still the step). A time per step
    jitters from step to step, and does not grow tenfold without a single step back."""
    import numpy as np

    v = np.asarray(values, float)
    finite = np.isfinite(v)
    if steps is not None and finite.sum() >= 3 and np.array_equal(v[finite], np.asarray(steps, float)[finite]):
        return True
    v = v[finite]
    return len(v) >= 3 and bool(np.all(np.diff(v) >= 0)) and v[-1] > 0 and v[-1] >= COUNTS_UP * max(v[0], 0.0)


def step_counters(timings) -> list[str]:
    """The step-time metric names among ``timings`` whose series only counts up
    (``counts_up``)."""
    import polars as pl

    metrics = timings.filter(pl.col("source") == "metric")
    out = []
    for m in STEP_TOTAL_METRICS:
        series = metrics.filter(pl.col("name") == m).sort("step")
        if counts_up(series["seconds"], series["step"]):
            out.append(m)
    return out


def operators(store, run_id: str) -> tuple[dict, ...]:
    """The top operators of ``rldk.writer.profile`` windows with their share of self time."""
    rows = store.sql(OPERATORS_SQL, [run_id]).to_dicts()
    total = sum(r["self_seconds"] for r in rows)
    return tuple({**r, "share": r["self_seconds"] / total if total else 0.0} for r in rows)


def phase_times(timings, totals, total_seconds: float) -> tuple[PhaseTime, ...]:
    """Seconds per timed name over the steps that have a step total, largest first."""
    import polars as pl

    on_steps = timings.filter(pl.col("step").is_in(totals["step"].to_list()))
    rows = (on_steps.group_by("name", "source")
            .agg(pl.col("seconds").sum(), pl.col("step").n_unique().alias("steps")).sort("seconds", descending=True))
    out = []
    for name, source, seconds, steps in rows.iter_rows():
        phase = phase_of(name)
        if phase == "step" or (source == "metric" and not _top_level(name)):
            continue
        out.append(PhaseTime(name, phase, source, float(seconds), int(steps),
                             float(seconds) / total_seconds if total_seconds else 0.0))
    return tuple(out)


def _top_level(name: str) -> bool:
    """Whether a timing metric is a section of the step (``timing_s/gen``), not a part or a
    statistic of one (verl's ``timing_s/agent_loop/generate_sequences/max``: inside the
    generation already timed, and counted again if summed)."""
    prefix = next((p for p in TIMING_PREFIXES if name.startswith(p)), None)
    return prefix is None or "/" not in name[len(prefix):]


def by_phase(phases) -> dict:
    """Phase -> share of step time, with "unaccounted" for what no phase covers."""
    shares = {p: 0.0 for p in (*PHASES, "other")}
    for p in phases:
        shares[p.phase] += p.share
    covered = sum(shares.values())
    shares["unaccounted"] = max(0.0, 1.0 - covered)
    return {k: round(v, 6) for k, v in shares.items()}


def excluded_steps(store, run_id: str, timings) -> set[int]:
    """Steps that saved a checkpoint or ran an evaluation: atypical, so left out of the
    regression search (checkpoint events, or a timed checkpoint/eval section)."""
    import polars as pl

    leaf = pl.col("name").str.split("/").list.last().str.to_lowercase()
    atypical = timings.filter(leaf.is_in(list(EXCLUDED)) & (pl.col("seconds") > 0))["step"].to_list()
    saved = store.sql(CHECKPOINT_STEPS_SQL, [run_id])["step"].to_list()
    return set(atypical) | set(saved)


def bottleneck_statement(by_phase: dict, mean_step: float) -> str:
    """One sentence: the dominant phase, its share and seconds per step."""
    named = {k: v for k, v in by_phase.items() if k != "unaccounted"}
    top = max(named, key=named.get)
    if by_phase.get("unaccounted", 0) > named[top]:
        return (f"{by_phase['unaccounted']:.0%} of step time ({by_phase['unaccounted'] * mean_step:.3g} s "
                "per step) is outside every timed phase: add spans around the untimed work")
    return (f"{top} dominates: {named[top]:.0%} of step time "
            f"({named[top] * mean_step:.3g} s of {mean_step:.3g} s per step)")
