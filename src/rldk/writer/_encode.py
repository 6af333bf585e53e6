"""Turning queued writer calls into Arrow tables, off the training loop's thread.

An all-float ``log`` call is queued as ``(step, wall_time, names, values)``, other
calls as ``(seq, step, wall_time, {name: value})`` once numbered. Calls with the
same names in the same order (the usual case: the same dict every step) are
encoded together, in a few C-level passes, and laid out step-major
(the arrival order) so that step, seq and wall_time delta-encode to almost nothing.
Values Arrow cannot take as numbers go through :func:`scalar_fields`, which never
raises: whatever comes in is stored, as a number or as text, and counted.
"""
from __future__ import annotations

import json
import math
import operator
from dataclasses import dataclass, field
from itertools import chain
from operator import countOf

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rldk.core import run_summary
from rldk.schemas import memory_schema

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_TEXT_LIMIT = 1000


@dataclass
class Counters:
    """What the writer had to fix up, by name; reported in the run's end event."""

    nonfinite: dict = field(default_factory=dict)    # name -> NaN/inf values stored
    malformed: dict = field(default_factory=dict)    # name -> values stored as text/null
    bad_steps: int = 0                               # calls whose step was not an integer
    backward_steps: int = 0                          # calls whose step went below the previous one
    negative_steps: int = 0

    def to_dict(self) -> dict:
        return {"nonfinite": dict(self.nonfinite), "malformed": dict(self.malformed),
                "bad_steps": self.bad_steps, "backward_steps": self.backward_steps,
                "negative_steps": self.negative_steps}


def scalar_fields(value) -> tuple[float | None, int | None, str | None, str | None]:
    """``(value, ivalue, text, problem)`` for one logged value; never raises.

    ``problem`` is None for a number, else a short reason ("not a number: str",
    "integer beyond int64", ...) and the value is kept as ``text``.
    """
    if isinstance(value, bool):
        return float(value), int(value), None, None
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return float(value), value, None, None
        return _big_float(value), None, _clip(str(value)), "integer beyond int64"
    if isinstance(value, float):
        return value, None, None, None
    if value is None:
        return None, None, None, "None"
    item = _item(value)
    if item is not None:
        return scalar_fields(item)
    kind = type(value).__name__
    shape = getattr(value, "shape", None)
    if shape is not None:
        return None, None, _clip(f"<{kind} shape={tuple(shape)}>"), f"not a scalar: {kind} shape {tuple(shape)}"
    if isinstance(value, str):
        return None, None, _clip(value), "not a number: str"
    return None, None, _clip(repr(value)), f"not a number: {kind}"


def _item(value):
    """The Python scalar inside a numpy/torch scalar or one-element array, else None."""
    size = getattr(value, "size", None)
    numel = getattr(value, "numel", None)
    try:
        if callable(numel) and numel() == 1:
            return value.item()
        if size == 1 and hasattr(value, "item"):
            return value.item()
        if isinstance(value, (np.floating, np.integer, np.bool_)):
            return value.item()
    except Exception:  # a value that cannot even be read is stored as text by the caller
        return None
    return None


def _big_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _clip(text: str) -> str:
    return text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT] + "...[truncated]"


def _column(values: tuple, name: str, counters: Counters, problems: list):
    """Arrow ``(value, ivalue, text)`` arrays for one metric across a group of calls."""
    try:
        arr = pa.array(values)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        arr = None
    if arr is not None:
        if pa.types.is_floating(arr.type) and all(type(v) is float for v in values):
            arr = arr.cast(pa.float64())
            return arr, pa.nulls(len(arr), pa.int64()), pa.nulls(len(arr), pa.string())
        if pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type):
            ints = arr.cast(pa.int64())
            return ints.cast(pa.float64(), safe=False), ints, pa.nulls(len(arr), pa.string())
    fields = [scalar_fields(v) for v in values]
    for v, _, _, problem in fields:
        if problem is not None:
            counters.malformed[name] = counters.malformed.get(name, 0) + 1
            problems.append((name, problem))
    return (pa.array([f[0] for f in fields], pa.float64()),
            pa.array([f[1] for f in fields], pa.int64()),
            pa.array([f[2] for f in fields], pa.string()))


