"""Metric series of one run, loaded column-wise for the analyzers (not an analyzer).

A *series* is one metric of one run as two NumPy arrays: ``steps`` (int64, sorted,
unique) and ``values`` (float64, NaN/inf kept as logged). The rules match
:meth:`rldk.core.store.Run.metric`, so an analyzer and ``run.metric(name)`` see
the same numbers:

* rows with a null step are not part of any series;
* a run with several ranks uses, per metric, the lowest rank that logged it;
* a step logged more than once (a duplicate, or a resumed run replaying steps)
  keeps its last value in ``(wall_time, seq)`` order; the dropped rows are counted;
* a non-numeric value (stored by the writer as text, value null) is left out of
  the series and counted, with the first such step kept for messages.

Loading reads only the columns it needs (a small run through DuckDB into NumPy, a
large one with Polars) and never sorts the whole table: rows are grouped by metric
with a stable radix sort of small integer codes, and each metric's steps are sorted
only when they are not already increasing.

This module is over 500 lines on purpose: it is one concept, the single path by
which every analyzer turns a run's metric rows into arrays; its per-run index, its
cache and its chunked, layout-aware reading share one key and one memory budget,
and splitting them would put that contract in three places.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from rldk.core.errors import UsageError
from rldk.core.files import only_metrics_of
from rldk.core.fs import is_remote, register_filesystems
from rldk.core.store import Run, Store
from rldk.data import open_input

#: Rows loaded per batch of metrics (per run); bounds memory on long runs: while
#: loading, 16M rows x (8 B step + 8 B value + 1 B code + 4 B rank) is about 340 MB;
#: kept, the series take 16 B a row.
BATCH_ROWS = 16_000_000


@dataclass(frozen=True)
class Series:
    """One metric of one run: ``steps`` int64 (sorted, unique), ``values`` float64.

    duplicates: rows dropped because their step was logged again later.
    non_numeric: values left out because they were not numbers (stored as text);
    first_non_numeric: the step of the first of them, or None.
    """

    name: str
    steps: np.ndarray
    values: np.ndarray
    duplicates: int = 0
    non_numeric: int = 0
    first_non_numeric: int | None = None

    def __len__(self) -> int:
        return len(self.steps)


@dataclass(frozen=True)
class Source:
    """Where one run's events are: a :class:`rldk.core.store.Store` and a run id."""

    store: object
    run_id: str

    @property
    def label(self) -> str:
        return self.run_id


def source_of(obj, store=None) -> Source:
    """A :class:`Source` from a Run, a run id in ``store``, or a path holding one run.

    Raises :class:`UsageError` for an unknown id, a path with no runs or with
    several (naming them), or anything else.
    """
    if isinstance(obj, Run):
        return Source(obj.store, obj.id)
    if isinstance(obj, Source):
        return obj
    if not isinstance(obj, (str, os.PathLike)):
        raise UsageError(f"cannot compare {type(obj).__name__!s}: pass a Run, a run id with "
                         "store=, or a path to a run's event files")
    text = str(obj)
    if isinstance(store, Store) and text in store.run_ids:
        return Source(store, text)
    if os.path.exists(text) or any(ch in text for ch in "*?["):
        opened = open_input(text)
        ids = opened.run_ids
        if len(ids) != 1:
            raise UsageError(f"{text} holds {len(ids)} runs ({', '.join(ids) or 'none'}): "
                             "name one run id and pass the store with store= (CLI: --a/--b)")
        return Source(opened, ids[0])
    if isinstance(store, Store):
        raise UsageError(f"no run {text!r} in the store; runs: {', '.join(store.run_ids) or 'none'}")
    raise UsageError(f"no run or path {text!r}: pass a path to its event files, or its run id "
                     "with store=")


# --------------------------------------------------------------------- index
#: Per metric of one run: rows logged with a step, first step, first numeric step.
#: Cheap aggregates only (no arg_min over values): one scan of name and step.
INDEX_SQL = """
SELECT name, count(*) AS rows, min(step) AS first_step,
       min(step) FILTER (WHERE value IS NOT NULL) AS first_numeric_step
FROM read_parquet($files, union_by_name = true)
WHERE kind = 'metric' AND run_id = $run_id AND step IS NOT NULL
GROUP BY name
ORDER BY name
"""

