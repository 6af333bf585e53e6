"""The metric level's inputs: which metrics the replicas are compared on, and their spread.

Every signal resolves through :mod:`rldk.semantics` in each replica, so
``reward_mean``, ``reward`` (TRL) and ``train/reward`` (TensorBoard) name one
metric. Without signals, the reference replica's metrics that every replica logs
are compared, except those that measure the clock, throughput or memory.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from rldk import semantics
from rldk.analyzers.determinism.result import MetricSpread
from rldk.core.errors import UsageError

#: Metrics that measure the clock, throughput or memory differ between any two runs;
#: unless named in ``signals`` they are left out of the comparison (the card lists them).
VOLATILE_METRIC = re.compile(
    r"(?i)(^|[/_.])(time|times|runtime|duration|secs?|seconds|elapsed|timestamp|"
    r"wall|throughput|speed|fps|sps|per_second|per_sec|mem|memory|rss|"
    r"samples_per_second|steps_per_second|tokens_per_second)([/_.]|$)")

NAMES_SQL = """
SELECT run_id, list_sort(list(DISTINCT name)) AS names
FROM metrics
WHERE step IS NOT NULL AND run_id IN (SELECT unnest($ids))
GROUP BY run_id
"""


@dataclass(frozen=True)
class Signal:
    """signal: the name asked for (or the reference's own name); names: run id -> its metric."""

    signal: str
    names: dict


def compared_metrics(store, run_ids: list[str], signals) -> tuple[list[Signal], list[str]]:
    """``(compared, skipped)``: the signals to compare, each resolved in every replica,
    and the reference's metrics left out as clock/throughput/memory (only without
    ``signals``). Raises :class:`UsageError` for a signal some replica does not log."""
    logged = {row["run_id"]: row["names"] for row in store.sql(NAMES_SQL, {"ids": run_ids}).iter_rows(named=True)}
    logged = {rid: logged.get(rid, []) for rid in run_ids}
    if signals:
        found = [_resolve(s, logged) for s in signals]
        missing = [s for s, f in zip(signals, found) if f is None]
        if missing:
            raise UsageError(f"signal(s) {', '.join(missing)} not logged by every replica; "
                             f"shared metrics: {', '.join(shared_names(logged)) or 'none'}")
        return found, []
    shared = shared_names(logged)
    skipped = [n for n in shared if VOLATILE_METRIC.search(n)]
    return [_resolve(n, logged) for n in shared if n not in skipped], skipped


def shared_names(logged: dict) -> list[str]:
    """The reference's metrics whose quantity every replica logs (under any name)."""
    reference, *others = logged
    return [n for n in logged[reference]
            if all(semantics.resolve_name(n, logged[r]) is not None for r in others)]


def _resolve(signal: str, logged: dict) -> Signal | None:
    names = {rid: semantics.resolve_name(signal, names) for rid, names in logged.items()}
    return None if None in names.values() else Signal(signal, names)


def metric_spread(store, run_ids, signals: list[Signal], steps) -> list[MetricSpread]:
    """Per signal: spread across replicas over ``steps`` (last value per step wins)."""
    import polars as pl

    if not signals:
        return []
    keys = pl.DataFrame({"run_id": [r for s in signals for r in s.names],
                         "name": [n for s in signals for n in s.names.values()],
                         "signal": [s.signal for s in signals for _ in s.names]})
    values = (store.scan("metric")
              .filter(pl.col("run_id").is_in(run_ids) & pl.col("step").is_in(steps))
              .join(keys.lazy(), on=["run_id", "name"])
              .sort(["wall_time", "seq"]).unique(["run_id", "signal", "step"], keep="last")
              .select("run_id", "signal", "step", "value").collect())
    per_step = (values.group_by("signal", "step").agg(
        n=pl.len(), lo=pl.col("value").min(), hi=pl.col("value").max(),
        mean=pl.col("value").mean(), std=pl.col("value").std(ddof=1),
        distinct=pl.col("value").n_unique(), nulls=pl.col("value").null_count())
        .filter(pl.col("n") == len(run_ids)))
    return [_spread_row(s.signal, per_step.filter(pl.col("signal") == s.signal)) for s in signals]


def _spread_row(name: str, frame) -> MetricSpread:
    import polars as pl

    frame = frame.sort("step").with_columns(
        differs=(pl.col("distinct") > 1) | ((pl.col("nulls") > 0) & (pl.col("nulls") < pl.col("n"))),
        abs_diff=(pl.col("hi") - pl.col("lo")))
    differing = frame.filter(pl.col("differs"))
    max_abs = _fmax(differing["abs_diff"]) if differing.height else 0.0
    rel = [_ratio(a, m) for a, m in zip(differing["abs_diff"], differing["mean"])]
    cv = [_ratio(s, m) for s, m in zip(differing["std"], differing["mean"])]
    return MetricSpread(name, frame.height, differing.height,
                        int(differing["step"][0]) if differing.height else None,
                        max_abs, max(rel, default=0.0), max(cv, default=0.0))


def _fmax(series) -> float:
    vals = [v for v in series.to_list() if v is not None and not math.isnan(v)]
    return max(vals) if vals else math.nan


def _ratio(num, den) -> float:
    if num is None or den is None or math.isnan(num) or math.isnan(den):
        return math.nan
    if num == 0:
        return 0.0
    return num / abs(den) if den else math.inf