def clean_step(step, last_step, counters: Counters):
    """The int64 step to store for a call's ``step`` argument (None when unusable)."""
    if type(step) is not int:
        if step is None:
            return None
        try:
            as_int = int(step)
            ok = as_int == step and not isinstance(step, (bool, str, bytes))
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok or not (_INT64_MIN <= as_int <= _INT64_MAX):
            counters.bad_steps += 1
            return None
        step = as_int
    elif not (_INT64_MIN <= step <= _INT64_MAX):
        counters.bad_steps += 1
        return None
    if step < 0:
        counters.negative_steps += 1
    if last_step is not None and step < last_step:
        counters.backward_steps += 1
    return step


def encode_metrics(run_id: str, rank: int, calls: list, counters: Counters, state: dict,
                   problems: list) -> pa.Table:
    """Encode queued ``log`` calls ``(seq, step, wall_time_s, mapping)`` into one table.

    ``state`` carries the last step seen across batches (for backward-step counts);
    ``problems`` collects ``(name, reason)`` for values stored as text or null.
    """
    tables = []
    start = 0
    while start < len(calls):
        keys = calls[start][3].keys()
        end = start + 1
        while end < len(calls) and calls[end][3].keys() == keys:
            end += 1
        tables.append(_encode_group(run_id, rank, calls[start:end], tuple(keys), counters, state, problems))
        start = end
    return pa.concat_tables(tables) if len(tables) != 1 else tables[0]


def same_names(calls: list) -> list[tuple[int, int, tuple]]:
    """``(start, end, names)`` of each run of ``(step, wall, names, values)`` calls with
    the same names in the same order (one run, checked in C, when all have)."""
    names = [c[2] for c in calls]
    if countOf(names, names[0]) == len(names):
        runs = [(0, len(names), names[0])]
    else:
        runs, start = [], 0
        for i in range(1, len(names) + 1):
            if i == len(names) or names[i] != names[start]:
                runs.append((start, i, names[start]))
                start = i
    return [run for run in runs if run[2]]


def encode_float_calls(run_id: str, rank: int, keys: tuple, calls: list, seqs,
                       counters: Counters, state: dict) -> pa.Table:
    """Encode ``(step, wall_time_s, names, values)`` calls whose names are ``keys``,
    numbered ``seqs`` (a range or a list). This is the hot path's encoder: a handful
    of C-level passes, nothing per value in Python."""
    n, k = len(calls), len(keys)
    value = np.fromiter(chain.from_iterable([c[3] for c in calls]), np.float64, n * k)
    names = [key if isinstance(key, str) else str(key) for key in keys]
    _count_nonfinite_np(value.reshape(n, k), names, counters)
    if isinstance(seqs, range):
        seqs = np.arange(seqs.start, seqs.stop, dtype=np.int64)
    steps = _steps([c[0] for c in calls], counters, state)
    wall_ms = _wall_ms([c[1] for c in calls])
    table = _metric_table(run_id, rank, names, n, seqs, steps, wall_ms,
                          pa.array(value), _nulls(pa.int64(), n * k), _nulls(pa.string(), n * k))
    if steps[1] is not None:              # steps that are not integers: summarised from the rows
        return table
    return run_summary.attach(table, {run_id: run_summary.of_metric_batch(rank, names, steps[0], wall_ms,
                                                                          table.num_rows)})


def _wall_ms(walls) -> np.ndarray:
    """Wall times in seconds as the int64 milliseconds the ``wall_time`` column holds."""
    return (np.asarray(walls, np.float64) * 1000.0).astype(np.int64)


