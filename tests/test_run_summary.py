"""Run summaries in file footers (``rldk.core.run_summary``): ``Store.summary`` (and its
rows as dicts, ``Store.summary_rows``) read from the footers equals the ``RUNS_SQL`` scan of the rows, for segmented, multi-rank,
strided, compacted, failed, unfinished and imported runs; stores it cannot cover
fall back to the scan."""
from __future__ import annotations

import json
import random

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from rldk.converters import ingest
from rldk.core import run_summary
from rldk.core.compaction import compact
from rldk.core.store import RUNS_SQL, open_store
from rldk.writer import EventWriter


def assert_same_as_scan(store, rescan=frozenset()):
    """``Store.summary()`` equals the scan; the footers leave ``rescan`` to it (None: all)."""
    _frame, left = run_summary.combine(store.footers[f] for f in store.files)
    assert left == (None if rescan is None else set(rescan))
    scan = store.sql(RUNS_SQL)
    assert_frame_equal(store.summary(), scan)
    # the same rows without Polars (what a small store's HTML report reads)
    assert run_summary.SUMMARY_COLUMNS == tuple(scan.columns)
    assert store.summary_rows() == scan.to_dicts()


def write(path, run_id, steps, rank=None, status="complete", close=True, **options):
    w = EventWriter(path, run_id, rank=rank, capture_env=False, compact_on_close=False,
                    segment_rows=options.pop("segment_rows", 9), **options)
    for s in steps:
        w.log(s, loss=float(s), **({"kl": 0.5} if s % 2 else {}))
    w.flush()
    if close:
        w.close(status)


def test_segmented_strided_and_unfinished_runs(tmp_path):
    write(tmp_path, "a-plain", range(40))
    write(tmp_path, "b-strided", range(0, 300, 7))
    write(tmp_path, "c-unfinished", [0, 1, 2, 10, 11, 50], close=False)
    write(tmp_path, "d-failed", range(12), status="failed")
    write(tmp_path, "e-killed", range(12), status="terminated")
    store = open_store(tmp_path)
    assert len(store.files) > 10
    assert_same_as_scan(store)
    rows = {r["run_id"]: r for r in store.summary().iter_rows(named=True)}
    assert rows["b-strided"]["steps"] == 43
    assert [rows[r]["status"] for r in ("c-unfinished", "d-failed", "e-killed")] == ["incomplete", "failed", "killed"]


@pytest.mark.parametrize("pure_python", ["0", "1"])
def test_a_writers_batches_carry_the_summary_of_their_rows(tmp_path, monkeypatch, pure_python):
    """The writer summarises its all-float batches as it encodes them (no pass over the
    rows when a segment is written), on the compiled and the Python path: each footer
    says what the summary of the file's rows says, with several name sets, repeated and
    backward steps, text values and spans mixed in."""
    monkeypatch.setenv("RLDK_PURE_PYTHON", pure_python)
    w = EventWriter(tmp_path, "carried", capture_env=False, compact_on_close=False)
    for s in [*range(30), 12, 12, *range(30, 60)]:
        w.log(s, loss=float(s), reward=0.5)
        if s % 3 == 0:
            w.log(s, kl=0.1)
        if s == 20:
            w.log(s, note="text")
            with w.span("rollout", step=s):
                pass
        if s in (25, 45):
            w.flush()                              # segments end inside the run
    w.close()
    files = sorted(tmp_path.glob("*.parquet"))
    assert len(files) >= 3
    for f in files:
        footer = json.loads(pq.ParquetFile(f).metadata.metadata[run_summary.KEY])
        assert _meaning(footer) == _meaning(json.loads(run_summary.metadata(pq.read_table(f))[run_summary.KEY])), f.name
    assert_same_as_scan(open_store(tmp_path))


def _meaning(footer: dict) -> dict:
    """A footer summary with each run's distinct steps as the set they stand for (two
    batches' progressions, merged, may cut the same steps differently: 46-57 and 58-59)."""
    out = {}
    for run_id, summary in footer["runs"].items():
        m = summary["msteps"]
        steps = None if m["prog"] is None else {s for a, b, k in m["prog"] for s in range(a, b + 1, k)}
        out[run_id] = {**summary, "msteps": (m["n"], m["lo"], m["hi"], steps)}
    return out


