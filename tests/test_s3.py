"""Stores on object storage: an S3-compatible server (moto) on loopback, per test session.

The writer commits each segment with one PUT, the reader lists and reads objects
through fsspec (plain DuckDB through a registered fsspec filesystem), merges write
the merged object with ``rldk.covers`` then delete the inputs, a SIGKILL leaves only
complete objects and a stalled network never blocks ``log``.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

pytest.importorskip("s3fs", reason="s3fs not installed (pip install rldk[s3])")
moto_server = pytest.importorskip("moto.server", reason="moto[server] not installed")

import duckdb  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from rldk.cli import main  # noqa: E402
from rldk.core import fs as rldk_fs  # noqa: E402
from rldk.core.errors import StoreError  # noqa: E402
from rldk.data import open_input  # noqa: E402
from rldk.writer import EventWriter  # noqa: E402

ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def endpoint():
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server._server.server_address
    url = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in (*ENV, "AWS_ENDPOINT_URL")}
    os.environ.update(ENV, AWS_ENDPOINT_URL=url)
    _fresh_clients()
    yield url
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _fresh_clients()


def _fresh_clients():
    import s3fs

    rldk_fs._filesystem.cache_clear()
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def bucket(endpoint):
    name = f"b-{uuid.uuid4().hex[:12]}"
    rldk_fs.filesystem("s3").mkdir(name)
    return f"s3://{name}"


def _objects(url: str) -> list[str]:
    fs = rldk_fs.filesystem("s3")
    fs.invalidate_cache()
    return sorted(fs.find(rldk_fs.strip(url)))


def _plain_duckdb(url: str) -> int:
    con = duckdb.connect()
    fs = rldk_fs.filesystem("s3")
    fs.invalidate_cache()            # s3fs caches listings: a plain reader must not
    con.register_filesystem(fs)
    return con.sql(f"SELECT count(*) FROM read_parquet('{url}/**/*.parquet')").fetchall()[0][0]


def _rldk_count(url: str) -> int:
    return open_input(url).sql("SELECT count(*) AS n FROM events")["n"][0]


def _write(url, run_id, steps=200, **options):
    w = EventWriter(url, run_id, capture_env=False, flush_secs=0.05, **options)
    for step in range(steps):
        w.log(step, loss=float(step), reward=step / 10)
        if step % 40 == 39:
            assert w.flush()
    assert w.close()
    return w


def test_writer_and_reader_round_trip(bucket):
    w = _write(f"{bucket}/runs", "r1")
    assert w.stats["segments"] >= 5 and w.stats["write_errors"] == 0
    objects = _objects(bucket)
    assert objects == [f"{bucket[5:]}/runs/{w.segments[0].rsplit('.', 2)[0]}.parquet"]   # merged at close
    store = open_input(f"{bucket}/runs")
    assert store.run_ids == ["r1"]
    assert store.run("r1").metric("loss").height == 200
    assert store.run("r1").status == "complete"
    assert _plain_duckdb(bucket) == _rldk_count(f"{bucket}/runs") == 402    # 400 values + start + end


def test_cli_reads_an_s3_store(bucket):
    _write(bucket, "r1")
    result = CliRunner().invoke(main, ["runs", bucket, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["run_id"] == "r1"
    result = CliRunner().invoke(main, ["sql", "SELECT count(*) AS n FROM metrics", bucket, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"n": 400}]


def test_analyze_over_s3_reads_each_object_once_and_equals_local(bucket, tmp_path, monkeypatch):
    """``rldk analyze s3://...`` copies the store's objects once (one GET each) and
    writes the cards a local store gives; with no scratch room it reads them in place,
    with the same cards."""
    from rldk.analyzers import suite
    from rldk.core import store as store_module

    for run_id in ("a", "b"):
        _write(f"{bucket}/runs", run_id, steps=120)
    local = tmp_path / "local"
    rldk_fs.filesystem("s3").get(rldk_fs.strip(f"{bucket}/runs"), str(local), recursive=True)
    fetched = []
    real = rldk_fs.local_copies

    def counting(files, max_bytes=None):
        fetched.append(sorted(f for f in files if rldk_fs.is_remote(f)))
        return real(files, max_bytes)
    monkeypatch.setattr(store_module, "local_copies", counting)

    def cards(paths, out):
        analysis = suite.analyze(paths, out_dir=tmp_path / out, plots=False)
        return [(o.analyzer, o.status, o.summary) for o in analysis.outcomes]

    expected = cards(str(local), "cards-local")
    assert cards(f"{bucket}/runs", "cards-s3") == expected
    assert fetched == [[f"s3://{o}" for o in _objects(bucket)]]          # every object, once
    monkeypatch.setattr(store_module, "scratch_budget", lambda: 0)
    assert cards(f"{bucket}/runs", "cards-in-place") == expected


def test_a_merge_killed_between_put_and_delete(bucket, monkeypatch):
    """The merged object is visible before its inputs are deleted: rldk readers skip
    covered inputs (exact), plain DuckDB counts them twice until `rldk compact` runs."""
    from rldk.core import segments
    from rldk.core.compaction import compact

    _write(bucket, "r1", compact_on_close=False)
    events = _rldk_count(bucket)
    assert len(_objects(bucket)) > 2 and _plain_duckdb(bucket) == events

    def killed(*_):
        raise KeyboardInterrupt("killed after the merged PUT")

    monkeypatch.setattr(segments, "_delete_remote", killed)
    with pytest.raises(KeyboardInterrupt):
        compact(bucket)
    monkeypatch.undo()
    assert _rldk_count(bucket) == events            # rldk: exact at every instant
    assert _plain_duckdb(bucket) == 2 * events      # the documented window for plain readers
    result = CliRunner().invoke(main, ["compact", bucket, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert len(_objects(bucket)) == 1
    assert _plain_duckdb(bucket) == _rldk_count(bucket) == events


def test_two_merges_of_the_same_files_count_once(bucket):
    """No lock on object storage: two merges racing on one run's files both publish;
    readers read one of them, and compact removes the redundant one."""
    from rldk.core.fs import ObjectDir
    from rldk.core.segments import merge_segments

    w = _write(bucket, "r1", compact_on_close=False)
    events = _rldk_count(bucket)
    names = list(w.segments)
    directory = ObjectDir(bucket)
    import rldk.core.segments as segments

    original = segments._delete_remote
    segments._delete_remote = lambda *_: None        # the first merge's deletes come late
    try:
        merge_segments(directory, names, "r1.a.parquet")
    finally:
        segments._delete_remote = original
    merge_segments(directory, names, "r1.b.parquet")    # sees the inputs still there
    assert {o.rsplit("/", 1)[-1] for o in _objects(bucket)} == {"r1.a.parquet", "r1.b.parquet"}
    assert _rldk_count(bucket) == events


def test_hive_layout_on_s3(bucket):
    _write(bucket, "r1", project="p")
    _write(bucket, "r2", project="p")
    assert all("/project=p/run_id=r" in o for o in _objects(bucket))
    assert open_input(f"{bucket}/project=p/run_id=r1").run_ids == ["r1"]
    con = duckdb.connect()
    con.register_filesystem(rldk_fs.filesystem("s3"))
    rows = con.sql(f"SELECT project, run_id, count(*) FROM read_parquet('{bucket}/**/*.parquet', "
                   "hive_partitioning=true) GROUP BY ALL ORDER BY ALL").fetchall()
    assert rows == [("p", "r1", 402), ("p", "r2", 402)]


def test_unreachable_bucket_is_one_line(endpoint):
    with pytest.raises(StoreError, match="cannot write the event store at s3://no-such-bucket-x"):
        EventWriter("s3://no-such-bucket-x/runs", "r", capture_env=False)
    with pytest.raises(StoreError, match="no event files"):
        open_input("s3://no-such-bucket-x/runs")


def test_missing_extra_is_named(monkeypatch):
    registry = sys.modules["fsspec.registry"]._registry     # imported classes, by protocol
    monkeypatch.delitem(registry, "s3", raising=False)
    monkeypatch.setitem(sys.modules, "s3fs", None)          # import s3fs fails
    rldk_fs._filesystem.cache_clear()
    try:
        with pytest.raises(StoreError, match=r"s3:// stores need .*pip install rldk\[s3\]"):
            rldk_fs.filesystem("s3")
    finally:
        rldk_fs._filesystem.cache_clear()


def test_import_rldk_stays_light():
    code = "import sys, rldk, rldk.writer, rldk.data; print(any(m.split('.')[0] in ('fsspec', 's3fs') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------- kills and stalls
_CHILD = textwrap.dedent("""
    import json, sys, time
    from rldk.writer import EventWriter
    w = EventWriter(sys.argv[1], "killed", capture_env=False, flush_secs=0.2, segment_rows=2000)
    print("ready", flush=True)
    step = 0
    while True:
        w.log(step, **{f"m{i}": float(step) for i in range(8)})
        step += 1
