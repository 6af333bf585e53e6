"""Shared by the generic JSONL and CSV converters: field maps and rows -> event tables.

A field map renames source fields to rldk's names before anything else:
``"step=global_step,reward=reward_scalar"`` (``target=source`` pairs) makes the
source's ``global_step`` the step and its ``reward_scalar`` the metric ``reward``.

Then, per row: the step is the ``step`` field (else ``global_step``, ``iteration``,
``_step``, ``timestep``, the SB3 / Baselines / LLaMA-Factory / ROLL / Spinning Up /
garage / RLlib (``timesteps_total``, else its iteration) / torch-ac (``frames``) / OpenAI
Baselines (``steps``) step columns, or ``Step`` (TensorBoard's and wandb's CSV downloads)
(:data:`STEP_FIELDS`); else the row number, said in the summary); ``wall_time``
(else ``timestamp``, ``_timestamp``, ``Wall time``, TorchBeast's ``_time``) in seconds is the event time; every other
numeric field is a ``metric``; ``response``/``completion`` text makes a ``sample``
event (``prompt`` and ``reward`` go with it). Other non-numeric fields are not
metrics: they are counted per field in the run's import event.

Rows are turned into Arrow tables every :data:`CHUNK_ROWS` rows
(:meth:`RowCollector.take`), so a converter can stream a file of any size. A row
whose step does not fit int64 is skipped with its reason; objects nested deeper
than :data:`MAX_DEPTH` are not flattened further (counted as ignored).
"""
from __future__ import annotations

import json
import math

from rldk.converters.base import ConvertError, metric_table
from rldk.core.errors import UsageError


class FieldMapError(UsageError, ValueError):
    """A malformed ``--field-map`` (a usage error; a ValueError for older callers)."""

STEP_FIELDS = ("step", "global_step", "iteration", "_step", "timestep", "time/total_timesteps", "current_steps",
               "total_timesteps", "misc/total_timesteps", "system/step", "TotalEnvInteracts", "TotalEnvSteps",
               "timesteps_total", "num_env_steps_sampled_lifetime", "num_env_steps_sampled", "training_iteration",
               "frames", "Step", "steps")
TIME_FIELDS = ("wall_time", "timestamp", "_timestamp", "Wall time", "_time")
TEXT_FIELDS = ("response", "completion")
#: How the fields left out (``meta()["ignored_fields"]``) name a column with no header.
UNNAMED = "(no header)"
CHUNK_ROWS = 16_384
MAX_DEPTH = 32
_INT64 = 2 ** 63


def parse_field_map(spec) -> dict[str, str]:
    """``"a=b,c=d"`` (or a dict) -> ``{source: target}``; raises ValueError on a bad pair."""
    if not spec:
        return {}
    if isinstance(spec, dict):
        return {src: dst for dst, src in spec.items()}
    out = {}
    for pair in str(spec).split(","):
        target, sep, source = pair.strip().partition("=")
        if not sep or not target.strip() or not source.strip():
            raise FieldMapError(f"bad --field-map entry {pair.strip()!r}: use target=source, "
                             "e.g. step=global_step,reward=reward_scalar")
        out[source.strip()] = target.strip()
    return out


