"""``rldk watch`` and the live monitor: incremental reading, the same findings as
``rldk analyze``, robustness to a store changing under it, and the CLI."""
from __future__ import annotations

import json
import math
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from click.testing import CliRunner

from rldk.analyzers import get
from rldk.analyzers.suite import analyze
from rldk.cli import main
from rldk.core.store import open_store
from rldk.live import LIVE_ANALYZERS, Monitor
from rldk.live.render import report, sparkline
from rldk.writer import EventWriter


def write_run(store, run_id, steps=80, nan_at=None, clipped_from=None, flush_every=20, close=True):
    """A run through the real writer: loss (NaN from ``nan_at``), a noisy reward, and a
    truncated share that jumps to 1.0 from ``clipped_from``; a segment every
    ``flush_every`` steps."""
    w = EventWriter(store, run_id, capture_env=False, flush_secs=3600)
    for step in range(1, steps + 1):
        loss = math.nan if nan_at is not None and step >= nan_at else 1.0 / step
        clipped = 1.0 if clipped_from is not None and step >= clipped_from else 0.05
        w.log(step, {"loss": loss, "reward": 0.5 + 0.1 * math.sin(step),
                     "completions/clipped_ratio": clipped})
        if step % flush_every == 0:
            w.flush()
    if close:
        w.close()
    return w


def keys(findings):
    return sorted((f.run_id, f.code, f.metric, f.steps[0] if hasattr(f, "steps") else f.onset)
                  for f in findings)


def analyze_findings(store, tmp_path):
    analysis = analyze([store], out_dir=tmp_path / "cards", plots=False,
                       analyzers=[get(n) for n in LIVE_ANALYZERS])
    return analysis.problems


# ------------------------------------------------------------ same findings
@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "child"])
def test_live_findings_equal_rldk_analyze(tmp_path, isolate):
    store = tmp_path / "store"
    monitor = Monitor(store, min_interval=0, isolate=isolate)
    seen = []
    w = EventWriter(store, "bad", capture_env=False, flush_secs=3600)
    for step in range(1, 121):
        w.log(step, {"loss": math.nan if step >= 70 else 1.0 / step, "reward": 0.5 + 0.1 * math.sin(step),
                     "completions/clipped_ratio": 1.0 if step >= 40 else 0.05})
        if step % 15 == 0:
            w.flush()
            seen += monitor.poll(force=True).findings
    w.close()
    write_run(store, "clean", steps=60)
    seen += monitor.poll(force=True).findings
    monitor.close()
    expected = analyze_findings(store, tmp_path)
    assert expected and {f.code for f in expected} >= {"nan_onset"}
    assert keys(monitor.findings()) == keys(expected)
    nan = [f for f in seen if f.code == "nan_onset"]
    assert [(f.run_id, f.onset) for f in nan] == [("bad", 70)] and nan[0].at_step <= 75


def test_rows_are_counted_once_through_compaction(tmp_path):
    store = tmp_path / "store"
    monitor = Monitor(store)
    w = write_run(store, "a", steps=200, flush_every=10, close=False)
    monitor.poll()
    w.close()                                   # merges its small segments into one file
    update = monitor.poll()
    total = open_store(store).sql("SELECT count(*) AS n FROM events WHERE kind IN ('metric', 'run')")["n"][0]
    assert monitor.runs["a"].rows == total
    assert monitor.runs["a"].status == "complete" and update.warnings == []
    assert len(monitor.tailer.run_files("a")) == 1


def test_whole_run_compaction_replaces_read_segments_without_reading(tmp_path):
    store = tmp_path / "store"
    write_run(store, "a", steps=40, flush_every=10)
    write_run(store, "a", steps=40, flush_every=10)         # a second session of the run
    monitor = Monitor(store)
    monitor.poll()
    rows = monitor.runs["a"].rows
    assert CliRunner().invoke(main, ["compact", str(store)]).exit_code == 0
    update = monitor.poll()
    assert update.changed == set() and update.warnings == [] and monitor.runs["a"].rows == rows