#: Metric values up to a step, in logging order (row groups past ``$upto`` are
#: skipped through the Parquet step statistics).
FIRST_SQL = """
SELECT name, step, value
FROM read_parquet($files, union_by_name = true)
WHERE kind = 'metric' AND run_id = $run_id AND step <= $upto AND value IS NOT NULL
ORDER BY wall_time, seq
"""

#: Event kinds other than metric, with the ranks that wrote them (row groups holding
#: only metrics are skipped).
KINDS_SQL = """
SELECT DISTINCT kind, rank FROM read_parquet($files, union_by_name = true)
WHERE run_id = $run_id AND kind <> 'metric'
"""

#: The run's first start event.
START_SQL = """
SELECT attrs FROM read_parquet($files, union_by_name = true)
WHERE run_id = $run_id AND kind = 'run' AND name = 'start'
ORDER BY wall_time, seq
LIMIT 1
"""


@dataclass(frozen=True)
class NameInfo:
    """One metric of a run: rows logged (with a step), first step, first numeric step."""

    rows: int
    first_step: int
    first_numeric_step: int | None


@dataclass(frozen=True)
class RunFacts:
    """kinds: the event kinds the run has; meta: attrs of its start event ({} if none);
    single_rank: True when run events exist and all come from one rank (every writer
    records a start event, so its metrics then have that rank too)."""

    kinds: frozenset
    meta: dict
    single_rank: bool = False


def _part(source: Source):
    """The store over the run's own files (per-run reads open no other run's files)."""
    store = source.store
    return store.for_run(source.run_id) if hasattr(store, "for_run") else store


_DUCK = threading.local()


def _query(source: Source, sql: str, **params) -> list[tuple]:
    part = _part(source)
    return _query_files(part.sql_files, part.files, sql, run_id=source.run_id, **params)


def _query_files(sql_files: list[str], files: list[str], sql: str, **params) -> list[tuple]:
    """Rows of ``sql`` with ``$files`` bound to ``sql_files`` (on this thread's connection)."""
    con = _connection()
    register_filesystems(con, list(sql_files))    # s3:// and other object stores, through fsspec
    return con.execute(sql, {"files": list(sql_files), **params}).fetchall()


def _connection():
    """This thread's DuckDB connection (one per thread, reused by every query): a cursor
    of one in-memory database, which costs a millisecond where a database of its own
    costs 15-20 ms."""
    con = getattr(_DUCK, "con", None)
    if con is None:
        con = _DUCK.con = database().cursor()
        con.execute("SET enable_progress_bar = false")
    return con


def database():
    """The in-memory DuckDB database whose cursors the threads use (opened once)."""
    with _ROOT_LOCK:
        if _ROOT[0] is None:
            import duckdb

            _ROOT[0] = duckdb.connect()
        return _ROOT[0]


_ROOT: list = [None]                    # the database the threads' cursors share
_ROOT_LOCK = threading.Lock()


def rows(store, sql: str, **params) -> list[tuple]:
    """The rows of ``sql`` with ``$files`` bound to ``store``'s files: rldk's own queries,
    on this thread's connection, without ``Store.sql``'s views and checks."""
    return _query_files(store.sql_files, store.files, sql, **params)


def _cached(kind: str, source: Source, compute):
    key = (kind, _key(source))
    found = _cached_value(key)
    if found is None:
        found = compute()
        _remember(key, found, 0)
    return found


def _cached_value(key):
    """What the cache holds under ``key``, or None."""
    found = _CACHE.get(key)
    return None if found is None else found[0]


def run_index(source: Source) -> dict[str, NameInfo]:
    """Every metric of the run, by name (one aggregate scan; cached with the store's files)."""
    return _cached("index", source, lambda: {r[0]: NameInfo(*r[1:])
                                             for r in _query(source, INDEX_SQL)})


