"""How the data layer reads a store: once per run, a run's own files only, nothing heavy at start-up.

Speed itself is measured by benchmarks/analyze.py and benchmarks/small.py; these
tests pin the behaviours that make it fast (and must not change the numbers).
"""
from __future__ import annotations

import subprocess
import sys

import click
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rldk.analyzers import _series
from rldk.analyzers.suite import analyze
from rldk.cli import COMMANDS, SUMMARIES, main
from rldk.core import store as store_module
from rldk.core.store import open_store, view_statements
from rldk.writer import EventWriter


def make_store(path, runs: dict[str, list[tuple[int, dict]]]):
    """Write ``{run_id: [(step, {name: value})]}`` through the real writer."""
    for run_id, calls in runs.items():
        with EventWriter(path, run_id, capture_env=False) as w:
            for step, values in calls:
                w.log(step, values)
    return path


@pytest.fixture
def three_runs(tmp_path):
    def calls(scale):
        return [(s, {"reward": scale * s, "kl": 0.01 * s, "loss": 1.0 / (s + 1),
                     **{f"rewards/fn{i}/mean": scale * s * (i + 1) for i in range(3)}})
                for s in range(40)]
    return make_store(tmp_path / "store", {"a": calls(1.0), "b": calls(2.0), "c": calls(3.0)})


def test_a_run_reads_only_its_own_files(three_runs):
    store = open_store(three_runs)
    assert store.run_ids == ["a", "b", "c"]
    for run_id in store.run_ids:
        own = store.run_files(run_id)
        assert own and all(pq.read_table(f, columns=["run_id"])["run_id"].to_pylist()
                           == [run_id] * pq.read_metadata(f).num_rows for f in own)
        assert store.for_run(run_id).files == own
        assert store.for_run(run_id) is store.for_run(run_id)     # cached
    assert sorted(f for r in store.run_ids for f in store.run_files(r)) == sorted(store.files)


def test_run_ids_from_footers_match_a_scan(three_runs):
    store = open_store(three_runs)
    scanned = [r[0] for r in store.con.execute("SELECT DISTINCT run_id FROM events ORDER BY 1").fetchall()]
    assert store.run_ids == scanned


def test_file_holding_several_runs_is_read_for_each(tmp_path):
    rows = {"run_id": ["x", "y"], "rank": pa.array([0, 0], pa.int32()), "seq": [0, 0], "step": [0, 0],
            "wall_time": pa.array([0, 0], pa.timestamp("ms")), "kind": ["metric"] * 2,
            "name": ["loss"] * 2, "value": [1.0, 2.0], "attrs": pa.nulls(2, pa.string())}
    pq.write_table(pa.table(rows), tmp_path / "both.parquet")
    store = open_store(tmp_path)
    assert store.run_ids == ["x", "y"]
    assert store.run_files("x") == store.run_files("y") == store.files
    assert store.run("y").metric("loss").rows() == [(0, 2.0)]


def test_mixed_schema_versions_join_by_name(tmp_path):
    base = {"run_id": ["x"], "rank": pa.array([0], pa.int32()), "seq": [0], "step": [0],
            "wall_time": pa.array([0], pa.timestamp("ms")), "kind": ["metric"], "name": ["loss"],
            "value": [1.0], "attrs": pa.nulls(1, pa.string())}
    pq.write_table(pa.table(base), tmp_path / "old.parquet")
    pq.write_table(pa.table({**base, "run_id": ["y"], "text": ["t"]}), tmp_path / "new.parquet")
    store = open_store(tmp_path)
    assert store.sql("SELECT run_id, text FROM events ORDER BY run_id").rows() == [("x", None), ("y", "t")]
    assert view_statements(2)[0].count("UNION ALL BY NAME") == 1


