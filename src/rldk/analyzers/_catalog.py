"""What every run of a store holds, from one aggregate scan (not an analyzer).

``rldk analyze`` reads every run, so instead of one index query and one kinds query
per run (``_series.run_index`` / ``run_facts``), :func:`warm` answers them for all
runs at once: one scan of the run, kind, rank, name, step and value columns, and
one of the start events. It fills the series loader's cache with each run's index
and facts (exactly what the per-run queries return), and keeps the store-wide
facts the analyzers' ``applies`` ask for: which event kinds and ranks the store has.
Large local files whose footers count no null value (a writer's metric segments) are
scanned without their value column, the largest: there every row's value is a number;
when their statistics also show one run, kind and rank (a segment of one writer's
metrics), they are grouped by metric name alone.

A library caller that asks about one run of a large store never pays for the
scan: the per-run queries stay the default, and :func:`scanned` is None until
:func:`warm` ran for that store.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from rldk.analyzers._series import (
    DUCKDB_NAMES,
    DUCKDB_ROWS,
    NameInfo,
    RunFacts,
    Source,
    _cached_value,
    _key,
    _query_files,
    _remember,
    read_indexed,
)
from rldk.core import run_summary

#: Per run, kind, rank and metric name (null for other kinds): metric rows with a
#: step, first step, first numeric step. ``count(step)`` / ``min`` skip null steps,
#: as the per-run index does.
CATALOG_SQL = """
SELECT run_id, kind, rank, CASE WHEN kind = 'metric' THEN name END AS name,
       count(step) AS rows, min(step) AS first_step,
       min(step) FILTER (WHERE value IS NOT NULL) AS first_numeric_step
FROM read_parquet($files, union_by_name = true)
GROUP BY ALL
"""

#: CATALOG_SQL for files whose footers say no value is null: every row is numeric,
#: so the value column (the largest: one double a row) is not read.
NUMERIC_SQL = """
SELECT run_id, kind, rank, CASE WHEN kind = 'metric' THEN name END AS name,
       count(step) AS rows, min(step) AS first_step, min(step) AS first_numeric_step
