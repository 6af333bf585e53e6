"""Footers read in Python (rldk.core.parquet_footer) against pyarrow's reader: the same
columns, rows, key-value metadata and statistics, on every kind of file rldk meets."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rldk.core import files, parquet_footer
from rldk.core.errors import StoreError
from rldk.writer import EventWriter


def _same(path) -> None:
    ours = parquet_footer.file_meta(path)
    theirs = parquet_footer.file_meta(str(path), arrow=True)
    assert isinstance(theirs, parquet_footer.ArrowMeta)
    assert (ours.names, ours.rows, ours.kv) == (theirs.names, theirs.rows, theirs.kv), path
    for column in ours.names:
        assert ours.column_stats(column) == theirs.column_stats(column), (path, column)


def _tables():
    n = 5000
    yield "plain", pa.table({"run_id": ["a"] * n, "step": list(range(n)), "value": [i / 7 for i in range(n)]}), {}
    yield "nulls and text", pa.table({"name": ["x", None, "ü"] * 10, "v": [1.0, None, float("nan")] * 10}), {}
    yield "row groups", pa.table({"run_id": [f"r{i // 100}" for i in range(1000)], "rank": list(range(1000))}), \
        {"row_group_size": 100}
    yield "no statistics", pa.table({"run_id": ["a", "b"], "x": [1, 2]}), {"write_statistics": False}
    yield "some statistics", pa.table({"run_id": ["a", "b"], "x": [1, 2]}), {"write_statistics": ["x"]}
    yield "unsigned", pa.table({"u32": pa.array([0, 2**32 - 1], pa.uint32()),
                                "u64": pa.array([1, 2**64 - 1], pa.uint64()),
                                "u8": pa.array([0, 255], pa.uint8()), "i8": pa.array([-5, 5], pa.int8())}), {}
    yield "nested", pa.table({"l": [[1, 2], None, []], "s": [{"a": 1, "b": "x"}, None, {"a": 3, "b": None}],
                              "m": pa.array([[("k", 1)], None, []], pa.map_(pa.string(), pa.int64()))}), {}
    yield "temporal", pa.table({"t": pa.array([dt.datetime(2026, 1, 1), None], pa.timestamp("ms")),
                                "d": pa.array([dt.date(2026, 1, 1), dt.date(2020, 5, 1)]),
                                "dec": pa.array([1, 2], pa.decimal128(10, 2))}), {}
    yield "dictionary", pa.table({"kind": pa.array(["metric"] * 50 + ["run"]).dictionary_encode(),
                                  "b": [True, False] * 25 + [None], "f": pa.array([1.5] * 51, pa.float32()),
                                  "bin": [b"\x00\xff"] * 51}), {}
    yield "empty", pa.table({"run_id": pa.array([], pa.string())}), {}
    yield "no columns", pa.table({}), {}
    yield "big metadata", pa.table({"x": [1]}).replace_schema_metadata({"rldk.summary": "y" * 100_000, "k": ""}), {}
    yield "v1 format", pa.table({"run_id": ["a", "b"], "x": [1.0, 2.0]}), {"version": "1.0"}
    yield "page index", pa.table({"run_id": ["a"] * 100, "x": list(range(100))}), {"write_page_index": True}


@pytest.mark.parametrize("case", [c[0] for c in _tables()])
def test_python_footer_equals_pyarrows(tmp_path, case):
    name, table, options = next(c for c in _tables() if c[0] == case)
    path = tmp_path / "f.parquet"
    pq.write_table(table, path, **options)
    _same(path)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_rldk_files_and_pyarrows_own_test_files(tmp_path):
    with EventWriter(tmp_path / "store", "run-1", capture_env=False) as w:
        for step in range(200):
            w.log(step, {"loss": 1.0 / (step + 1), "note": "text" if step % 50 == 0 else 0.5})
            if step % 20 == 0:
                w.log_rng(step)
                with w.span("rollout", step):
                    pass
    written = sorted((tmp_path / "store").rglob("*.parquet"))
    assert written
    bundled = sorted((Path(pa.__file__).parent / "tests" / "data" / "parquet").glob("*.parquet"))
    for path in written + bundled:
        try:
            parquet_footer._pyarrow_metadata(str(path))
        except Exception:                     # a file pyarrow itself refuses (a test of its errors)
            continue
        _same(path)


def test_a_store_reads_the_same_footers_either_way(tmp_path):
    with EventWriter(tmp_path / "s", "a", capture_env=False) as w:
        for step in range(50):
            w.log(step, {"loss": float(step)})
    paths = [str(p) for p in sorted((tmp_path / "s").rglob("*.parquet"))]
    assert [files.read_footer(p) for p in paths] == [files.read_footer(p, through_arrow=True) for p in paths]
    assert files.read_footer(paths[0]).exact_runs == {"a"}


@pytest.mark.parametrize("content", [b"", b"PAR1", b"not parquet at all, just text", b"PAR1" + b"\x00" * 20 + b"PAR1"])
def test_junk_is_a_one_line_store_error(tmp_path, content):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(content)
    with pytest.raises(StoreError, match=r"junk\.parquet: not a readable Parquet file .* move it out of the store"):
        files.read_footer(str(junk))
