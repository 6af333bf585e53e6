"""``rldk watch`` under load: finding latency, and the cost of idle polling.

latency  a writer process logs 100k values/s (10 metrics x 10k steps/s, flush
         every second); its loss turns NaN after ``--nan-after`` seconds. The
         watcher (this process, polling every ``--interval`` s) reports the time
         from the commit of the segment holding the first NaN (the file's mtime)
         to the finding. Bound: 2 s. The monitor evaluates in a child process,
         as ``rldk watch`` does.
idle     ``rldk watch STORE --json`` (the CLI, in its own process) on a store of
         ``--runs`` finished runs, polling every second: its first read and
         evaluation of every run (in the evaluation child), then ``--idle``
         seconds of idle polling once the child has ended. Reported: the
         watcher's RSS while idle-polling and its peak, the child's peak, and the
         watcher's CPU share of one core while idle. Bounds (idle-polling): 10% of
         one core, 200 MB.

    python benchmarks/watch_live.py
"""
from __future__ import annotations

import argparse
import os
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
    monitor = Monitor(store, min_interval=args.interval, isolate=True)
    found = None
    while proc.poll() is None and found is None:
        for f in monitor.poll().findings:
            if f.code == "nan_onset":
                found = (time.time(), f)
        time.sleep(args.interval)
    proc.wait()
    monitor.close()
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

    store = tempfile.mkdtemp(prefix="watch-idle-")
    subprocess.run([sys.executable, "-c", STORE, store, str(args.runs)], check=True)
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", "from rldk.cli import main; main()", "watch", store,
                             "--json", "--interval", "1", "--duration", str(args.idle + 60)],
                            stdout=subprocess.DEVNULL)
    watcher = psutil.Process(proc.pid)
    parent_peak = child_peak = 0
    child_gone = idle_rss = cpu0 = t0 = None
    while proc.poll() is None:
        try:
            rss = watcher.memory_info().rss
            children = watcher.children()
            child_rss = sum(c.memory_info().rss for c in children)
        except psutil.NoSuchProcess:
            break
        parent_peak, child_peak = max(parent_peak, rss), max(child_peak, child_rss)
        if children or child_gone is None and time.monotonic() - start < 5:
            time.sleep(0.2)
            continue
        if child_gone is None:                     # the evaluation child has ended: idle from now
            child_gone = time.monotonic() - start
            cpu0, t0 = sum(watcher.cpu_times()[:2]), time.monotonic()
        idle_rss = max(idle_rss or 0, rss)
        if time.monotonic() - t0 >= args.idle:
            share = (sum(watcher.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0)
            break
        time.sleep(0.2)
    proc.terminate()
    proc.wait()
    mb = 2 ** 20
    print(f"idle: rldk watch on {args.runs} finished runs, polling every 1 s: first read and evaluation "
          f"done, evaluation child ended {child_gone:.0f} s after start (peak RSS {child_peak / mb:.0f} MB); "
          f"then {args.idle:.0f} s idle-polling: watcher RSS {idle_rss / mb:.0f} MB (bound 200 MB), "
          f"{share * 100:.1f}% of one core (bound 10%); watcher peak RSS {parent_peak / mb:.0f} MB "
          "(during the first read)")


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
        idle(args)
    if args.part in ("all", "latency"):
        latency(args)


if __name__ == "__main__":
    main()
