"""Throughput and MFU: tokens/s and samples/s from per-step counts (metrics in
the quantities ``tokens_per_step`` / ``samples_per_step``, cumulative ``tokens_seen``
(:mod:`rldk.semantics`), or
the params) over the summed step seconds of the same steps; MFU = 6 x parameters x
tokens/s / (peak FLOP/s x devices) when the model size and peak are known."""
from __future__ import annotations

from dataclasses import dataclass, field

from rldk import semantics
from rldk.analyzers.profile.params import Params
from rldk.core.errors import UsageError
from rldk.semantics import resolve_name

CONFIG_MODEL_PARAMS = ("model_params", "n_params", "num_params", "num_parameters")
RANKS_SQL = "SELECT count(DISTINCT rank) AS ranks FROM events WHERE run_id = ?"


@dataclass(frozen=True)
class Throughput:
    """tokens_per_second, samples_per_second, mfu: None when unknown; logged: medians of
    the throughput metrics the trainer logged itself; notes: what is unknown and why."""

    tokens_per_second: float | None
    samples_per_second: float | None
    mfu: float | None
    logged: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _metric(store, run_id: str, names):
    """The first of ``names`` the run logged, as (name, Polars step/value frame) or (None, None)."""
    run = store.run(run_id)
    available = set(run.metric_names())
    for name in names:
        if name in available:
            try:
                return name, run.metric(name)
            except UsageError:
                continue
    return None, None


def throughput(store, run_id: str, totals, params: Params) -> Throughput:
    """tokens/s, samples/s and MFU of one run over the steps of ``totals`` (step, seconds)."""
    notes = []
    tokens = _per_step(store, run_id, params.tokens_per_step, "tokens_per_step", "tokens_seen")
    samples = _per_step(store, run_id, params.samples_per_step, "samples_per_step", None)
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
    for name in (*semantics.quantity("tokens_per_second").names, *semantics.quantity("mfu").names):
        found, frame = _metric(store, run_id, [name])
        if frame is not None:
            logged[name] = float(frame["value"].median())
    return Throughput(tps, sps, mfu, logged, tuple(notes))


def work_per_step(store, run_id: str, steps):
    """``(name, values)``: the run's work at each of ``steps`` (NaN where not logged):
    tokens per step when it logs them, else its mean response length (generation time
    grows with it), else None."""
    import numpy as np

    counts = _per_step(store, run_id, None, "tokens_per_step", "tokens_seen")
    if counts is None:
        name = resolve_name("response_length", store.run(run_id).metric_names())
        found, frame = _metric(store, run_id, [name] if name else [])
        counts = (found, frame.rename({"value": "count"})) if frame is not None else None
    if counts is None:
        return None
    name, frame = counts
    lookup = dict(zip(frame["step"].to_list(), frame["count"].to_list()))
    return name, np.array([lookup.get(int(s), np.nan) for s in steps], dtype=float)


def _per_step(store, run_id: str, fixed, per_step: str, cumulative: str | None):
    """Counts per step (Polars step, count) from params, else the metric of the quantity
    ``per_step``, else the per-step differences of the cumulative quantity ``cumulative``."""
    import polars as pl

    if fixed is not None:
        return ("param", float(fixed))
    name, frame = _metric(store, run_id, _logged(store, run_id, per_step))
    if frame is not None:
        return (name, frame.rename({"value": "count"}))
    name, frame = _metric(store, run_id, _logged(store, run_id, cumulative))
    if frame is not None and frame.height > 1:
        diff = frame.with_columns((pl.col("value").diff() / pl.col("step").diff()).alias("count"))
        return (name, diff.drop_nulls("count").select("step", "count"))
    return None


def _logged(store, run_id: str, quantity: str | None) -> list[str]:
    """The run's metric name for ``quantity`` (resolved through the semantics table), if any."""
    name = resolve_name(quantity, store.run(run_id).metric_names()) if quantity else None
    return [name] if name else []


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
