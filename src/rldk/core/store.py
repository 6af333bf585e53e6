"""Opening an event store: files, runs, DuckDB views and Polars frames.

A store is any set of event Parquet files: a directory, a glob, a list of files.
``open_store`` resolves them, drops segments that a compacted file already
covers, and exposes the events as DuckDB views (``events``, ``metrics``, ``rng``,
``tensors``, ``memory``, ``spans``, ``samples``, ``checkpoints``, ``datasets``,
``run_events``, ``runs``) and as Polars LazyFrames. Runs come back sorted by id.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from functools import cached_property, lru_cache

from rldk import semantics
from rldk.core import run_facts
from rldk.core.errors import StoreError, UsageError
from rldk.core.sql import quote_literal

#: kind -> view name, for the per-kind DuckDB views
KIND_VIEWS = {"metric": "metrics", "rng": "rng", "tensor": "tensors", "memory": "memory",
              "span": "spans", "sample": "samples", "checkpoint": "checkpoints",
              "dataset": "datasets", "run": "run_events", "writer": "writer_events"}

RUNS_SQL = """
SELECT run_id,
       list(DISTINCT rank ORDER BY rank) AS ranks,
       count(DISTINCT step) FILTER (WHERE kind = 'metric') AS steps,
       min(step) AS first_step,
       max(step) AS last_step,
       list(DISTINCT kind ORDER BY kind) AS kinds,
       count(DISTINCT name) FILTER (WHERE kind = 'metric') AS metrics,
       coalesce(list(DISTINCT name ORDER BY name) FILTER (WHERE kind = 'metric'), []) AS metric_names,
       min(wall_time) AS started,
       max(wall_time) AS last_event,
       -- imported runs: the facts their converter read from the logs (the writer's own
       -- clock and end event only date the import); see rldk.core.run_facts
       CASE WHEN bool_or(kind = 'run' AND name = 'import')
            THEN max(CASE WHEN kind = 'run' AND name = 'import'
                          THEN TRY_CAST(json_extract(attrs, '$.meta.rldk_wall_seconds') AS DOUBLE) END)
            ELSE round(epoch(max(wall_time)) - epoch(min(wall_time)), 3) END AS wall_seconds,
       count(*) AS events,
       coalesce(max(CASE WHEN kind = 'run' AND name = 'import'
                         THEN CASE WHEN json_extract_string(attrs, '$.meta.rldk_status')
                                        IN ('complete', 'incomplete', 'failed', 'terminated')
                                   THEN json_extract_string(attrs, '$.meta.rldk_status')
                                   ELSE 'unknown' END END),
                max(CASE WHEN kind = 'run' AND name = 'end'
                         THEN json_extract_string(attrs, '$.status') END), 'incomplete') AS status,
       max(CASE WHEN kind = 'run' AND name = 'import'
                THEN json_extract_string(attrs, '$.meta.rldk_status_evidence') END) AS status_evidence
FROM events
GROUP BY run_id
ORDER BY run_id
"""


def resolve_files(paths) -> list[str]:
    """Event files named by ``paths`` (files, directories, globs), sorted, deduplicated.

    Directories are searched recursively for ``*.parquet``; hidden files (writers'
    temporaries) are skipped. Raises :class:`StoreError` when nothing matches.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: set[str] = set()
    for raw in paths:
        path = str(raw)
        if os.path.isdir(path):
            matches = glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True)
        elif glob.has_magic(path):
            matches = glob.glob(path, recursive=True)
        elif os.path.isfile(path):
            matches = [path]
        else:
            raise StoreError(f"{path}: no such file or directory")
        found.update(os.path.abspath(m) for m in matches
                     if os.path.isfile(m) and not os.path.basename(m).startswith("."))
    if not found:
        shown = ", ".join(str(p) for p in paths)
        raise StoreError(f"no event files (*.parquet) in {shown}: write some with rldk.writer "
                         "or import logs with `rldk import`")
    return sorted(found)


