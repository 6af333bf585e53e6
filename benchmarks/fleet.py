"""Fleet analysis: ``rldk fleet`` over N runs x M events, locally, on Ray and on S3.

    python benchmarks/fleet.py                                   # 200 runs x 20k events
    python benchmarks/fleet.py --runs 1000 --events 100000 --workers 2 --s3-runs 1000

The store is written straight with pyarrow in the writer's layout, as a finished
run leaves it: one file per run named ``<run>.r0.<session>.parquet``, the event
schema, Parquet options and ``rldk.*`` footer metadata of ``rldk.core.segments``;
a start event, 4 metrics a step (reward, kl, entropy, loss) and an end event; run
7 of every 10 logs NaN losses from its middle step on (a NaN onset to find).

Each figure is one whole process (``python -m rldk.cli ...``) timed from outside.
Peak RSS is the command's own VmHWM, read by the process as it exits (getrusage's
ru_maxrss would carry this driver's size across exec); for Ray, the sum of the
VmHWM of every process of its tree (the command, Ray's GCS and raylet, the
workers), sampled every 50 ms: an upper bound on the peak they held together.

1. ``rldk fleet`` with ``--engine local`` and ``--engine ray --workers W``: wall
   time, peak RSS, speed-up (local / ray); repeats are interleaved.
2. S3 on loopback: the first ``--s3-runs`` runs uploaded to a moto server (its own
   process); ``rldk runs`` and ``rldk fleet`` over ``s3://``.
3. Scaling in runs on N/8, N/4, N/2 and N runs (hard links to the first files):
   listing (``rldk runs``: footers and the runs table), reading (``rldk sql`` summing
   every metric value) and, with ``--scale-fleet``, ``rldk fleet``; the fitted exponent of
   (time - the same command on one run) against runs - 1: how the per-run cost
   grows, without the fixed cost of starting. 1.0 is linear.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
METRICS = ("reward", "kl", "entropy", "loss")
READ_SQL = "SELECT count(*) AS n, sum(step) AS steps, min(value) AS low FROM metrics"
S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


# ------------------------------------------------------------------- the store
def run_table(i: int, events: int):
    """Run ``i`` as the writer records it: start, ``events / 4`` steps of 4 metrics, end."""
    import numpy as np
    import pyarrow as pa

    from rldk.schemas import arrow_schema

    steps = max(1, events // len(METRICS))
    k, n = len(METRICS), steps * len(METRICS) + 2
    step = np.arange(steps, dtype=np.int64)
    loss = 1.0 / (step + 1)
    if i % 10 == 7:
        loss[steps // 2:] = np.nan
    values = np.column_stack([step * 1e-3 + i * 1e-4, 0.01 + step * 1e-6, 2.0 - step * 1e-5, loss]).ravel()
    start_ms = 1_767_225_600_000 + i * 1000
    session = f"{start_ms:x}0000{i:04x}"
    wall = np.concatenate([[start_ms], start_ms + 1 + np.repeat(step, k) // 10, [start_ms + 2 + steps // 10]])
    end = {"status": "complete", "session": session, "stats": {"events": n, "segments": 1, "write_errors": 0,
                                                               "dropped_events": 0}}
    table = pa.table({
        "run_id": pa.array([f"run{i:05d}"] * n, pa.string()),
        "rank": pa.array(np.zeros(n, dtype=np.int32)),
        "seq": pa.array(np.concatenate([[1], np.repeat(step, k) + 2, [steps + 2]])),
        "step": pa.array(np.concatenate([[0], np.repeat(step, k), [0]]), mask=_ends(n)),
        "wall_time": pa.array(wall.astype("datetime64[ms]")),
        "kind": pa.array(["run"] + ["metric"] * (n - 2) + ["run"], pa.string()),
        "name": pa.array(["start"] + list(METRICS) * steps + ["end"], pa.string()),
        "value": pa.array(np.concatenate([[0.0], values, [0.0]]), mask=_ends(n)),
        "ivalue": pa.nulls(n, pa.int64()),
        "digest": pa.nulls(n, pa.string()),
        "text": pa.nulls(n, pa.string()),
        "attrs": pa.array([json.dumps({"config": {}, "seed": None, "session": session})] + [None] * (n - 2)
                          + [json.dumps(end)], pa.string()),
    }, schema=arrow_schema())
    return table, f"run{i:05d}.r0.{session}.parquet"


def _ends(n: int):
    import numpy as np

    mask = np.zeros(n, dtype=bool)
    mask[[0, -1]] = True
    return mask


def write_runs(target: str, first: int, last: int, events: int) -> None:
    """Runs ``first..last-1`` into ``target`` (a folder or an ``s3://`` prefix), each
    written as one file by ``rldk.core.segments.write_segment``."""
    from rldk.core.fs import ObjectDir, is_remote
    from rldk.core.segments import write_segment

    where = ObjectDir(target) if is_remote(target) else Path(target)
    for i in range(first, last):
        table, name = run_table(i, events)
        write_segment(table, where, name)


def write_store(target: str, runs: int, events: int, procs: int = 2) -> None:
    from rldk.schemas import validate

    problems = validate(run_table(0, 8)[0])
    assert not problems, problems
    if not str(target).startswith("s3://"):
        Path(target).mkdir(parents=True, exist_ok=True)
    bounds = [(runs * p // procs, runs * (p + 1) // procs) for p in range(procs)]
    with ProcessPoolExecutor(procs) as pool:
        list(pool.map(write_runs, [str(target)] * procs, *zip(*bounds), [events] * procs))


def linked_subset(store: Path, dest: Path, runs: int) -> Path:
    """A store of the first ``runs`` files of ``store``, as hard links."""
    if not dest.exists():
        dest.mkdir(parents=True)
        for f in sorted(store.glob("*.parquet"))[:runs]:
            os.link(f, dest / f.name)
    return dest


# ----------------------------------------------------------------- measuring
#: ``python -c PEAK ARGS`` runs ``rldk ARGS`` and writes its VmHWM (KiB) to the file
#: named by PEAK_FILE as it exits.
PEAK = """import atexit, os, runpy
def _peak():
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    with open(os.environ["PEAK_FILE"], "w") as out:
        out.write(str(kb))
atexit.register(_peak)
runpy.run_module("rldk.cli", run_name="__main__", alter_sys=True)
"""


def measure(args: list[str], env) -> dict:
    """One ``rldk ARGS`` process: wall seconds, its own peak (VmHWM, MiB), the sum of
    the peaks of its process tree (MiB) and the exit code."""
    import psutil

    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak_file:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", PEAK, *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=dict(env, PEAK_FILE=peak_file.name))
        peaks, done = {}, threading.Event()
        thread = threading.Thread(target=_sample, args=(psutil.Process(proc.pid), peaks, done), daemon=True)
        thread.start()
        _, err = proc.communicate()
        wall = time.perf_counter() - start
        done.set()
        thread.join()
        own = int(peak_file.read() or 0) / 1024
    if proc.returncode not in (0, 3, 4):
        raise SystemExit(f"rldk {' '.join(args[:4])}... exited {proc.returncode}:\n{err.decode()[-2000:]}")
    peaks[proc.pid] = own
    return {"wall": wall, "own": own, "tree": sum(peaks.values()), "code": proc.returncode}


def _sample(root, peaks: dict, done) -> None:
    while not done.is_set():
        try:
            tree = [root, *root.children(recursive=True)]
        except Exception:
            tree = []
        for p in tree:
            kb = _hwm(p.pid)
            if kb:
                peaks[p.pid] = max(peaks.get(p.pid, 0), kb / 1024)
        done.wait(0.05)


def _hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return 0


def interleaved(commands: dict, repeat: int, env) -> dict:
    """Each command ``repeat`` times, interleaved; the median of each figure."""
    runs = {name: [] for name in commands}
    for _ in range(repeat):
        for name, args in commands.items():
            runs[name].append(measure(args, env))
    return {name: {k: statistics.median(r[k] for r in rs) for k in ("wall", "own", "tree")}
            for name, rs in runs.items()}


def exponent(sizes, times) -> float:
    """Least-squares slope of log(time) on log(size)."""
    xs, ys = [math.log(s) for s in sizes], [math.log(max(t, 1e-3)) for t in times]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


# ------------------------------------------------------------------ sections
def engines(store: Path, args, env) -> None:
    res = interleaved({"local": ["fleet", str(store), "--engine", "local", "--format", "json"],
                       f"ray x{args.workers}": ["fleet", str(store), "--engine", "ray", "--workers",
                                                 str(args.workers), "--format", "json"]}, args.repeat, env)
    print(f"\nrldk fleet, {args.runs} runs x {args.events:,} events ({args.runs * args.events:,} events), "
          f"median of {args.repeat}; load {_load()}")
    print(f"  {'engine':<10} {'wall s':>8} {'us/event':>9} {'peak MiB':>9} {'tree peak MiB':>14}")
    for name, r in res.items():
        print(f"  {name:<10} {r['wall']:8.1f} {r['wall'] / (args.runs * args.events) * 1e6:9.2f} "
              f"{r['own']:9.0f} {r['tree']:14.0f}")
    local, ray = res.values()
    print(f"  speed-up (local / ray): {local['wall'] / ray['wall']:.2f}x")


def on_s3(store: Path, args, env) -> None:
    server, url = _moto_server()
    try:
        env = dict(env, **S3_ENV, AWS_ENDPOINT_URL=url)
        os.environ.update(S3_ENV, AWS_ENDPOINT_URL=url)
        from rldk.core.fs import filesystem

        filesystem("s3").mkdir("fleet")
        prefix = f"s3://fleet/runs{args.s3_runs}"
        t = time.perf_counter()
        _upload(store, prefix, args.s3_runs)
        up = time.perf_counter() - t
        res = interleaved({"runs": ["runs", prefix, "--format", "json"],
                           "fleet": ["fleet", prefix, "--engine", "local", "--format", "json"],
                           f"fleet ray x{args.workers}": ["fleet", prefix, "--engine", "ray", "--workers",
                                                          str(args.workers), "--format", "json"]},
                          args.repeat, env)
        moto = _hwm(server.pid) / 1024
    finally:
        server.terminate()
        server.wait()
    print(f"\nS3 on loopback (moto server), {args.s3_runs} runs x {args.events:,} events, uploaded in "
          f"{up:.0f} s (moto peak {moto:.0f} MiB); load {_load()}")
    for name, r in res.items():
        print(f"  rldk {name:<12} {r['wall']:8.1f} s  peak {r['own']:6.0f} MiB")


def _moto_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the moto server did not start (pip install 'moto[server]')")


def _upload(store: Path, prefix: str, runs: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from rldk.core.fs import filesystem, strip

    fs = filesystem("s3")
    files = sorted(store.glob("*.parquet"))[:runs]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda f: fs.put_file(str(f), f"{strip(prefix)}/{f.name}"), files))


def scaling(store: Path, base: Path, args, env) -> None:
    sizes = sorted({max(2, args.runs // 8), max(3, args.runs // 4), max(4, args.runs // 2), args.runs})
    stores = {n: linked_subset(store, base / f"first{n}", n) for n in [1, *sizes]}
    commands = {"listing": lambda s: ["runs", str(s), "--format", "json"],
                "reading": lambda s: ["sql", READ_SQL, str(s), "--format", "json"]}
    if args.scale_fleet:
        commands["fleet"] = lambda s: ["fleet", str(s), "--engine", "local", "--format", "json"]
    floor = {k: interleaved({k: c(stores[1])}, args.repeat, env)[k]["wall"] for k, c in commands.items()}
    print(f"\nscaling in runs ({args.events:,} events a run; time - the same command on one run: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in floor.items()) + f"); load {_load()}")
    print(f"  {'runs':>6} " + " ".join(f"{k + ' s':>10}" for k in commands))
    got = {k: [] for k in commands}
    for n in sizes:
        res = interleaved({k: c(stores[n]) for k, c in commands.items()}, args.repeat, env)
        for k in commands:
            got[k].append(res[k]["wall"] - floor[k])
        print(f"  {n:6d} " + " ".join(f"{got[k][-1]:10.2f}" for k in commands))
    extra = [n - 1 for n in sizes]
    both = [a + b for a, b in zip(got["listing"], got["reading"])]
    print("  fitted exponent: " + ", ".join(f"{k} {exponent(extra, v):.2f}" for k, v in got.items())
          + f", listing + reading {exponent(extra, both):.2f} (1.0 = linear)")


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--events", type=float, default=20_000, help="metric events per run")
    ap.add_argument("--workers", type=int, default=2, help="Ray CPUs (--engine ray --workers)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each command (medians are shown)")
    ap.add_argument("--s3-runs", type=int, default=None, help="runs uploaded to S3 (default: all; 0: skip)")
    ap.add_argument("--scale-fleet", action="store_true", help="time rldk fleet in the scaling too")
    ap.add_argument("--skip", action="append", default=[], choices=["engines", "s3", "scaling"])
    ap.add_argument("--keep", metavar="DIR", help="write the store here and keep it")
    args = ap.parse_args(argv)
    args.events = int(args.events)
    args.s3_runs = args.runs if args.s3_runs is None else min(args.s3_runs, args.runs)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rldk-fleet-"))
    store = base / f"runs{args.runs}x{args.events}"
    try:
        if not store.exists():
            t = time.perf_counter()
            write_store(store, args.runs, args.events)
            size = sum(f.stat().st_size for f in store.glob("*.parquet")) / 2**20
            print(f"wrote {args.runs} runs x {args.events:,} events ({size:.0f} MiB) in "
                  f"{time.perf_counter() - t:.1f} s")
        if "engines" not in args.skip:
            engines(store, args, env)
        if "s3" not in args.skip and args.s3_runs:
            on_s3(store, args, env)
        if "scaling" not in args.skip:
            scaling(store, base, args, env)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
