"""trackio SQLite databases -> metric and sample events.

Most tests build a database with the tables and JSON encoding trackio 0.43 writes
(schema version 2: what ``trackio.init/log/finish`` left on disk, checked with the
real package); the last test runs the real trackio when it is installed.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from rldk.cli import main
from rldk.converters import ConvertError, convert_path, detect_format
from rldk.core.store import open_store

METRICS_DDL = """CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,
    timestamp TEXT NOT NULL, run_name TEXT NOT NULL, step INTEGER NOT NULL, metrics TEXT NOT NULL,
    log_id TEXT, space_id TEXT)"""
CONFIGS_DDL = """CREATE TABLE configs (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,
    run_name TEXT NOT NULL, config TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE(run_id))"""
SYSTEM_DDL = """CREATE TABLE system_metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,
    timestamp TEXT NOT NULL, run_name TEXT NOT NULL, metrics TEXT NOT NULL, log_id TEXT, space_id TEXT)"""
TS = "2026-01-02T03:04:05.500000+00:00"
TABLE = {"_type": "trackio.table", "_value": [{"prompt": "p1", "completion": "c1", "reward": 1.0},
                                              {"prompt": "p2", "completion": "c2", "reward": 0.0}]}
HISTOGRAM = {"_type": "trackio.histogram", "bins": [0.0, 1.0, 2.0, 3.0], "values": [1, 0, 3]}


def make_db(path, runs, old_schema=False):
    """A trackio database: ``runs`` maps (run_id, name) -> list of (step, metrics dict)."""
    con = sqlite3.connect(path)
    ddl = METRICS_DDL.replace("run_id TEXT NOT NULL,", "") if old_schema else METRICS_DDL
    con.execute(ddl)
    con.execute(CONFIGS_DDL.replace("run_id TEXT NOT NULL,", "").replace("UNIQUE(run_id)", "UNIQUE(run_name)")
                if old_schema else CONFIGS_DDL)
    con.execute(SYSTEM_DDL)
    for (run_id, name), rows in runs.items():
        cols = "timestamp, run_name, step, metrics" if old_schema else "run_id, timestamp, run_name, step, metrics"
        for step, metrics in rows:
            blob = metrics if isinstance(metrics, bytes) else json.dumps(metrics, separators=(",", ":")).encode()
            values = (TS, name, step, blob) if old_schema else (run_id, TS, name, step, blob)
            con.execute(f"INSERT INTO metrics ({cols}) VALUES ({', '.join('?' * len(values))})", values)
        config = json.dumps({"lr": 1e-5, "_Username": None, "_Created": TS, "_Group": None}).encode()
        if old_schema:
            con.execute("INSERT INTO configs (run_name, config, created_at) VALUES (?, ?, ?)", (name, config, TS))
        else:
            con.execute("INSERT INTO configs (run_id, run_name, config, created_at) VALUES (?, ?, ?, ?)",
                        (run_id, name, config, TS))
    con.commit()
    con.close()
    return path


def _events(store, kind):
    return store.sql("SELECT run_id, step, name, value, text, attrs, epoch(wall_time) AS wall FROM events "
                     "WHERE kind = $k ORDER BY run_id, seq", {"k": kind})


def test_metrics_special_values_text_tables_and_histograms(tmp_path):
    rows = [(0, {"train/reward": 0.5, "train/kl": "NaN", "train/loss": "Infinity", "neg": "-Infinity",
                 "note": "hello", "ok": True, "nested": {"a": 2}}),
            (1, {"train/reward": 0.75}),
            (1, {"samples": TABLE}),
            (2, {"hist": HISTOGRAM, "img": {"_type": "trackio.image", "file_path": "x.png"}})]
    db = make_db(tmp_path / "proj.db", {("id-a", "run-a"): rows})
    assert detect_format(db) == "trackio" and detect_format(tmp_path) == "trackio"
    summary = convert_path(db, "auto", tmp_path / "s")
    assert [(r.run_id, r.samples, r.steps) for r in summary.runs] == [("run-a", 2, 3)]
    store = open_store(tmp_path / "s")
    metrics = {(s, n): (v, t) for _, s, n, v, t, _, _ in _events(store, "metric").iter_rows()}
    assert metrics[(0, "train/reward")] == (0.5, None) and metrics[(1, "train/reward")] == (0.75, None)
    assert math.isnan(metrics[(0, "train/kl")][0]) and metrics[(0, "train/loss")] == (math.inf, None)
    assert metrics[(0, "neg")] == (-math.inf, None) and metrics[(0, "note")] == (None, "hello")
    assert metrics[(0, "ok")] == (1.0, None) and metrics[(0, "nested/a")] == (2.0, None)
    # bins 0-1 (1 value), 2-3 (3 values): centres 0.5 and 2.5 -> mean 2.0, std sqrt(0.75)
    assert {n: v for (s, n), (v, _) in metrics.items() if n.startswith("hist/")} == {
        "hist/min": 0.0, "hist/max": 3.0, "hist/mean": 2.0, "hist/std": pytest.approx(math.sqrt(0.75)),
        "hist/count": 4.0}
    assert not any(n.startswith("img") for _, n in metrics)
    samples = [(s, t, v, json.loads(a)) for _, s, _, v, t, a, _ in _events(store, "sample").iter_rows()]
    assert samples == [(1, "c1", 1.0, {"prompt": "p1", "index": 0, "source": "samples"}),
                       (1, "c2", 0.0, {"prompt": "p2", "index": 1, "source": "samples"})]
    assert set(_events(store, "metric")["wall"].to_list()) == {1767323045.5}
    run = store.run("run-a")
    assert run.meta["config"] == {"lr": 1e-5}
    assert run.metric("reward").rows() == [(0, 0.5), (1, 0.75)]          # train/reward via rldk.semantics
    imported = json.loads(_events(store, "run").filter(_events(store, "run")["name"] == "import")["attrs"][0])
    assert imported["meta"]["ignored"] == {"trackio.image": 1}
    assert imported["meta"]["trackio"]["_Created"] == TS


def test_system_metrics_have_no_step(tmp_path):
    db = make_db(tmp_path / "proj.db", {("id-a", "run-a"): [(0, {"loss": 1.0})]})
    con = sqlite3.connect(db)
    con.execute("INSERT INTO system_metrics (run_id, timestamp, run_name, metrics) VALUES (?, ?, ?, ?)",
                ("id-a", TS, "run-a", b'{"cpu/percent":12.5}'))
    con.commit()
    con.close()
    convert_path(db, "trackio", tmp_path / "s")
    rows = _events(open_store(tmp_path / "s"), "metric").select("step", "name", "value").rows()
    assert rows == [(0, "loss", 1.0), (None, "system/cpu/percent", 12.5)]


def test_several_projects_runs_and_names(tmp_path):
    make_db(tmp_path / "alpha.db", {("i1", "a"): [(0, {"x": 1.0})], ("i2", "b"): [(0, {"x": 2.0})]})
    make_db(tmp_path / "beta.db", {("i3", "a"): [(0, {"x": 3.0})]})
    summary = convert_path(tmp_path, "auto", tmp_path / "s")
    assert summary.format == "trackio"
    assert [r.run_id for r in summary.runs] == ["alpha-a", "alpha-b", "beta-a"]
    (tmp_path / "dup").mkdir()
    make_db(tmp_path / "dup" / "p.db", {("0123456789", "same"): [(0, {"x": 1.0})],
                                        ("abcdefghij", "same"): [(0, {"x": 2.0})]})
    dup = convert_path(tmp_path / "dup" / "p.db", "trackio", tmp_path / "s2")
    assert [r.run_id for r in dup.runs] == ["same-01234567", "same-abcdefgh"]


def test_databases_before_run_ids_identify_runs_by_name(tmp_path):
    db = make_db(tmp_path / "old.db", {(None, "r1"): [(0, {"x": 1.0}), (1, {"x": 2.0})]}, old_schema=True)
    summary = convert_path(db, "trackio", tmp_path / "s")
    assert [(r.run_id, r.steps) for r in summary.runs] == [("r1", 2)]
    assert open_store(tmp_path / "s").run("r1").meta["config"] == {"lr": 1e-5}


def test_bad_rows_are_skipped_and_named(tmp_path):
    db = make_db(tmp_path / "proj.db", {("id-a", "run-a"): [(0, {"x": 1.0}), (1, b"{not json"), (2, b"[1, 2]")]})
    summary = convert_path(db, "trackio", tmp_path / "s")
    assert [str(s) for s in summary.skipped] == [
        f"{db}#run-a:metrics row 1: metrics column is not valid JSON; row skipped",
        f"{db}#run-a:metrics row 2: metrics is a JSON list, not an object"]
    result = CliRunner().invoke(main, ["import", "trackio", str(db), "--out-dir", str(tmp_path / "s2"), "--strict"])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {db}#run-a:metrics row 1: metrics column is not valid JSON; "
                                     "row skipped (and 1 more); --strict refuses to skip input: fix the file "
                                     "or drop --strict")


def test_other_sqlite_files_are_not_trackio(tmp_path):
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE runs (run_uuid TEXT)")
    con.close()
    (tmp_path / "fake.db").write_text("not sqlite")
    with pytest.raises(ConvertError, match=r"other.db: not a trackio database \(needs tables metrics and configs\)$"):
        convert_path(other, "trackio", tmp_path / "s")
    result = CliRunner().invoke(main, ["import", "trackio", str(tmp_path), "--out-dir", str(tmp_path / "s")])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {tmp_path}: no trackio database (<project>.db) found; "
                                     "pass $TRACKIO_DIR or a <project>.db file")


def test_cli_import_auto_summary(tmp_path):
    db = make_db(tmp_path / "proj.db", {("id-a", "run-a"): [(0, {"x": 1.0}), (1, {"x": 2.0})]})
    result = CliRunner().invoke(main, ["import", "auto", str(db), "--out-dir", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (f"imported {db} (detected as trackio) into {tmp_path / 's'}: "
                                             "1 run, 2 events, 0 skipped")


REAL_TRACKIO = """
import trackio
trackio.init(project="demo", name="real-run", config={"lr": 0.001})
for step in range(3):
    trackio.log({"train/reward": 0.5 * step, "train/kl": float("nan") if step == 1 else 0.1})
trackio.log({"samples": trackio.Table(columns=["prompt", "completion", "reward"],
                                      data=[["p", "c", 1.0]])}, step=2)
trackio.finish()
"""


def test_a_database_written_by_the_real_trackio(tmp_path):
    pytest.importorskip("trackio")
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", textwrap.dedent(REAL_TRACKIO)], env=env, check=True,
                   capture_output=True, timeout=120)
    summary = convert_path(tmp_path / "trackio", "auto", tmp_path / "s")
    assert summary.format == "trackio" and [r.run_id for r in summary.runs] == ["real-run"]
    run = open_store(tmp_path / "s").run("real-run")
    assert run.metric("train/reward").rows() == [(0, 0.0), (1, 0.5), (2, 1.0)]
    kl = run.metric("kl_to_ref").rows()
    assert kl[0] == (0, 0.1) and math.isnan(kl[1][1]) and kl[2] == (2, 0.1)
    assert run.meta["config"] == {"lr": 0.001}
    samples = open_store(tmp_path / "s").sql("SELECT step, text, value FROM samples").rows()
    assert samples == [(2, "c", 1.0)]