def test_ranks_with_the_same_steps_count_each_step_once(tmp_path):
    for rank in (0, 1, 2):
        write(tmp_path, "multi", range(25), rank=rank)
    store = open_store(tmp_path)
    assert_same_as_scan(store)
    row = store.summary().row(0, named=True)
    assert (row["ranks"], row["steps"]) == ([0, 1, 2], 25)


def test_compacted_files_carry_the_merged_summary(tmp_path):
    write(tmp_path, "r", range(60))
    write(tmp_path, "s", range(0, 60, 3), rank=1)
    write(tmp_path, "s", range(0, 60, 2), rank=0)
    compact([tmp_path], force=True)
    store = open_store(tmp_path)
    assert len(store.files) == 2
    assert_same_as_scan(store)
    merged = json.loads(store.footers[store.files[1]].meta[run_summary.KEY])["runs"]["s"]
    assert merged["msteps"]["n"] == 40 and merged["ranks"] == [0, 1]


def test_an_imported_run_takes_its_facts_from_the_logs(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    history = [{"loss": 1.0, "step": 1}, {"loss": 0.5, "step": 2}]
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": history, "global_step": 2,
                                                           "max_steps": 5}))
    store = ingest(folder, "trl", store_dir=tmp_path / "store")
    assert_same_as_scan(open_store(store.files))
    assert store.summary()["status"].to_list() == ["incomplete"]


def test_runs_the_footers_cannot_answer_for_are_scanned(tmp_path):
    steps = sorted(random.Random(0).sample(range(5000), 2 * run_summary.MAX_PROGRESSIONS + 50))
    write(tmp_path, "irregular", steps, segment_rows=100_000)
    write(tmp_path, "irregular", steps, rank=1, segment_rows=100_000)
    write(tmp_path, "plain", range(30))
    assert_same_as_scan(open_store(tmp_path), rescan={"irregular"})
    foreign = tmp_path / "foreign"
    write(foreign, "old", range(10))
    for f in open_store(foreign).files:          # files of an older rldk: no summary
        pq.write_table(pq.read_table(f).replace_schema_metadata({}), f)
    write(foreign, "new", range(10))
    assert_same_as_scan(open_store(foreign), rescan={"old"})
    table = pq.read_table(open_store(foreign).files[0]).replace_schema_metadata({})
    pq.write_table(table, foreign / "no-stats.parquet", write_statistics=False)
    assert_same_as_scan(open_store(foreign), rescan=None)   # may hold any run: one scan


@pytest.mark.parametrize("steps, progressions", [
    ([5], [[5, 5, 1]]),
    ([0, 1, 2, 3], [[0, 3, 1]]),
    ([0, 10, 20, 21, 22], [[0, 20, 10], [20, 22, 1]]),
    ([], []),
])
def test_distinct_steps_as_progressions(steps, progressions):
    encoded = run_summary._steps(np.array(steps, dtype=np.int64))
    assert (encoded["n"], encoded["prog"]) == (len(steps), progressions)


def test_step_unions_add_disjoint_ranges_and_expand_overlapping_ones():
    a, b = (run_summary._steps(np.arange(lo, hi, dtype=np.int64)) for lo, hi in ((0, 10), (10, 20)))
    assert run_summary._union_steps([a, b])["n"] == 20
    assert run_summary._union_steps([a, a, b])["n"] == 20
    assert run_summary._union_steps([a, {**b, "lo": 5, "prog": None}]) is None


def test_a_table_of_several_runs_is_summarised_per_run(tmp_path):
    write(tmp_path, "x", range(10))
    write(tmp_path, "y", range(0, 30, 3), rank=1)
    store = open_store(tmp_path)
    both = pq.read_table(store.files).sort_by("run_id")
    alone = {r: run_summary.of_table(pq.read_table([f for f in store.files if f"/{r}." in f]))[r]
             for r in ("x", "y")}
    assert run_summary.of_table(both) == alone
    encoded = both
    for column in ("run_id", "kind", "name"):
        i = encoded.column_names.index(column)
        encoded = encoded.set_column(i, column, pc.dictionary_encode(encoded.column(column)))
    assert run_summary.of_table(encoded) == alone


