"""``rldk watch`` under load: finding latency, and the cost of idle polling.

latency  a writer process logs 100k values/s (10 metrics x 10k steps/s, flush
         every second); its loss turns NaN after ``--nan-after`` seconds. The
         watcher (this process, polling every ``--interval`` s) reports the time
         from the commit of the segment holding the first NaN (the file's mtime)
         to the finding. Bound: 2 s.
idle     a store of ``--runs`` finished runs, polled every second for ``--idle``
         seconds: CPU share of one core and peak RSS of the watcher. Bounds: 10%
         of one core, 200 MB.

    python benchmarks/watch_live.py
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

WRITER = r"""
import math, sys, time
import rldk.writer as w
w.init(sys.argv[1], run_id="fast", capture_env=False, flush_secs=1.0)
rate, nan_after, duration = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
names = [f"m{j}" for j in range(9)]
start, step = time.time(), 0
while time.time() - start < duration:
    step += 1
    nan = time.time() - start >= nan_after
    w.log(step, {"loss": math.nan if nan else 1.0 / step, **{n: 0.1 * j for j, n in enumerate(names)}})
    if step % 1000 == 0:
        ahead = step / rate - (time.time() - start)
        if ahead > 0:
            time.sleep(ahead)
w.close()
"""

STORE = r"""
import math, sys
from rldk.writer import EventWriter
for i in range(int(sys.argv[2])):
    w = EventWriter(sys.argv[1], f"run{i:03d}", capture_env=False)
    for step in range(1, 201):
        w.log(step, {"loss": 1.0 / step, "reward": math.sin(step), "kl": 0.01 * step})
    w.close()
"""


def latency(args) -> None:
    from rldk.live import Monitor

    store = tempfile.mkdtemp(prefix="watch-latency-")
    steps_per_s = args.rate / 10
    proc = subprocess.Popen([sys.executable, "-c", WRITER, store, str(steps_per_s), str(args.nan_after),
                             str(args.nan_after + 8)])
    monitor = Monitor(store, min_interval=args.interval)
    found = None
    while proc.poll() is None and found is None:
        for f in monitor.poll().findings:
            if f.code == "nan_onset":
                found = (time.time(), f)
        time.sleep(args.interval)
    proc.wait()
    if found is None:
        print("latency: no finding (the writer ended first)")
        return
    committed = _commit_time(monitor, found[1].onset)
    print(f"latency: {args.rate:.0f} values/s, NaN onset step {found[1].onset}; finding "
          f"{found[0] - committed:.2f} s after its segment was committed (bound 2 s); "
          f"last evaluation took {monitor.runs['fast'].eval_secs:.2f} s")


def _commit_time(monitor, step) -> float:
    import pyarrow.parquet as pq

    times = []
    for f in monitor.tailer.known:
        if os.path.exists(f):
            steps = [s for s in pq.read_table(f, columns=["step"]).column("step").to_pylist() if s is not None]
            if steps and max(steps) >= step:
                times.append(os.path.getmtime(f))
    return min(times)


def idle(args) -> None:
    import psutil

    from rldk.live import Monitor

    store = tempfile.mkdtemp(prefix="watch-idle-")
    subprocess.run([sys.executable, "-c", STORE, store, str(args.runs)], check=True)
    monitor = Monitor(store)
    monitor.poll(force=True)                      # the first read and evaluation of every run
    me = psutil.Process()
    cpu0, t0 = sum(me.cpu_times()[:2]), time.monotonic()
    while time.monotonic() - t0 < args.idle:
        monitor.poll()
        time.sleep(1.0)
    share = (sum(me.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"idle: {args.runs} runs polled every 1 s for {args.idle:.0f} s: {share * 100:.1f}% of one core "
          f"(bound 10%), RSS {me.memory_info().rss / 2**20:.0f} MB, peak {peak:.0f} MB (bound 200 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100_000, help="values per second the writer logs")
    parser.add_argument("--nan-after", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--idle", type=float, default=20.0)
    parser.add_argument("--part", choices=("all", "idle", "latency"), default="all")
    args = parser.parse_args()
    print(f"# rldk watch, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs")
    if args.part in ("all", "idle"):
        idle(args)                  # first: the peak RSS is this process's, the watcher's only
    if args.part in ("all", "latency"):
        latency(args)


if __name__ == "__main__":
    main()