FROM read_parquet($files, union_by_name = true)
GROUP BY ALL
"""

#: NUMERIC_SQL for files whose statistics show one run, kind ('metric') and rank: grouped
#: by name alone (a third of the time of grouping by all four).
NAMES_SQL = """
SELECT name, count(step) AS rows, min(step) AS first_step, min(step) AS first_numeric_step
FROM read_parquet($files, union_by_name = true)
GROUP BY name
"""

#: At most this many (run, rank) groups of such files are scanned apart (one query each);
#: a store of more scans them together through NUMERIC_SQL.
CONSTANT_GROUPS = 8

#: Files of fewer rows are scanned whole: reading the value column costs little there,
#: less than reading the file's footer again for its null counts.
NUMERIC_CHECK_ROWS = 100_000

#: Each run's first start event.
STARTS_SQL = """
SELECT run_id, first(attrs ORDER BY wall_time, seq)
FROM read_parquet($files, union_by_name = true)
WHERE kind = 'run' AND name = 'start'
GROUP BY run_id
"""


@dataclass(frozen=True)
class Catalog:
    """Store-wide facts: the event kinds present and the ranks that wrote any event;
    per run id, the names of its metrics (rows without a step counted too)."""

    kinds: frozenset
    ranks: frozenset
    metric_names: dict


def warm(store) -> Catalog:
    """Index every run of ``store`` (two queries) into the series loader's cache; the
    store-wide :class:`Catalog` (cached with the store's files)."""
    found = _cached_value(("catalog", _stamp(store)))
    if found is not None:
        return found
    catalog = _from_summaries(store) or _scanned(store)
    _remember(("catalog", _stamp(store)), catalog, 0)
    return catalog


def _scanned(store) -> Catalog:
    """The catalog from one aggregate scan of the store (and one of its start events)."""
    rows = _catalog_rows(store)
    starts = {run_id: attrs for run_id, attrs in _query_files(store.sql_files, store.files, STARTS_SQL)}
    index: dict[str, dict] = {}
    others: dict[str, set] = {}
    names: dict[str, set] = {}
    for run_id, kind, rank, name, count, first, first_numeric in rows:
        if kind == "metric":
            names.setdefault(run_id, set()).add(name)
            if count:
                _add(index.setdefault(run_id, {}), name, count, first, first_numeric)
        else:
            others.setdefault(run_id, set()).add((kind, rank))
    for run_id in store.run_ids:
        _remember_run(Source(store, run_id), index.get(run_id, {}), others.get(run_id, set()),
                      starts.get(run_id))
    return Catalog(frozenset(r[1] for r in rows), frozenset(r[2] for r in rows),
                   {run_id: frozenset(n) for run_id, n in names.items()})


def _from_summaries(store) -> Catalog | None:
    """The catalog of a small local store that rldk wrote, without an aggregate scan:
    kinds, ranks and metric names come from the files' run summaries
    (:mod:`rldk.core.run_summary`), and each run's index from reading the run whole
    (``_series.read_indexed``), which the analyzers need next anyway. None when a file
    has no summary or is remote, or a run has several ranks or is too large to be read
    through DuckDB (``_series.DUCKDB_ROWS``, ``DUCKDB_NAMES``)."""
    from concurrent.futures import ThreadPoolExecutor

    found = _summarized_runs(store)
    if found is None:
        return None
    runs, with_starts = found
    sql_file = dict(zip(store.files, store.sql_files))
    with ThreadPoolExecutor(max_workers=2) as pool:
        starts = pool.submit(_query_files, [sql_file[f] for f in with_starts],
                             with_starts, STARTS_SQL) if with_starts else None
        indexes = {run_id: pool.submit(read_indexed, Source(store, run_id), sorted(run["names"]), True)
                   for run_id, run in runs.items()}
        indexes = {run_id: found.result() for run_id, found in indexes.items()}
        starts = dict(starts.result()) if starts is not None else {}
    for run_id, run in runs.items():
        others = {(kind, run["rank"]) for kind in run["kinds"] if kind != "metric"}
        _remember_run(Source(store, run_id), indexes[run_id], others, starts.get(run_id))
    return Catalog(frozenset(k for run in runs.values() for k in run["kinds"]),
                   frozenset(run["rank"] for run in runs.values()),
                   {run_id: frozenset(run["names"]) for run_id, run in runs.items() if run["names"]})


def _summarized_runs(store) -> tuple[dict[str, dict], list[str]] | None:
    """Per run id, ``{"names", "kinds", "rank", "rows"}`` from the summaries of the files
    of ``store``, and the files that hold run events; None when the summaries cannot
    stand in for a scan (see ``_from_summaries``)."""
    from rldk.core.fs import is_remote

    runs: dict[str, dict] = {}
    with_runs: list[str] = []
    readable = getattr(store, "readable", lambda f: f)
    for path in store.files:
        footer = store.footers.get(path)
        raw = footer.meta.get(run_summary.KEY) if footer is not None else None
        if raw is None or is_remote(readable(path)):
            return None
        parts = json.loads(raw)["runs"]
        if any("run" in part["kinds"] for part in parts.values()):
            with_runs.append(path)
        for run_id, part in parts.items():
            run = runs.setdefault(run_id, {"names": set(), "kinds": set(), "ranks": set(), "rows": 0})
            run["names"].update(part["names"])
            run["kinds"].update(part["kinds"])
            run["ranks"].update(part["ranks"])
            run["rows"] += part["n"]
    if set(runs) != set(store.run_ids) or sum(run["rows"] for run in runs.values()) > SUMMARIZED_ROWS:
        return None
    for run in runs.values():
        if (len(run["ranks"]) != 1 or None in run["ranks"] or None in run["names"]
                or None in run["kinds"] or run["rows"] > DUCKDB_ROWS or len(run["names"]) > DUCKDB_NAMES):
            return None
        run["rank"] = run.pop("ranks").pop()
    return runs, with_runs


#: A store of at most this many events is read whole by the catalog (its series then stay
#: in the series loader's cache: 16 bytes a row).
SUMMARIZED_ROWS = 8_000_000


def _catalog_rows(store) -> list[tuple]:
    """CATALOG_SQL's rows over the store: files without null values through NUMERIC_SQL
    (or NAMES_SQL), the others through CATALOG_SQL, rows of the same group from all merged."""
    numeric = _numeric_files(store)
    if not numeric:
        return _query_files(store.sql_files, store.files, CATALOG_SQL)
    pattern = dict(zip(store.files, store.sql_files))
    groups = _constant_groups(numeric)
    rows = [(*constants, *row) for constants, files in groups.items()
            for row in _query_files([pattern[f] for f in files], files, NAMES_SQL)]
    plain = [f for f in numeric if numeric[f] not in groups]
    if plain:
        rows += _query_files([pattern[f] for f in plain], plain, NUMERIC_SQL)
    rest = [f for f in store.files if f not in numeric]
    if rest:
        rows += _query_files([pattern[f] for f in rest], rest, CATALOG_SQL)
    return rows if len(groups) + bool(plain) + bool(rest) == 1 else _merged(rows)


def _constant_groups(numeric: dict) -> dict[tuple, list[str]]:
    """The files of each ``(run_id, "metric", rank)`` whose rows all have those values,
    when there are at most CONSTANT_GROUPS of them (one query each), else none."""
    groups: dict[tuple, list[str]] = {}
    for path, constants in numeric.items():
        if constants is not None and constants[1] == "metric":
            groups.setdefault(constants, []).append(path)
    return groups if len(groups) <= CONSTANT_GROUPS else {}


def _numeric_files(store) -> dict[str, tuple | None]:
    """The large local files whose every row group's statistics count no null value,
    each with its ``(run_id, kind, rank)`` when the statistics show one value of each
    in the whole file (and that have every column the catalog reads)."""
    from rldk.core.files import _metadata, no_nulls, single_values
    from rldk.core.fs import is_remote

    found = {}
    for path in store.files:
        footer = store.footers.get(path)
        local = store.readable(path) if hasattr(store, "readable") else path
        if (footer is None or footer.rows < NUMERIC_CHECK_ROWS or is_remote(local)
                or not CATALOG_COLUMNS <= set(footer.columns)):
            continue
        meta = _metadata(local)
        if no_nulls(meta, "value"):
            single = single_values(meta, CONSTANTS)
            found[path] = tuple(single[c] for c in CONSTANTS) if len(single) == len(CONSTANTS) else None
    return found


#: The columns whose one value in a file lets NAMES_SQL group it by name alone.
CONSTANTS = ("run_id", "kind", "rank")


#: The columns CATALOG_SQL reads.
CATALOG_COLUMNS = frozenset({"run_id", "kind", "rank", "name", "step", "value"})


def _merged(rows: list[tuple]) -> list[tuple]:
    """Rows of the same (run, kind, rank, name) group folded into one: rows summed,
    first steps the least."""
    out: dict[tuple, tuple] = {}
    for row in rows:
        key, old = row[:4], out.get(row[:4])
        out[key] = row if old is None else (*key, old[4] + row[4], _least(old[5], row[5]),
                                            _least(old[6], row[6]))
    return list(out.values())


def _least(a, b):
    return b if a is None else a if b is None else min(a, b)


def scanned(store) -> Catalog | None:
    """The :class:`Catalog` of ``store`` when :func:`warm` ran for it, else None."""
    return _cached_value(("catalog", _stamp(store)))


def _add(names: dict, name, count, first, first_numeric) -> None:
    """Fold one (rank, name) row into the run's per-name index (ranks summed)."""
    old = names.get(name)
    if old is None:
        names[name] = NameInfo(count, first, first_numeric)
        return
    numeric = [s for s in (old.first_numeric_step, first_numeric) if s is not None]
    names[name] = NameInfo(old.rows + count, min(old.first_step, first), min(numeric) if numeric else None)


def _remember_run(source: Source, names: dict, other: set, start) -> None:
    """The run's index (sorted by name) and facts, as ``run_index`` / ``run_facts`` compute them."""
    key = _key(source)
    _remember(("index", key), {n: names[n] for n in sorted(names)}, 0)
    kinds = {k for k, _ in other} | ({"metric"} if names else set())
    _remember(("facts", key), RunFacts(frozenset(kinds), json.loads(start) if start else {},
                                       "run" in kinds and len({r for _, r in other}) == 1), 0)


def _stamp(store):
    return getattr(store, "stamp", None) or tuple(store.files)
