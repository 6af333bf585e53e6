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
from functools import cached_property

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
       list_sort(list_distinct(list(rank))) AS ranks,
       count(DISTINCT step) FILTER (WHERE kind = 'metric') AS steps,
       min(step) AS first_step,
       max(step) AS last_step,
       list_sort(list_distinct(list(kind))) AS kinds,
       count(DISTINCT name) FILTER (WHERE kind = 'metric') AS metrics,
       list_sort(list_distinct(list(name) FILTER (WHERE kind = 'metric'))) AS metric_names,
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


class Store:
    """A read-only view of the events in a set of files."""

    def __init__(self, files: list[str]):
        self.files = files

    @cached_property
    def con(self):
        """A DuckDB connection with the store's views registered."""
        import duckdb

        con = duckdb.connect()
        for statement in view_statements(self.files):
            con.execute(statement)
        return con

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

        from rldk.schemas import arrow_schema

        frame = pl.scan_parquet(self.files, schema=pl.Schema(pl.from_arrow(arrow_schema().empty_table()).schema),
                                missing_columns="insert", extra_columns="ignore")
        return frame if kind is None else frame.filter(pl.col("kind") == kind)

    @cached_property
    def run_ids(self) -> list[str]:
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


def view_statements(files: list[str]) -> list[str]:
    """``CREATE VIEW`` statements for a list of files (paths go through quote_literal)."""
    listing = ", ".join(quote_literal(f) for f in files)
    out = [f"CREATE OR REPLACE VIEW events AS SELECT * FROM read_parquet([{listing}], union_by_name = true)"]
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
        return (frame.filter(pl.col("rank") == chosen).sort(["wall_time", "seq"])
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
