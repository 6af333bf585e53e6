"""An import's segments encoded on worker threads (EventWriter.encode_ahead): committed
in sequence order, the same events as one thread, and a failed write falls back to it."""
from __future__ import annotations

import errno
import os
import time

import numpy as np
import pyarrow as pa
import pytest

import rldk.writer._commit as commit_module
from rldk.core import segments
from rldk.core.store import open_store
from rldk.schemas import SEGMENT_PARQUET_OPTIONS
from rldk.writer import EventWriter
from rldk.writer._limits import RldkWarning


def _table(lo: int, n: int) -> pa.Table:
    steps = np.arange(lo, lo + n, dtype=np.int64)
    return pa.table({"step": steps, "kind": pa.array(["metric"] * n), "name": pa.array(["loss"] * n),
                     "value": steps.astype(np.float64) / 7})


def _import(store, run_id: str, ahead: bool, tables: int = 12, rows: int = 1000) -> EventWriter:
    w = EventWriter(store, run_id, capture_env=False, flush_secs=3600, segment_rows=2 * rows,
                    compact_on_close=False, parquet_options=SEGMENT_PARQUET_OPTIONS)
    if ahead:
        w.encode_ahead(2)
    for i in range(tables):
        w.append_table(_table(i * rows, rows))
    w.close()
    return w


def _events(store, run_id: str) -> list:
    return open_store(store).sql(
        "SELECT seq, step, kind, name, value FROM events WHERE run_id = ? AND kind <> 'run' ORDER BY seq",
        [run_id]).rows()


def _parquet_files(store) -> list:
    return sorted(n for n in os.listdir(store) if "parquet" in n)


def test_same_events_and_files_in_order(tmp_path):
    one = _import(tmp_path / "one", "r", ahead=False)
    two = _import(tmp_path / "two", "r", ahead=True)
    assert _events(tmp_path / "two", "r") == _events(tmp_path / "one", "r")
    assert len(two.segments) == len(one.segments) > 3
    assert two.segments == sorted(two.segments)
    assert _parquet_files(tmp_path / "two") == two.segments        # no temporaries left
    assert two.ok and two.stats["segments"] == len(two.segments)