def _dictionary(chunks, entries):
    import pyarrow as pa

    return pa.chunked_array([pa.DictionaryArray.from_arrays(pa.array(c, pa.int32()), pa.array(e))
                             for c, e in zip(chunks, entries)])


@pytest.mark.parametrize("chunks, entries, expected", [
    ([[0, 0, 0]], [["metric"]], ["metric"]),                          # one entry: no scan
    ([[1, 1], [0, 2, 0]], [["a", "b", "c"]] * 2, ["a", "b", "c"]),
    ([[2, 2, 2]], [["a", "b", "c"]], ["c"]),                          # entries no row uses are not values
    ([[0, None, 0]], [["a", "b"]], ["a", None]),                      # a null sorts last
])
def test_distinct_values_of_dictionary_columns(chunks, entries, expected):
    column = _dictionary(chunks, entries)
    assert run_summary.distinct(column) == expected
    assert run_summary.distinct(column.cast(column.type.value_type)) == expected


def test_unique_steps_of_an_imports_shared_and_filtered_chunks():
    import pyarrow as pa

    steps = pa.array(np.arange(10, 20, dtype=np.int64))
    filtered = steps.filter(pa.array([i % 3 == 0 for i in range(10)]))
    column = pa.chunked_array([steps, steps, filtered, steps.slice(2, 5), pa.array([25, 3, 3], pa.int64())])
    expected = np.unique(np.concatenate([c.to_numpy() for c in column.chunks]))
    assert run_summary.unique_sorted(column).tolist() == expected.tolist()


def test_a_run_that_an_error_ended_is_a_warning_one_stopped_from_outside_is_info(tmp_path):
    """A native run closed as failed (an exception ended it) is a ``run_status`` warning at
    its last step; one closed as killed (a signal: Ctrl-C, a scheduler's SIGTERM) is info,
    as a run killed hard (no end event) is: stopped from outside, not by an error in
    training, and it says which signal. An imported run says what its logs show: a real
    wandb run file of the tuning half whose exit record holds code 255, which wandb
    records for a KeyboardInterrupt, ended killed (info); a complete run has none."""
    from pathlib import Path

    from rldk.analyzers.suite import analyze

    write(tmp_path / "s", "d-failed", range(12), status="failed")
    write(tmp_path / "s", "e-killed", range(12), status="terminated")
    write(tmp_path / "s", "f-done", range(12))
    w = EventWriter(tmp_path / "s", "g-interrupted", capture_env=False, compact_on_close=False)
    for step in range(12):
        w.log(step, loss=float(step))
    w.close("killed", detail={"signal": "SIGINT"})
    out = analyze(open_store(tmp_path / "s").files, out_dir=tmp_path / "cards", plots=False)
    found = {f.run_id: f for r in out.reports for f in r.findings if f.code == "run_status"}
    assert set(found) == {"d-failed", "e-killed", "g-interrupted"}
    assert (found["d-failed"].severity, found["d-failed"].title, found["d-failed"].steps) == (
        "warning", "run d-failed ended failed", (11, 11))
    assert (found["e-killed"].severity, found["e-killed"].title) == (
        "info", "run e-killed ended killed: stopped from outside, not by an error")
    assert found["g-interrupted"].severity == "info"
    assert found["g-interrupted"].title.startswith("run g-interrupted ended killed (signal SIGINT)")
    pytest.importorskip("wandb")
    real = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "real"
    store = ingest(str(real / "mappowb_rspo_mpe_spread_policy_restart" / "run-2opmmmgz.wandb"), adapter="wandb")
    out = analyze(store.files, out_dir=tmp_path / "wandb", plots=False)
    (f,) = [f for r in out.reports for f in r.findings if f.code == "run_status"]
    assert f.severity == "info"
    assert "ended killed (wandb exit record: exit_code 255, a KeyboardInterrupt (Ctrl-C))" in f.title, f.title
    assert f.evidence == {"status": "killed",
                          "evidence": "wandb exit record: exit_code 255, a KeyboardInterrupt (Ctrl-C)"}
