"""Opening stores, schema evolution, and the store commands (runs, sql, compact, demo)."""
from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rldk import __version__
from rldk.cli import main
from rldk.core.errors import StoreError, UsageError
from rldk.core.store import open_store
from rldk.data import ingest_runs
from rldk.writer import EventWriter


def make_store(path, runs: dict[str, list[tuple[int, dict]]], **options):
    """Write ``{run_id: [(step, {name: value})]}`` through the real writer."""
    for run_id, calls in runs.items():
        with EventWriter(path, run_id, capture_env=False, **options) as w:
            for step, values in calls:
                w.log(step, values)
    return path


@pytest.fixture
def two_runs(tmp_path):
    return make_store(tmp_path / "runs", {
        "b-run": [(s, {"loss": 1.0 / (s + 1), "kl": 0.1 * s}) for s in range(5)],
        "a-run": [(s, {"loss": 2.0 / (s + 1)}) for s in range(3)],
    })


def test_runs_are_sorted_and_metrics_read_back(two_runs):
    runs = ingest_runs(two_runs)
    assert [r.id for r in runs] == ["a-run", "b-run"]
    assert runs[1].metric("kl").rows() == [(s, 0.1 * s) for s in range(5)]
    assert runs[1].metric_names() == ["kl", "loss"]
    assert runs[0].status == "complete"


@pytest.mark.parametrize("spec", ["dir", "glob", "files"])
def test_paths_dirs_globs_and_files_open_the_same_store(two_runs, spec):
    files = sorted(str(p) for p in two_runs.glob("*.parquet"))
    arg = {"dir": str(two_runs), "glob": str(two_runs / "*.parquet"), "files": files}[spec]
    assert open_store(arg).files == files


def test_missing_metric_lists_what_exists(two_runs):
    with pytest.raises(UsageError, match=r"run 'a-run' has no metric 'kl'; metrics: loss"):
        open_store(two_runs).run("a-run").metric("kl")
    with pytest.raises(UsageError, match=r"no run 'zzz' in the store; runs: a-run, b-run"):
        open_store(two_runs).run("zzz")


def test_empty_and_missing_paths(tmp_path):
    with pytest.raises(StoreError, match=r".*nope: no such file or directory"):
        open_store(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match=r"no event files \(\*\.parquet\) in .*empty"):
        open_store(tmp_path / "empty")