def _metric_table(run_id, rank, names, n, seqs, steps, wall_ms, value, ivalue, text) -> pa.Table:
    """The event table of ``n`` calls x ``len(names)`` metrics, step-major (``wall_ms``:
    one per call, from :func:`_wall_ms`).

    Built from numpy buffers without Arrow compute kernels: those release the GIL,
    and in a tight training loop every release costs the encoder a switch interval.
    """
    k = len(names)
    step_values, step_nulls = steps
    step_col = _each_k_times(step_values, k)
    return pa.Table.from_arrays([
        _const_string(run_id, n * k),
        _cached(("rank", rank), n * k, lambda size: pa.array(np.full(size, rank, np.int32))),
        pa.array(_each_k_times(np.asarray(seqs, np.int64), k)),
        pa.array(step_col) if step_nulls is None else pa.array(step_col, mask=_each_k_times(step_nulls, k)),
        pa.array(_each_k_times(wall_ms, k), pa.timestamp("ms")),
        _const_string("metric", n * k),
        pa.DictionaryArray.from_arrays(
            _cached(("names", k), n * k, lambda size: pa.array(np.resize(np.arange(k, dtype=np.int32), size))),
            pa.array(names, pa.string()), safe=False),
        value,
        ivalue,
        _nulls(pa.string(), n * k),
        text,
        _nulls(pa.string(), n * k),
    ], schema=memory_schema())


def _each_k_times(values: np.ndarray, k: int) -> np.ndarray:
    """``np.repeat(values, k)``, as one strided copy (several times faster)."""
    return np.broadcast_to(values[:, None], (len(values), k)).reshape(-1)


_CACHED: dict = {}      # constant columns, sliced to length (zero-copy): a fresh array per
                        # batch costs page faults that dominate encoding


def _cached(key, n: int, make) -> pa.Array:
    """The first ``n`` rows of a constant column made by ``make(size)`` (kept per key)."""
    column = _CACHED.get(key)
    if column is None or len(column) < n:
        if len(_CACHED) > 64:             # many ranks or name counts: start over
            _CACHED.clear()
        column = _CACHED[key] = make(max(n, 1 << 16))
    return column.slice(0, n)


def _nulls(type_, n: int) -> pa.Array:
    return _cached(("nulls", str(type_)), n, lambda size: pa.nulls(size, type_))


def encode_recorded(run_id: str, rank: int, recorded: tuple, seqs: np.ndarray, counters: Counters,
                    state: dict) -> pa.Table:
    """Encode the compiled hot path's calls, numbered ``seqs``: ``recorded`` is
    ``(names, ids, steps, walls, values)`` from ``Recorder.take``, the last four raw
    int32, int64, float64 and float64 bytes. Calls with the same names make one group
    wherever they are in the batch; nothing is done per value in Python."""
    names, ids, steps, walls, values = _arrays(recorded)
    _count_steps(steps, counters, state)
    widths = np.fromiter(map(len, names), np.int64, len(names))[ids]
    starts = np.cumsum(widths) - widths
    wall_ms = _wall_ms(walls)
    tables, every_key = [], set()
    for group in (np.unique(ids) if len(names) > 1 else (0,)):
        keys = [key if isinstance(key, str) else str(key) for key in names[group]]
        every_key.update(keys)
        calls = np.flatnonzero(ids == group) if len(names) > 1 else slice(None)
        matrix = (values.reshape(-1, len(keys)) if len(names) == 1
                  else values[starts[calls][:, None] + np.arange(len(keys))])
        _count_nonfinite_np(matrix, keys, counters)
        n = len(matrix)
        tables.append(_metric_table(run_id, rank, keys, n, seqs[calls], (steps[calls], None), wall_ms[calls],
                                    pa.array(matrix.ravel()), _nulls(pa.int64(), n * len(keys)),
                                    _nulls(pa.string(), n * len(keys))))
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return run_summary.attach(table, {run_id: run_summary.of_metric_batch(rank, every_key, steps, wall_ms,
                                                                          table.num_rows)})