# ------------------------------------------------------------ robustness
def test_a_junk_file_is_one_warning_and_a_text_file_is_ignored(tmp_path):
    store = tmp_path / "store"
    write_run(store, "a", steps=20)
    (store / "junk.parquet").write_bytes(b"not parquet at all")
    (store / "notes.txt").write_text("hello")
    (store / ".a.r0.x.000009.parquet.123.tmp").write_bytes(b"PAR1 half a segment")
    monitor = Monitor(store)
    first = monitor.poll()
    path = str(store / "junk.parquet")
    assert len(first.warnings) == 1
    assert first.warnings[0].startswith(f"{path}: not a readable rldk event file (")
    assert first.warnings[0].endswith("); skipped (move it out of the store)")
    assert monitor.poll().warnings == [] and set(monitor.runs) == {"a"}


def test_truncated_and_deleted_files_reload_or_remove_the_run(tmp_path):
    store = tmp_path / "store"
    write_run(store, "a", steps=60, flush_every=20, close=False)._closed = True   # keep segments
    write_run(store, "b", steps=20)
    monitor = Monitor(store)
    monitor.poll()
    files = monitor.tailer.run_files("a")
    assert len(files) >= 3
    with open(files[-1], "r+b") as f:
        f.truncate(os.path.getsize(files[-1]) // 2)
    update = monitor.poll()
    assert "a" in update.changed and any("changed after it was committed" in m for m in update.warnings)
    assert monitor.runs["a"].rows > 0
    for f in monitor.tailer.run_files("a") + [files[-1]]:
        os.unlink(f)
    update = monitor.poll()
    assert update.removed == {"a"} and set(monitor.runs) == {"b"}


def test_stalled_runs_and_sparklines(tmp_path):
    store = tmp_path / "store"
    write_run(store, "done", steps=20)
    w = write_run(store, "live", steps=20, close=False)
    monitor = Monitor(store, stall_after=60)
    monitor.poll(force=True)
    states = {r["run_id"]: r["state"] for r in report(monitor).details["runs"]}
    assert states == {"done": "complete", "live": "running"}
    later = {r["run_id"]: r["state"] for r in report(monitor, now=time.time() + 61).details["runs"]}
    assert later == {"done": "complete", "live": "stalled"}
    w.close()
    assert sparkline([0.0, 1.0, math.nan, 0.5]) == "▁█·▄"


def test_a_growing_jsonl_log_is_followed(tmp_path):
    log = tmp_path / "train.jsonl"
    log.write_text("".join(json.dumps({"step": s, "reward": 0.1 * s}) + "\n" for s in range(1, 6)))
    monitor = Monitor(log)
    monitor.poll()
    (run,) = monitor.runs.values()
    assert run.step == 5
    with open(log, "a") as f:
        f.write("".join(json.dumps({"step": s, "reward": 0.1 * s}) + "\n" for s in range(6, 9)))
    monitor.poll()
    (run,) = monitor.runs.values()
    assert run.step == 8 and run.last["reward"] == (8, pytest.approx(0.8))


def test_the_evaluation_child_ends_when_idle_and_is_replaced_when_it_dies(tmp_path):
    store = tmp_path / "store"
    write_run(store, "bad", steps=60, nan_at=30)
    with Monitor(store, isolate=True, worker_idle=0.0) as monitor:
        first = monitor.poll(force=True)
        child = monitor.evaluator
        assert [(f.code, f.onset) for f in first.findings] == [("nan_onset", 30)]
        assert child.proc is None and child.started == 1      # idle at once: ended
        assert child.peak_rss > 0
        child.idle_exit = 3600.0
        write_run(store, "bad2", steps=60, nan_at=40)
        assert [(f.run_id, f.onset) for f in monitor.poll().findings] == [("bad2", 40)]
        child.proc.kill()
        child.proc.wait()
        write_run(store, "bad3", steps=60, nan_at=50)
        assert [(f.run_id, f.onset) for f in monitor.poll(force=True).findings] == [("bad3", 50)]
        assert child.started == 3 and child.proc.poll() is None
    assert child.proc is None


def test_a_dying_child_is_retried_then_reported_in_one_line(tmp_path, monkeypatch):
    from rldk.live import worker

    store = tmp_path / "store"
    write_run(store, "bad", steps=60, nan_at=30)
    monkeypatch.setattr(worker.Child, "_command", ("-c", "import sys; sys.exit(7)"))
    with Monitor(store, isolate=True) as monitor:
        polls = [monitor.poll(force=True) for _ in range(4)]
    assert [p.findings for p in polls] == [[], [], [], []]
    assert [p.warnings for p in polls] == [[], [], [
        "run bad: analysis failed 3 times in a row (ChildExited: the analysis process ended "
        "(exit status 7); a new one is started); still trying"], []]


# ------------------------------------------------------------ latency
def test_a_finding_appears_within_two_seconds_of_its_segment(tmp_path):
    """Once ``rldk watch``'s monitor (evaluating in a child) follows the run (its
    start-up is not part of the latency), a NaN's finding comes within 2 s of the
    commit of the segment holding it."""
    store = tmp_path / "store"
    w = EventWriter(store, "fast", capture_env=False, flush_secs=1.0)
    stop, nan = threading.Event(), threading.Event()

    def train():
        step = 0
        while not stop.is_set():
            step += 1
            w.log(step, {"loss": math.nan if nan.is_set() else 1.0, "reward": 0.5, "kl": 0.01})
            if step % 100 == 0:
                time.sleep(0.005)

    thread = threading.Thread(target=train)
    monitor = Monitor(store, min_interval=0.2, isolate=True)
    thread.start()
    try:
        found = None
        evaluated, deadline = 0, time.time() + 30
        while found is None and time.time() < deadline:
            poll = monitor.poll()
            evaluated += "fast" in poll.changed
            if evaluated == 3:                 # following: segments read and evaluated
                nan.set()
            found = next((f for f in poll.findings if f.code == "nan_onset"), None)
            if found is not None:                # before close() merges the segments
                latency = time.time() - _commit_time(monitor, found.onset)
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join()
        w.close()
        monitor.close()
    assert found is not None
    assert latency <= 2.0


def _max_step(path):
    import pyarrow.parquet as pq

    return max((s for s in pq.read_table(path, columns=["step"]).column("step").to_pylist() if s is not None), default=-1)


def _commit_time(monitor, step):
    """When the first segment holding ``step`` was committed (its file's mtime)."""
    times = [os.path.getmtime(f) for f in monitor.tailer.known if os.path.exists(f) and _max_step(f) >= step]
    return min(times)


# ------------------------------------------------------------ CLI
@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store"
    write_run(path, "bad", steps=60, nan_at=30)
    write_run(path, "good", steps=60)
    return path


def test_once_prints_the_state_and_exits_0(store):
    result = CliRunner().invoke(main, ["watch", str(store), "--once", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [r["run_id"] for r in data["details"]["runs"]] == ["bad", "good"]
    assert [(f["run_id"], f["code"], f["steps"][0]) for f in data["findings"]
            if f["severity"] == "error"] == [("bad", "nan_onset", 30)]


def test_fail_on_error_exits_3_with_one_line(store):
    result = CliRunner().invoke(main, ["watch", str(store), "--once", "--json", "--fail-on", "error"])
    assert result.exit_code == 3
    assert "Failing: bad: error nan_onset from step 30 (--fail-on error)" in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert ("bad", "nan_onset", 30) in [(d["run_id"], d["code"], d["onset"]) for d in lines]


def test_fail_on_error_exits_0_on_a_clean_store(tmp_path):
    write_run(tmp_path, "good", steps=60)
    result = CliRunner().invoke(main, ["watch", str(tmp_path), "--once", "--fail-on", "error"])
    assert result.exit_code == 0, result.output


def test_webhook_receives_each_finding_as_json(store):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        result = CliRunner().invoke(main, ["watch", str(store), "--once", "--webhook", url])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert ("bad", "nan_onset", 30) in [(d["run_id"], d["code"], d["onset"]) for d in received]


def test_webhook_failure_is_a_warning(store):
    result = CliRunner().invoke(main, ["watch", str(store), "--once", "--webhook", "http://127.0.0.1:9/x"])
    assert result.exit_code == 0
    assert result.stderr.count("Warning: webhook http://127.0.0.1:9/x: ") == 1


def test_bad_webhook_url_is_a_usage_error(store):
    result = CliRunner().invoke(main, ["watch", str(store), "--once", "--webhook", "ftp://x"])
    assert result.exit_code == 2
    assert result.stderr == "Error: --webhook ftp://x: give an http:// or https:// URL\n"


def test_follow_mode_streams_json_lines_until_duration(store):
    result = CliRunner().invoke(main, ["watch", str(store), "--json", "--duration", "0.3",
                                       "--interval", "0.1"])
    assert result.exit_code == 0, result.output
    found = [(d["run_id"], d["code"], d["metric"]) for d in map(json.loads, result.stdout.splitlines())]
    assert ("bad", "nan_onset", "loss") in found and len(found) == len(set(found))   # each once