def _live_files(files: list[str]) -> list[str]:
    """Drop files that a compacted file in the same directory lists as covered."""
    from rldk.core.segments import file_metadata
    from rldk.schemas import META_COVERS, SCHEMA_VERSION, file_version

    covered: set[str] = set()
    for path in files:
        try:
            meta = file_metadata(path)
        except Exception as exc:
            raise StoreError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc}); "
                             "move it out of the store") from None
        if file_version(meta) > SCHEMA_VERSION:
            raise StoreError(f"{path}: schema version {file_version(meta)} is newer than this rldk "
                             f"reads ({SCHEMA_VERSION}): upgrade rldk")
        if META_COVERS in meta:
            folder = os.path.dirname(path)
            covered.update(os.path.join(folder, n) for n in json.loads(meta[META_COVERS]))
    return [f for f in files if f not in covered]


@dataclass(frozen=True)
class Footer:
    """What a file's Parquet footer says, read once per store.

    columns: the file's column names; rows: its row count; runs: per row group, the
    (min, max) of its run_id statistics, or None when a row group has none (then any
    run may be there).
    """

    columns: tuple[str, ...]
    rows: int
    runs: tuple[tuple[str, str], ...] | None

    def may_hold(self, run_id: str) -> bool:
        return self.runs is None or any(lo <= run_id <= hi for lo, hi in self.runs)

    @property
    def exact_runs(self) -> set[str] | None:
        """The run ids in the file when every row group holds one run, else None."""
        if self.runs is None or any(lo != hi for lo, hi in self.runs):
            return None
        return {lo for lo, _ in self.runs}


