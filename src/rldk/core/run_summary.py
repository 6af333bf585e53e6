"""Each file's run summary, kept in its footer: ``rldk runs`` lists a store without a data scan.

Every file rldk writes (a segment, an upload, a merged file) carries, under the
key-value metadata key ``rldk.summary``, a JSON summary of its rows for each run
id in it (:func:`of_table`): event count, ranks, kinds, step and wall-time ranges,
metric names, the distinct metric steps (their count, range, and as arithmetic
progressions ``[first, last, stride]``), the run's last ``end`` status and what its
``import`` events say (:mod:`rldk.core.run_facts`). Reading a store's footers then
gives :meth:`Store.summary <rldk.core.store.Store.summary>` directly (:func:`combine`),
with the values the ``runs`` SQL computes from the rows (``RUNS_SQL``; compared
in tests/test_run_summary.py). The runs held by a file without a summary (foreign
Parquet, older rldk), or whose distinct step count cannot be had from the footers
(overlapping steps across files and more than ``MAX_PROGRESSIONS`` progressions in
one), are summarised by that SQL scan over their own files instead.
"""
from __future__ import annotations

import json

from rldk.core import run_facts

#: the footer key-value metadata key holding a file's summary
KEY = b"rldk.summary"
#: a summary keeps a run's distinct metric steps as at most this many progressions
MAX_PROGRESSIONS = 256
#: the event columns a summary is computed from
COLUMNS = ("run_id", "rank", "step", "wall_time", "kind", "name", "attrs")


# --------------------------------------------------------------------- writing
def metadata(table) -> dict:
    """``{KEY: json}`` for the footer of a file holding ``table`` ({} when it cannot have one)."""
    runs = of_table(table)
    return {} if runs is None else {KEY: encode(runs)}


def encode(runs: dict) -> bytes:
    return json.dumps({"v": 1, "runs": runs}, separators=(",", ":")).encode()


# ------------------------------------------------ a writer's batches, summarised as encoded
#: the schema metadata key under which an encoded batch carries its own summary (the
#: writer's): the segment it goes into is summarised from these, not from its rows
PART_KEY = b"rldk.part_summary"


def of_metric_batch(rank: int, names, steps, wall_ms, rows: int) -> dict:
    """The summary of one run's ``rows`` metric rows from the arrays they were encoded
    from (the writer's all-float batches): ``names`` the metric names, ``steps`` and
    ``wall_ms`` int64 NumPy arrays, one entry per call, no nulls. The same summary
    :func:`of_table` gives for their table, without a pass over it on the encoder
    thread (2 of a live segment's 8 ms of CPU in a loop of numpy work)."""
    import numpy as np

    metric_steps = _steps(_distinct_sorted(steps, np))
    return {"n": int(rows), "ranks": [int(rank)], "kinds": ["metric"],
            "steps": _range(metric_steps["lo"], metric_steps["hi"]),
            "wall": _range(int(wall_ms.min()), int(wall_ms.max())) if len(wall_ms) else None,
            "names": _sorted(names), "msteps": metric_steps}


def attach(table, runs: dict):
    """``table`` carrying its summary ``runs`` (``{run_id: summary}``) in its schema
    metadata (zero-copy), for :func:`metadata_of`."""
    return table.replace_schema_metadata({PART_KEY: encode(runs)})


def metadata_of(tables: list) -> dict:
    """The footer metadata (as :func:`metadata`) of a file holding ``tables`` one after
    the other: a table's attached summary (:func:`attach`) is used, the others' rows
    are summarised; {} when one of them cannot have a summary."""
    runs: dict = {}
    for table in tables:
        meta = table.schema.metadata
        raw = meta.get(PART_KEY) if meta else None
        part = json.loads(raw)["runs"] if raw is not None else of_table(table)
        if part is None:
            return {}
        for run_id, summary in part.items():
            runs[run_id] = merge(runs[run_id], summary) if run_id in runs else summary
    return {KEY: encode(runs)} if runs else {}


