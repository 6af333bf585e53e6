"""Merges under faults: a kill at every step of a merge, and merges racing each other.

Promise (docs/reliability.md): at no kill point does a plain DuckDB or Polars glob
over the store count an event twice, rldk always counts each event once, and the
next rldk open finishes the merge so plain readers see every event again.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import polars as pl
import pytest

from rldk.core.compaction import compact
from rldk.core.segments import merge_segments, store_lock
from rldk.core.store import open_store
from rldk.writer import EventWriter

# Runs merge_segments in a child that dies (os._exit) at its N-th file-system step:
# every fsync, rename and unlink is a kill point.
KILL_AT_STEP = r"""
import os, sys
from pathlib import Path
from rldk.core.segments import merge_segments, store_lock
store, n = Path(sys.argv[1]), int(sys.argv[2])
count = {"n": 0}
def step(real):
    def wrapped(*args, **kwargs):
        count["n"] += 1
        if count["n"] == n:
            os._exit(9)
        return real(*args, **kwargs)
    return wrapped
names = sorted(f for f in os.listdir(store) if f.endswith(".parquet"))
os.fsync, os.replace, os.unlink = step(os.fsync), step(os.replace), step(os.unlink)
with store_lock(store):
    merge_segments(store, names, "r.merged.parquet")
print("done", flush=True)
"""


def _segmented_store(path: Path, segments: int = 4, per: int = 250) -> int:
    with EventWriter(path, "r", flush_secs=3600, capture_env=False, compact_on_close=False) as w:
        for step in range(segments * per):
            w.log(step, x=float(step))
            if step % per == per - 1:
                w.flush()
    return segments * per


def _plain_duckdb(store: Path) -> int:
    if not any(f.endswith(".parquet") for f in os.listdir(store)):
        return 0                      # killed after the deletes, before the publish: nothing visible
    return duckdb.sql(f"SELECT count(*) FROM '{store}/*.parquet' WHERE kind = 'metric'").fetchall()[0][0]


def _plain_polars(store: Path) -> int:
    if not any(f.endswith(".parquet") for f in os.listdir(store)):
        return 0
    frame = pl.scan_parquet(f"{store}/*.parquet", missing_columns="insert", extra_columns="ignore")
    return frame.filter(pl.col("kind") == "metric").select(pl.len()).collect().item()


def test_a_kill_at_every_merge_step_never_double_counts(tmp_path):
    template = tmp_path / "template"
    logged = _segmented_store(template)
    seen_steps = 0
    for n in range(1, 100):
        store = tmp_path / f"kill{n}"
        shutil.copytree(template, store)
        out = subprocess.run([sys.executable, "-c", KILL_AT_STEP, str(store), str(n)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode in (0, 9), out.stderr
        plain = _plain_duckdb(store)
        assert plain <= logged and _plain_polars(store) == plain, n          # never doubled
        assert open_store(store).sql("SELECT count(*) FROM metrics")[0, 0] == logged, n
        # that open finished the interrupted merge: plain readers see everything again
        assert _plain_duckdb(store) == logged == _plain_polars(store), n
        assert not [f for f in os.listdir(store) if f.endswith(".merging")]
        if out.returncode == 0:
            seen_steps = n
            break
    assert seen_steps >= 8            # the merge has that many kill points, each was tried


def test_legacy_crash_state_is_repaired_by_compact(tmp_path):
    """An older rldk, killed after publishing a merge and before deleting its inputs, left
    both; plain readers double count. rldk counts right; compact (or any rldk open) repairs."""
    logged = _segmented_store(tmp_path)
    names = sorted(f for f in os.listdir(tmp_path) if f.endswith(".parquet"))
    backup = tmp_path.parent / "backup"
    shutil.copytree(tmp_path, backup)
    with store_lock(tmp_path):
        merge_segments(tmp_path, names, "r.merged.parquet")
    for n in names:                                   # the inputs "survive" the crash
        shutil.copy(backup / n, tmp_path / n)
    assert _plain_duckdb(tmp_path) == 2 * logged     # the broken state this repairs
    report = compact(tmp_path)
    assert _plain_duckdb(tmp_path) == logged == _plain_polars(tmp_path)
    assert any("repaired" in row["note"] or row["note"] == "already one file" for row in report)
    assert compact(tmp_path) == [{"run_id": "r", "directory": str(tmp_path), "files": 1,
                                  "output": None, "note": "already one file"}]   # idempotent


@pytest.mark.parametrize("trial", range(3))
def test_concurrent_compactions_merge_each_file_once(tmp_path, trial):
    runs = 3
    logged = 0
    for r in range(runs):
        with EventWriter(tmp_path, f"run{r}", flush_secs=3600, capture_env=False,
                         compact_on_close=False) as w:
            for step in range(300):
                w.log(step, x=float(step))
                if step % 30 == 29:
                    w.flush()
        logged += 300
    code = "import sys; from rldk.core.compaction import compact; compact(sys.argv[1], force=True)"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)]) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:               # and one in this process, all at once
        pool.submit(compact, tmp_path, True).result()
    assert all(p.wait(120) == 0 for p in procs)
    assert _plain_duckdb(tmp_path) == logged == _plain_polars(tmp_path)
    assert open_store(tmp_path).sql("SELECT count(*) FROM metrics")[0, 0] == logged
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".parquet")]) == runs


def test_compaction_racing_a_writers_close_merge(tmp_path):
    with EventWriter(tmp_path, "done", flush_secs=3600, capture_env=False, compact_on_close=False) as w:
        for step in range(200):
            w.log(step, x=float(step))
            if step % 20 == 19:
                w.flush()
    live = EventWriter(tmp_path, "live", flush_secs=3600, capture_env=False)
    for step in range(200):
        live.log(step, x=float(step))
        if step % 20 == 19:
            live.flush()
    with ThreadPoolExecutor(2) as pool:
        merged = pool.submit(compact, tmp_path, True)
        assert live.close() is True
        merged.result()
    compact(tmp_path, force=True)
    assert _plain_duckdb(tmp_path) == 400 == open_store(tmp_path).sql("SELECT count(*) FROM metrics")[0, 0]


def test_reader_retries_when_a_merge_deletes_its_files(tmp_path):
    logged = _segmented_store(tmp_path)
    store = open_store(tmp_path)
    assert len(store.files) > 1
    compact(tmp_path, force=True)                  # every file the store listed is gone now
    assert store.sql("SELECT count(*) FROM metrics")[0, 0] == logged
    assert store.run("r").metric("x").height == logged


def test_orphan_temporaries_are_removed(tmp_path):
    from rldk.core import segments

    _segmented_store(tmp_path, segments=2)
    orphan = tmp_path / ".r.r0.x.000001.parquet.999999999.tmp"   # a pid that cannot exist
    orphan.write_bytes(b"partial")
    old = orphan.stat().st_mtime - segments.ORPHAN_SECS - 1
    os.utime(orphan, (old, old))
    fresh = tmp_path / f".r.r0.y.000001.parquet.{os.getpid()}.tmp"   # a live process's: kept
    fresh.write_bytes(b"partial")
    with store_lock(tmp_path):
        assert segments.repair(tmp_path)["orphans"] == 1
    assert not orphan.exists() and fresh.exists()
