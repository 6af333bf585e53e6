"""A writer killed at any instant leaves a store that every reader opens, with every
event up to its last completed flush, each exactly once."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from rldk.core.store import open_store

CHILD = r"""
import sys, rldk.writer as w
store, run_id, mode = sys.argv[1], sys.argv[2], sys.argv[3]
w.init(store, run_id=run_id, flush_secs=3600, capture_env=False)
print("ready", flush=True)
step = 0
for batch in range(10**6):
    for _ in range(50):
        w.log(step, a=float(step), b=step * 0.5, n=step)
        step += 1
    w.flush()
    print(step - 1, flush=True)              # everything up to here is on disk
    if mode == "close" and batch == 11:      # 12 small segments: close() merges them
        w.close()
        print("closed", flush=True)
        break
"""


def _run_and_kill(store, run_id, mode, delay):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(store), run_id, mode],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"      # imports done, however loaded the machine
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    flushed = [int(line) for line in out.split() if line.isdigit()]
    return flushed[-1] if flushed else None, "closed" in out


def _check_every_file_reads(store):
    files = [os.path.join(store, f) for f in os.listdir(store) if f.endswith(".parquet")]
    assert not any(os.path.basename(f).startswith(".") for f in files)
    for f in files:
        pq.read_table(f)
        duckdb.sql(f"SELECT count(*) FROM read_parquet('{f}')").fetchall()
        pl.read_parquet(f)
    return files


@pytest.mark.parametrize("mode", ["log", "close"])
def test_sigkill_at_random_points_loses_nothing_flushed(tmp_path, mode):
    rng = random.Random(1234 if mode == "log" else 99)
    kills = 12 if mode == "log" else 10
    expected = {}
    for i in range(kills):
        run_id = f"crash-{i}"
        # after init: kills land before the first flush, between flushes, during writes and,
        # in "close" mode, during the final merge
        last, closed = _run_and_kill(tmp_path, run_id, mode, rng.uniform(0.0, 0.5))
        expected[run_id] = last
    files = _check_every_file_reads(tmp_path)
    assert files
    store = open_store(tmp_path)
    counts = dict(store.sql("SELECT run_id, count(*) FROM metrics GROUP BY 1").rows())
    for run_id, last in expected.items():
        if last is None:          # killed before its first flush: at most the start event
            continue
        frame = store.sql("SELECT step, value FROM metrics WHERE run_id = ? AND name = 'a' "
                          "ORDER BY step", [run_id])
        steps = frame["step"].to_list()
        assert steps[: last + 1] == list(range(last + 1)), run_id           # nothing flushed is lost
        assert frame["value"].to_list()[: last + 1] == [float(s) for s in range(last + 1)]
        assert len(steps) == len(set(steps)), run_id                          # nothing counted twice
        assert counts[run_id] == 3 * len(steps)
    assert sum(v is not None for v in expected.values()) >= kills // 2       # the kills hit live runs


def test_kill_between_merge_and_delete_counts_each_event_once(tmp_path):
    """Simulate the one crash window of a merge: merged file renamed in, inputs not yet deleted."""
    import shutil

    from rldk.core.segments import merge_segments
    from rldk.writer import EventWriter

    with EventWriter(tmp_path, "r", flush_secs=3600, capture_env=False, compact_on_close=False) as w:
        for step in range(30):
            w.log(step, x=float(step))
            if step % 10 == 9:
                w.flush()
    names = sorted(f for f in os.listdir(tmp_path) if f.endswith(".parquet"))
    backup = tmp_path / "backup"
    backup.mkdir()
    for n in names:
        shutil.copy(tmp_path / n, backup / n)
    merge_segments(tmp_path, names, "r.merged.parquet")
    for n in names:                                   # the inputs "survive" the crash
        shutil.copy(backup / n, tmp_path / n)
    shutil.rmtree(backup)
    store = open_store(tmp_path)
    assert store.files == [str(tmp_path / "r.merged.parquet")]
    assert store.sql("SELECT count(*) FROM metrics")[0, 0] == 30


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_close_the_run_as_killed(tmp_path, signame):
    code = ("import rldk.writer as w, time, sys\n"
            f"w.init({str(tmp_path)!r}, run_id='term', flush_secs=3600, capture_env=False)\n"
            "for s in range(5000): w.log(s, x=float(s))\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    number = getattr(signal, signame)
    proc.send_signal(number)
    proc.wait(30)
    assert proc.returncode == -number                    # still dies of the signal, as it would have
    run = open_store(tmp_path).run("term")
    assert run.status == "killed"
    assert run._run_event("end", last=True)["signal"] == signame
    assert run.metric("x")["step"].to_list() == list(range(5000))     # nothing lost (5,000 of 5,000)


SWALLOWED = r"""
import multiprocessing as mp, signal, sys, threading, time
import rldk.writer as w
w.init(sys.argv[1], run_id="swallowed", flush_secs=3600, capture_env=False)
for s in range(100): w.log(s, x=float(s))
lock = mp.get_context("fork").Lock(); lock.acquire()
def elsewhere():                  # the signal lands on this thread: Python's handler waits for
    time.sleep(0.3)               # the main thread, which sits in sem_wait and never wakes
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
threading.Thread(target=elsewhere, daemon=True).start()
lock.acquire()
"""


def test_a_sigterm_python_leaves_pending_is_delivered_again(tmp_path):
    out = subprocess.run([sys.executable, "-c", SWALLOWED, str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == -signal.SIGTERM, out.stderr[-2000:]
    run = open_store(tmp_path).run("swallowed")
    assert run.status == "killed"
    assert run.metric("x")["step"].to_list() == list(range(100))


def test_a_wakeup_fd_the_program_owns_stays_its_own(tmp_path):
    code = ("import os, signal, rldk.writer as w\n"
            "r, fd = os.pipe(); os.set_blocking(fd, False); signal.set_wakeup_fd(fd)\n"
            f"w.init({str(tmp_path)!r}, run_id='fd', capture_env=False)\n"
            "print(signal.set_wakeup_fd(-1) == fd)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr[-2000:]


@pytest.mark.parametrize(("body", "status", "detail"), [
    ("pass", "complete", None),
    ("sys.exit(0)", "complete", None),
    ("raise ValueError('boom')", "failed", "ValueError: boom"),
    ("raise KeyboardInterrupt", "killed", "SIGINT"),
])
def test_final_status_says_how_the_process_ended(tmp_path, body, status, detail):
    code = ("import rldk.writer as w, sys\n"
            f"w.init({str(tmp_path)!r}, run_id='end', capture_env=False)\n"
            "w.log(0, x=1.0)\n" + body + "\n")
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    run = open_store(tmp_path).run("end")
    assert run.status == status
    end = run._run_event("end", last=True)
    assert detail is None or detail in (end.get("error"), end.get("signal"))
    assert run.metric("x")["step"].to_list() == [0]


def test_context_manager_records_the_exception(tmp_path):
    from rldk.writer import EventWriter

    with pytest.raises(RuntimeError), EventWriter(tmp_path, "cm", capture_env=False) as w:
        w.log(0, x=1.0)
        raise RuntimeError("diverged")
    run = open_store(tmp_path).run("cm")
    assert run.status == "failed"
    assert run._run_event("end", last=True)["error"] == "RuntimeError: diverged"
