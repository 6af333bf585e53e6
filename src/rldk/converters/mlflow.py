"""MLflow runs: the local file store (``mlruns/``) and the SQLite tracking backend.

File store layout (what ``mlflow`` writes without a tracking server)::

    mlruns/<experiment_id>/meta.yaml                       name: ...
    mlruns/<experiment_id>/<run_uuid>/meta.yaml            run_name, status, start_time, ...
    mlruns/<experiment_id>/<run_uuid>/metrics/<key>        "<timestamp_ms> <value> <step>" per line
    mlruns/<experiment_id>/<run_uuid>/params/<key>         the value
    mlruns/<experiment_id>/<run_uuid>/tags/<key>           the value

Metric keys with ``/`` are nested directories under ``metrics/``. Each MLflow run
becomes one rldk run keyed ``<experiment_id>/<run_uuid>``; params and tags go
into the run's import event (``meta.params``, ``meta.tags``). A metric line that
is not ``timestamp value step`` is skipped and reported with its line number.
How the run ended is MLflow's own status (FINISHED complete, RUNNING/SCHEDULED
incomplete, FAILED failed, KILLED killed), its seconds ``end_time - start_time``.

SQLite backend (``mlflow ui --backend-store-uri sqlite:///mlflow.db``): the tables
``runs``, ``metrics`` (key, value, timestamp, step, is_nan, run_uuid), ``params``
and ``tags`` are read with the standard library's ``sqlite3``.
"""
from __future__ import annotations

import math
import sqlite3
from pathlib import Path

from rldk.converters.base import (
    ConvertError,
    RunData,
    Skip,
    facts,
    metric_table,
    write_runs,
)

NAME = "mlflow"
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
#: MLflow's RunStatus (the file store writes the number, the SQLite store the name) -> rldk's
_STATUS_NAMES = {"1": "RUNNING", "2": "SCHEDULED", "3": "FINISHED", "4": "FAILED", "5": "KILLED"}
_STATUSES = {"FINISHED": "complete", "RUNNING": "incomplete", "SCHEDULED": "incomplete",
             "FAILED": "failed", "KILLED": "killed"}


def detect(path) -> bool:
    """True for an MLflow file store (a run, an experiment or ``mlruns/``) or SQLite database."""
    path = Path(path)
    if path.is_file():
        return path.suffix in _SQLITE_SUFFIXES and _is_mlflow_db(path)
    return bool(run_dirs(path, limit=1)) or bool(_databases(path))


def _databases(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.glob("*")) if p.suffix in _SQLITE_SUFFIXES and _is_mlflow_db(p)]


def run_dirs(path: Path, limit: int | None = None) -> list[Path]:
    """Directories that look like MLflow runs (``meta.yaml`` plus ``metrics/``), up to 3 levels down."""
    path = Path(path)
    out = []
    for depth_glob in ("", "*", "*/*", "*/*/*"):
        for d in sorted(path.glob(depth_glob)) if depth_glob else [path]:
            if d.is_dir() and (d / "meta.yaml").is_file() and (d / "metrics").is_dir():
                out.append(d)
                if limit and len(out) >= limit:
                    return out
    return out


def read(path, **_options) -> list[RunData]:
    path = Path(path)
    if path.is_file():
        return _read_sqlite(path)
    runs = run_dirs(path)
    if not runs:
        dbs = _databases(path)
        if dbs:
            return [r for db in dbs for r in _read_sqlite(db)]
        raise ConvertError(f"{path}: no MLflow runs found (<experiment>/<run>/meta.yaml + metrics/) "
                           "and no MLflow SQLite database")
    return [_read_run_dir(d) for d in runs]


