"""Opening an event store: files, runs, DuckDB views and Polars frames.

A store is any set of event Parquet files: a directory, a glob, a list of files.
``open_store`` resolves them, drops segments that a compacted file already
covers, and exposes the events as DuckDB views (``events``, ``metrics``, ``rng``,
``tensors``, ``memory``, ``spans``, ``samples``, ``checkpoints``, ``datasets``,
``run_events``, ``runs``) and as Polars LazyFrames. Runs come back sorted by id.

Paths are literal: a folder named ``exp[1]`` is that folder, never a pattern
(only a path that does not exist and has glob characters is a glob); files reach
DuckDB escaped and Polars with ``glob=False``. A merge in progress (a hidden
``.merging`` file, see :mod:`rldk.core.segments`) is read in place of the inputs
it covers, and a query that finds a listed file deleted by a merge re-lists the
files and runs again. SQL through :meth:`Store.sql` may only read the store.
"""
from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass
from functools import cached_property

from rldk import semantics
from rldk.core.errors import StoreError, UsageError
from rldk.core.naming import PENDING_SUFFIX, is_pending, literal_pattern
from rldk.core.segments import repair_quietly
from rldk.core.sql import quote_literal

#: how often a query is rerun when a merge deleted a file it was about to read
READ_RETRIES = 5

#: kind -> view name, for the per-kind DuckDB views
KIND_VIEWS = {"metric": "metrics", "rng": "rng", "tensor": "tensors", "memory": "memory",
              "span": "spans", "sample": "samples", "checkpoint": "checkpoints",
              "dataset": "datasets", "run": "run_events", "writer": "writer_events"}

RUNS_SQL = """
SELECT run_id,
       list_sort(list_distinct(list(rank))) AS ranks,
       count(DISTINCT step) FILTER (WHERE kind = 'metric') AS steps,
       min(step) AS first_step,
       max(step) AS last_step,
       list_sort(list_distinct(list(kind))) AS kinds,
       count(DISTINCT name) FILTER (WHERE kind = 'metric') AS metrics,
       list_sort(list_distinct(list(name) FILTER (WHERE kind = 'metric'))) AS metric_names,
       min(wall_time) AS started,
       max(wall_time) AS last_event,
       round(epoch(max(wall_time)) - epoch(min(wall_time)), 3) AS wall_seconds,
       count(*) AS events,
       coalesce(replace(arg_max(json_extract_string(attrs, '$.status'), wall_time)
                            FILTER (WHERE kind = 'run' AND name = 'end'), 'terminated', 'killed'),
                'incomplete') AS status
FROM events
GROUP BY run_id
ORDER BY run_id
"""


def resolve_files(paths) -> list[str]:
    """Event files named by ``paths`` (files, directories, globs), sorted, deduplicated.

    An existing path is literal; directories are searched recursively for
    ``*.parquet`` (symlinked folders once: files are deduplicated by their real
    path). Hidden files are skipped, except pending merges (``.*.parquet.merging``)
    in the directories searched, which readers must see. Raises :class:`StoreError`
    when nothing matches.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: dict[str, str] = {}                    # real path -> path as found
    for raw in paths:
        for match in _matches(str(raw)):
            name = os.path.basename(match)
            if os.path.isfile(match) and (not name.startswith(".") or is_pending(name)):
                found.setdefault(os.path.realpath(match), os.path.abspath(match))
    if not found:
        shown = ", ".join(str(p) for p in paths)
        raise StoreError(f"no event files (*.parquet) in {shown}: write some with rldk.writer "
                         "or import logs with `rldk import`")
    return sorted(found.values())


def _matches(path: str) -> list[str]:
    if os.path.isdir(path):
        return _walk(path)
    if os.path.isfile(path):
        return [path]
    if glob.has_magic(path):
        matches = glob.glob(path, recursive=True)
        folders = {os.path.dirname(m) for m in matches if os.path.isfile(m)}
        return matches + [p for folder in folders for p in _pending_in(folder)]
    raise StoreError(f"{path}: no such file or directory")


def _walk(root: str) -> list[str]:
    """``*.parquet`` and pending merges under ``root``; each real folder once (no symlink loops)."""
    out, seen = [], set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(os.path.join(folder, n) for n in names
                   if n.endswith(".parquet") or n.endswith(PENDING_SUFFIX))
    return out


def _pending_in(folder: str) -> list[str]:
    try:
        return [os.path.join(folder, n) for n in os.listdir(folder or ".") if is_pending(n)]
    except OSError:
        return []


def _live_files(files: list[str]) -> tuple[list[str], set[str]]:
    """Drop files that a merged file in the same directory lists as covered.

    Returns the live files and the union of their column names.
    """
    from rldk.schemas import META_COVERS, SCHEMA_VERSION, file_version

    covered: set[str] = set()
    columns: set[str] = set()
    live = []
    for path in files:
        try:
            meta, names = _footer(path)
        except FileNotFoundError:          # published or deleted by a merge since we listed it
            continue
        except Exception as exc:
            raise StoreError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc}); "
                             "move it out of the store") from None
        if file_version(meta) > SCHEMA_VERSION:
            raise StoreError(f"{path}: schema version {file_version(meta)} is newer than this rldk "
                             f"reads ({SCHEMA_VERSION}): upgrade rldk")
        if META_COVERS in meta:
            folder = os.path.dirname(path)
            covered.update(os.path.join(folder, n) for n in json.loads(meta[META_COVERS]))
        live.append(path)
        columns.update(names)
    return [f for f in live if f not in covered], columns


def _repaired(files: list[str], paths) -> list[str]:
    """``files`` again after finishing merges that killed processes left pending (when
    the folder is writable and its lock free; else the pending files are read as they are)."""
    folders = sorted({os.path.dirname(f) for f in files if is_pending(os.path.basename(f))})
    for folder in folders:
        repair_quietly(folder)
    return resolve_files(paths) if folders else files


def _footer(path: str):
    """A file's key-value metadata and column names, from one footer read."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    return (schema.metadata or {}), schema.names


