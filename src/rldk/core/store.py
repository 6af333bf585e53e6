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
Every file's footer is read once per store (``Store.footers``): its metadata, its
columns and the run_id range of each row group, so reading one run of many opens
only that run's files.
"""
from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, lru_cache

from rldk import semantics
from rldk.core import run_facts, run_summary
from rldk.core.errors import StoreError, UsageError
from rldk.core.files import (
    Footer,
    live_files,
    read_footers,
    repaired,
    resolve_files,
)
from rldk.core.fs import (
    filesystem,
    is_remote,
    local_copies,
    protocol,
    register_filesystems,
    scratch_budget,
    strip,
)
from rldk.core.naming import literal_pattern
from rldk.core.segments import repair_quietly
from rldk.core.sql import quote_literal

#: kind -> view name, for the per-kind DuckDB views
KIND_VIEWS = {"metric": "metrics", "rng": "rng", "tensor": "tensors", "memory": "memory",
              "span": "spans", "sample": "samples", "checkpoint": "checkpoints",
              "dataset": "datasets", "run": "run_events", "writer": "writer_events"}
#: how often a query is rerun when a merge deleted a file it was about to read
READ_RETRIES = 5

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
                                        IN ('complete', 'incomplete', 'failed', 'killed', 'terminated')
                                   THEN json_extract_string(attrs, '$.meta.rldk_status')
                                   ELSE 'unknown' END END),
                replace(arg_max(json_extract_string(attrs, '$.status'), wall_time)
                        FILTER (WHERE kind = 'run' AND name = 'end'), 'terminated', 'killed'),
                'incomplete') AS status,
       max(CASE WHEN kind = 'run' AND name = 'import'
                THEN json_extract_string(attrs, '$.meta.rldk_status_evidence') END) AS status_evidence
FROM events
GROUP BY run_id
ORDER BY run_id
"""


#: A DuckDB connection runs one statement at a time: analyzers on threads (``rldk
#: analyze`` on a large store) take turns on a store's connection.
_STATEMENTS = threading.RLock()


