"""``rldk watch`` on object storage: an S3-compatible server (moto) on loopback, the
fixtures of tests/test_s3.py. The tailer lists through the store reader's listing,
sees each committed segment once, never an upload in progress, and keeps counting
rows once through merges (also two racing merges of the same files)."""
from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("s3fs", reason="s3fs not installed (pip install rldk[s3])")
pytest.importorskip("moto.server", reason="moto[server] not installed")

import test_s3  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from test_watch import analyze_findings, keys  # noqa: E402

from rldk.cli import main  # noqa: E402
from rldk.core import fs as rldk_fs  # noqa: E402
from rldk.core import segments  # noqa: E402
from rldk.core.compaction import compact  # noqa: E402
from rldk.core.fs import ObjectDir  # noqa: E402
from rldk.data import open_input  # noqa: E402
from rldk.live import Monitor  # noqa: E402
from rldk.writer import EventWriter  # noqa: E402

endpoint, bucket = test_s3.endpoint, test_s3.bucket     # the moto server and a fresh bucket


def log_steps(w, steps, nan_at=None, clipped_from=None):
    for step in steps:
        w.log(step, {"loss": math.nan if nan_at is not None and step >= nan_at else 1.0 / step,
                     "reward": 0.5 + 0.1 * math.sin(step),
                     "completions/clipped_ratio": 1.0 if clipped_from is not None and step >= clipped_from else 0.05})


def writer(url, run_id):
    return EventWriter(url, run_id, capture_env=False, flush_secs=3600, compact_on_close=False)


def stored_rows(url, run_id) -> int:
    return open_input(url).sql("SELECT count(*) AS n FROM events WHERE kind IN ('metric', 'run') "
                               "AND run_id = ?", [run_id])["n"][0]


def test_watch_follows_a_store_on_s3_as_it_is_written(bucket, tmp_path):
    url = f"{bucket}/runs"
    monitor = Monitor(url, min_interval=3600)   # evaluated at the first poll and when forced
    w, seen, files = writer(url, "bad"), [], []
    for lo in range(1, 101, 25):
        log_steps(w, range(lo, lo + 25), nan_at=60, clipped_from=30)
        assert w.flush()
        seen += monitor.poll().findings
        files.append(len(monitor.tailer.known))
        assert monitor.runs["bad"].step == lo + 24
    assert files == [2, 3, 4, 5]                # the start segment, then one per flush
    assert monitor.runs["bad"].rows == stored_rows(url, "bad")
    w.close()
    clean = writer(url, "clean")
    log_steps(clean, range(1, 46))
    clean.close()
    seen += monitor.poll(force=True).findings
    monitor.close()
    expected = analyze_findings(url, tmp_path)
    assert {f.code for f in expected} >= {"nan_onset"}
    assert keys(monitor.findings()) == keys(expected)
    assert [(f.run_id, f.onset) for f in seen if f.code == "nan_onset"] == [("bad", 60)]
    result = CliRunner().invoke(main, ["watch", url, "--once", "--json", "--fail-on", "error"])
    assert result.exit_code == 3, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted((d["run_id"], d["code"], d["metric"], d["onset"]) for d in lines) == keys(expected)


def test_an_upload_in_progress_is_never_a_segment(bucket):
    import boto3

    monitor = Monitor(bucket, analyzers=())
    w = writer(bucket, "r")
    log_steps(w, range(1, 11))
    assert w.flush()
    monitor.poll()
    client = boto3.client("s3", endpoint_url=rldk_fs.filesystem("s3").client_kwargs.get("endpoint_url")
                          or None)
    name, key = bucket[len("s3://"):], "r.r0.zzzz.000009.parquet"
    upload = client.create_multipart_upload(Bucket=name, Key=key)
    client.upload_part(Bucket=name, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"PAR1 half")
    update = monitor.tailer.poll()
    assert update.tables == [] and update.warnings == []
    assert all(not f.endswith(key) for f in monitor.tailer.known)
    w.close()


def test_merges_between_polls_count_rows_once(bucket, monkeypatch):
    monitor = Monitor(bucket, analyzers=())      # rows only: no analysis
    w = writer(bucket, "r")
    log_steps(w, range(1, 41))
    assert w.flush()
    monitor.poll()                               # some segments read
    log_steps(w, range(41, 81))
    assert w.flush()
    w.close()
    compact(bucket)                              # merged: segments read and not read yet
    monitor.poll()
    assert monitor.runs["r"].rows == stored_rows(bucket, "r")
    assert len(monitor.tailer.run_files("r")) == 1

    w = writer(bucket, "s")
    log_steps(w, range(1, 31))
    w.close()
    monitor.poll()
    names = [n for n in segments.list_names(ObjectDir(bucket)) if n.startswith("s.")]
    monkeypatch.setattr(segments, "_delete_remote", lambda *_: None)   # the first merge's deletes come late
    segments.merge_segments(ObjectDir(bucket), names, "s.a.parquet")
    monkeypatch.undo()
    segments.merge_segments(ObjectDir(bucket), names, "s.b.parquet")   # no lock: a second merge
    update = monitor.poll()
    assert update.changed == set() and update.removed == set() and update.warnings == []
    assert monitor.runs["s"].rows == stored_rows(bucket, "s")
    assert CliRunner().invoke(main, ["compact", bucket]).exit_code == 0   # keeps one of the two
    monitor.poll()
    assert monitor.runs["s"].rows == stored_rows(bucket, "s")
    assert [f.rsplit("/", 1)[-1] for f in monitor.tailer.run_files("s")] == ["s.a.parquet"]


def test_follow_mode_on_s3_streams_findings_from_the_evaluation_child(bucket):
    w = writer(bucket, "bad")
    log_steps(w, range(1, 61), nan_at=30)
    w.close()
    result = CliRunner().invoke(main, ["watch", bucket, "--json", "--duration", "0.3", "--interval", "0.1",
                                       "--inotify"])
    assert result.exit_code == 0, result.output
    found = [(d["run_id"], d["code"], d["onset"]) for d in map(json.loads, result.stdout.splitlines())]
    assert ("bad", "nan_onset", 30) in found and len(found) == len(set(found))
    assert "inotify does not see object storage; polling only" in result.stderr


def test_a_guard_follows_its_own_run_in_a_shared_bucket(bucket):
    """Guards follow ``writer.dir`` (an ObjectDir on S3) for their run only."""
    for run_id in ("q", "r"):
        w = writer(bucket, run_id)
        log_steps(w, range(1, 21))
        w.close()
    monitor = Monitor(ObjectDir(bucket), run_id="r", analyzers=())
    monitor.poll()
    assert set(monitor.runs) == {"r"} and monitor.runs["r"].rows == stored_rows(bucket, "r")
