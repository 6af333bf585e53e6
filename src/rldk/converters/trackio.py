"""trackio's local SQLite databases: one ``<project>.db`` per project in ``$TRACKIO_DIR``
(default ``~/.cache/huggingface/trackio``), the tracker TRL and verl can report to.

Tables read (checked on trackio 0.43, schema version 2; older databases without a
``run_id`` column identify a run by its name):

- ``metrics(id, run_id, timestamp, run_name, step, metrics, ...)``: one row per
  ``trackio.log`` call, ``metrics`` a JSON object. Numbers become ``metric`` events
  at ``step`` (``wall_time`` from the ISO ``timestamp``); trackio's ``"NaN"``,
  ``"Infinity"``, ``"-Infinity"`` strings become NaN/inf; other strings are metric
  events with a null value and the text in ``text`` (as TensorBoard text is).
  Nested objects are flattened with ``/``. A ``trackio.table`` becomes ``sample``
  events (columns recognised as in :func:`rldk.converters.trl_completions.samples_table`);
  a ``trackio.histogram`` becomes ``<key>/min``, ``/max``, ``/mean``, ``/std``,
  ``/count`` computed from its bins (approximate: bin centres). Images, videos and
  other media are counted in the import event, not imported.
- ``configs(run_id, run_name, config, created_at)``: the run's config (trackio's own
  ``_Username``, ``_Created``, ``_Group`` keys go to the import event, not the config).
- ``system_metrics``: CPU/GPU readings; imported as ``metric`` events named
  ``system/<key>`` at a null step, as they are sampled by time, not by step.

How the run ended is "unknown" (trackio records no planned length nor end); its
seconds are the span of its ``metrics`` rows' timestamps.

One run per (project, run): the run key is the run's name (``project/name`` when
the input holds several projects; a name used by two runs gets the id appended).
"""
from __future__ import annotations

import json
import math
import sqlite3
from datetime import datetime
from pathlib import Path

from rldk.compat._stats import stats_from_bins
from rldk.converters.base import (
    ConvertError,
    RunData,
    Skip,
    facts,
    metric_table,
    wall_span,
    write_runs,
)
from rldk.converters.trl_completions import samples_table

NAME = "trackio"
_SUFFIX = ".db"
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

TABLES_SQL = "SELECT name FROM sqlite_master WHERE type = 'table'"
COLUMNS_SQL = "SELECT name FROM pragma_table_info(?)"
# {id} is the run's key column, "run_id" or (databases before trackio 0.24) "run_name"
RUNS_SQL = "SELECT {id}, MIN(run_name) FROM metrics GROUP BY {id} ORDER BY MIN(rowid)"
METRICS_SQL = "SELECT step, timestamp, metrics FROM metrics WHERE {id} = ? ORDER BY rowid"
CONFIG_SQL = "SELECT config FROM configs WHERE {id} = ? ORDER BY rowid DESC LIMIT 1"
SYSTEM_SQL = "SELECT timestamp, metrics FROM system_metrics WHERE {id} = ? ORDER BY rowid"


# ------------------------------------------------------------------ detection
def detect(path) -> bool:
    """True for a trackio database, or a directory holding one (itself or one level down)."""
    path = Path(path)
    if path.is_file():
        return _is_trackio_db(path)
    return path.is_dir() and bool(databases(path))


def databases(root: Path) -> list[Path]:
    """The trackio databases in ``root`` and its subdirectories (one level), sorted."""
    found = sorted(root.glob(f"*{_SUFFIX}")) + sorted(root.glob(f"*/*{_SUFFIX}"))
    return [p for p in found if p.is_file() and _is_trackio_db(p)]


def _is_trackio_db(path: Path) -> bool:
    if path.suffix != _SUFFIX:
        return False
    try:
        with open(path, "rb") as f:
            if f.read(16) != b"SQLite format 3\0":
                return False
        con = _connect(path)
        try:
            tables = {r[0] for r in con.execute(TABLES_SQL)}
            columns = {r[0] for r in con.execute(COLUMNS_SQL, ("metrics",))}
        finally:
            con.close()
    except (OSError, sqlite3.Error, UnicodeDecodeError):     # damaged schema text counts as not ours
        return False
    return {"metrics", "configs"} <= tables and {"run_name", "step", "metrics"} <= columns