def first_values(source: Source) -> dict[str, float]:
    """Each metric's first numeric value (at its first numeric step; the last one logged there)."""
    def compute():
        firsts = {n: i.first_numeric_step for n, i in run_index(source).items()
                  if i.first_numeric_step is not None}
        if not firsts:
            return {}
        rows = _query(source, FIRST_SQL, upto=max(firsts.values()))
        return {name: value for name, step, value in rows if firsts.get(name) == step}
    return _cached("first", source, compute)


def run_facts(source: Source) -> RunFacts:
    """Kinds and start-event attrs of the run (two queries that skip metric row groups)."""
    import json

    def compute():
        rows = _query(source, KINDS_SQL)
        kinds = {r[0] for r in rows} | ({"metric"} if run_index(source) else set())
        start = _query(source, START_SQL)
        return RunFacts(frozenset(kinds), json.loads(start[0][0]) if start and start[0][0] else {},
                        "run" in kinds and len({r[1] for r in rows}) == 1)
    return _cached("facts", source, compute)


def metric_counts(source: Source) -> dict[str, int]:
    """Rows per metric name of the run (rows with a step only)."""
    return {name: info.rows for name, info in run_index(source).items()}


def _metric_rows(source: Source):
    import polars as pl

    return _part(source).scan("metric").filter(
        (pl.col("run_id") == source.run_id) & pl.col("step").is_not_null())


def batches(names: list[str], counts: dict[str, int], budget: int = BATCH_ROWS) -> list[list[str]]:
    """Split ``names`` into consecutive groups of at most ``budget`` rows (one name may exceed it)."""
    out: list[list[str]] = []
    rows = 0
    for name in names:
        n = counts.get(name, 0)
        if out and rows + n <= budget:
            out[-1].append(name)
            rows += n
        else:
            out.append([name])
            rows = n
    return out


# ---------------------------------------------------------------------- cache
#: Loaded series are kept (least recently used first out) up to this many bytes, or
#: a third of the available memory when that is more, so that the analyzers of one
#: ``rldk analyze`` read each run once. Keys hold the store's files with their sizes
#: and modification times: a file that changes (a run still being written) is read
#: again. ``clear_cache()`` empties it.
CACHE_BYTES = 640 << 20
_CACHE: dict = {}


