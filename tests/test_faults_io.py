"""Disk full and unwritable stores: every write path reports failure, never success."""
from __future__ import annotations

import errno
import json
import os
import warnings

import pytest
from click.testing import CliRunner

import rldk.core.segments as segments
import rldk.writer._commit as writer_module
from rldk.cli import main
from rldk.converters import ConvertError, convert_path
from rldk.core.compaction import compact
from rldk.core.errors import StoreError
from rldk.writer import EventWriter, RldkWarning


def _disk_full(monkeypatch, target=writer_module, name="write_segment"):
    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(target, name, full)


def test_flush_is_false_and_close_counts_what_a_full_disk_lost(tmp_path, monkeypatch):
    w = EventWriter(tmp_path, "full", flush_secs=3600, capture_env=False)
    _disk_full(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(10):
            w.log(step, x=float(step))
        assert w.flush(timeout=10) is False
        assert w.close() is False                      # the disk stayed full
    assert w.stats["unwritten_events"] == 11           # 10 values and the end event
    assert any("11 events of run 'full' could not be written" in str(c.message) for c in caught)
    assert w.flush() is False and w.ok is False


def test_dropped_events_counts_events_not_batches(tmp_path, monkeypatch):
    w = EventWriter(tmp_path, "drop", flush_secs=3600, capture_env=False, max_buffer_bytes=1)
    _disk_full(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(7):
            w.log(step, a=float(step), b=float(step))
        w.flush(timeout=10)
        w.close()
    assert w.stats["dropped_events"] == 15                # 7 x 2 values and the end event


def test_import_on_a_full_disk_fails_and_leaves_nothing(tmp_path, monkeypatch):
    src = tmp_path / "a.jsonl"
    src.write_text('{"step": 0, "x": 1}\n{"step": 1, "x": 2}\n')
    out = tmp_path / "imp"
    _disk_full(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RldkWarning)
        with pytest.raises(ConvertError, match=r"could not write run 'a' \(5 events not written"):
            convert_path(src, "jsonl", out)
        assert not [f for f in os.listdir(out) if f.endswith(".parquet")]
        result = CliRunner().invoke(main, ["import", "jsonl", str(src), "--out-dir", str(out)])
    assert result.exit_code == 1
    assert "could not write run 'a'" in result.output and "Traceback" not in result.output


def test_compact_on_a_full_disk_is_one_error_and_keeps_every_event(tmp_path, monkeypatch):
    with EventWriter(tmp_path, "r", flush_secs=3600, capture_env=False, compact_on_close=False) as w:
        for step in range(20):
            w.log(step, x=float(step))
            w.flush()
    before = sorted(os.listdir(tmp_path))
    real_open = open

    def full_open(path, mode="r", *args, **kwargs):
        if "w" in mode and str(path).endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_open)
    with pytest.raises(StoreError, match=r"cannot compact .*: No space left on device; free some space"):
        compact(tmp_path, force=True)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == before


def test_write_file_atomic_reports_a_full_disk(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    segments.write_file_atomic(target, json.dumps({"ok": 1}))
    assert json.loads(target.read_text()) == {"ok": 1}
    monkeypatch.setattr(segments.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(StoreError, match=r"cannot write .*report.json: No space left on device"):
        segments.write_file_atomic(target, "x" * 100)
    assert json.loads(target.read_text()) == {"ok": 1}        # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_two_live_writers_of_one_run_and_rank_warn(tmp_path):
    first = EventWriter(tmp_path, "same", capture_env=False)
    with pytest.warns(RldkWarning, match="another live process is writing run 'same' rank 0"):
        second = EventWriter(tmp_path, "same", capture_env=False)
    second.close()
    first.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RldkWarning)
        EventWriter(tmp_path, "same", capture_env=False).close()    # sequential sessions: no warning
