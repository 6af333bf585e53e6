"""Untrusted names and paths: literal paths, safe file names, read-only SQL, odd files."""
from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rldk.converters import convert_path
from rldk.converters.base import run_id_for
from rldk.core.errors import UsageError
from rldk.core.naming import csv_cell, safe_file_stem
from rldk.core.store import open_store, resolve_files
from rldk.writer import EventWriter


def _run(store, run_id, steps):
    with EventWriter(store, run_id, capture_env=False) as w:
        for s in range(steps):
            w.log(s, x=float(s))


def test_a_folder_named_like_a_pattern_is_read_literally(tmp_path):
    _run(tmp_path / "exp[1]", "bracket", 3)
    _run(tmp_path / "exp1", "sibling", 5)
    store = open_store(tmp_path / "exp[1]")
    assert store.run_ids == ["bracket"]
    assert store.sql("SELECT count(*) FROM metrics")[0, 0] == 3
    assert store.run("bracket").metric("x").height == 3             # Polars: glob=False
    assert open_store(str(tmp_path / "exp[1]" / "*.parquet")).run_ids == ["sibling"]  # a real glob stays one


def test_symlink_loops_and_twin_links_read_each_file_once(tmp_path):
    store = tmp_path / "store"
    _run(store, "r", 4)
    os.symlink(store, store / "loop")
    os.symlink(store, tmp_path / "twin")
    files = resolve_files([store, tmp_path / "twin"])
    assert len(files) == 1
    assert open_store([store, tmp_path / "twin"]).sql("SELECT count(*) FROM metrics")[0, 0] == 4


def test_symlink_loop_in_a_log_folder_imports_each_run_once(tmp_path):
    logs = tmp_path / "logs" / "run_a"
    logs.mkdir(parents=True)
    (logs / "trainer_state.json").write_text('{"global_step": 2, "log_history": [{"step": 1, "loss": 0.5}]}')
    os.symlink(tmp_path / "logs", logs / "loop")
    summary = convert_path(tmp_path / "logs", "trl", tmp_path / "out")
    assert [r.run_id for r in summary.runs] == ["run_a"]


@pytest.mark.parametrize(("key", "expected"), [("a...b", "a.b"), ("..x", "x"), ("a/../../b", "a-.-.-b"),
                                               ("exp[1]", "exp-1-")])
def test_run_ids_from_odd_folder_names(key, expected):
    assert run_id_for(key, None, False) == expected


def test_a_folder_named_a_dots_b_imports(tmp_path):
    (tmp_path / "logs" / "a...b").mkdir(parents=True)
    (tmp_path / "logs" / "a...b" / "trainer_state.json").write_text(
        '{"global_step": 1, "log_history": [{"step": 1, "loss": 0.5}]}')
    (tmp_path / "logs" / "c").mkdir()
    (tmp_path / "logs" / "c" / "trainer_state.json").write_text(
        '{"global_step": 1, "log_history": [{"step": 1, "loss": 0.4}]}')
    summary = convert_path(tmp_path / "logs", "trl", tmp_path / "out")
    assert [r.run_id for r in summary.runs] == ["a.b", "c"]


@pytest.mark.parametrize("name", ["a/../../../../tmp/x", "../x", "/etc/passwd", ".hidden", "a\x00b",
                                  "..", "", "a\\..\\b", "x" * 500])
def test_safe_file_stem_never_leaves_the_directory(tmp_path, name):
    stem = safe_file_stem(name)
    assert stem and "/" not in stem and "\\" not in stem and ".." not in stem
    assert not stem.startswith((".", "-")) and len(stem) <= 120
    path = (tmp_path / f"{stem}.png").resolve()
    assert path.parent == tmp_path.resolve()


def test_safe_file_stem_keeps_plain_ids_and_separates_changed_ones():
    assert safe_file_stem("ppo-seed1") == "ppo-seed1"
    assert safe_file_stem("a/b") != safe_file_stem("a-b")


@pytest.mark.parametrize(("value", "expected"), [
    ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'), ("+1", "'+1"), ("@SUM(A1)", "'@SUM(A1)"),
    ("-2+3", "'-2+3"), ("plain", "plain"), (-0.5, -0.5), (3, 3)])
def test_csv_cells_cannot_run_as_formulas(value, expected):
    assert csv_cell(value) == expected


@pytest.mark.parametrize("query", [
    "COPY (SELECT 1) TO '/tmp/rldk-should-not-exist.csv'",
    "SELECT 1; SELECT 2",
    "ATTACH '/tmp/x.duckdb'",
    "INSTALL httpfs",
    "SET enable_external_access = true",
])
def test_store_sql_refuses_statements_that_write_or_reach_outside(tmp_path, query):
    _run(tmp_path, "r", 2)
    with pytest.raises(UsageError):
        open_store(tmp_path).sql(query)
    assert not os.path.exists("/tmp/rldk-should-not-exist.csv")


def test_store_sql_cannot_read_files_outside_the_store(tmp_path):
    _run(tmp_path / "store", "r", 2)
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    store = open_store(tmp_path / "store")
    with pytest.raises(Exception, match="Permission|disabled"):
        store.sql(f"SELECT * FROM read_csv('{secret}')")
    assert store.sql("WITH t AS (SELECT * FROM metrics) SELECT count(*) FROM t")[0, 0] == 2


def test_a_file_without_rank_reads_with_nulls(tmp_path):
    _run(tmp_path, "r", 3)
    table = pq.read_table(next(tmp_path.glob("*.parquet"))).drop_columns(["rank"])
    for f in tmp_path.glob("*.parquet"):
        f.unlink()
    pq.write_table(table, tmp_path / "norank.parquet")
    store = open_store(tmp_path)
    summary = store.summary()
    assert summary["run_id"].to_list() == ["r"] and summary["steps"].to_list() == [3]
    assert store.run("r").metric("x").height == 3


def test_a_merge_pending_file_is_read_and_never_globbed(tmp_path):
    """Hidden names that plain globs skip must not end in .parquet (DuckDB and Polars
    match dot-files): the writer's temporaries and pending merges don't."""
    _run(tmp_path, "r", 3)
    table = pa.table({"a": [1]})
    pq.write_table(table, tmp_path / ".x.parquet")
    import duckdb

    assert duckdb.sql(f"SELECT count(*) FROM '{tmp_path}/*.parquet'").fetchall()  # reads the dot-file too
    from rldk.core.naming import pending_name, temp_name

    assert not pending_name("r.parquet").endswith(".parquet")
    assert not temp_name("r.parquet").endswith(".parquet")
