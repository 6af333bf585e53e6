"""Fork after init: each child gets its own session and thread; nothing deadlocks or is lost."""
from __future__ import annotations

import subprocess
import sys

from rldk.core.store import open_store

CHILDREN = r"""
import multiprocessing as mp, sys, threading
import rldk.writer as w
w.init(sys.argv[1], run_id="forked", capture_env=False, flush_secs=0.05)
stop = False
def busy():                       # the parent keeps logging: forks land while its locks are taken
    i = 0
    while not stop:
        w.log(10**6 + i, parent=float(i)); i += 1
t = threading.Thread(target=busy); t.start()
def task(k):
    for s in range(10):
        w.log(k * 100 + s, child=float(k))
    return w.flush(timeout=30)
with mp.get_context("fork").Pool(4, maxtasksperchild=1) as pool:
    results = pool.map_async(task, range(60), chunksize=1).get(timeout=120)
stop = True; t.join()
print(sum(results), flush=True)
"""


def test_forked_pool_children_write_their_events(tmp_path):
    out = subprocess.run([sys.executable, "-c", CHILDREN, str(tmp_path)], capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "60"                  # every child's flush() was True
    store = open_store(tmp_path)
    count = store.sql("SELECT count(*) FROM metrics WHERE name = 'child'")[0, 0]
    assert count == 600
    sessions = store.sql("SELECT count(DISTINCT json_extract_string(attrs, '$.session')) FROM run_events "
                         "WHERE name = 'start'")[0, 0]
    assert sessions >= 61                                  # the parent and each child its own


UNFLUSHED = r"""
import multiprocessing as mp, sys
import rldk.writer as w
w.init(sys.argv[1], run_id="pooled", capture_env=False, flush_secs=3600)
def task(k):
    for s in range(10):
        w.log(k * 100 + s, child=float(k))
    return k
with mp.get_context("fork").Pool(2) as pool:
    print(sum(pool.map(task, range(6))), flush=True)
    pool.close(); pool.join()              # the workers exit: multiprocessing's exit hook
"""


def test_pool_workers_write_what_they_logged_when_they_exit(tmp_path):
    out = subprocess.run([sys.executable, "-c", UNFLUSHED, str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    store = open_store(tmp_path)
    assert store.sql("SELECT count(*) FROM metrics WHERE name = 'child'")[0, 0] == 60


def test_pool_terminate_right_after_fork_never_hangs(tmp_path):
    """Pool.terminate SIGTERMs workers forked a moment before: blocked across the fork,
    the signal reaches each child once its writer is whole, and ends it."""
    code = ("import multiprocessing as mp, sys, time\n"
            "import rldk.writer as w\n"
            "w.init(sys.argv[1], run_id='t', capture_env=False)\n"
            "def task(k):\n"
            "    w.log(k, x=1.0); return k\n"
            "for _ in range(20):\n"
            "    with mp.get_context('fork').Pool(3, maxtasksperchild=1) as pool:\n"
            "        pool.map(task, range(9), chunksize=1)\n"
            "print('done', flush=True)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr[-2000:]