def test_analyze_reads_each_run_once_and_never_per_metric(three_runs, tmp_path, monkeypatch):
    _series.clear_cache()
    reads = []
    keep = _series._keep_whole                   # every whole-run read is cached through it
    monkeypatch.setattr(_series, "_keep_whole", lambda source, series: reads.append(source.run_id)
                        or keep(source, series))

    def per_metric_scan(self, *args, **kwargs):
        raise AssertionError("an analyzer scanned the store for one metric (Run.metric)")
    monkeypatch.setattr(store_module.Run, "metric", per_metric_scan)
    monkeypatch.setattr(store_module.Run, "metric_names", per_metric_scan)
    result = analyze(three_runs, baseline="a", out_dir=tmp_path / "cards", plots=False)
    assert sorted(reads) == ["a", "b", "c"]
    assert {o.analyzer: o.status for o in result.outcomes}["reward_health"] in ("ok", "problems")


def test_reward_health_numbers_match_run_metric(three_runs):
    from rldk.analyzers.reward_health.data import load_many, metric_names

    run = open_store(three_runs).run("b")
    assert metric_names(run) == run.metric_names()
    loaded = load_many(run, ["reward", "rewards/fn1/mean", "absent"])
    assert sorted(loaded) == ["reward", "rewards/fn1/mean"]
    for name, series in loaded.items():
        frame = run.metric(name)
        np.testing.assert_array_equal(series.steps, frame["step"].to_numpy())
        np.testing.assert_array_equal(series.values, frame["value"].to_numpy())


def test_cache_key_is_taken_once_per_opened_store(three_runs, monkeypatch):
    store = open_store(three_runs)
    source = _series.Source(store, "a")
    first = _series._key(source)
    monkeypatch.setattr(store_module.os, "stat", lambda *a, **k: pytest.fail("stat on a cached key"))
    assert _series._key(source) == first
    assert {f for f, _, _ in first[0]} == set(store.run_files("a"))


def test_help_lists_every_command_with_its_own_summary():
    ctx = click.Context(main)
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        assert click.Command(name, help=SUMMARIES[name]).get_short_help_str(1000) == \
            command.get_short_help_str(1000), name
    out = CliRunner().invoke(main, ["--help"])
    assert out.exit_code == 0
    assert all(name in out.output for name in COMMANDS)


