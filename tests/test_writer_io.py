"""The writer under concurrent readers, failing disks, several ranks, and round trips."""
from __future__ import annotations

import errno
import math
import struct
import subprocess
import sys
import threading
import time
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rldk.core.segments as segments
import rldk.writer._commit as writer_module
from rldk.core.errors import StoreError
from rldk.core.store import open_store
from rldk.writer import EventWriter, RldkWarning


def test_reader_sees_only_complete_segments_while_writer_appends(tmp_path):
    stop = threading.Event()
    seen, errors = [], []

    def read_loop():
        while not stop.is_set():
            try:
                store = open_store(tmp_path)
                steps = store.sql("SELECT step FROM metrics WHERE name = 'x' ORDER BY step")["step"].to_list()
            except StoreError:
                continue                      # nothing written yet
            except Exception as exc:          # a partial file would land here
                errors.append(exc)
                return
            seen.append(steps)

    reader = threading.Thread(target=read_loop)
    with EventWriter(tmp_path, "live", flush_secs=0.01, capture_env=False, compact_on_close=False) as w:
        reader.start()
        for step in range(3000):
            w.log(step, x=float(step))
            if step % 100 == 99:
                w.flush()
                looks, deadline = len(seen), time.monotonic() + 2.0
                while len(seen) == looks and time.monotonic() < deadline:
                    time.sleep(0.005)      # the reader looks between flushes, however loaded the machine
    stop.set()
    reader.join()
    assert not errors
    assert len(seen) > 3
    for steps in seen:                         # always a complete prefix of whole flushes
        assert steps == list(range(len(steps)))


def _fail_writes(monkeypatch, times):
    """Make the next ``times`` segment writes fail with ENOSPC."""
    real = segments.write_segment
    calls = {"n": 0}

    def failing(table, directory, name, *options):
        calls["n"] += 1
        if calls["n"] <= times:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, directory, name, *options)

    monkeypatch.setattr(writer_module, "write_segment", failing)
    return calls


def test_disk_full_warns_keeps_events_and_recovers(tmp_path, monkeypatch):
    w = EventWriter(tmp_path, "full", flush_secs=3600, capture_env=False)
    calls = _fail_writes(monkeypatch, times=2)
    with pytest.warns(RldkWarning, match="cannot write to .*No space left on device.*kept in memory"):
        for step in range(10):
            w.log(step, x=float(step))
        assert w.flush(timeout=10) is False    # does not hang, and does not claim success
        w.log(10, x=10.0)
        assert w.flush(timeout=10) is False
        w.log(11, x=11.0)
        assert w.flush(timeout=10) is True     # the disk has room again: everything is written
        assert w.close() is True
    assert calls["n"] >= 3 and w.stats["write_errors"] == 2 and w.stats["dropped_events"] == 0
    assert open_store(tmp_path).run("full").metric("x")["step"].to_list() == list(range(12))