def of_table(table) -> dict[str, dict] | None:
    """Per run id, the summary of the events in ``table`` (pyarrow; event columns, plain
    or dictionary-encoded), or None when the table lacks event columns or has rows
    without a run id. A writer's segment holds one run: no grouping, no string copies."""
    if not set(COLUMNS) <= set(table.column_names) or table.column("run_id").null_count:
        return None
    runs = distinct(table.column("run_id"))
    if len(runs) == 1:
        return {runs[0]: _of_run(table)}
    return {r: _of_run(table.filter(_equals(table.column("run_id"), r))) for r in runs}


def _of_run(table) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc

    wall = pc.min_max(table.column("wall_time"))       # scalars: no copy of the column
    wall = {k: _ms(wall[k], pa) for k in ("min", "max")}
    # an import's or a metrics-only segment's rows are all metrics: no mask, no filtered copies
    every = _only(table.column("kind"), "metric")
    names, msteps = table.column("name"), table.column("step")
    if not every:
        metric = _equals(table.column("kind"), "metric")
        names, msteps = names.filter(metric), msteps.filter(metric)
    metric_steps = _steps(unique_sorted(msteps))
    if every:            # the steps are the metric steps (nulls left out either way)
        steps = {"min": metric_steps["lo"], "max": metric_steps["hi"]}
    else:
        steps = pc.min_max(table.column("step")).as_py()
    out = {"n": table.num_rows, "ranks": distinct(table.column("rank")),
           "kinds": distinct(table.column("kind")), "steps": _range(steps["min"], steps["max"]),
           "wall": _range(wall["min"], wall["max"]), "names": distinct(names), "msteps": metric_steps}
    if not every:
        _add_run_events(table, out)
    return out


def _only(column, value: str) -> bool:
    """Whether every row of ``column`` is ``value`` (a dictionary column: read off its
    dictionaries, with no per-row work when they hold ``value`` alone)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        return False
    if pa.types.is_dictionary(column.type) and all(
            chunk.dictionary.to_pylist() == [value] for chunk in column.chunks):
        return True
    return pc.all(_equals(column, value)).as_py() is True


def _ms(scalar, pa):
    """A timestamp scalar as integer milliseconds since the epoch (None when null)."""
    if not scalar.is_valid:
        return None
    if getattr(scalar.type, "unit", None) == "ms":   # the writer's: no casts (0.2 ms of a live segment's 7)
        return scalar.value
    return pa.scalar(scalar.value, scalar.type).cast(pa.timestamp("ms")).cast(pa.int64()).as_py()


def _equals(column, value: str):
    """``column == value`` (nulls false) without decoding a dictionary column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_dictionary(column.type):
        return pc.fill_null(pc.equal(column, value), False)
    chunks = []
    for chunk in column.unify_dictionaries().chunks:
        index = chunk.dictionary.index(value).as_py()
        chunks.append(pc.fill_null(pc.equal(chunk.indices, index), False) if index >= 0
                      else pa.array([False] * len(chunk), pa.bool_()))
    return pa.chunked_array(chunks, pa.bool_())