def _connect(path: Path):
    """Read-only; text that is not valid UTF-8 is read with replacement characters."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    con.text_factory = lambda raw: raw.decode("utf-8", errors="replace")
    return con


# ------------------------------------------------------------------ reading
def read(path, **_options) -> list[RunData]:
    """One :class:`RunData` per run in the trackio database(s) at ``path``."""
    path = Path(path)
    if path.is_file():
        if not _is_trackio_db(path):
            raise ConvertError(f"{path}: not a trackio database (needs tables metrics and configs)")
        dbs = [path]
    else:
        dbs = databases(path) if path.is_dir() else []
        if not dbs:
            raise ConvertError(f"{path}: no trackio database (<project>.db) found; "
                               "pass $TRACKIO_DIR or a <project>.db file")
    runs = [run for db in dbs for run in _read_db(db, several=len(dbs) > 1)]
    return _distinct_keys(runs)


def _read_db(db: Path, several: bool) -> list[RunData]:
    con = _connect(db)
    try:
        id_col = "run_id" if "run_id" in {r[0] for r in con.execute(COLUMNS_SQL, ("metrics",))} else "run_name"
        tables = {r[0] for r in con.execute(TABLES_SQL)}
        runs = con.execute(RUNS_SQL.format(id=id_col)).fetchall()
        return [_read_run(con, db, id_col, run_id, name, several, "system_metrics" in tables)
                for run_id, name in runs]
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        raise ConvertError(f"{db}: cannot read the trackio tables ({exc})") from None
    finally:
        con.close()


def _read_run(con, db: Path, id_col: str, run_id, name, several: bool, system: bool) -> RunData:
    project = db.stem
    rows, walls = _MetricRows(f"{db}#{name}"), []
    for i, (step, timestamp, blob) in enumerate(con.execute(METRICS_SQL.format(id=id_col), (run_id,))):
        walls.append(_seconds(timestamp))
        rows.add(i, step, walls[-1], blob)
    if system:
        for i, (timestamp, blob) in enumerate(con.execute(SYSTEM_SQL.format(id=id_col), (run_id,))):
            rows.add(i, None, _seconds(timestamp), blob, prefix="system/")
    config, trackio_keys = _config(con, id_col, run_id)
    meta = {"project": project, "run_name": name, "run_id": run_id, "database": str(db), "config": config,
            "trackio": trackio_keys, "ignored": rows.ignored,
            **facts("unknown", "trackio records no planned length or end of a run", wall_span(walls))}
    key = f"{project}/{name}" if several else str(name)
    return RunData(key=key, source=f"{db}#{name}", tables=rows.tables(), skipped=rows.skipped, meta=meta)


def _config(con, id_col: str, run_id) -> tuple[dict, dict]:
    row = con.execute(CONFIG_SQL.format(id=id_col), (run_id,)).fetchone()
    try:
        config = json.loads(row[0]) if row else {}
    except ValueError:
        return {}, {"config_error": "the configs row is not valid JSON"}
    if not isinstance(config, dict):
        return {}, {}
    own = {k: config.pop(k) for k in list(config) if k.startswith("_")}
    return config, own


def _distinct_keys(runs: list[RunData]) -> list[RunData]:
    """Two runs with one name: both get their trackio run id appended."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.key] = counts.get(run.key, 0) + 1
    for run in runs:
        if counts[run.key] > 1:
            run.key = f"{run.key}-{str(run.meta['run_id'])[:8]}"
    return runs


def _seconds(timestamp) -> float | None:
    try:
        return datetime.fromisoformat(str(timestamp)).timestamp()
    except ValueError:
        return None


class _MetricRows:
    """Collects metric columns and sample tables from trackio's JSON rows."""

    def __init__(self, source: str):
        self.source = source
        self.steps, self.names, self.values, self.texts, self.walls = [], [], [], [], []
        self.samples: list = []
        self.skipped: list = []
        self.ignored: dict = {}

    def add(self, i: int, step, wall, blob, prefix: str = "") -> None:
        where = f"{'system_metrics' if prefix else 'metrics'} row {i}"
        try:
            data = json.loads(blob)
        except (ValueError, TypeError):
            self.skipped.append(Skip(self.source, where, "metrics column is not valid JSON; row skipped"))
            return
        if not isinstance(data, dict):
            self.skipped.append(Skip(self.source, where, f"metrics is a JSON {type(data).__name__}, not an object"))
            return
        for name, value in _flatten(data, prefix):
            self._value(step, wall, name, value)

    def _value(self, step, wall, name: str, value) -> None:
        if isinstance(value, dict) and "_type" in value:
            return self._media(step, wall, name, value)
        if isinstance(value, str) and value not in _SPECIAL:
            number, text = None, value
        elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
            number, text = _SPECIAL.get(value, value), None
        elif isinstance(value, bool):
            number, text = float(value), None
        else:
            number, text = None, json.dumps(value, default=str)[:10_000]
        self.steps.append(step), self.names.append(name), self.walls.append(wall)
        self.values.append(float(number) if number is not None else None), self.texts.append(text)

    def _media(self, step, wall, name: str, value: dict) -> None:
        kind = str(value["_type"])
        if kind == "trackio.table" and isinstance(value.get("_value"), list):
            records = [r for r in value["_value"] if isinstance(r, dict)]
            columns = list(dict.fromkeys(k for r in records for k in r))
            table = samples_table(columns, [[r.get(c) for c in columns] for r in records], step, name, wall)
            if table is not None:
                self.samples.append(table)
                return
        if kind == "trackio.histogram":
            for stat, v in stats_from_bins(value.get("values"), value.get("bins")).items():
                self._value(step, wall, f"{name}/{stat}", v)
            return
        self.ignored[kind] = self.ignored.get(kind, 0) + 1

    def tables(self) -> list:
        import pyarrow as pa

        metrics = metric_table(self.steps, self.names, self.values, self.walls)
        metrics = metrics.append_column("text", pa.array(self.texts, pa.string()))
        return [metrics, *self.samples]


def _flatten(data: dict, prefix: str = ""):
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and "_type" not in value:
            yield from _flatten(value, f"{name}/")
        else:
            yield name, value


def convert(path, target, run_id=None, strict: bool = False, **options):
    """Convert trackio databases at ``path`` into ``target`` (store directory or EventWriter)."""
    return write_runs(read(path, **options), target, run_id, NAME, source=str(path), strict=strict)