def test_a_corrupt_file_is_named(two_runs):
    (two_runs / "junk.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(StoreError, match=r"junk\.parquet: not a readable Parquet file .* move it out of the store"):
        open_store(two_runs)


def test_files_of_an_older_or_foreign_layout_read_with_nulls(tmp_path):
    minimal = pa.table({"run_id": ["old"] * 3, "kind": ["metric"] * 3, "name": ["loss"] * 3,
                        "step": pa.array([0, 1, 2], pa.int64()), "value": [3.0, 2.0, 1.0],
                        "rank": pa.array([0, 0, 0], pa.int32()), "seq": pa.array([1, 2, 3], pa.int64())})
    pq.write_table(minimal, tmp_path / "old.parquet")
    make_store(tmp_path, {"new": [(0, {"loss": 5.0})]})
    store = open_store(tmp_path)
    assert store.run("old").metric("loss")["value"].to_list() == [3.0, 2.0, 1.0]
    assert store.sql("SELECT count(*) FROM metrics WHERE attrs IS NULL AND run_id = 'old'")[0, 0] == 3
    assert store.scan("metric").collect().height == 4


def test_a_newer_schema_version_asks_to_upgrade(tmp_path):
    table = pa.table({"run_id": ["x"], "kind": ["metric"], "name": ["a"], "step": [1]})
    pq.write_table(table.replace_schema_metadata({b"rldk.schema_version": b"99"}), tmp_path / "x.parquet")
    with pytest.raises(StoreError, match="schema version 99 is newer than this rldk reads"):
        open_store(tmp_path)


def test_paths_with_quotes_are_safe_in_views(tmp_path):
    odd = tmp_path / "it's a dir; DROP TABLE x"
    make_store(odd, {"r": [(0, {"x": 1.0})]})
    assert open_store(odd).sql("SELECT value FROM metrics")[0, 0] == 1.0


def test_sql_binds_values(two_runs):
    hostile = "a-run' OR '1'='1"
    assert open_store(two_runs).sql("SELECT count(*) FROM metrics WHERE run_id = ?", [hostile])[0, 0] == 0


# ---------------------------------------------------------------- commands
def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"rldk, version {__version__}"


def test_runs_command_formats(two_runs):
    result = invoke("runs", two_runs, "--format", "json")
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert [(r["run_id"], r["steps"], r["metrics"], r["status"]) for r in rows] == [
        ("a-run", 3, 1, "complete"), ("b-run", 5, 2, "complete")]
    csv_out = invoke("runs", two_runs, "--format", "csv").output.splitlines()
    assert csv_out[0].startswith("run_id,ranks,steps")
    table = invoke("runs", two_runs).output
    assert "a-run" in table and "complete" in table


def test_runs_command_errors():
    result = invoke("runs", "/no/such/store")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: /no/such/store: no such file or directory"


def test_sql_command(two_runs):
    result = invoke("sql", "SELECT run_id, max(step) AS last FROM metrics GROUP BY 1 ORDER BY 1",
                    two_runs, "--format", "csv")
    assert result.exit_code == 0 and result.output.splitlines() == ["run_id,last", "a-run,2", "b-run,4"]
    bad = invoke("sql", "SELECT nope FROM metrics", two_runs)
    assert bad.exit_code == 2
    assert bad.output.startswith("Error: query failed: Binder Error: Referenced column \"nope\" not found")


def test_sql_output_file(two_runs, tmp_path):
    out = tmp_path / "out.json"
    assert invoke("sql", "SELECT 1 AS one", two_runs, "--format", "json", "--output", out).exit_code == 0
    assert json.loads(out.read_text()) == [{"one": 1}]


def test_compact_command(tmp_path):
    make_store(tmp_path, {"r": [(s, {"x": float(s)}) for s in range(10)]})
    make_store(tmp_path, {"r": [(s, {"x": 10.0 + s}) for s in range(10, 20)]})    # a second session
    assert len(open_store(tmp_path).files) == 2
    result = invoke("compact", tmp_path, "--format", "json")
    assert result.exit_code == 0 and json.loads(result.output)[0]["note"] == "merged"
    store = open_store(tmp_path)
    assert len(store.files) == 1 and os.path.basename(store.files[0]).startswith("r.compact-")
    assert store.run("r").metric("x")["step"].to_list() == list(range(20))


def test_compact_leaves_incomplete_runs_alone(tmp_path):
    w = EventWriter(tmp_path, "live", capture_env=False)
    w.log(0, x=1.0)
    w.flush()
    w._closed = True            # simulate a crashed writer: no end event, segments left as they are
    w._thread.join(0)
    result = invoke("compact", tmp_path, "--format", "json")
    assert "no end event" in json.loads(result.output)[0]["note"]
    assert len(open_store(tmp_path).files) == 2


def test_demo(tmp_path):
    invoke("demo", tmp_path / "demo", "--steps", "60")
    result = invoke("demo", tmp_path / "demo", "--steps", "60")      # a rerun starts afresh
    assert result.exit_code == 0, result.output
    assert "bandit-clean" in result.output and "bandit-lr-spike" in result.output
    assert "Injected: learning rate x50 from step 30. Found: divergence at step 30." in result.output
    runs = ingest_runs(tmp_path / "demo")
    clean, spiked = (r.metric("lr") for r in sorted(runs, key=lambda r: r.id != "bandit-clean"))
    assert clean["value"].to_list() == [0.1] * 60
    assert spiked["value"].to_list() == [0.1] * 30 + [5.0] * 30