def distinct(column) -> list:
    """The distinct values of ``column`` sorted, a null last. Without hashing the rows
    where it can: a dictionary column's are the entries its indices use (a count per
    entry), an integer column whose min is its max holds that one value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        values = {v for chunk in column.chunks for v in _used_entries(chunk)}
        return _sorted(values | ({None} if column.null_count else set()))
    if pa.types.is_integer(column.type) and not column.null_count and len(column):
        bounds = pc.min_max(column).as_py()
        if bounds["min"] == bounds["max"]:
            return [bounds["min"]]
    return _sorted(pc.unique(column).to_pylist())


def _used_entries(chunk) -> list:
    """The dictionary entries that the non-null rows of one dictionary chunk use."""
    import numpy as np

    entries = chunk.dictionary.to_pylist()
    if chunk.null_count == len(chunk):
        return []
    if len(entries) == 1:
        return entries
    indices = (chunk.indices.drop_null() if chunk.null_count else chunk.indices).to_numpy()
    if indices.min() == indices.max():             # a chunk of one name (an import's, a column)
        return [entries[indices[0]]]
    counts = np.bincount(indices, minlength=len(entries))
    return [entries[i] for i in np.flatnonzero(counts)]


def unique_sorted(column):
    """The distinct non-null values of an integer column as a sorted int64 NumPy array
    (rows arrive step-major: already sorted, one pass), chunk by chunk so that a large
    import's column is never copied whole."""
    import numpy as np

    parts, seen = [], set()
    for chunk in column.chunks:
        same = None if chunk.null_count else (chunk.buffers()[1].address, chunk.offset, len(chunk))
        if same is None or same not in seen:       # an import's columns share one step array
            seen.add(same)
            parts.append(_chunk_unique(chunk, np))
    values = np.concatenate(parts) if parts else np.empty(0, np.int64)
    if len(values) > 1 and not np.all(values[1:] > values[:-1]):
        return np.unique(values)
    return values


#: Sorted runs a step column may be cut into and still be checked run by run (an import
#: writes each metric's steps in turn); more go to ``np.unique``.
MAX_SORTED_RUNS = 1024


def _chunk_unique(chunk, np):
    """One chunk's distinct values, sorted (a chunk that is not sorted gets ``np.unique``)."""
    if chunk.null_count:
        chunk = chunk.drop_null()
    return _distinct_sorted(chunk.to_numpy(zero_copy_only=False).astype(np.int64, copy=False), np)


def _distinct_sorted(values, np):
    """The distinct values of an int64 NumPy array, sorted (one pass when they rise)."""
    if len(values) < 2 or (values[1:] > values[:-1]).all():      # strictly rising: the usual
        return values
    descents = np.flatnonzero(values[1:] < values[:-1]) + 1
    if len(descents) and len(descents) <= MAX_SORTED_RUNS:
        # an import's table is column by column: the same sorted steps once per metric
        runs = np.split(values, descents)
        if all(np.array_equal(run, runs[0]) for run in runs[1:]):
            values, descents = runs[0], descents[:0]
    if len(descents):
        return np.unique(values)
    return values[np.concatenate([[True], values[1:] != values[:-1]])]


def _add_run_events(table, out: dict) -> None:
    """The run's last end status and its import facts, from its ``run`` events (few rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    runs = table.filter(_equals(table.column("kind"), "run"))
    names = runs.column("name").cast(pa.string())
    events = runs.filter(pc.fill_null(pc.is_in(names, pa.array(["end", "import"])), False))
    wall = pc.cast(events.column("wall_time").cast(pa.timestamp("ms")), pa.int64()).to_pylist()
    for name, wall_ms, attrs in zip(events.column("name").cast(pa.string()).to_pylist(), wall,
                                    events.column("attrs").to_pylist()):
        if name == "import":
            out["import"] = _merge_import(out.get("import"), run_facts.import_partial(attrs))
        else:
            out["end"] = _later(out.get("end"), run_facts.end_partial(wall_ms, attrs))


def _steps(unique) -> dict:
    """Sorted distinct steps as ``{n, lo, hi, prog}``: ``prog`` the arithmetic progressions
    ``[first, last, stride]`` that cover them (neighbours may share an end), or None when
    there would be more than ``MAX_PROGRESSIONS``."""
    import numpy as np

    n = len(unique)
    if n == 0:
        return {"n": 0, "lo": None, "hi": None, "prog": []}
    if n == 1:
        return {"n": 1, "lo": int(unique[0]), "hi": int(unique[0]), "prog": [[int(unique[0])] * 2 + [1]]}
    diffs = np.diff(unique)
    starts = np.concatenate([[0], np.flatnonzero(diffs[1:] != diffs[:-1]) + 1])
    ends = np.concatenate([starts[1:], [len(diffs)]])
    prog = None if len(starts) > MAX_PROGRESSIONS else [
        [int(unique[a]), int(unique[b]), int(diffs[a])] for a, b in zip(starts, ends)]
    return {"n": int(n), "lo": int(unique[0]), "hi": int(unique[-1]), "prog": prog}


# --------------------------------------------------------------------- merging
def merge(a: dict, b: dict) -> dict:
    """Two summaries of one run's rows (two files, or two parts of one) as one."""
    out = {"n": a["n"] + b["n"], "ranks": _sorted({*a["ranks"], *b["ranks"]}),
           "kinds": _sorted({*a["kinds"], *b["kinds"]}), "steps": _wider(a["steps"], b["steps"]),
           "wall": _wider(a["wall"], b["wall"]), "names": _sorted({*a["names"], *b["names"]}),
           "msteps": _union_steps([a["msteps"], b["msteps"]])}
    end = _later(a.get("end"), b.get("end"))
    if end is not None:
        out["end"] = end
    if a.get("import") is not None or b.get("import") is not None:
        out["import"] = _merge_import(a.get("import"), b.get("import"))
    return out