""")


def test_sigkill_during_uploads_leaves_only_complete_objects(bucket, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    child = subprocess.Popen([sys.executable, str(script), f"{bucket}/runs"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(2.0)
    finally:
        child.kill()
        child.wait()
    fs = rldk_fs.filesystem("s3")
    objects = _objects(bucket)
    assert len(objects) >= 3
    for key in objects:
        assert key.endswith(".parquet") and not key.rsplit("/", 1)[-1].startswith(".")
        with fs.open(key, "rb") as f:
            table = pq.read_table(f)                  # every object is complete
        assert table.num_rows > 0
    store = open_input(f"{bucket}/runs")
    assert store.run("killed").status == "incomplete"
    assert _plain_duckdb(bucket) == _rldk_count(f"{bucket}/runs")


class _Proxy:
    """A TCP forwarder to the S3 server that can stall (hold every byte) on demand."""

    def __init__(self, target: str):
        host, port = target.rsplit("//", 1)[1].split(":")
        self.target = (host, int(port))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.stalled = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src, dst):
        try:
            while data := src.recv(65536):
                while self.stalled.is_set():
                    time.sleep(0.05)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass


_STALL_CHILD = textwrap.dedent("""
    import json, sys, time
    from rldk.writer import EventWriter
    w = EventWriter(sys.argv[1], "stalled", capture_env=False, flush_secs=0.5,
                    max_buffer_bytes=1 << 20)
    print("ready", flush=True)
    sys.stdin.readline()                      # the network stalls now
    worst, calls, t_end = 0.0, 0, time.monotonic() + 4.0
    while time.monotonic() < t_end:
        t = time.perf_counter()
        w.log(calls, **{f"m{i}": float(calls) for i in range(16)})
        worst = max(worst, time.perf_counter() - t)
        calls += 1
    t = time.perf_counter()
    flushed = w.flush(timeout=0.5)
    flush_secs = time.perf_counter() - t
    print(json.dumps({"worst": worst, "calls": calls, "flushed": flushed, "flush_secs": flush_secs,
                      "stats": w.stats}), flush=True)
    sys.stdin.readline()                      # the network is back
    print(json.dumps({"flushed": w.flush(timeout=60), "closed": w.close(), "stats": w.stats}), flush=True)