def split_recorded(recorded: tuple, max_values: int) -> list[tuple[tuple, int, int]]:
    """``recorded`` cut between calls into parts of about ``max_values`` values (a segment
    at a time keeps memory bounded): ``(part, first call, end call)``, zero-copy views."""
    names, raw_ids, raw_steps, raw_walls, raw_values = recorded
    widths = np.fromiter(map(len, names), np.int64, len(names))[np.frombuffer(raw_ids, np.int32)]
    ends = np.cumsum(widths)
    if not len(ends) or ends[-1] <= max_values:
        return [(recorded, 0, len(ends))]
    cuts = np.searchsorted(ends, np.arange(max_values, ends[-1], max_values), side="right")
    bounds = np.unique(np.concatenate([[0], cuts[cuts > 0], [len(ends)]])).tolist()
    views = [memoryview(raw) for raw in (raw_ids, raw_steps, raw_walls, raw_values)]
    parts = []
    for lo, hi in zip(bounds, bounds[1:]):
        first = int(ends[lo] - widths[lo])
        parts.append(((names, views[0][4 * lo:4 * hi], views[1][8 * lo:8 * hi], views[2][8 * lo:8 * hi],
                       views[3][8 * first:8 * int(ends[hi - 1])]), lo, hi))
    return parts


def _arrays(recorded: tuple):
    """``Recorder.take``'s bytes as numpy arrays; equal name tuples share one id."""
    names, raw_ids, raw_steps, raw_walls, raw_values = recorded
    ids = np.frombuffer(raw_ids, np.int32)
    if len(set(names)) < len(names):     # the table restarts at each take with the last names
        index: dict = {}
        ids = np.fromiter((index.setdefault(n, len(index)) for n in names), np.int64, len(names))[ids]
        names = list(index)
    return (names, ids, np.frombuffer(raw_steps, np.int64), np.frombuffer(raw_walls, np.float64),
            np.frombuffer(raw_values, np.float64))


def recorded_calls(recorded: tuple, seqs: np.ndarray) -> list:
    """``(seq, step, wall, {name: value})`` of recorded calls, for the one-by-one encoder."""
    names, ids, steps, walls, values = _arrays(recorded)
    out, at = [], 0
    for seq, step, wall, group in zip(seqs.tolist(), steps.tolist(), walls.tolist(), ids.tolist()):
        keys = names[group]
        out.append((seq, step, wall, dict(zip(keys, values[at:at + len(keys)].tolist()))))
        at += len(keys)
    return out


def _count_steps(values: np.ndarray, counters: Counters, state: dict) -> None:
    """Count negative steps and steps below the previous one (int64 steps in call order)."""
    last = state.get("last_step")
    counters.negative_steps += int((values < 0).sum())
    prev = np.concatenate([[last if last is not None else values[0]], values[:-1]])
    counters.backward_steps += int((values < prev).sum())
    state["last_step"] = int(values[-1])