def merge_tables(parts: dict | None, table) -> dict | None:
    """``parts`` (per-run summaries so far, None when any part could not have one)
    with ``table``'s rows added: a merged file's summary, built while its rows stream."""
    new = of_table(table)
    if parts is None or new is None:
        return None
    for run_id, part in new.items():
        parts[run_id] = merge(parts[run_id], part) if run_id in parts else part
    return parts


def _union_steps(parts: list[dict]) -> dict | None:
    """Distinct steps of several summaries: counts add when their ranges do not
    overlap; else the progressions are expanded. None when that is impossible."""
    import numpy as np

    parts = [p for p in parts if p is None or p["n"]]
    if any(p is None for p in parts):
        return None
    if len(parts) <= 1:
        return parts[0] if parts else _steps([])
    ordered = sorted(parts, key=lambda p: p["lo"])
    if all(x["hi"] < y["lo"] for x, y in zip(ordered, ordered[1:])):
        prog = [q for p in ordered for q in p["prog"]] if all(p["prog"] is not None for p in ordered) else None
        if prog is not None and len(prog) > MAX_PROGRESSIONS:
            prog = None
        return {"n": sum(p["n"] for p in ordered), "lo": ordered[0]["lo"], "hi": ordered[-1]["hi"], "prog": prog}
    if any(p["prog"] is None for p in parts):
        return None
    steps = np.concatenate([np.arange(a, b + 1, s, dtype=np.int64) for p in parts for a, b, s in p["prog"]])
    return _steps(np.unique(steps))


def _merge_import(a: dict | None, b: dict | None) -> dict:
    if a is None or b is None:
        return a or b
    return {k: _max(a.get(k), b.get(k)) for k in ("seconds", "status", "evidence")}


def _later(a, b):
    """The ``[wall, status]`` with the later wall time (the last end event)."""
    if a is None or b is None:
        return a or b
    return b if b[0] > a[0] else a


def _max(a, b):
    return b if a is None else a if b is None else max(a, b)


def _range(lo, hi):
    return None if lo is None else [lo, hi]


def _wider(a, b):
    if a is None or b is None:
        return a or b
    return [min(a[0], b[0]), max(a[1], b[1])]


def _sorted(values) -> list:
    """Distinct values sorted, a null last (as DuckDB's ``list(DISTINCT x ORDER BY x)``)."""
    values = set(values)
    return sorted(v for v in values if v is not None) + ([None] if None in values else [])