class Store:
    """A read-only view of the events in a set of files.

    ``sources`` (the paths the store was opened from) let a query that finds a file
    deleted by a concurrent merge list the files again and rerun.
    """

    def __init__(self, files: list[str], columns=None, sources=None):
        self.files = files
        self.columns = set(columns) if columns is not None else None
        self.sources = sources

    @property
    def sql_files(self) -> list[str]:
        """The files as DuckDB ``read_parquet`` patterns that match exactly themselves
        (bind these, not ``files``: DuckDB reads every path as a glob)."""
        return [literal_pattern(f) for f in self.files]

    @cached_property
    def con(self):
        """A DuckDB connection with the store's views registered; it can read the
        store's files and nothing else (no other file, no writes, no ATTACH)."""
        import duckdb

        if self.columns is None:
            self.columns = _columns(self.files)
        con = duckdb.connect()
        for statement in view_statements(self.files, self.columns):
            con.execute(statement)
        allowed = sorted({*self.files, *self.sql_files})
        con.execute(f"SET allowed_paths = [{', '.join(quote_literal(f) for f in allowed)}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con

    def sql(self, query: str, params=None):
        """Run one read-only statement (SELECT, WITH, DESCRIBE, ...) over the views with
        bound ``params``; returns a Polars DataFrame. Other statements (COPY, ATTACH,
        INSTALL, SET, several statements) raise :class:`UsageError`."""
        import polars as pl

        return pl.from_arrow(self.arrow(query, params))

    def arrow(self, query: str, params=None):
        """Run one read-only statement over the views with bound ``params``; a pyarrow Table."""
        check_read_only(query)
        for attempt in range(READ_RETRIES + 1):
            try:
                return self._fetch(query, params)
            except Exception as exc:
                if attempt == READ_RETRIES or not _vanished(exc) or not self.sources:
                    raise
                self._reopen()

    def _fetch(self, query: str, params):
        relation = self.con.sql(query, params=params or None)
        if relation is None:                   # a statement that returns no rows
            import pyarrow as pa

            return pa.table({})
        fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
        return fetch()

    def _reopen(self) -> None:
        """List the files again (a merge replaced some) and rebuild the views."""
        time.sleep(0.05)
        files, columns = _live_files(_repaired(resolve_files(self.sources), self.sources))
        self.files, self.columns = files, columns
        self.__dict__.pop("con", None)
        self.__dict__.pop("run_ids", None)

    def scan(self, kind: str | None = None):
        """A Polars LazyFrame of all events, or of one kind."""
        import polars as pl

        from rldk.schemas import arrow_schema

        frame = pl.scan_parquet(self.files, schema=pl.Schema(pl.from_arrow(arrow_schema().empty_table()).schema),
                                missing_columns="insert", extra_columns="ignore", glob=False)
        return frame if kind is None else frame.filter(pl.col("kind") == kind)

    @cached_property
    def run_ids(self) -> list[str]:
        rows = self.arrow("SELECT DISTINCT run_id FROM events ORDER BY run_id")
        return rows.column("run_id").to_pylist() if rows.num_rows else []

    def runs(self) -> list["Run"]:
        """The runs in the store, sorted by run id."""
        return [Run(self, rid) for rid in self.run_ids]

    def run(self, run_id: str) -> "Run":
        if run_id not in self.run_ids:
            raise UsageError(f"no run {run_id!r} in the store; runs: {', '.join(self.run_ids) or 'none'}")
        return Run(self, run_id)

    def summary(self):
        """One row per run (Polars): id, ranks, steps, first/last step, kinds, metric count
        and names, start, last event, wall seconds, event count, and status: complete,
        failed (an exception) or killed (a signal) from the run's last end event, or
        incomplete (no end event: the process was SIGKILLed, crashed or is still running)."""
        return self.sql(RUNS_SQL)


def view_statements(files: list[str], columns=None) -> list[str]:
    """``CREATE VIEW`` statements for a list of files (paths escaped as literal patterns,
    through quote_literal). Event columns that no file has (``columns`` is the union of
    the files' columns) are added as typed nulls, as documented for old or foreign files."""
    from rldk.core.sql import quote_identifier
    from rldk.schemas import arrow_schema

    listing = ", ".join(quote_literal(literal_pattern(f)) for f in files)
    missing = [f for f in arrow_schema() if columns is not None and f.name not in columns]
    extra = "".join(f", CAST(NULL AS {_duck_type(f.type)}) AS {quote_identifier(f.name)}" for f in missing)
    out = [f"CREATE OR REPLACE VIEW events AS SELECT *{extra} "
           f"FROM read_parquet([{listing}], union_by_name = true)"]
    for kind, view in KIND_VIEWS.items():
        out.append(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM events WHERE kind = {quote_literal(kind)}")
    out.append(f"CREATE OR REPLACE VIEW runs AS {RUNS_SQL}")
    return out


def _duck_type(arrow_type) -> str:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    for test, name in ((pa.types.is_boolean, "BOOLEAN"), (pa.types.is_integer, "BIGINT"),
                       (pa.types.is_floating, "DOUBLE"), (pa.types.is_timestamp, "TIMESTAMP"),
                       (pa.types.is_binary, "BLOB")):
        if test(arrow_type):
            return name
    return "VARCHAR"


def _columns(files: list[str]) -> set[str]:
    import pyarrow.parquet as pq

    names: set[str] = set()
    for f in files:
        names.update(pq.read_schema(f).names)
    return names


#: statement types :meth:`Store.sql` runs; everything else could write or reach outside
READ_ONLY_STATEMENTS = ("SELECT", "EXPLAIN")


def check_read_only(query: str) -> None:
    """Raise :class:`UsageError` unless ``query`` is one read-only statement (DuckDB's parser decides)."""
    import duckdb

    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise UsageError(f"SQL does not parse: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise UsageError(f"give one SQL statement, not {len(statements)}")
    kind = statements[0].type.name
    if kind not in READ_ONLY_STATEMENTS:
        raise UsageError(f"only SELECT queries (and WITH, DESCRIBE, EXPLAIN) run over a store; "
                         f"this is a {kind} statement")


def _vanished(exc: Exception) -> bool:
    """A read error because a listed file was deleted or renamed (by a merge) meanwhile."""
    text = str(exc)
    return isinstance(exc, FileNotFoundError) or any(
        s in text for s in ("No such file", "No files found", "not found", "does not exist"))


@dataclass(frozen=True)
class Run:
    """One run in a store. ``metric(name)`` is a Polars DataFrame of step, value."""

    store: Store
    id: str

    def events(self, kind: str | None = None):
        """This run's events (Polars DataFrame), optionally of one kind, in logging order."""
        import polars as pl

        return (self.store.scan(kind).filter(pl.col("run_id") == self.id)
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

        frame = (self.store.scan("metric")
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
        same_rank = pl.col("rank").is_null() if chosen is None else pl.col("rank") == chosen   # no rank column
        return (frame.filter(same_rank).sort(["wall_time", "seq"])
                .unique(subset="step", keep="last", maintain_order=True)
                .sort("step").select("step", "value"))

    def metric_names(self) -> list[str]:
        import polars as pl

        names = (self.store.scan("metric").filter(pl.col("run_id") == self.id)
                 .select(pl.col("name").unique()).collect())
        return sorted(names["name"].to_list())

    @property
    def meta(self) -> dict:
        """Attrs of the run's first ``start`` event (config, seed, git, packages, ...)."""
        return self._run_event("start") or {}

    @property
    def status(self) -> str:
        """'complete', 'failed', 'killed' (from the last ``end`` event) or 'incomplete'."""
        end = self._run_event("end", last=True)
        status = end.get("status", "complete") if end else "incomplete"
        return "killed" if status == "terminated" else status    # the name before 0.x

    def _run_event(self, name: str, last: bool = False) -> dict | None:
        import polars as pl

        rows = self.events("run").filter(pl.col("name") == name)
        if rows.is_empty():
            return None
        return json.loads(rows["attrs"][-1 if last else 0])


def open_store(paths) -> Store:
    """Open the events in ``paths`` (files, directories or globs) as a :class:`Store`."""
    listed = _repaired(resolve_files(paths), paths)
    files, columns = _live_files(listed)
    for folder in sorted({os.path.dirname(f) for f in set(listed) - set(files)}):
        repair_quietly(folder)        # inputs a merged file covers, left by a killed merge
    if not files:
        raise StoreError(f"no event files in {paths}: they were merged or deleted while opening; "
                         "try again")
    return Store(files, columns, sources=paths)