""")


@pytest.mark.slow
def test_a_stalled_network_never_blocks_log(bucket, endpoint, tmp_path):
    proxy = _Proxy(endpoint)
    script = tmp_path / "child.py"
    script.write_text(_STALL_CHILD)
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url,
           "FSSPEC_S3": json.dumps({"config_kwargs": {
               "connect_timeout": 1, "read_timeout": 1, "retries": {"max_attempts": 1}}})}
    child = subprocess.Popen([sys.executable, str(script), f"{bucket}/runs"], env=env, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == "ready"
        proxy.stalled.set()
        child.stdin.write("go\n")
        child.stdin.flush()
        stalled = json.loads(child.stdout.readline())
        proxy.stalled.clear()
        child.stdin.write("go\n")
        child.stdin.flush()
        after = json.loads(child.stdout.readline())
    finally:
        child.kill()
        child.wait()
    assert stalled["worst"] < 0.3, stalled           # no call waited on the network
    assert not stalled["flushed"] and stalled["flush_secs"] < 1.5
    assert stalled["stats"]["dropped_events"] > 0    # bounded buffer: the oldest are dropped, counted
    assert after["flushed"] and after["closed"], after
    dropped = after["stats"]["dropped_events"]
    stored = _rldk_count(f"{bucket}/runs")
    assert stored + dropped == stalled["calls"] * 16 + 2    # + start and end events