def test_a_slow_segment_holds_back_the_commits_after_it(tmp_path, monkeypatch):
    real, renames, calls = segments.write_segment, [], {"n": 0}

    def slow_first(table, directory, name, *options):
        calls["n"] += 1
        if calls["n"] == 2:          # the first after init's start event: the import's first segment
            time.sleep(0.3)
        return real(table, directory, name, *options)

    real_replace = os.replace

    def recording(src, dst):
        renames.append(os.path.basename(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(commit_module, "write_segment", slow_first)
    monkeypatch.setattr(commit_module.os, "replace", recording)
    w = _import(tmp_path, "r", ahead=True)
    committed = [n for n in renames if n in w.segments]
    assert committed == w.segments            # the start event's, then the import's, in order


@pytest.mark.parametrize("failing", [1, 2])     # the oldest in flight, or the one after it
def test_a_failed_write_falls_back_to_one_thread_and_keeps_every_event(tmp_path, monkeypatch, failing):
    real, failed = segments.write_segment, []

    def failing_once(table, directory, name, *options):
        if f".{failing:06d}." in name and not failed:
            failed.append(name)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, directory, name, *options)

    monkeypatch.setattr(commit_module, "write_segment", failing_once)
    with pytest.warns(RldkWarning, match="No space left on device"):
        w = _import(tmp_path / "two", "r", ahead=True)
    assert w.ok and w.stats["write_errors"] == 1 and w._ahead is None
    monkeypatch.setattr(commit_module, "write_segment", real)
    _import(tmp_path / "one", "r", ahead=False)
    assert _events(tmp_path / "two", "r") == _events(tmp_path / "one", "r")
    assert w.segments == sorted(w.segments)
    assert _parquet_files(tmp_path / "two") == w.segments


def test_imported_segments_read_with_live_ones_by_plain_duckdb(tmp_path, monkeypatch):
    import duckdb
    import pyarrow.parquet as pq

    from rldk.converters import base, convert_path, csvlog
    from rldk.core.parquet_footer import file_meta

    monkeypatch.setattr(csvlog, "BATCH_BYTES", 1 << 14)
    monkeypatch.setattr(base, "_IMPORT_SEGMENT_ROWS", 2000)      # several segments on two threads
    src = tmp_path / "log.csv"
    src.write_text("step,loss,reward\n" + "".join(f"{i},{i / 3},{'' if i % 4 else i}\n" for i in range(3000)))
    summary = convert_path(src, "csv", tmp_path / "store")
    with EventWriter(tmp_path / "store", "live", capture_env=False) as w:
        for step in range(50):
            w.log(step, loss=float(step))
    files = sorted((tmp_path / "store").glob("*.parquet"))
    imported = [f for f in files if f.name.startswith("log.")]
    assert len(imported) > 2 and any(f.name.startswith("live.") for f in files)
    assert len({pq.ParquetFile(f).schema.to_arrow_schema().remove_metadata() for f in files}) == 1
    assert all(b"rldk.summary" in file_meta(f).kv for f in files)
    rows = duckdb.sql(f"SELECT run_id, count(*) FROM read_parquet('{tmp_path}/store/*.parquet') "
                      "WHERE kind = 'metric' GROUP BY run_id ORDER BY run_id").fetchall()
    assert rows == [("live", 50), ("log", summary.rows)]


def test_all_null_columns_written_uncompressed_whatever_the_levels(tmp_path):
    import pyarrow.parquet as pq

    from rldk.writer._commit import _uncompressed_nulls

    w = _import(tmp_path, "r", ahead=True, tables=4)
    meta = pq.ParquetFile(tmp_path / w.segments[1]).metadata.row_group(0)
    codecs = {meta.column(i).path_in_schema: meta.column(i).compression for i in range(meta.num_columns)}
    assert codecs["text"] == codecs["attrs"] == codecs["ivalue"] == "UNCOMPRESSED"
    assert codecs["value"] == "ZSTD" and codecs["seq"] == "LZ4"
    leveled = _uncompressed_nulls({**SEGMENT_PARQUET_OPTIONS, "compression_level": {"text": 3, "value": 1}},
                                  _table(0, 10).append_column("text", pa.nulls(10, pa.string())))
    assert leveled["compression"]["text"] == "none" and leveled["compression_level"] == {"value": 1}
    assert _uncompressed_nulls({**SEGMENT_PARQUET_OPTIONS, "compression_level": 3}, _table(0, 10))["compression_level"] == 3


def test_a_live_writers_small_segments_are_written_fast_and_kept_ones_compact(tmp_path):
    """Without options of its own, a writer writes the segments close() merges (small
    ones) with SEGMENT_PARQUET_OPTIONS and those that stay as they are with the compact
    PARQUET_OPTIONS; the file the merge leaves is compact."""
    import pyarrow.parquet as pq

    def codecs(path):
        meta = pq.ParquetFile(path).metadata.row_group(0)
        return {meta.column(i).path_in_schema: meta.column(i).compression for i in range(meta.num_columns)}

    w = EventWriter(tmp_path, "r", capture_env=False, flush_secs=3600, segment_rows=400)
    for step in range(10):                     # 10 rows: a small segment
        w.log(step, {"a": step / 3})
    assert w.flush()
    for step in range(10, 410):                # 400 rows: a segment that stays
        w.log(step, {"a": step / 3})
    assert w.flush()
    small, big = (codecs(tmp_path / name) for name in w.segments[-2:])
    assert small["seq"] == "LZ4" and small["text"] == "UNCOMPRESSED"
    assert big["seq"] == big["value"] == "ZSTD"
    w.close()
    assert [r[1] for r in _events(tmp_path, "r")] == list(range(410))

    only_small = EventWriter(tmp_path / "q", "q", capture_env=False, flush_secs=3600, segment_rows=400)
    for step in range(30):                     # three small segments: close() merges them
        only_small.log(step, {"a": step / 3})
        if step % 10 == 9:
            assert only_small.flush()
    only_small.close()
    files = _parquet_files(tmp_path / "q")
    assert len(files) == 1 and codecs(tmp_path / "q" / files[0])["seq"] == "ZSTD"
    assert [r[1] for r in _events(tmp_path / "q", "q")] == list(range(30))


def test_a_segment_written_from_memory_or_streamed_is_the_same_file(tmp_path, monkeypatch):
    """Small segments are encoded in memory and written in one call, big ones stream to
    their file: the same rows, footer summary and no temporaries either way; a failed
    write leaves no file behind."""
    import pyarrow.parquet as pq

    from rldk.core import run_summary

    w = EventWriter(tmp_path / "w", "r", capture_env=False)
    for step in range(50):
        w.log(step, {"a": step / 3, "b": -step})
    w._drain()
    table = pa.concat_tables(w._pending)
    w.close()
    monkeypatch.setattr(segments, "BUFFERED_ROWS", 10 ** 9)
    segments.write_segment(table, tmp_path, "memory.parquet", SEGMENT_PARQUET_OPTIONS)
    monkeypatch.setattr(segments, "BUFFERED_ROWS", 0)
    segments.write_segment(table, tmp_path, "streamed.parquet", SEGMENT_PARQUET_OPTIONS)
    one, two = (pq.ParquetFile(tmp_path / n) for n in ("memory.parquet", "streamed.parquet"))
    assert one.read().equals(two.read()) and one.read().num_rows == 100
    assert one.metadata.metadata[run_summary.KEY] == two.metadata.metadata[run_summary.KEY]
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith("parquet") or n.endswith("tmp")) == [
        "memory.parquet", "streamed.parquet"]
    monkeypatch.setattr(segments, "BUFFERED_ROWS", 10 ** 9)
    monkeypatch.setattr(segments.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError):
        segments.write_segment(table, tmp_path, "failed.parquet", SEGMENT_PARQUET_OPTIONS)
    assert not [n for n in os.listdir(tmp_path) if n.startswith("failed") or n.endswith("tmp")]