def test_disk_full_for_too_long_drops_oldest_and_counts(tmp_path, monkeypatch):
    w = EventWriter(tmp_path, "full", flush_secs=3600, capture_env=False, max_buffer_bytes=1)
    _fail_writes(monkeypatch, times=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(5):
            w.log(step, x=float(step))
        w.flush(timeout=10)
        w.log(5, x=5.0)
        w.close()
    assert any("dropped the oldest buffered events" in str(c.message) for c in caught)
    assert w.stats["dropped_events"] == 5
    run = open_store(tmp_path).run("full")
    assert run.metric("x")["step"].to_list() == [5]
    assert run.status == "complete"


def test_ranks_write_side_by_side(tmp_path):
    writers = [EventWriter(tmp_path, "ddp", rank=r, capture_env=False) for r in (0, 1)]
    for step in range(5):
        for r, w in enumerate(writers):
            w.log(step, loss=float(10 * r + step))
    for w in writers:
        w.close()
    store = open_store(tmp_path)
    assert store.run_ids == ["ddp"]
    assert store.sql("SELECT list_sort(list_distinct(list(rank))) FROM metrics")[0, 0].to_list() == [0, 1]
    run = store.run("ddp")
    assert run.metric("loss")["value"].to_list() == [0.0, 1.0, 2.0, 3.0, 4.0]          # lowest rank
    assert run.metric("loss", rank=1)["value"].to_list() == [10.0, 11.0, 12.0, 13.0, 14.0]


def test_resumed_run_appends_a_session_and_later_values_win(tmp_path):
    with EventWriter(tmp_path, "resume", capture_env=False) as w:
        for step in range(10):
            w.log(step, x=float(step))
    with EventWriter(tmp_path, "resume", capture_env=False) as w:        # restart from step 5
        for step in range(5, 12):
            w.log(step, x=100.0 + step)
    run = open_store(tmp_path).run("resume")
    frame = run.metric("x")
    assert frame["step"].to_list() == list(range(12))
    assert frame["value"].to_list() == [float(s) for s in range(5)] + [100.0 + s for s in range(5, 12)]
    assert len(open_store(tmp_path).files) == 2          # one merged file per session


def test_many_small_flushes_are_merged_at_close(tmp_path):
    with EventWriter(tmp_path, "small", capture_env=False) as w:
        for step in range(200):
            w.log(step, x=float(step))
            if step % 10 == 9:
                w.flush()
    files = open_store(tmp_path).files
    assert len(files) == 1          # 21 small segments (start event + 20 flushes) merged
    assert open_store(tmp_path).run("small").metric("x").height == 200


def test_tight_loop_memory_is_bounded_by_backpressure(tmp_path):
    with EventWriter(tmp_path, "tight", capture_env=False) as w:
        for step in range(60_000):
            w.log(step, a=1.0, b=2.0, c=3.0, d=4.0, e=5.0, f=6.0, g=7.0, h=8.0, i=9.0, j=10.0)
            assert len(w._queue) <= w._max_calls + w._wake_calls + 1
    assert open_store(tmp_path).sql("SELECT count(*) FROM metrics")[0, 0] == 600_000


finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=64)
value_strategy = st.one_of(finite_or_not, st.integers(min_value=-(2**63), max_value=2**63 - 1),
                           st.booleans())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(st.tuples(st.integers(0, 50),
                                st.dictionaries(st.sampled_from(["a", "b", "objective/kl", "λ"]),
                                                value_strategy, min_size=1, max_size=4)),
                      min_size=1, max_size=40),
       flush_points=st.sets(st.integers(0, 40), max_size=5))
def test_whatever_is_logged_reads_back_exactly(tmp_path_factory, calls, flush_points):
    store_dir = tmp_path_factory.mktemp("rt")
    with EventWriter(store_dir, "rt", flush_secs=3600, capture_env=False) as w:
        for i, (step, values) in enumerate(calls):
            w.log(step, values)
            if i in flush_points:
                w.flush()
    rows = open_store(store_dir).sql(
        "SELECT step, name, value, ivalue FROM metrics ORDER BY seq, name").rows()
    expected = sorted(((i, step, name, v) for i, (step, values) in enumerate(calls)
                       for name, v in values.items()), key=lambda r: (r[0], r[2]))
    assert len(rows) == len(expected)
    for (step, name, value, ivalue), (_, exp_step, exp_name, v) in zip(rows, expected):
        assert (step, name) == (exp_step, exp_name)
        if isinstance(v, float):
            assert struct.pack("<d", value) == struct.pack("<d", v) and ivalue is None
        else:
            assert ivalue == int(v) and value == float(v)


def test_import_rldk_is_light():
    code = ("import sys, rldk, rldk.cli\n"
            "heavy = [m for m in ('torch', 'polars', 'duckdb', 'transformers', 'matplotlib', 'pyarrow')"
            " if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_nan_counting_does_not_confuse_names(tmp_path):
    with EventWriter(tmp_path, "n", capture_env=False) as w:
        for step in range(3):
            w.log(step, a=1.0, b=math.nan if step == 2 else 0.0)
    assert w.counters.nonfinite == {"b": 1}