def read_footer(path: str) -> Footer:
    """The :class:`Footer` of one event file (its metadata only; no data is read)."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path)
    columns = _interned(tuple(meta.schema.names))
    if "run_id" not in columns:
        return Footer(columns, meta.num_rows, None)
    index, ranges = columns.index("run_id"), []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(index).statistics
        if stats is None or not stats.has_min_max:
            return Footer(columns, meta.num_rows, None)
        ranges.append((stats.min, stats.max))
    return Footer(columns, meta.num_rows, tuple(ranges))


@lru_cache(maxsize=64)
def _interned(columns: tuple[str, ...]) -> tuple[str, ...]:
    return columns                     # one tuple per schema, however many files share it


def read_footers(files: list[str]) -> dict[str, Footer]:
    """Footers of ``files``, read on two threads (pyarrow releases the GIL while reading)."""
    from concurrent.futures import ThreadPoolExecutor

    if len(files) < 64:
        return {f: read_footer(f) for f in files}
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return dict(zip(files, pool.map(read_footer, files, chunksize=64)))


class Store:
    """A read-only view of the events in a set of files.

    The files' footers are read once (``footers``); a run's own files
    (``run_files``) come from their run_id statistics, so reading one run of many
    (``for_run``, ``Run.metric``...) opens only that run's files.
    """

    def __init__(self, files: list[str], footers: dict[str, Footer] | None = None):
        self.files = files
        if footers is not None:
            self.__dict__["footers"] = {f: footers[f] for f in files}
        self._parts: dict[str, Store] = {}

    @cached_property
    def footers(self) -> dict[str, Footer]:
        """Each file's :class:`Footer` (column names and run_id ranges per row group)."""
        return read_footers(self.files)

    def run_files(self, run_id: str) -> list[str]:
        """The files that may hold events of ``run_id`` (by their run_id statistics)."""
        return [f for f in self.files if self.footers[f].may_hold(run_id)]

    def for_run(self, run_id: str) -> "Store":
        """A Store over the files of ``run_id`` only (cached): per-run reads and SQL
        through it touch none of the other runs' files."""
        part = self._parts.get(run_id)
        if part is None:
            files = self.run_files(run_id)
            part = self if not files or len(files) == len(self.files) else Store(files, self.footers)
            self._parts[run_id] = part
        return part

    @cached_property
    def stamp(self) -> tuple:
        """``(file, size, mtime_ns)`` of each file, taken once: a cache key that changes
        when a file is rewritten (a run still being written) in a newly opened store."""
        out = []
        for f in self.files:
            try:
                st = os.stat(f)
                out.append((f, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((f, None, None))
        return tuple(out)

    @cached_property
    def con(self):
        """A DuckDB connection with the store's views registered."""
        import duckdb

        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        groups = self._schema_groups()
        for i, group in enumerate(groups):
            con.execute(f"SET VARIABLE {FILES_VARIABLE}{i} = $files", {"files": group})
        for statement in view_statements(len(groups)):
            con.execute(statement)
        return con

    def _schema_groups(self) -> list[list[str]]:
        """The files grouped by column set (one group unless schema versions are mixed)."""
        if len({self.footers[f].columns for f in self.files}) == 1:
            return [list(self.files)]
        groups: dict[tuple, list[str]] = {}
        for f in self.files:
            groups.setdefault(self.footers[f].columns, []).append(f)
        return list(groups.values())

    def sql(self, query: str, params=None):
        """Run SQL over the views with bound ``params``; returns a Polars DataFrame."""
        import polars as pl

        return pl.from_arrow(self.arrow(query, params))

    def arrow(self, query: str, params=None):
        """Run SQL over the views with bound ``params``; returns a pyarrow Table."""
        relation = self.con.sql(query, params=params or None)
        if relation is None:                   # a statement that returns no rows
            import pyarrow as pa

            return pa.table({})
        fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
        return fetch()

    def scan(self, kind: str | None = None):
        """A Polars LazyFrame of all events, or of one kind."""
        import polars as pl

        frame = pl.scan_parquet(self.files, schema=polars_schema(),
                                missing_columns="insert", extra_columns="ignore")
        return frame if kind is None else frame.filter(pl.col("kind") == kind)

    @cached_property
    def run_ids(self) -> list[str]:
        """The run ids, sorted: from the footers when each row group holds one run,
        else one DuckDB scan of the run_id column."""
        known = [self.footers[f].exact_runs for f in self.files]
        if all(k is not None for k in known):
            return sorted(set().union(*known))
        rows = self.con.execute("SELECT DISTINCT run_id FROM events ORDER BY run_id").fetchall()
        return [r[0] for r in rows]

    def runs(self) -> list["Run"]:
        """The runs in the store, sorted by run id."""
        return [Run(self, rid) for rid in self.run_ids]

    def run(self, run_id: str) -> "Run":
        if run_id not in self.run_ids:
            raise UsageError(f"no run {run_id!r} in the store; runs: {', '.join(self.run_ids) or 'none'}")
        return Run(self, run_id)

    def summary(self):
        """One row per run (Polars): id, ranks, steps, first/last step, kinds, metric count
        and names, start, last event, wall seconds, event count, status: complete,
        terminated or failed (from the run's end event), or incomplete (no end event:
        the process crashed or is still running), and status_evidence. A run imported
        from logs takes status, evidence and wall seconds from its import event
        (``rldk.core.run_facts``): "unknown" and no wall time when the logs lack them."""
        return self.sql(RUNS_SQL)


@lru_cache(maxsize=1)
def polars_schema():
    """The event schema as a Polars schema (built without pandas: ``pa.nulls``, not ``pa.array``)."""
    import polars as pl
    import pyarrow as pa

    from rldk.schemas import arrow_schema

    schema = arrow_schema()
    empty = pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)
    return pl.Schema(pl.from_arrow(empty).schema)


#: The connection variables holding the file lists, one per schema group (bound
#: once: a list of 10,000 paths spelled out in every view costs seconds to bind).
FILES_VARIABLE = "rldk_files_"


def view_statements(groups: int = 1) -> list[str]:
    """``CREATE VIEW`` statements over ``groups`` file lists, held in the connection
    variables ``rldk_files_0``... (files grouped by schema version).

    Each group is read plainly and the groups are joined by name, so binding a view
    reads one footer per group (``union_by_name`` over every file would read them
    all, for every view).
    """
    source = " UNION ALL BY NAME ".join(
        f"SELECT * FROM read_parquet(getvariable('{FILES_VARIABLE}{i}'))" for i in range(groups))
    out = [f"CREATE OR REPLACE VIEW events AS {source}"]
    for kind, view in KIND_VIEWS.items():
        out.append(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM events WHERE kind = {quote_literal(kind)}")
    out.append(f"CREATE OR REPLACE VIEW runs AS {RUNS_SQL}")
    return out


@dataclass(frozen=True)
class Run:
    """One run in a store. ``metric(name)`` is a Polars DataFrame of step, value."""

    store: Store
    id: str

    def events(self, kind: str | None = None):
        """This run's events (Polars DataFrame), optionally of one kind, in logging order."""
        import polars as pl

        return (self.store.for_run(self.id).scan(kind).filter(pl.col("run_id") == self.id)
                .sort(["rank", "wall_time", "seq"]).collect())

    def metric(self, name: str, rank: int | None = None):
        """Values of metric ``name`` by step: columns ``step`` (int64) and ``value`` (float64).

        ``name`` is the run's own name or a canonical quantity (``kl_to_ref``,
        ``reward``...) resolved through :mod:`rldk.semantics`; a quantity the run
        logs negated (SB3's ``entropy_loss``) comes back with its sign restored.

        One row per step, sorted. A step logged more than once (a duplicate, or a
        resumed run replaying steps) keeps its last value. Multi-rank runs use the
        lowest rank that logged the metric unless ``rank`` is given. Raises
        :class:`UsageError` naming the metrics that exist when ``name`` is absent.
        """
        import polars as pl

        frame = (self.store.for_run(self.id).scan("metric")
                 .filter((pl.col("run_id") == self.id) & (pl.col("name") == name)
                         & pl.col("step").is_not_null())
                 .select("rank", "step", "value", "wall_time", "seq").collect())
        if frame.is_empty():
            found = semantics.resolve(name, self.metric_names())   # canonical -> this run's name
            if found is not None and found.metric != name:
                own = self.metric(found.metric, rank)
                return own if found.sign == 1 else own.with_columns(-own["value"])
            raise UsageError(f"run {self.id!r} has no metric {name!r}; metrics: "
                             f"{', '.join(self.metric_names()) or 'none'}")
        chosen = rank if rank is not None else frame["rank"].min()
        return (frame.filter(pl.col("rank") == chosen).sort(["wall_time", "seq"])
                .unique(subset="step", keep="last", maintain_order=True)
                .sort("step").select("step", "value"))

    def metric_names(self) -> list[str]:
        import polars as pl

        names = (self.store.for_run(self.id).scan("metric").filter(pl.col("run_id") == self.id)
                 .select(pl.col("name").unique()).collect())
        return sorted(names["name"].to_list())

    @property
    def meta(self) -> dict:
        """Attrs of the run's first ``start`` event (config, seed, git, packages, ...)."""
        return self._run_event("start") or {}

    @property
    def status(self) -> str:
        """'complete', 'terminated', 'failed' (from the ``end`` event) or 'incomplete'; for
        a run imported from logs, what they show (``rldk.core.run_facts``): 'complete',
        'incomplete' or 'unknown'."""
        imported = self._run_event("import", last=True)
        if imported is not None:
            return run_facts.imported(imported)[0]
        end = self._run_event("end", last=True)
        return end.get("status", "complete") if end else "incomplete"

    def _run_event(self, name: str, last: bool = False) -> dict | None:
        import polars as pl

        rows = self.events("run").filter(pl.col("name") == name)
        if rows.is_empty():
            return None
        return json.loads(rows["attrs"][-1 if last else 0])


def open_store(paths) -> Store:
    """Open the events in ``paths`` (files, directories or globs) as a :class:`Store`."""
    return Store(_live_files(resolve_files(paths)))