class Store:
    """A read-only view of the events in a set of files.

    The files' footers are read once (``footers``); a run's own files
    (``run_files``) come from their run_id statistics, so reading one run of many
    (``for_run``, ``Run.metric``...) opens only that run's files. ``sources`` (the
    paths the store was opened from) let a query that finds a file deleted by a
    concurrent merge list the files again and rerun.
    """

    def __init__(self, files: list[str], footers: dict[str, Footer] | None = None, sources=None,
                 copies: dict[str, str] | None = None):
        self.files = files
        if footers is not None:
            self.__dict__["footers"] = {f: footers[f] for f in files}
        self.sources = sources
        self.copies = copies or {}
        self._parts: dict[str, Store] = {}

    def readable(self, file: str) -> str:
        """Where ``file``'s bytes are read from: its local copy when it has one
        (``copies``: objects fetched once for a fleet task, see
        :func:`rldk.core.fs.local_copies`), else the file itself."""
        return self.copies.get(file, file)

    @contextmanager
    def reading_local_copies(self):
        """Within the block, the store's objects are read from local copies, each
        fetched once (``rldk.core.fs.local_copies``, within ``scratch_budget``), so an
        analysis's many queries do not each go back to object storage."""
        with local_copies(self.files, max_bytes=scratch_budget()) as copies:
            if not copies:
                yield self
                return
            self._read_from(copies)
            try:
                yield self
            finally:
                self._read_from({})

    def _read_from(self, copies: dict[str, str]) -> None:
        self.copies = copies
        for cached in ("con", "stamp"):
            self.__dict__.pop(cached, None)
        self._parts.clear()

    @property
    def sql_files(self) -> list[str]:
        """The files as DuckDB ``read_parquet`` patterns that match exactly themselves
        (bind these, not ``files``: DuckDB reads every path as a glob); a file with a
        local copy is read from the copy."""
        return [literal_pattern(self.readable(f)) for f in self.files]

    @property
    def columns(self) -> set[str]:
        """The union of the files' column names."""
        return {c for f in self.files if self.footers[f] is not None for c in self.footers[f].columns}

    @cached_property
    def footers(self) -> dict[str, Footer]:
        """Each file's :class:`Footer` (column names and run_id ranges per row group)."""
        return {f: footer for f, footer in read_footers(self.files).items() if footer is not None}

    def run_files(self, run_id: str) -> list[str]:
        """The files that may hold events of ``run_id`` (by their run_id statistics)."""
        return [f for f in self.files if f not in self.footers or self.footers[f].may_hold(run_id)]

    def for_run(self, run_id: str) -> "Store":
        """A Store over the files of ``run_id`` only (cached): per-run reads and SQL
        through it touch none of the other runs' files."""
        part = self._parts.get(run_id)
        if part is None:
            files = self.run_files(run_id)
            part = (self if not files or len(files) == len(self.files)
                    else Store(files, self.footers, self.sources, self.copies))
            self._parts[run_id] = part
        return part

    @cached_property
    def stamp(self) -> tuple:
        """``(file, size, mtime_ns)`` of each file, taken once: a cache key that changes
        when a file is rewritten (a run still being written) in a newly opened store."""
        out = []
        for f in self.files:
            if is_remote(f) and f not in self.copies:
                out.append(_object_stamp(f))
                continue
            try:
                st = os.stat(self.readable(f))
                out.append((f, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((f, None, None))
        return tuple(out)

    @cached_property
    def con(self):
        """A DuckDB connection with the store's views registered; it can read the
        store's files and nothing else (no other file, no writes, no ATTACH)."""
        import duckdb

        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        register_filesystems(con, self.sql_files)      # DuckDB reads objects through fsspec
        groups = self._schema_groups()
        for i, group in enumerate(groups):
            con.execute(f"SET VARIABLE {FILES_VARIABLE}{i} = $files",
                        {"files": [literal_pattern(self.readable(f)) for f in group]})
        for statement in view_statements(len(groups), self.columns):
            con.execute(statement)
        allowed = sorted({*self.files, *self.sql_files, *(self.readable(f) for f in self.files)})
        con.execute(f"SET allowed_paths = [{', '.join(quote_literal(f) for f in allowed)}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con

    def _schema_groups(self) -> list[list[str]]:
        """The files grouped by column set (one group unless schema versions are mixed)."""
        if len({self.footers[f].columns for f in self.files if f in self.footers}) <= 1:
            return [list(self.files)]
        groups: dict[tuple, list[str]] = {}
        for f in self.files:
            groups.setdefault(self.footers[f].columns if f in self.footers else (), []).append(f)
        return list(groups.values())

    def sql(self, query: str, params=None):
        """Run one read-only statement (SELECT, WITH, DESCRIBE, ...) over the views with
        bound ``params``; returns a Polars DataFrame. Other statements (COPY, ATTACH,
        INSTALL, SET, several statements) raise :class:`UsageError`."""
        import polars as pl

        return pl.from_arrow(self.arrow(query, params))

    def arrow(self, query: str, params=None):
        """Run one read-only statement over the views with bound ``params``; a pyarrow Table."""
        return self._read(self._fetch, query, params)

    def rows(self, query: str, params=None) -> list[tuple]:
        """Run one read-only statement over the views with bound ``params``; its rows as
        tuples, without Polars or pyarrow (a small store's report should not import them)."""
        return self._read(self._fetch_rows, query, params)

    def _read(self, fetch, query: str, params):
        check_read_only(query)
        for attempt in range(READ_RETRIES + 1):
            try:
                return fetch(query, params)
            except Exception as exc:
                if attempt == READ_RETRIES or not _vanished(exc) or not self.sources:
                    raise
                self._reopen()

    def _reopen(self) -> None:
        """List the files again (a merge replaced some) and rebuild the views."""
        time.sleep(0.05)
        files, footers = live_files(repaired(resolve_files(self.sources), self.sources))
        self.files = files
        self.__dict__["footers"] = footers
        for cached in ("con", "run_ids", "stamp"):
            self.__dict__.pop(cached, None)
        self._parts.clear()

    def _fetch(self, query: str, params):
        with _STATEMENTS:
            relation = self.con.sql(query, params=params or None)
            if relation is None:                   # a statement that returns no rows
                import pyarrow as pa

                return pa.table({})
            fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
            return fetch()

    def _fetch_rows(self, query: str, params) -> list[tuple]:
        with _STATEMENTS:
            relation = self.con.sql(query, params=params or None)
            return [] if relation is None else relation.fetchall()

    def scan(self, kind: str | None = None):
        """A Polars LazyFrame of all events, or of one kind."""
        import polars as pl

        if any(is_remote(self.readable(f)) for f in self.files):
            # objects are read by DuckDB through fsspec (the one client configured
            # from the AWS_* environment), then handed to Polars as Arrow
            where = "" if kind is None else f" WHERE kind = {quote_literal(kind)}"
            table = self.arrow(f"SELECT * FROM events{where}")
            return pl.from_arrow(table).lazy().cast(dict(polars_schema()), strict=False)
        frame = pl.scan_parquet([self.readable(f) for f in self.files], schema=polars_schema(), glob=False,
                                missing_columns="insert", extra_columns="ignore")
        return frame if kind is None else frame.filter(pl.col("kind") == kind)

    @cached_property
    def run_ids(self) -> list[str]:
        """The run ids, sorted: from the footers when each row group holds one run,
        else one DuckDB scan of the run_id column."""
        known = [self.footers[f].exact_runs if f in self.footers else None for f in self.files]
        if known and all(k is not None for k in known):
            return sorted(set().union(*known))
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
        and names, start, last event, wall seconds, event count, status: complete,
        failed (an exception) or killed (a signal) from the run's last end event, or
        incomplete (no end event: the process was SIGKILLed, crashed or is still
        running), and status_evidence. A run imported
        from logs takes status, evidence and wall seconds from its import event
        (``rldk.core.run_facts``): "unknown" and no wall time when the logs lack them.

        Read from the run summaries in the files' footers (:mod:`rldk.core.run_summary`);
        runs they cannot answer for are scanned (``RUNS_SQL``) over their own files."""
        import polars as pl

        frame, rescan = run_summary.combine(self.footers.get(f) for f in self.files)
        if rescan is None:
            return self.sql(RUNS_SQL)
        if not rescan:
            return frame
        files = [f for f in self.files if _may_hold_any(self.footers.get(f), rescan)]
        part = self if len(files) == len(self.files) else Store(files, self.footers, self.sources, self.copies)
        scanned = part.sql(RUNS_SQL).filter(pl.col("run_id").is_in(sorted(rescan)))
        return pl.concat([frame, scanned]).sort("run_id") if frame.height else scanned

    def summary_rows(self) -> list[dict]:
        """``summary()``'s rows as dicts (``started`` and ``last_event`` as naive UTC
        datetimes, as Polars gives them); from the footers without Polars when their run
        summaries answer for every run."""
        rows, rescan = run_summary.combine_rows(self.footers.get(f) for f in self.files)
        if rescan is None or rescan:
            return self.summary().to_dicts()
        out = [dict(zip(run_summary.SUMMARY_COLUMNS, row)) for row in rows]
        for row in out:
            for column in ("started", "last_event"):
                row[column] = None if row[column] is None else _utc(row[column])
        return out


def _utc(ms: int):
    """A naive UTC datetime of ``ms`` since the epoch (Polars' ``Datetime("us")`` value)."""
    import datetime as dt

    return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)


def _may_hold_any(footer: Footer | None, run_ids: set[str]) -> bool:
    if footer is None:
        return True
    exact = footer.exact_runs
    return bool(exact & run_ids) if exact is not None else any(footer.may_hold(r) for r in run_ids)


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


def view_statements(groups: int = 1, columns=None) -> list[str]:
    """``CREATE VIEW`` statements over ``groups`` file lists, held in the connection
    variables ``rldk_files_0``... (files grouped by schema version, as literal patterns).

    Each group is read plainly and the groups are joined by name, so binding a view
    reads one footer per group (``union_by_name`` over every file would read them
    all, for every view). Event columns that no file has (``columns``: the union of
    the files' columns) are added as typed nulls, as documented for old or foreign files.
    """
    from rldk.core.sql import quote_identifier
    from rldk.schemas import arrow_schema

    source = " UNION ALL BY NAME ".join(
        f"SELECT * FROM read_parquet(getvariable('{FILES_VARIABLE}{i}'), hive_partitioning = false)"
        for i in range(groups))
    missing = [f for f in arrow_schema() if columns is not None and f.name not in columns]
    extra = "".join(f", CAST(NULL AS {_duck_type(f.type)}) AS {quote_identifier(f.name)}" for f in missing)
    out = [f"CREATE OR REPLACE VIEW events AS SELECT *{extra} FROM ({source})"]
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


def _object_stamp(url: str) -> tuple:
    """``(url, size, etag)`` of an object: the cache key :attr:`Store.stamp` keeps."""
    try:
        info = filesystem(protocol(url)).info(strip(url))
    except OSError:
        return (url, None, None)
    return (url, info.get("size"), info.get("ETag") or info.get("LastModified"))


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
        same_rank = pl.col("rank").is_null() if chosen is None else pl.col("rank") == chosen   # no rank column
        return (frame.filter(same_rank).sort(["wall_time", "seq"])
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
        """'complete', 'failed', 'killed' (from the last ``end`` event) or 'incomplete'; for
        a run imported from logs, what they show (``rldk.core.run_facts``): 'complete',
        'incomplete' or 'unknown'."""
        imported = self._run_event("import", last=True)
        if imported is not None:
            return run_facts.imported(imported)[0]
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
    listed = repaired(resolve_files(paths), paths)
    files, footers = live_files(listed)
    for folder in sorted({os.path.dirname(f) for f in set(listed) - set(files)}):
        repair_quietly(folder)        # inputs a merged file covers, left by a killed merge
    if not files:
        raise StoreError(f"no event files in {paths}: they were merged or deleted while opening; "
                         "try again")
    return Store(files, footers, sources=paths)
