"""The hive layout: one run per ``project=<p>/run_id=<id>/`` folder, read by rldk and plain DuckDB."""
from __future__ import annotations

import duckdb
import pytest
from click.testing import CliRunner

from rldk.cli import main
from rldk.core.errors import UsageError
from rldk.core.store import open_store
from rldk.writer import EventWriter


def _run(store, run_id, steps=50, **options):
    w = EventWriter(store, run_id, capture_env=False, compact_on_close=False, flush_secs=0.05, **options)
    for step in range(steps):
        w.log(step, loss=float(step))
        if step % 10 == 9:
            assert w.flush()
    assert w.close()
    return w


def test_hive_layout_puts_each_run_under_its_prefix(tmp_path):
    a = _run(tmp_path, "run-a", layout="hive", project="rlhf")
    b = _run(tmp_path, "run-b", project="rlhf")                 # a project alone means hive
    assert a.dir == tmp_path / "project=rlhf" / "run_id=run-a"
    assert b.dir == tmp_path / "project=rlhf" / "run_id=run-b"
    assert {p.parent.name for p in tmp_path.rglob("*.parquet")} == {"run_id=run-a", "run_id=run-b"}
    store = open_store(tmp_path)
    assert store.run_ids == ["run-a", "run-b"]
    assert store.run("run-a").metric("loss").height == 50
    # one run is one prefix: its store opens only that folder
    assert open_store(a.dir).run_ids == ["run-a"]


def test_plain_duckdb_reads_the_hive_store_with_partition_columns(tmp_path):
    _run(tmp_path, "run-a", project="p1")
    _run(tmp_path, "run-b", project="p2")
    rows = duckdb.sql(f"SELECT project, run_id, count(*) FROM read_parquet('{tmp_path}/**/*.parquet', "
                      "hive_partitioning=true) GROUP BY ALL ORDER BY ALL").fetchall()
    events = {r[0]: r[1] for r in open_store(tmp_path).sql(
        "SELECT run_id, count(*) AS n FROM events GROUP BY run_id").rows()}
    assert rows == [("p1", "run-a", events["run-a"]), ("p2", "run-b", events["run-b"])]
    # rldk's own views never take columns from folder names
    assert "project" not in open_store(tmp_path).sql("SELECT * FROM events LIMIT 1").columns


def test_compact_merges_per_partition(tmp_path):
    a = _run(tmp_path, "run-a", project="p")
    b = _run(tmp_path, "run-b", project="p")
    assert len(a.segments) > 2 and len(b.segments) > 2
    before = open_store(tmp_path).sql("SELECT count(*) AS n FROM events")["n"][0]
    result = CliRunner().invoke(main, ["compact", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert sorted(p.parent.name for p in tmp_path.rglob("*.parquet")) == ["run_id=run-a", "run_id=run-b"]
    after = open_store(tmp_path)
    assert after.sql("SELECT count(*) AS n FROM events")["n"][0] == before
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{tmp_path}/**/*.parquet', "
                      "hive_partitioning=true)").fetchall()[0][0] == before


def test_layout_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RLDK_LAYOUT", "hive")
    monkeypatch.setenv("RLDK_PROJECT", "envp")
    w = _run(tmp_path, "r1")
    assert w.dir == tmp_path / "project=envp" / "run_id=r1"


def test_bad_layout_and_project_are_one_line_errors(tmp_path):
    with pytest.raises(UsageError, match="layout 'nested': use 'flat' or 'hive'"):
        EventWriter(tmp_path, "r", layout="nested", capture_env=False)
    with pytest.raises(UsageError, match="invalid project '../x'"):
        EventWriter(tmp_path, "r", project="../x", capture_env=False)
    with pytest.raises(UsageError, match="pass layout='hive' too"):
        EventWriter(tmp_path, "r", layout="flat", project="p", capture_env=False)
    assert not list(tmp_path.iterdir())