def _cache_budget() -> int:
    available = available_memory()
    return CACHE_BYTES if available is None else max(CACHE_BYTES, available // 3)


def available_memory() -> int | None:
    """Bytes of memory available: Linux's MemAvailable (what psutil reports there, without
    psutil's import), else psutil's figure; None when neither can say."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return psutil.virtual_memory().available
    except Exception:                     # no psutil: the fixed budgets apply
        return None


def _key(source: Source):
    """The run's files with their sizes and modification times (taken once per opened
    store, over the run's own files only) and the run id."""
    part = _part(source)
    stamp = getattr(part, "stamp", None) or tuple(part.files)
    return stamp, source.run_id


_BYTES = [0]                            # bytes held by _CACHE


#: Changes to the cache are made one at a time (prefetch threads and analyzers on
#: threads remember entries); readers take a value once and keep their reference.
_CACHE_LOCK = threading.Lock()


def _remember(key, value, nbytes: int) -> None:
    with _CACHE_LOCK:
        old = _CACHE.pop(key, None)
        _BYTES[0] += nbytes - (old[1] if old else 0)
        _CACHE[key] = (value, nbytes)
        if nbytes:
            budget = _cache_budget()
            while _BYTES[0] > budget and len(_CACHE) > 1:
                _BYTES[0] -= _CACHE.pop(next(iter(_CACHE)))[1]


def clear_cache() -> None:
    """Forget the loaded series, and this thread's DuckDB connection with the file
    data DuckDB keeps (over 1,000 runs on S3 it grew to about 0.9 MB a run)."""
    _CACHE.clear()
    _BYTES[0] = 0
    _DUCK.__dict__.pop("con", None)
    with _ROOT_LOCK:
        _ROOT[0] = None                 # the next query opens a new database


# -------------------------------------------------------------------- loading
def load_series(source: Source, names: list[str]) -> dict[str, Series]:
    """The series of each of ``names`` (absent names are left out of the result).

    A run whose metric rows fit the memory budget (``whole_run_rows``) is read
    whole, once, in chunks of ``CHUNK_ROWS``, and cached; a larger one is read for
    the asked names only (callers batch them: ``iter_series``).
    """
    index = run_index(source)
    names = [n for n in names if n in index]
    if not names:
        return {}
    if sum(i.rows for i in index.values()) <= whole_run_rows():
        key = ("series", _key(source))
        cached = _cached_value(key)
        if cached is None:
            cached = _keep_whole(source, _read_whole(source, sorted(index)))
        return {n: cached[n] for n in names if n in cached}
    return _finish_all(source, names, [_read_chunk(_metric_rows(source), names, source, True)])


def _keep_whole(source: Source, series: dict[str, Series]) -> dict[str, Series]:
    """Cache ``series``, the whole run's, under its key (counting the bytes they hold)."""
    arrays = {id(a): a.nbytes for s in series.values() for a in (s.steps, s.values)}
    _remember(("series", _key(source)), series, sum(arrays.values()))
    return series


def read_indexed(source: Source, names: list[str], one_rank: bool) -> dict[str, NameInfo]:
    """Read a small local run whole through DuckDB before it is indexed, and cache its
    series; its per-name index (what INDEX_SQL gives) is computed from the rows read.
    For the catalog, which knows the run's metric ``names`` (at most DUCKDB_NAMES) and
    whether it has one rank from its files' summaries: one read instead of an aggregate
    scan followed by the same read."""
    part = _part(source)
    readable = getattr(part, "readable", lambda f: f)
    files = [f for f in part.files if part.footers[f].may_hold(source.run_id)]
    pieces = [_duck_chunk(readable(f), names, source, not _only_metrics(part, f, source.run_id),
                          one_rank) for f in files]
    index = {}
    for name in names:
        parts = [p[name] for p in pieces if name in p]
        if parts:
            numeric = [step if known is None else step[known] for _, step, _, known in parts]
            firsts = [int(s.min()) for s in numeric if s.size]
            index[name] = NameInfo(sum(len(p[1]) for p in parts), min(int(p[1].min()) for p in parts),
                                   min(firsts) if firsts else None)
    _keep_whole(source, _finish_all(source, names, pieces))
    return index


def prefetch(sources) -> None:
    """Read the runs that fit the memory budget into the cache, two at a time (Polars and
    DuckDB release the GIL, so the reads overlap); the analyzers then find them there."""
    from concurrent.futures import ThreadPoolExecutor

    def warm(source):
        names = list(run_index(source))
        if names and sum(metric_counts(source).values()) <= whole_run_rows():
            load_series(source, names[:1])

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(warm, sources))


def iter_series(source: Source, names=None):
    """Yield ``{name: Series}`` dicts covering ``names`` (None: every metric of the run):
    one dict (from the cache) when the run fits the memory budget, else batches of
    at most ``BATCH_ROWS`` rows."""
    counts = metric_counts(source)
    names = sorted(counts) if names is None else [n for n in names if n in counts]
    budget = BATCH_ROWS if sum(counts.values()) > whole_run_rows() else max(1, sum(counts.values()))
    for batch in batches(names, counts, budget):
        yield load_series(source, batch)


#: Rows read per Polars query when a run is read whole (bounds the transient memory).
CHUNK_ROWS = 8_000_000
#: Reads of two runs overlap (``prefetch``) but their Polars queries do not: each
#: already uses every core, and two at once would double the transient memory.
_COLLECT = threading.Lock()