# --------------------------------------------------------------------- reading
def combine(footers) -> tuple[object, set[str] | None]:
    """The store summary from the files' footers: ``(frame, rescan)``.

    ``footers``: the :class:`~rldk.core.files.Footer` of every live file. ``frame``
    (Polars, the columns and types of ``RUNS_SQL``) holds the runs the summaries
    answer for; ``rescan`` names the runs whose rows must be scanned instead (held by a
    file without a summary, or whose distinct steps the footers cannot give), or is
    None when a file without a summary may hold any run (then scan the store).
    """
    rows, rescan = combine_rows(footers)
    return _frame(rows), rescan


def combine_rows(footers) -> tuple[list[list], set[str] | None]:
    """:func:`combine` as plain rows (``SUMMARY_COLUMNS``; ``started`` and ``last_event`` in
    ms since the epoch), without Polars: ``(rows, rescan)``."""
    runs: dict[str, list[dict]] = {}
    rescan: set[str] = set()
    for footer in footers:
        raw = footer.meta.get(KEY) if footer is not None else None
        if raw is None:
            held = footer.exact_runs if footer is not None else None
            if held is None:
                return [], None
            rescan |= held
            continue
        for run_id, part in json.loads(raw)["runs"].items():
            runs.setdefault(run_id, []).append(part)
    rows = []
    for run_id in sorted(set(runs) - rescan):
        row = _row(run_id, runs[run_id])
        if row is None:
            rescan.add(run_id)
        else:
            rows.append(row)
    return rows, rescan


def _row(run_id: str, parts: list[dict]) -> list | None:
    """One ``RUNS_SQL`` row from the run's summaries (one per file), None when its
    distinct steps cannot be had from them."""
    steps = _union_steps([p["msteps"] for p in parts])
    if steps is None:
        return None
    ranks, kinds, names = set(), set(), set()
    end = imported = None
    for p in parts:
        ranks.update(p["ranks"])
        kinds.update(p["kinds"])
        names.update(p["names"])
        end = _later(end, p.get("end"))
        if p.get("import") is not None:
            imported = _merge_import(imported, p["import"])
    first, last = _extent(p["steps"] for p in parts)
    started, last_event = _extent(p["wall"] for p in parts)
    if imported is not None:
        wall_seconds, status, evidence = imported["seconds"], imported["status"], imported["evidence"]
    else:
        wall_seconds = None if started is None else round(last_event / 1000 - started / 1000, 3)
        status, evidence = run_facts.native_status(end[1] if end else None), None
    return [run_id, _sorted(ranks), steps["n"], first, last, _sorted(kinds),
            sum(n is not None for n in names), _sorted(names), started, last_event, wall_seconds,
            sum(p["n"] for p in parts), status, evidence]


def _extent(ranges) -> tuple:
    """(min, max) over ``[lo, hi]`` ranges (None: no value), or (None, None)."""
    ranges = [r for r in ranges if r is not None]
    if not ranges:
        return None, None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def _frame(rows: list[list]):
    import polars as pl

    frame = pl.DataFrame(rows, schema=_SCHEMA(), orient="row")
    return frame.with_columns(pl.col("started", "last_event").cast(pl.Datetime("ms")).cast(pl.Datetime("us")))


#: The columns of a summary row (``RUNS_SQL``'s), in order.
SUMMARY_COLUMNS = ("run_id", "ranks", "steps", "first_step", "last_step", "kinds", "metrics", "metric_names",
                   "started", "last_event", "wall_seconds", "events", "status", "status_evidence")


def _SCHEMA():                     # noqa: N802 - a constant built on first use (Polars is heavy)
    import polars as pl

    return {"run_id": pl.String, "ranks": pl.List(pl.Int32), "steps": pl.Int64, "first_step": pl.Int64,
            "last_step": pl.Int64, "kinds": pl.List(pl.String), "metrics": pl.Int64,
            "metric_names": pl.List(pl.String), "started": pl.Int64, "last_event": pl.Int64,
            "wall_seconds": pl.Float64, "events": pl.Int64, "status": pl.String, "status_evidence": pl.String}