# ------------------------------------------------------------------ file store
def _read_run_dir(run: Path) -> RunData:
    meta = _yaml_flat(run / "meta.yaml")
    steps, names, values, walls, skipped = [], [], [], [], []
    metrics_dir = run / "metrics"
    for file in sorted(p for p in metrics_dir.rglob("*") if p.is_file()):
        name = file.relative_to(metrics_dir).as_posix()
        for lineno, line in enumerate(file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            try:
                ts, value = int(parts[0]), float(parts[1])
                step = int(parts[2]) if len(parts) > 2 else 0
            except (ValueError, IndexError):
                skipped.append(Skip(str(file), f"line {lineno}", f"not '<timestamp_ms> <value> <step>': {line[:60]!r}"))
                continue
            steps.append(step), names.append(name), values.append(value), walls.append(ts / 1000.0)
    info = {"experiment_id": run.parent.name, "run_uuid": run.name, "run_name": meta.get("run_name"),
            "status": meta.get("status"), "params": _key_files(run / "params"), "tags": _key_files(run / "tags")}
    experiment = _yaml_flat(run.parent / "meta.yaml") if (run.parent / "meta.yaml").is_file() else {}
    info["experiment_name"] = experiment.get("name")
    info["config"] = info["params"]
    info.update(run_facts(meta.get("status"), meta.get("start_time"), meta.get("end_time")))
    return RunData(key=f"{run.parent.name}/{run.name}", source=str(run),
                   tables=[metric_table(steps, names, values, walls)], skipped=skipped, meta=info)


def _yaml_flat(file: Path) -> dict:
    """Top-level ``key: value`` pairs of an MLflow meta.yaml (no YAML library needed)."""
    out = {}
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        if line[:1].isspace() or ":" not in line:
            continue
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip().strip("'\"")
    return out


def _key_files(folder: Path) -> dict:
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8", errors="replace")
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_facts(status, start_ms, end_ms) -> dict:
    """How the run ended by MLflow's own record (:func:`rldk.converters.base.facts`): its
    status, and its seconds from ``start_time`` to ``end_time`` (milliseconds; no end
    time while it runs)."""
    name = _STATUS_NAMES.get(str(status).strip(), str(status).strip().upper())
    seconds = None
    try:
        if start_ms not in (None, "") and end_ms not in (None, ""):
            seconds = (float(end_ms) - float(start_ms)) / 1000.0
    except (TypeError, ValueError):
        seconds = None
    if name not in _STATUSES:
        return facts("unknown", f"MLflow status {status!r} not recorded or not known", seconds)
    return facts(_STATUSES[name], f"MLflow status {name}", seconds)


# ------------------------------------------------------------------ SQLite
RUNS_SQL = "SELECT * FROM runs ORDER BY experiment_id, run_uuid"
METRICS_SQL = ("SELECT key, value, timestamp, step, is_nan FROM metrics WHERE run_uuid = ? "
               "ORDER BY timestamp, step")
PARAMS_SQL = "SELECT key, value FROM params WHERE run_uuid = ?"
TAGS_SQL = "SELECT key, value FROM tags WHERE run_uuid = ?"


def _is_mlflow_db(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            if f.read(16) != b"SQLite format 3\0":
                return False
        con = _connect(path)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except (OSError, sqlite3.Error, UnicodeDecodeError):    # damaged schema text counts as not ours
        return False
    return {"runs", "metrics", "experiments"} <= tables


def _connect(path: Path):
    """Read-only connection; text that is not valid UTF-8 (a damaged file) is read with
    replacement characters instead of raising mid-query."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    con.text_factory = lambda raw: raw.decode("utf-8", errors="replace")
    return con


def _read_sqlite(db: Path) -> list[RunData]:
    if not _is_mlflow_db(db):
        raise ConvertError(f"{db}: not an MLflow SQLite database (needs tables runs, metrics, experiments)")
    con = _connect(db)
    try:
        cursor = con.execute(RUNS_SQL)
        columns = [c[0] for c in cursor.description]
        return [_sqlite_run(con, db, dict(zip(columns, row))) for row in cursor.fetchall()]
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        raise ConvertError(f"{db}: cannot read the MLflow tables ({exc})") from None
    finally:
        con.close()


def _sqlite_run(con, db: Path, run: dict) -> RunData:
    run_uuid, experiment_id, name, status = (run.get(k) for k in ("run_uuid", "experiment_id", "name", "status"))
    steps, names, values, walls = [], [], [], []
    skipped = []
    for i, (key, value, ts, step, is_nan) in enumerate(con.execute(METRICS_SQL, (run_uuid,))):
        try:
            row = (int(step or 0), str(key), (float(ts or 0)) / 1000.0, math.nan if is_nan else float(value))
        except (TypeError, ValueError):
            skipped.append(Skip(str(db), f"metrics row {i} of run {run_uuid}",
                                f"not a number: step={step!r} value={value!r} timestamp={ts!r}"))
            continue
        steps.append(row[0]), names.append(row[1]), walls.append(row[2]), values.append(row[3])
    params = dict(con.execute(PARAMS_SQL, (run_uuid,)).fetchall())
    tags = dict(con.execute(TAGS_SQL, (run_uuid,)).fetchall())
    meta = {"experiment_id": str(experiment_id), "run_uuid": run_uuid, "run_name": name, "status": status,
            "params": params, "tags": tags, "config": params, "database": str(db),
            **run_facts(status, run.get("start_time"), run.get("end_time"))}
    return RunData(key=f"{experiment_id}/{run_uuid}", source=f"{db}#{run_uuid}",
                   tables=[metric_table(steps, names, values, walls)], skipped=skipped, meta=meta)


def convert(path, target, run_id=None, strict: bool = False, **options):
    """Convert MLflow runs at ``path`` into ``target`` (store directory or EventWriter)."""
    return write_runs(read(path, **options), target, run_id, NAME, source=str(path), strict=strict)