def whole_run_rows() -> int:
    """How many metric rows a run may have to be read whole and cached: a quarter of
    the available memory at 24 bytes a row (16 kept, 8 transient), at least BATCH_ROWS."""
    available = available_memory()
    return BATCH_ROWS if available is None else max(BATCH_ROWS, available // 4 // 24)


#: A run of at most this many metric rows, and names, is read through DuckDB into NumPy
#: (a small analysis then never imports Polars: 0.1 s); a larger one through Polars,
#: faster and lighter at scale. DuckDB finds each row's name code by a linear search
#: of the names (``list_position``), hence the bound on names.
DUCKDB_ROWS = 2_000_000
DUCKDB_NAMES = 64

#: One file's metric rows of a run in file order, as name codes (0-based, in ``$names``).
DUCK_READ_SQL = """
SELECT (list_position($names, name) - 1)::UINTEGER AS code, step, value{rank}
FROM read_parquet($file){where}
"""


def reads_polars(rows: int) -> bool:
    """Whether reading ``rows`` metric rows (a run's, or more) may go through Polars."""
    return rows > DUCKDB_ROWS


def _read_whole(source: Source, names: list[str]) -> dict[str, Series]:
    """Every metric of the run, reading its files in order: through DuckDB when the run
    is small (``DUCKDB_ROWS``), else through Polars, ``CHUNK_ROWS`` rows at a time."""
    part = _part(source)
    readable = getattr(part, "readable", lambda f: f)
    chunks = list(_chunks(part, source.run_id))
    files = list(dict.fromkeys(path for path, _, _ in chunks))
    if _small(source, names) and not any(is_remote(readable(f)) for f in files):
        return _finish_all(source, names, [
            _duck_chunk(readable(f), names, source, not _only_metrics(part, f, source.run_id))
            for f in files])
    import polars as pl

    pieces = []
    for path, offset, length in chunks:
        # a plain scan of the columns read (every schema version has them): the store's
        # schema-conforming scan costs more memory per chunk
        frame = pl.scan_parquet(readable(path))
        if offset or length is not None:
            frame = frame.slice(offset, length)
        if not _only_metrics(part, path, source.run_id):
            frame = frame.filter((pl.col("kind") == "metric") & _run_filter(source))
        pieces.append(_read_chunk(frame, names, source, False))
    return _finish_all(source, names, pieces)


def _small(source: Source, names: list[str]) -> bool:
    """Whether the run is read through DuckDB (see ``DUCKDB_ROWS``)."""
    rows = sum(i.rows for i in run_index(source).values())
    return not reads_polars(rows) and len(names) <= DUCKDB_NAMES


#: Files of at least this many rows are checked for holding only the run's metrics.
PLAIN_ROWS = 100_000


def _only_metrics(store, path: str, run_id: str) -> bool:
    """Whether ``path`` is a large file whose statistics show only metric rows of ``run_id``
    with a step (a writer's metric segment): read without a filter, a fifth less work."""
    footer = store.footers.get(path)
    readable = getattr(store, "readable", lambda f: f)
    return footer is not None and footer.rows >= PLAIN_ROWS and only_metrics_of(readable(path), run_id)


def _chunks(store, run_id: str):
    """``(file, offset, length)`` row ranges of at most CHUNK_ROWS (length None: to the
    end) of the files that may hold ``run_id`` (by their footers' run_id statistics)."""
    for path in store.files:
        footer = store.footers[path]
        if not footer.may_hold(run_id):
            continue
        rows = footer.rows
        if rows <= CHUNK_ROWS:
            yield path, 0, None
            continue
        for offset in range(0, rows, CHUNK_ROWS):
            yield path, offset, CHUNK_ROWS


def _run_filter(source):
    import polars as pl

    return (pl.col("run_id") == source.run_id) & pl.col("step").is_not_null()


def _read_chunk(frame, names: list[str], source: Source, select: bool) -> dict:
    """``{name: (rank, step, value, numeric)}`` pieces of one ordered read (rank and
    numeric None when trivially constant / all numeric)."""
    import polars as pl

    if select:
        frame = frame.filter(pl.col("name").is_in(names))
    one_rank = run_facts(source).single_rank            # then the rank column is not read
    code = pl.col("name").cast(pl.Enum(names)).to_physical().alias("code")
    with _COLLECT:                               # one Polars read at a time (bounds memory)
        frame = frame.select(code, "step", "value", *([] if one_rank else ["rank"])).collect()
    value = frame.drop_in_place("value")       # columns leave the frame one at a time,
    arrays = {"numeric": value.is_not_null().to_numpy() if value.null_count() else None,
              "value": value.fill_null(np.nan).to_numpy()}   # each freed once copied
    del value
    for column in frame.columns:
        arrays[column] = frame.drop_in_place(column).to_numpy()
    arrays.setdefault("rank", None)
    return _pieces(arrays, names)


def _duck_chunk(path: str, names: list[str], source: Source, select: bool, one_rank: bool | None = None) -> dict:
    """:func:`_read_chunk` of one local file through DuckDB (``select``: filter the run's
    metric rows with a step; else the file holds only those; ``one_rank``: the rank
    column need not be read, by default when the run's facts say so)."""
    one_rank = run_facts(source).single_rank if one_rank is None else one_rank
    sql = DUCK_READ_SQL.format(rank="" if one_rank else ", rank",
                               where=" WHERE kind = 'metric' AND run_id = $run_id AND step IS NOT NULL"
                               if select else "")
    params = {"names": names, "file": path, **({"run_id": source.run_id} if select else {})}
    found = _connection().execute(sql, params).fetchnumpy()
    value, nulls = _unmasked(found["value"])
    arrays = {"numeric": ~nulls if nulls is not None else None, "value": value,
              "code": found["code"], "step": found["step"], "rank": None}
    if not one_rank:
        rank, nulls = _unmasked(found["rank"])
        arrays["rank"] = rank if nulls is None else np.where(nulls, np.nan, rank)   # as Polars gives it
    return _pieces(arrays, names)


def _unmasked(column) -> tuple[np.ndarray, np.ndarray | None]:
    """A fetched column (DuckDB masks its nulls) as a plain array (nulls NaN where it is
    float) and the mask of its nulls, None when it has none."""
    nulls = getattr(column, "mask", None)         # a plain array has none
    if nulls is None or not np.any(nulls):
        return np.asarray(column), None
    return column.filled(np.nan if column.dtype.kind == "f" else 0), np.asarray(nulls)


def _pieces(arrays: dict, names: list[str]) -> dict:
    """``{name: (rank, step, value, numeric)}`` from one read's columns."""
    wide = _wide(arrays, len(names))
    if wide is not None:
        return {names[c]: (None, steps, values, None) for c, (steps, values) in wide.items()}
    return _grouped(names, arrays)


def _wide(arrays, m: int):
    """``{code: (steps, values)}`` when the rows are step-major, every step logs the
    same names in the same order (what the writer produces for ``log(step, {...})``
    every step), all numeric and from one rank; else None. Checking costs a few
    vectorized comparisons; grouping is then one cache-blocked transpose."""
    code, step, rank = arrays["code"], arrays["step"], arrays["rank"]
    n = len(code)
    if arrays["numeric"] is not None or n == 0 or n % m or (rank is not None and rank[0] != rank[-1]):
        return None
    per_step = code[:m]
    if len(set(per_step.tolist())) != m:           # m <= DUCKDB_NAMES or a Polars read's names
        return None
    codes, steps = code.reshape(-1, m), step.reshape(-1, m)
    if not ((codes == per_step).all() and (steps == steps[:, :1]).all()
            and (rank is None or (rank == rank[0]).all())):
        return None
    first = steps[:, 0].copy()
    del codes, steps, code, step
    arrays.pop("code"), arrays.pop("step")              # freed before the transposing copy
    columns = _transpose(arrays.pop("value").reshape(-1, m))
    return {int(c): (first, columns[j]) for j, c in enumerate(per_step)}


def _transpose(matrix: np.ndarray, block: int = 1024) -> np.ndarray:
    """``matrix.T`` as a C-contiguous copy, a block of rows at a time (blocks fit in the
    CPU cache: several times faster than one strided copy)."""
    out = np.empty(matrix.shape[::-1], dtype=matrix.dtype)
    for i in range(0, len(matrix), block):
        out[:, i:i + block] = matrix[i:i + block].T
    return out


def _grouped(names, arrays) -> dict:
    """General layout: rows grouped by name (a radix sort of the small codes)."""
    code = arrays["code"]
    order = np.argsort(code, kind="stable")
    bounds = np.searchsorted(code[order], np.arange(len(names) + 1))
    out = {}
    for i, name in enumerate(names):
        rows = order[bounds[i]:bounds[i + 1]]
        if len(rows):
            out[name] = tuple(None if arrays[k] is None else arrays[k][rows]
                              for k in ("rank", "step", "value", "numeric"))
    return out


def _finish_all(source, names, pieces: list[dict]) -> dict[str, Series]:
    """Join each name's pieces (chunks in file order) into its Series."""
    out, joined_steps = {}, {}
    for name in names:
        parts = [p[name] for p in pieces if name in p]
        if not parts:
            continue
        key = tuple(id(p[1]) for p in parts)      # names of wide chunks share step arrays
        if key not in joined_steps:
            joined_steps[key] = _concat([p[1] for p in parts])
        step = joined_steps[key]
        value = _concat([p[2] for p in parts])
        rank = None if all(p[0] is None for p in parts) else _concat(
            [p[0] if p[0] is not None else np.zeros(len(p[1]), np.int32) for p in parts])
        numeric = None if all(p[3] is None for p in parts) else _concat(
            [p[3] if p[3] is not None else np.ones(len(p[1]), bool) for p in parts])
        out[name] = _series(source, name, rank, step, value, numeric)
    return out


def _concat(arrays):
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _series(source, name, rank, step, value, numeric) -> Series:
    """One name's rows (in file order) as a Series: lowest rank, sorted, last value wins."""
    if rank is not None and (rank != rank[0]).any():
        keep = rank == rank.min()
        step, value = step[keep], value[keep]
        numeric = numeric[keep] if numeric is not None else None
    if step.size > 1 and not (step[1:] > step[:-1]).all():
        return _exact_series(source, name, int(rank.min()) if rank is not None else None)
    if numeric is None:
        return Series(name, step, value)
    return _finish(name, step, value, numeric, duplicates=0)


def _exact_series(source, name, rank) -> Series:
    """Steps out of order or repeated: order by (step, wall_time, seq), keep each step's last row."""
    import polars as pl

    frame = _metric_rows(source).filter(pl.col("name") == name)
    if rank is not None:
        frame = frame.filter(pl.col("rank") == rank)
    frame = frame.select("step", "wall_time", "seq", "value").collect()
    step = frame["step"].to_numpy()
    order = np.lexsort((frame["seq"].to_numpy(), frame["wall_time"].to_physical().to_numpy(), step))
    step = step[order]
    last = np.ones(len(step), dtype=bool)
    last[:-1] = step[1:] != step[:-1]
    rows = order[last]
    value = frame["value"]
    numeric = value.is_not_null().to_numpy()[rows]
    return _finish(name, step[last], value.fill_null(np.nan).to_numpy()[rows], numeric,
                   duplicates=int(len(step) - last.sum()))


def _finish(name, step, value, numeric, duplicates) -> Series:
    if numeric.all():
        return Series(name, np.ascontiguousarray(step, dtype=np.int64),
                      np.ascontiguousarray(value, dtype=np.float64), duplicates)
    bad = ~numeric
    return Series(name, np.ascontiguousarray(step[numeric], dtype=np.int64),
                  np.ascontiguousarray(value[numeric], dtype=np.float64), duplicates,
                  int(bad.sum()), int(step[bad][0]))


def first_text(source: Source, name: str, step: int) -> str | None:
    """The text stored for a non-numeric value of ``name`` at ``step`` (for messages)."""
    import polars as pl

    frame = (_metric_rows(source).filter((pl.col("name") == name) & (pl.col("step") == step))
             .select("text").collect())
    texts = [t for t in frame["text"].to_list() if t is not None]
    return texts[-1] if texts else None


# ------------------------------------------------------------------ alignment
def align(a: Series, b: Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps both series logged, and each one's values there: ``(steps, a, b)``.

    Steps are matched by number: steps logged by one run only (another logging
    interval, gaps, a shorter run) are left out, never filled in.
    """
    if len(a.steps) == len(b.steps) and np.array_equal(a.steps, b.steps):
        return a.steps, a.values, b.values
    steps, ia, ib = np.intersect1d(a.steps, b.steps, assume_unique=True, return_indices=True)
    return steps, a.values[ia], b.values[ib]


def step_range(series: Series) -> str:
    """``"0-99"`` (or ``"none"``) for messages."""
    if not len(series):
        return "none"
    return f"{int(series.steps[0])}-{int(series.steps[-1])}"
