"""Fleet analysis: ``rldk fleet`` over N runs x M events, locally and on Ray.

    python benchmarks/fleet.py                          # 200 runs x 20k events (a 2-core machine)
    python benchmarks/fleet.py --runs 1000 --events 100000 --workers 8

The store is written once per size through the real writer (4 metrics a step: reward,
kl, entropy, loss; one compacted file per run; run 7 of every 10 has a NaN onset).
Each figure is one whole process (``python -m rldk.cli ...``), timed from outside; peak
RSS is the largest sum of the resident sizes of the process and all its children
(Ray's raylet, GCS and workers are children of the command), sampled every 50 ms.

1. ``rldk fleet`` with ``--engine local`` and ``--engine ray --workers W`` on the
   largest store: wall time, peak RSS, speed-up (local / ray).
2. Scaling in runs: ``rldk runs`` (listing: footers and the runs table) and ``rldk
   fleet --engine local`` (reading and analysing each run) on N/4, N/2 and N runs;
   the fitted exponent of (time - the same command on one run) against runs - 1:
   how the per-run cost grows, without the fixed cost of starting (imports). 1.0 is
   linear.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = 4


def write_store(path: Path, runs: int, events: int) -> None:
    """``runs`` runs of ``events`` metric events each (``events / 4`` steps)."""
    sys.path.insert(0, str(ROOT / "src"))
    from rldk.writer import EventWriter

    steps = max(1, events // METRICS)
    for i in range(runs):
        w = EventWriter(path, f"run{i:05d}", capture_env=False, segment_rows=1 << 20)
        nan_at = steps // 2 if i % 10 == 7 else None
        for step in range(steps):
            loss = float("nan") if nan_at is not None and step >= nan_at else 1.0 / (step + 1)
            w.log(step, {"reward": step * 1e-3 + i * 1e-4, "kl": 0.01 + step * 1e-6,
                         "entropy": 2.0 - step * 1e-5, "loss": loss})
        w.close()


def measure(cmd: list[str], env=None) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB of the process tree, exit code) of one command."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    peak, done = 0, threading.Event()

    def sample():
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(_rss(p) for p in tree))
            except psutil.Error:
                pass
            done.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    code = proc.wait()
    wall = time.perf_counter() - start
    done.set()
    thread.join()
    return wall, peak / 2**20, code


def _rss(p) -> int:
    try:
        return p.memory_info().rss
    except Exception:
        return 0


def rldk(*args) -> list[str]:
    return [sys.executable, "-m", "rldk.cli", *args]


def exponent(sizes, times) -> float:
    """Least-squares slope of log(time) on log(size)."""
    xs, ys = [math.log(s) for s in sizes], [math.log(max(t, 1e-3)) for t in times]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--events", type=float, default=20_000, help="metric events per run")
    ap.add_argument("--workers", type=int, default=2, help="Ray CPUs (--engine ray --workers)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each command (the best is kept)")
    ap.add_argument("--keep", metavar="DIR", help="write the stores here and keep them")
    args = ap.parse_args(argv)
    events = int(args.events)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rldk-fleet-"))
    sizes = sorted({max(2, args.runs // 4), max(3, args.runs // 2), args.runs})
    try:
        stores = {}
        for n in [1, *sizes]:
            stores[n] = base / f"runs{n}"
            if not stores[n].exists():
                t = time.perf_counter()
                write_store(stores[n], n, events)
                print(f"wrote {n} runs x {events:,} events in {time.perf_counter() - t:.1f} s")
        best = lambda cmd: min((measure(cmd, env) for _ in range(args.repeat)), key=lambda r: r[0])  # noqa: E731
        floor = {cmd: best(rldk(cmd, str(stores[1]), "--format", "json"))[0] for cmd in ("runs", "fleet")}
        print(f"\none run: rldk runs {floor['runs']:.2f} s, rldk fleet {floor['fleet']:.2f} s")
        big = stores[args.runs]
        local = best(rldk("fleet", str(big), "--engine", "local", "--format", "json"))
        ray = best(rldk("fleet", str(big), "--engine", "ray", "--workers", str(args.workers), "--format", "json"))
        print(f"\nrldk fleet, {args.runs} runs x {events:,} events ({args.runs * events:,} events)")
        print(f"  {'engine':<10} {'wall s':>8} {'peak RSS MiB':>13} {'exit':>5}")
        print(f"  {'local':<10} {local[0]:8.2f} {local[1]:13.0f} {local[2]:5d}")
        print(f"  {'ray x' + str(args.workers):<10} {ray[0]:8.2f} {ray[1]:13.0f} {ray[2]:5d}")
        print(f"  speed-up (local / ray): {local[0] / ray[0]:.2f}x")
        print("\nscaling in runs (time - time on one run):")
        print(f"  {'runs':>6} {'rldk runs s':>12} {'fleet local s':>14}")
        listing, reading = [], []
        for n in sizes:
            listing.append(best(rldk("runs", str(stores[n]), "--format", "json"))[0] - floor["runs"])
            reading.append(best(rldk("fleet", str(stores[n]), "--format", "json"))[0] - floor["fleet"])
            print(f"  {n:6d} {listing[-1]:12.2f} {reading[-1]:14.2f}")
        extra = [n - 1 for n in sizes]
        print(f"  fitted exponent: listing {exponent(extra, listing):.2f}, "
              f"fleet {exponent(extra, reading):.2f} (1.0 = linear)")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