def test_help_and_store_schema_import_nothing_heavy():
    code = ("import sys\nfrom rldk.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('numpy', 'polars', 'duckdb', 'pyarrow', 'pandas', 'scipy', "
            "'matplotlib') if m in sys.modules)\n"
            "from rldk.core.store import polars_schema\npolars_schema()\n"
            "print(heavy, 'pandas' in sys.modules, 'scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[] False False"


@pytest.mark.parametrize("check_rows, groups", [(None, 8), (0, 8), (0, 0)])
def test_catalog_matches_the_per_run_queries(tmp_path, monkeypatch, check_rows, groups):
    """One catalog scan answers each run's index and facts exactly as the per-run
    queries do: ranks summed, null steps and text values counted as they count them;
    also when files without null values are scanned apart (check_rows 0: every file
    is checked), those of one run, kind and rank grouped by name alone (unless there
    are more such groups than ``groups``), and their rows merged with the others'."""
    from rldk.analyzers import _catalog

    if check_rows is not None:
        monkeypatch.setattr(_catalog, "NUMERIC_CHECK_ROWS", check_rows)
    monkeypatch.setattr(_catalog, "CONSTANT_GROUPS", groups)

    path = tmp_path / "store"
    for rank in (0, 1):
        with EventWriter(path, "multi", rank=rank, capture_env=False) as w:
            for s in range(5):
                w.log(s + rank, {"loss": 1.0 / (s + 1), "note": "text" if s == 2 else float(s)})
    with EventWriter(path, "single", capture_env=False, seed=3) as w:
        w.log(None, {"loss": 0.5})
        w.log(1, {"loss": 0.4, "late": 2.0})
        w.log_samples(1, ["p"], ["r"], [1.0])
    _metrics_only_file(path / "single.r0.000009.parquet", "single", [(1, "loss", 0.3), (7, "kl", 0.1)])
    store = open_store(path)
    _series.clear_cache()
    expected = {r: (_series.run_index(_series.Source(store, r)), _series.run_facts(_series.Source(store, r)))
                for r in store.run_ids}
    _series.clear_cache()
    catalog = _catalog.warm(store)
    assert bool(_catalog._numeric_files(store)) == (check_rows == 0)
    constant = _catalog._constant_groups(_catalog._numeric_files(store))
    assert list(constant) == ([("single", "metric", 0)] if check_rows == 0 and groups else [])
    assert {r: (_series.run_index(_series.Source(store, r)), _series.run_facts(_series.Source(store, r)))
            for r in store.run_ids} == expected
    assert catalog.kinds == frozenset(store.sql("SELECT DISTINCT kind FROM events")["kind"].to_list())
    assert catalog.ranks == {0, 1} and catalog.metric_names["multi"] == {"loss", "note"}


def test_catalog_from_summaries_equals_the_scan(tmp_path):
    """A small local store that rldk wrote is indexed from its files' run summaries and
    one read of each run: the same catalog, per-run index, facts and series as the scan
    followed by the reads, with text values, NaN, null steps, replayed and out-of-order
    steps, several segments and runs."""
    from rldk.analyzers import _catalog

    path = tmp_path / "store"
    with EventWriter(path, "a", capture_env=False, segment_rows=64) as w:
        for s in range(300):
            w.log(s, {"reward": s * 0.1, "kl": float("nan") if s % 37 == 0 else 0.01 * s,
                      "loss": "oops" if s in (0, 200) else 1.0 / (s + 1)})
        w.log(10, {"reward": 99.0})
        w.log(3, {"late": 1.0})
        w.log(None, {"unstepped": 1.0})
        w.log_samples(7, ["p"], ["r"], [1.0])
    with EventWriter(path, "b", capture_env=False) as w:
        for s in range(0, 90, 3):
            w.log(s, {"reward": -s, "entropy": float("inf") if s == 30 else 1.0})

    def indexed(catalog_of):
        _series.clear_cache()
        store = open_store(path)
        catalog = catalog_of(store)
        runs = {}
        for run_id in store.run_ids:
            source = _series.Source(store, run_id)
            index = _series.run_index(source)
            series = _series.load_series(source, list(index))
            runs[run_id] = (index, _series.run_facts(source),
                            {n: (s.steps.tolist(), s.values.tobytes(), s.duplicates, s.non_numeric,
                                 s.first_non_numeric) for n, s in series.items()})
        return catalog, runs

    assert _catalog._from_summaries(open_store(path)) is not None
    assert indexed(_catalog._from_summaries) == indexed(_catalog._scanned)


def test_catalog_scans_what_summaries_cannot_answer(tmp_path):
    """Several ranks in a run, or a file without a run summary: the aggregate scan."""
    from rldk.analyzers import _catalog

    for rank in (0, 1):
        with EventWriter(tmp_path / "ranks", "r", rank=rank, capture_env=False) as w:
            w.log(0, {"loss": 1.0})
    assert _catalog._from_summaries(open_store(tmp_path / "ranks")) is None
    with EventWriter(tmp_path / "foreign", "f", capture_env=False) as w:
        w.log(0, {"loss": 1.0})
    _metrics_only_file(tmp_path / "foreign" / "f.extra.parquet", "f", [(1, "loss", 0.5)])
    assert _catalog._from_summaries(open_store(tmp_path / "foreign")) is None


def _metrics_only_file(path, run_id: str, rows) -> None:
    """One event file of metric rows ``(step, name, value)``, no value null."""
    from rldk.schemas import SCHEMA_VERSION, arrow_schema

    n = len(rows)
    schema = arrow_schema().with_metadata({"rldk.schema_version": str(SCHEMA_VERSION)})
    columns = {"run_id": [run_id] * n, "rank": [0] * n, "seq": list(range(100, 100 + n)),
               "step": [r[0] for r in rows], "wall_time": [1_700_000_000_000] * n, "kind": ["metric"] * n,
               "name": [r[1] for r in rows], "value": [r[2] for r in rows]}
    pq.write_table(pa.table({f.name: pa.array(columns.get(f.name, [None] * n), f.type) for f in schema},
                            schema=schema), path)


def test_analyze_runs_no_per_run_index_query(three_runs, tmp_path, monkeypatch):
    """``rldk analyze`` indexes every run with the catalog's one scan, not a query per run."""
    _series.clear_cache()
    queries = []
    query = _series._query
    monkeypatch.setattr(_series, "_query", lambda source, sql, **kw: queries.append(sql) or query(source, sql, **kw))
    analyze(three_runs, baseline="a", out_dir=tmp_path / "cards", plots=False)
    assert _series.INDEX_SQL not in queries and _series.KINDS_SQL not in queries


def test_a_metrics_only_file_is_read_without_a_filter_to_the_same_series(tmp_path, monkeypatch):
    """A large file whose statistics show only one run's metrics with steps is scanned
    without the row filter (``_series._only_metrics``); the series are the same."""
    path = tmp_path / "store"
    with EventWriter(path, "r", capture_env=False) as w:
        w.log(0, {"loss": 1.0, "kl": 0.5})
    _metrics_only_file(path / "r.r0.000009.parquet", "r", [(s, n, s * 0.1) for s in range(1, 50)
                                                           for n in ("loss", "kl")])
    store = open_store(path)
    plain = [f for f in store.files if _series._only_metrics(store, f, "r")]
    assert plain == [] and _series.PLAIN_ROWS > 1_000             # small files: always filtered
    loaded = {}
    for rows in (10**9, 0):
        monkeypatch.setattr(_series, "PLAIN_ROWS", rows)
        _series.clear_cache()
        loaded[rows] = _series._read_whole(_series.Source(store, "r"), ["kl", "loss"])
    assert [f.endswith("000009.parquet") for f in store.files if _series._only_metrics(store, f, "r")] == [True]
    for name in ("kl", "loss"):
        np.testing.assert_array_equal(loaded[0][name].steps, loaded[10**9][name].steps)
        np.testing.assert_array_equal(loaded[0][name].values, loaded[10**9][name].values)
    assert loaded[0]["loss"].steps.tolist() == list(range(50))


def test_a_small_run_read_through_duckdb_gives_the_polars_series(tmp_path, monkeypatch):
    """Runs of at most ``DUCKDB_ROWS`` rows are read through DuckDB (no Polars import); the
    series equal those of the Polars read field by field: ranks, text values, NaN, steps
    logged again or out of order, the wide layout and the general one."""
    path = tmp_path / "store"
    for rank in (0, 1):
        with EventWriter(path, "multi", rank=rank, capture_env=False) as w:
            for s in range(6):
                w.log(s + rank, {"loss": 1.0 / (s + 1), "note": "text" if s == 2 else float(s)})
    with EventWriter(path, "messy", capture_env=False) as w:
        for s in (0, 1, 2, 1, 4, 3):
            w.log(s, {"loss": float(s), "kl": float("nan") if s == 2 else 0.1 * s})
        w.log(5, {"late": 2.0})
    with EventWriter(path, "wide", capture_env=False) as w:
        for s in range(30):
            w.log(s, {"a": float(s), "b": -float(s), "c": s * 0.5})
    store = open_store(path)
    loaded = {}
    for rows in (-1, _series.DUCKDB_ROWS):
        monkeypatch.setattr(_series, "DUCKDB_ROWS", rows)
        _series.clear_cache()
        loaded[rows] = {r: _series.load_series(_series.Source(store, r), list(_series.run_index(
            _series.Source(store, r)))) for r in store.run_ids}
    polars, duckdb = loaded[-1], loaded[_series.DUCKDB_ROWS]
    assert {r: sorted(s) for r, s in polars.items()} == {r: sorted(s) for r, s in duckdb.items()}
    for run_id, series in polars.items():
        for name, a in series.items():
            b = duckdb[run_id][name]
            np.testing.assert_array_equal(a.steps, b.steps)
            np.testing.assert_array_equal(a.values, b.values)
            assert (a.duplicates, a.non_numeric, a.first_non_numeric) == \
                (b.duplicates, b.non_numeric, b.first_non_numeric)
    assert duckdb["multi"]["note"].non_numeric == 1 and duckdb["messy"]["loss"].duplicates == 1


def test_reading_a_small_run_imports_no_polars(three_runs):
    code = ("import sys; from rldk.analyzers import _series; from rldk.core.store import open_store; "
            f"store = open_store({str(three_runs)!r}); "
            "s = _series.load_series(_series.Source(store, 'a'), ['loss', 'kl']); "
            "print(sorted(s), 'polars' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "['kl', 'loss'] False"