def _steps(steps: tuple, counters: Counters, state: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """int64 steps of a group of calls and their null mask (None when all valid),
    counting bad, negative and backward steps."""
    values = None
    if operator.countOf(map(type, steps), int) == len(steps):
        try:
            values = np.fromiter(steps, np.int64, len(steps))
        except OverflowError:
            values = None
    if values is None:
        last = state.get("last_step")
        cleaned = []
        for s in steps:
            c = clean_step(s, last, counters)
            cleaned.append(c)
            last = c if c is not None else last
        state["last_step"] = last
        mask = np.fromiter((c is None for c in cleaned), bool, len(cleaned))
        return np.fromiter((0 if c is None else c for c in cleaned), np.int64, len(cleaned)), mask
    _count_steps(values, counters, state)
    return values, None


def _encode_group(run_id, rank, calls, keys, counters, state, problems) -> pa.Table:
    n, k = len(calls), len(keys)
    if k == 0:
        return memory_schema().empty_table()
    seqs, steps, walls, dicts = zip(*calls)
    getter = operator.itemgetter(*keys) if k > 1 else (lambda d, _key=keys[0]: (d[_key],))
    columns = list(zip(*map(getter, dicts)))
    names = [key if isinstance(key, str) else str(key) for key in keys]
    value, ivalue, text = _mixed_columns(columns, names, n, k, counters, problems)
    return _metric_table(run_id, rank, names, n, seqs, _steps(steps, counters, state), _wall_ms(walls),
                         value, ivalue, text)


def _mixed_columns(columns, names, n, k, counters, problems):
    """value/ivalue/text arrays in step-major order when some column is not all floats."""
    values, ivalues, texts = [], [], []
    for name, col in zip(names, columns):
        v, iv, t = _column(col, name, counters, problems)
        values.append(v), ivalues.append(iv), texts.append(t)
    value = pa.concat_arrays(values)
    _count_nonfinite(value, names, n, counters)
    order = pa.array((np.arange(k, dtype=np.int64)[None, :] * n + np.arange(n, dtype=np.int64)[:, None]).ravel())
    return value.take(order), pa.concat_arrays(ivalues).take(order), pa.concat_arrays(texts).take(order)


def _count_nonfinite_np(matrix: np.ndarray, names: list, counters: Counters) -> None:
    bad = ~np.isfinite(matrix)
    if bad.any():
        for name, count in zip(names, bad.sum(axis=0)):
            if count:
                counters.nonfinite[name] = counters.nonfinite.get(name, 0) + int(count)


def _const_string(text: str, n: int) -> pa.Array:
    """``n`` copies of ``text`` as a dictionary array (one string, n int32 indices)."""
    return pa.DictionaryArray.from_arrays(_cached("zeros", n, lambda size: pa.array(np.zeros(size, np.int32))),
                                          pa.array([text], pa.string()), safe=False)


def _count_nonfinite(value: pa.Array, names: list, n: int, counters: Counters) -> None:
    finite = pc.is_finite(value)
    if pc.all(pc.or_kleene(finite, pc.is_null(value))).as_py() is not False:
        return
    bad = ~np.asarray(finite.fill_null(True), dtype=bool)
    per_name = bad.reshape(len(names), n).sum(axis=1)
    for name, count in zip(names, per_name):
        if count:
            counters.nonfinite[name] = counters.nonfinite.get(name, 0) + int(count)


def encode_calls_one_by_one(run_id: str, rank: int, calls: list, counters: Counters,
                            problems: list) -> pa.Table:
    """The slowest, simplest encoding of ``log`` calls: every value through
    :func:`scalar_fields`. Used if the vectorized encoders fail, so that an
    encoder bug can never lose what was logged."""
    rows = []
    for seq, step, wall, values in calls:
        step = clean_step(step, None, counters)
        for name, v in values.items():
            value, ivalue, text, problem = scalar_fields(v)
            if problem is not None:
                problems.append((str(name), problem))
            rows.append((seq, step, wall, str(name), value, ivalue, None, text, None))
    return encode_rows(run_id, rank, "metric", rows)


def encode_rows(run_id: str, rank: int, kind: str, rows: list) -> pa.Table:
    """Encode prepared event rows ``(seq, step, wall_time_s, name, value, ivalue, digest, text, attrs)``.

    Used by every kind except metrics (rng, tensor, memory, span, sample, run, ...);
    ``attrs`` may be a dict, serialised here as JSON.
    """
    n = len(rows)
    cols = list(zip(*rows)) if rows else [()] * 9
    attrs = [a if a is None or isinstance(a, str) else json.dumps(a, default=str, allow_nan=True)
             for a in cols[8]]
    return pa.Table.from_arrays([
        _const_string(run_id, n),
        pa.array(np.full(n, rank, np.int32)),
        pa.array(cols[0], pa.int64()),
        pa.array(cols[1], pa.int64()),
        pa.array((np.asarray(cols[2], np.float64) * 1000.0).astype(np.int64)).cast(pa.timestamp("ms")),
        _const_string(kind, n),
        pa.array(cols[3], pa.string()).dictionary_encode(),
        pa.array(cols[4], pa.float64()),
        pa.array(cols[5], pa.int64()),
        pa.array(cols[6], pa.string()),
        pa.array(cols[7], pa.string()),
        pa.array(attrs, pa.string()),
    ], schema=memory_schema())