def number(value):
    """A float for JSON/CSV scalars ("nan", "inf" included), else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            return None
    return None


class RowCollector:
    """Accumulates rows (dicts) into metric and sample columns."""

    def __init__(self, field_map: dict[str, str]):
        self.field_map = field_map
        self.steps, self.names, self.values, self.walls = [], [], [], []
        self.samples = []              # (step, wall, text, value, attrs)
        self.ignored: dict[str, int] = {}
        self.numeric_names: set[str] = set()
        self.text_values: dict[str, list] = {}       # name -> [count, where first, first raw value]
        self.where: str | None = None                # the reader's name for the row being added
        self.step_field = None
        self.rows = 0

    def add(self, row: dict, rownum: int) -> str | None:
        """Collect one row; returns why it was skipped, or None."""
        row = {self.field_map.get(k, k): v for k, v in _flatten(row).items()}
        step = self._step(row, rownum)
        if not -_INT64 <= step < _INT64:
            return f"step {step} does not fit a 64-bit integer; row skipped"
        wall = next((number(row[f]) for f in TIME_FIELDS if f in row), None)
        self.rows += 1
        for name, raw in row.items():
            if name == self.step_field or name in TIME_FIELDS:
                continue
            if not name.strip():
                # a column with no header (pandas' ``to_csv`` writes its index there): no
                # metric anyone can name; its values counted with the fields left out
                if raw not in (None, ""):
                    self.ignored[UNNAMED] = self.ignored.get(UNNAMED, 0) + 1
                continue
            value = number(raw)
            if value is not None:
                self.steps.append(step), self.names.append(name), self.values.append(value)
                self.walls.append(wall)
                self.numeric_names.add(name)
            elif name not in TEXT_FIELDS and name != "prompt" and raw not in (None, ""):
                self.ignored[name] = self.ignored.get(name, 0) + 1
                seen = self.text_values.setdefault(name, [0, self.where or f"data row {rownum + 1}", raw])
                seen[0] += 1
        text_field = next((f for f in TEXT_FIELDS if isinstance(row.get(f), str)), None)
        if text_field is not None:
            attrs = {"prompt": str(row.get("prompt", "")), "index": rownum}
            self.samples.append((step, wall, row[text_field], number(row.get("reward")), json.dumps(attrs)))
        return None

    def take(self, at_least: int = CHUNK_ROWS) -> list:
        """The tables of the rows collected since the last take, once there are
        ``at_least`` values or samples (0: whatever there is); else []."""
        if len(self.names) + len(self.samples) < max(at_least, 1):
            return []
        out = self.tables()
        self.steps, self.names, self.values, self.walls, self.samples = [], [], [], [], []
        return out

    def _step(self, row: dict, rownum: int):
        if self.step_field is None:
            self.step_field = next((f for f in STEP_FIELDS if f in row), "")
        value = number(row.get(self.step_field)) if self.step_field else None
        if value is None or not math.isfinite(value) or value != int(value):
            return rownum
        return int(value)

    def tables(self) -> list:
        import pyarrow as pa

        walls = self.walls if any(w is not None for w in self.walls) else None
        out = [metric_table(self.steps, self.names, self.values, walls)] if self.names else []
        if self.samples:
            step, wall, text, value, attrs = zip(*self.samples)
            out.append(pa.table({"step": pa.array(step, pa.int64()), "wall_time": pa.array(wall, pa.float64()),
                                 "kind": pa.array(["sample"] * len(step)), "name": pa.array(["sample"] * len(step)),
                                 "value": pa.array(value, pa.float64()), "text": pa.array(text, pa.string()),
                                 "attrs": pa.array(attrs, pa.string())}))
        return out

    def non_numeric(self):
        """``(name, count, where first, first value)`` of the values that were not numbers in a
        column that otherwise holds numbers (``"oops"`` among rewards): left out of the
        metric, and reported, never silently dropped or zero-filled."""
        return [(name, seen[0], seen[1], seen[2]) for name, seen in sorted(self.text_values.items())
                if name in self.numeric_names]

    def meta(self) -> dict:
        return {"step_field": self.step_field or "(row number)", "rows": self.rows,
                "ignored_fields": self.ignored, "field_map": {v: k for k, v in self.field_map.items()}}


def _flatten(row: dict, prefix: str = "", depth: int = 0) -> dict:
    """Nested objects become ``parent/child`` names (verl-style ``{"data": {...}}`` too)."""
    out = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < MAX_DEPTH:
            out.update(_flatten(value, f"{name}/", depth + 1))
        else:
            out[name] = value
    return out


# ------------------------------------------------------------ columnar batches
def open_binary(file, what: str):
    """``file`` opened in binary; one error line when it cannot be read or holds NUL bytes
    (``what``: the format it should be, for that line)."""
    try:
        handle = open(file, "rb")
    except OSError as exc:
        raise ConvertError(f"{file}: cannot read ({exc.strerror})") from None
    if b"\0" in handle.read(4096):
        handle.close()
        raise ConvertError(f"{file}: binary file (NUL bytes), not {what}")
    handle.seek(0)
    return handle


def count_byte(block, char: bytes) -> int:
    """How many times the one byte ``char`` occurs in ``block`` (a vectorised count:
    several times faster than ``bytes.count`` on megabytes; a piece at a time, so that
    the comparison's mask stays in cache)."""
    import numpy as np

    data, byte, step = np.frombuffer(block, np.uint8), ord(char), 1 << 18
    return sum(int(np.count_nonzero(data[at:at + step] == byte)) for at in range(0, len(data), step))


def line_count(block) -> int:
    """The lines of ``block`` (bytes or a memoryview of them): its line ends, plus a
    last line that has none."""
    size = len(block)
    return count_byte(block, b"\n") + (size > 0 and block[size - 1] != ord("\n"))


#: bytes of a reader's first batch: the first data row goes through the row path (it
#: decides the step field; for CSV the header too) and the rest of the first batch is
#: parsed again, so a small first batch starts the pipeline early. For the 200 MB CSV of
#: benchmarks/import.py the first table came 75-80 -> 20-34 ms after the start, and the
#: import took 0.726 -> 0.695 s (medians of 9 interleaved processes).
FIRST_BYTES = 1 << 18


def line_blocks(handle, size: int, first: int | None = None):
    """A binary file in pieces of about ``size`` bytes (the first of at most ``first``,
    when given) that end at a line end (or at the file's end): a streaming reader's
    batches, each whole lines. Each piece is read in one call once its end is found (no
    copy to join a piece and its last line's rest)."""
    import os

    fd, at = handle.fileno(), handle.tell()
    piece = min(first, size) if first else size
    while True:
        end = _line_end(fd, at + piece - 1)
        piece = size
        block = os.pread(fd, end - at, at)
        while len(block) < end - at:             # a short read (never for a regular file)
            more = os.pread(fd, end - at - len(block), at + len(block))
            if not more:
                break
            block += more
        if not block:
            return
        yield block
        at += len(block)


def _line_end(fd: int, at: int) -> int:
    """The offset just past the first line end at or after ``at`` (the file's end if none)."""
    import os

    while True:
        peek = os.pread(fd, 1 << 16, at)
        cut = peek.find(b"\n")
        if cut >= 0 or not peek:
            return at + (cut + 1 if cut >= 0 else 0)
        at += len(peek)


def prefetched(items, prepare, ahead: int = 2, workers: int = 1):
    """``prepare(item)`` of each of ``items`` in order, computed on ``workers`` threads up
    to ``ahead`` items before it is taken: Polars parses the next blocks of a file
    (without the GIL, on its own threads too) while the taking thread turns the last one
    into event tables and the writer's thread encodes the ones before. ``items`` is read
    on the taking thread. (Two workers were measured slower: 4.9-5.4 s against 3.2-4.6 s
    for the 400 MB JSONL at load 3-4, as Polars already spreads one block's parse.)"""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rldk-parse")
    waiting: deque = deque()
    try:
        for item in items:
            waiting.append(pool.submit(prepare, item))
            if len(waiting) > ahead:
                yield waiting.popleft().result()
        while waiting:
            yield waiting.popleft().result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def frame_tables(rows: RowCollector, frame) -> list | None:
    """The event tables of a batch of rows parsed as one Polars frame, or None when the
    batch is irregular (text or mixed-type columns, a new step field, steps beyond
    int64...) and must go through :meth:`RowCollector.add` row by row instead.

    Gives the same events, counts and row numbers as the row path: numeric columns
    (bool, int, float; nulls are missing values) become metrics, nested objects
    ``parent/child`` names, list columns are counted as ignored.
    """
    import polars as pl

    columns = _flat_columns(frame, rows.field_map)
    if columns is None or rows.step_field is None:     # the first row decides the step field
        return None
    time_fields = [f for f in TIME_FIELDS if f in columns]
    if len(time_fields) > 1 or any(name in TEXT_FIELDS or name == "prompt" for name in columns):
        return None
    numeric, ignored = {}, {}
    for name, series in columns.items():
        dtype = series.dtype
        if not name.strip():                                # no header: as the row path
            ignored[UNNAMED] = series.len() - series.null_count()
        elif dtype.is_numeric() or dtype == pl.Boolean:
            numeric[name] = series.cast(pl.Float64)
        elif dtype == pl.Null:
            continue
        elif isinstance(dtype, (pl.List, pl.Array)):
            ignored[name] = series.len() - series.null_count()
        else:
            return None
    n = frame.height
    steps = _frame_steps(numeric.get(rows.step_field), rows.rows, n)
    if steps is None:
        return None
    wall = numeric[time_fields[0]] if time_fields and time_fields[0] in numeric else None
    metrics = [(name, values) for name, values in numeric.items()
               if name != rows.step_field and name not in TIME_FIELDS]
    for name, count in ignored.items():
        if count:
            rows.ignored[name] = rows.ignored.get(name, 0) + count
    rows.numeric_names.update(name for name, values in metrics if values.null_count() < n)
    rows.rows += n
    return [_metrics_table(metrics, steps, wall)] if metrics else []


def _metrics_table(metrics: list, steps, wall):
    """One ``metric`` event table, column by column (each column's rows in file order), a
    chunk per column: a column without nulls is its own Arrow buffer and shares the
    batch's step (and wall-time) array, so nothing is copied."""
    import numpy as np
    import pyarrow as pa

    parts = []
    for _, series in metrics:
        values = series.to_arrow()
        if values.null_count:
            keep = values.is_valid()
            parts.append((steps.filter(keep), values.filter(keep), wall.filter(keep) if wall is not None else None))
        else:
            parts.append((steps, values, wall))
    counts = [len(values) for _, values, _ in parts]
    codes = pa.array(np.repeat(np.arange(len(metrics), dtype=np.int32), counts))
    kinds = pa.array(np.zeros(len(codes), np.int32))
    names = pa.array([name for name, _ in metrics], pa.string())
    batches, at = [], 0
    for (step, values, walls), count in zip(parts, counts):
        columns = [step, pa.DictionaryArray.from_arrays(kinds.slice(at, count), _METRIC, safe=False),
                   pa.DictionaryArray.from_arrays(codes.slice(at, count), names, safe=False), values]
        batches.append(pa.RecordBatch.from_arrays(columns + ([walls] if wall is not None else []),
                                                  names=_COLUMNS[:len(columns) + (wall is not None)]))
        at += count
    return pa.Table.from_batches(batches)


_COLUMNS = ("step", "kind", "name", "value", "wall_time")
_METRIC = ["metric"]


def _flat_columns(frame, field_map: dict) -> dict | None:
    """``{name: Series}`` with struct columns flattened to ``parent/child`` and the field
    map applied; None when two columns would get one name (the row path decides which wins)."""
    import polars as pl

    out: dict = {}
    stack = [(series.name, series, 0) for series in frame.get_columns()]
    while stack:
        name, series, depth = stack.pop(0)
        if isinstance(series.dtype, pl.Struct):
            if depth >= MAX_DEPTH or not series.dtype.fields:
                return None
            parts = series.struct.unnest()
            stack[:0] = [(f"{name}/{s.name}", s, depth + 1) for s in parts.get_columns()]
            continue
        target = field_map.get(name, name)
        if target in out:
            return None
        out[target] = series
    return out


def _frame_steps(step_values, done: int, n: int):
    """Int64 steps of a batch (an Arrow array): the step field where it is a finite
    integer (read as a float, as the row path reads it), else the row number; None when
    a step does not fit int64."""
    import numpy as np
    import polars as pl
    import pyarrow as pa

    if step_values is None:
        return pa.array(np.arange(done, done + n, dtype=np.int64))
    values = step_values.cast(pl.Float64).to_numpy()            # nulls are NaN: not usable
    with np.errstate(invalid="ignore"):
        steps = values.astype(np.int64)
        if (steps == values).all():       # all finite integers in int64 (NaN, inf, 2**63 and 1.5 differ)
            return pa.array(steps)
        usable = np.isfinite(values) & (values == np.round(values))
    if (np.abs(values[usable]) >= float(_INT64)).any():
        return None
    steps = np.where(usable, values, 0.0).astype(np.int64)
    if not usable.all():
        steps = np.where(usable, steps, np.arange(done, done + n, dtype=np.int64))
    return pa.array(steps)
