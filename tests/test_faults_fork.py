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
