"""Writer overhead: rldk.writer.log against the loggers people use today.

Each measurement runs in a fresh subprocess (clean peak-RSS accounting). For each
logger it logs ``steps`` x ``k`` float scalars (float32-born values shaped like
training curves, so compression sees realistic bits) and reports, per value:

  caller   time spent in the training loop itself (what the training thread pays)
  total    loop + close/flush (everything the logger costs)
  bytes    bytes on disk
  rss      peak RSS growth of the process over its state after imports (MB)
  cpu      CPU time of the whole process (every thread) over loop + close: what the
           logger costs the machine, and a figure load on a shared machine barely moves

Contenders: an empty loop that builds the same dicts (the floor), rldk (its compiled
hot path where built; ``rldk_py``: the pure-Python path), orjson
JSONL (one line per step), TensorBoard SummaryWriter.add_scalar, wandb offline
wandb.log. TensorBoard and wandb cost ~30 us per value, so they log fewer steps
(``--slow-steps``); costs are per value, so the comparison holds.

A second table (``--realistic``) times a loop closer to training: STEPS steps of
~2.5 ms of single-threaded numpy work each, 20 scalars logged a step, each logger
in a fresh process, the loggers interleaved repeat by repeat; it reports the time
per step over the same loop with no logger (loop + close, setup excluded).

    python benchmarks/writer_overhead.py                 # the README table
    python benchmarks/writer_overhead.py --reps 5 --long 1000000
    python benchmarks/writer_overhead.py --realistic --reps 5 --loggers none,rldk,jsonl
    python benchmarks/writer_overhead.py --blocks 60      # the same loop in one process, paired
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def make_values(steps: int, k: int):
    """``steps`` rows of ``k`` Python floats: noisy decaying curves computed in float32."""
    import numpy as np

    rng = np.random.default_rng(0)
    t = np.arange(steps, dtype=np.float32)[:, None]
    scale = np.arange(1, k + 1, dtype=np.float32)[None, :]
    curves = scale * np.exp(-t / np.float32(steps / 3)) + rng.normal(0, 0.05, (steps, k)).astype(np.float32)
    return curves.astype(np.float32).tolist()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def child(logger: str, steps: int, k: int) -> dict:
    """Run one measurement in this process and return its figures."""
    names = [f"train/metric_{j}" for j in range(k)]
    out = tempfile.mkdtemp(prefix=f"bench-{logger}-")
    setup, log, close = LOGGERS[logger](out, names)
    # values are produced per step inside the loop's budget only as a list lookup
    values = make_values(min(steps, 100_000), k)
    period = len(values)
    import gc

    log = setup() or log     # a logger whose call target is known only after setup returns it
    gc.collect()
    base_rss = _current_rss_mb()   # growth caused by logging, after each logger's own init
    c0, t0 = time.process_time(), time.perf_counter()
    for step in range(steps):
        row = values[step % period]
        log(step, {names[j]: row[j] for j in range(k)})
    t1 = time.perf_counter()
    close()
    c2, t2 = time.process_time(), time.perf_counter()
    n = steps * k
    result = {"logger": logger, "steps": steps, "k": k, "cpu_us": (c2 - c0) / n * 1e6,
              "caller_us": (t1 - t0) / n * 1e6, "total_us": (t2 - t0) / n * 1e6,
              "bytes_per_value": _dir_bytes(out) / n, "rss_growth_mb": max(0.0, _rss_mb() - base_rss)}
    shutil.rmtree(out, ignore_errors=True)
    return result


def realistic_child(logger: str, steps: int, k: int, reps: int) -> dict:
    """``steps`` steps of ``reps`` numpy passes (~2.5 ms), ``k`` scalars logged each step."""
    import numpy as np

    names = [f"train/metric_{j}" for j in range(k)]
    out = tempfile.mkdtemp(prefix=f"bench-{logger}-")
    setup, log, close = LOGGERS[logger](out, names)
    x = np.random.default_rng(0).standard_normal(1 << 16)
    log = setup() or log
    c0, t0 = time.process_time(), time.perf_counter()
    for step in range(steps):
        y = x
        for _ in range(reps):
            y = np.tanh(y * 1.0001 + 0.001)
        row = y[:k].tolist()
        if logger != "none":
            log(step, {names[j]: row[j] for j in range(k)})
    t1 = time.perf_counter()
    close()
    c2, t2 = time.process_time(), time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    return {"logger": logger, "steps": steps, "k": k, "loop_ms": (t1 - t0) / steps * 1e3,
            "cpu_ms": (c2 - c0) / steps * 1e3,
            "total_ms": (t2 - t0) / steps * 1e3, "reps": reps}


def _calibrate(work_ms: float = 2.5) -> int:
    """Numpy passes giving ~``work_ms`` a step (measured once, the same for every logger):
    the median time of a pass, over 200 passes after a warm-up."""
    import numpy as np

    y = x = np.random.default_rng(0).standard_normal(1 << 16)
    times = []
    for i in range(220):
        t0 = time.perf_counter()
        y = np.tanh(y * 1.0001 + 0.001)
        if i >= 20:
            times.append(time.perf_counter() - t0)
    del x, y
    return max(1, round(work_ms / (statistics.median(times) * 1e3)))


def realistic(steps: int, reps: int, loggers: list[str], k: int = 20) -> None:
    """Overhead per step against the no-logger loop, loggers interleaved per repeat."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    by: dict = {name: [] for name in loggers}
    passes = _calibrate()
    for rep in range(reps):
        for name in loggers[rep % len(loggers):] + loggers[:rep % len(loggers)]:   # no order bias
            proc = subprocess.run([sys.executable, __file__, "--realistic-child", name, str(steps), str(k),
                                   str(passes)],
                                  capture_output=True, text=True, env=env)
            if proc.returncode == 0:
                by[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            else:
                print(f"  {name}: failed ({proc.stderr.strip().splitlines()[-1:]})", file=sys.stderr)
    base = statistics.median(r["total_ms"] for r in by.get("none", [])) if by.get("none") else None
    print(f"\nrealistic loop: {steps} steps of ~2.5 ms numpy work ({passes} passes), {k} scalars a step, "
          f"median of {reps} (load {os.getloadavg()[0]:.1f})")
    cpu_base = statistics.median(r["cpu_ms"] for r in by["none"]) if by.get("none") else None
    print(f"{'logger':<12}{'loop ms/step':>14}{'total ms/step':>15}{'overhead':>10}{'us/step':>10}"
          f"{'cpu +us/step':>14}")
    totals, cpus = {}, {}
    for name, runs in by.items():
        if not runs:
            continue
        loop = statistics.median(r["loop_ms"] for r in runs)
        totals[name] = total = statistics.median(r["total_ms"] for r in runs)
        cpus[name] = cpu = statistics.median(r["cpu_ms"] for r in runs)
        extra = f"{(total / base - 1) * 100:+.1f}%" if base else ""
        micro = f"{(total - base) * 1e3:.1f}" if base else ""
        cpu_extra = f"{(cpu - cpu_base) * 1e3:.1f}" if cpu_base else ""
        print(f"{name:<12}{loop:>14.3f}{total:>15.3f}{extra:>10}{micro:>10}{cpu_extra:>14}")
    if base and "rldk" in totals and "jsonl" in totals:
        print(f"overhead over the loop without a logger, rldk vs orjson JSONL: wall {(totals['rldk'] - base) * 1e3:+.1f} "
              f"vs {(totals['jsonl'] - base) * 1e3:+.1f} us/step, process CPU {(cpus['rldk'] - cpu_base) * 1e3:+.1f} "
              f"vs {(cpus['jsonl'] - cpu_base) * 1e3:+.1f} us/step (target: rldk <= JSONL)")


def blocks(cycles: int, block: int, k: int = 20, pin: str | None = None) -> None:
    """The realistic loop in one process: blocks of ``block`` steps with no logger, orjson
    JSONL and rldk, in rotating order, ``cycles`` times. A logger's block ends by flushing
    it (rldk waits for its encoder to write the block's values), so its background work
    is charged to its own block. Per cycle, the overhead per step of each logger over the
    no-logger block next to it; the medians, and the median of the paired difference rldk
    - JSONL with a bootstrap 90% interval: one process and neighbouring blocks take out
    the process-to-process noise of ``--realistic``.

    The same blocks also give each logger's cost measured directly, which the machine's
    noise barely moves (the wall-time differences above are differences of two ~2.5 ms
    steps): the time inside its calls in the loop (cold caches included), its flush at
    the block's end, the loop thread's time off the CPU (wall minus ``time.thread_time``:
    GIL waits, flush waits, preemptions) over the no-logger block's, and the CPU time of
    rldk's encoder thread over the cycle (its idle wakes in the other blocks included; from
    ``/proc/self/task/<tid>/schedstat``, Linux only: NaN elsewhere). Calls + the flush's
    CPU on the loop thread + off-CPU is what the loop thread pays when a core is free for
    the encoder; calls + the flush's CPU + encoder CPU bounds what it can pay when none is
    (every encoder cycle taken from the loop). A flush's wait is the encoder writing:
    counted once, in off-CPU or in the encoder's CPU. What none of these counts: a
    logger's effect on the caches the numpy work uses.

    ``pin`` ("LOOP:ENCODER", CPU lists such as "2:3" or "4:4"; Linux) fixes the loop
    thread and rldk's writer threads to those CPUs, so that the scheduler cannot move
    either; without it they go where the scheduler puts them, as in training."""
    import random
    import threading

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):   # as --realistic's children
        os.environ.setdefault(var, "1")
    import numpy as np
    import orjson

    import rldk.writer as w

    names = [f"train/metric_{j}" for j in range(k)]
    out = tempfile.mkdtemp(prefix="bench-blocks-")
    w.init(os.path.join(out, "rldk"), run_id="bench", capture_env=False)
    if pin:
        loop_cpus, writer_cpus = ({int(c) for c in part.split(",")} for part in pin.split(":"))
        os.sched_setaffinity(0, loop_cpus)                            # this thread only
        for thread in threading.enumerate():
            if thread.name.startswith("rldk-writer") and thread.native_id is not None:
                os.sched_setaffinity(thread.native_id, writer_cpus)
    jsonl = open(os.path.join(out, "log.jsonl"), "wb", buffering=1 << 20)
    passes = _calibrate()
    x = np.random.default_rng(0).standard_normal(1 << 16)
    steps = {"none": 0, "jsonl": 0, "rldk": 0}
    clock = time.perf_counter

    def run_block(logger: str) -> dict:
        calls = 0.0
        cpu0, start = time.thread_time(), clock()
        for _ in range(block):
            y = x
            for _ in range(passes):
                y = np.tanh(y * 1.0001 + 0.001)
            row = y[:k].tolist()
            values = {names[j]: row[j] for j in range(k)}
            if logger == "rldk":
                a = clock()
                w.log(steps["rldk"], values)
                calls += clock() - a
            elif logger == "jsonl":
                a = clock()
                values["step"] = steps["jsonl"]
                jsonl.write(orjson.dumps(values) + b"\n")
                calls += clock() - a
            steps[logger] += 1
        a, flush_cpu = clock(), time.thread_time()
        if logger == "rldk":
            w.flush()
        elif logger == "jsonl":
            jsonl.flush()
        end, cpu1 = clock(), time.thread_time()
        per_step = 1e6 / block                                           # seconds -> us per step
        return {"wall": (end - start) * per_step, "calls": calls * per_step, "flush": (end - a) * per_step,
                "flush_cpu": (cpu1 - flush_cpu) * per_step, "background": 0.0,
                "off_cpu": ((end - start) - (cpu1 - cpu0)) * per_step}

    order = ["none", "jsonl", "rldk"]
    run_block("none")                                                # warm-up
    over: dict = {"jsonl": [], "rldk": []}
    parts: dict = {"jsonl": [], "rldk": []}
    for cycle in range(cycles):
        rotated = order[cycle % 3:] + order[:cycle % 3]
        before = _background_cpu()
        t = {logger: run_block(logger) for logger in rotated}
        after = _background_cpu()
        # the encoder's CPU over the whole cycle (its idle wakes in the other blocks too) is rldk's
        t["rldk"]["background"] = (after - before) * 1e6 / block if None not in (before, after) else float("nan")
        for logger in over:
            over[logger].append(t[logger]["wall"] - t["none"]["wall"])
            t[logger]["stall"] = t[logger]["off_cpu"] - t["none"]["off_cpu"]
            parts[logger].append(t[logger])
    w.close()
    jsonl.close()
    shutil.rmtree(out, ignore_errors=True)
    diff = [a - b for a, b in zip(over["rldk"], over["jsonl"])]
    rng = random.Random(0)
    boot = sorted(statistics.median(rng.choices(diff, k=len(diff))) for _ in range(2000))
    base = statistics.median(run_block("none")["wall"] for _ in range(3))
    print(f"\nrealistic loop, one process: {cycles} cycles of {block}-step blocks (none, JSONL, rldk, "
          f"rotating; ~{base / 1e3:.2f} ms a step), {k} scalars a step, load {os.getloadavg()[0]:.1f}"
          + (f", loop:writer threads pinned to CPUs {pin}" if pin else ""))
    for logger, values in over.items():
        print(f"  {logger:<6} overhead {statistics.median(values):+7.1f} us/step "
              f"({statistics.median(values) / base * 100:+.2f}%)")
    print(f"  rldk - JSONL, paired by cycle: median {statistics.median(diff):+.1f} us/step, 90% interval "
          f"[{boot[100]:+.1f}, {boot[1899]:+.1f}]; rldk cheaper in {sum(d <= 0 for d in diff)} of {len(diff)} "
          "cycles (target: rldk <= JSONL)")
    print("  measured directly, medians over the cycles, us/step: its calls in the loop (wall), its flush at "
          "the block's end (wall, and the loop thread's CPU in it), off-CPU = the loop thread's time off the CPU "
          "(wall - its CPU time: GIL waits, the flush's wait, preemption) over the no-logger block's, "
          "background = rldk's encoder thread CPU over the cycle")
    print("  loop thread = calls + flush CPU + off-CPU (what the loop pays with a core free); no spare core = "
          "calls + flush CPU + background (every encoder cycle taken from the loop; the flush's wait is the "
          "encoder writing, counted once, in background)")
    cost = {}
    for logger, rows in parts.items():
        med = {key: statistics.median(r[key] for r in rows)
               for key in ("calls", "flush", "flush_cpu", "stall", "background")}
        thread = statistics.median(r["calls"] + r["flush_cpu"] + r["stall"] for r in rows)
        bound = statistics.median(r["calls"] + r["flush_cpu"] + r["background"] for r in rows)
        # the block's flush wait is the benchmark's: a training loop waits so once, at close()
        unflushed = statistics.median(r["calls"] + r["flush_cpu"] + r["stall"] - (r["flush"] - r["flush_cpu"])
                                      for r in rows)
        cost[logger] = thread, bound, unflushed
        print(f"  {logger:<6} calls {med['calls']:6.2f}  flush {med['flush']:6.2f} (CPU {med['flush_cpu']:5.2f})"
              f"  off-CPU {med['stall']:+7.2f}  background {med['background']:6.2f}  loop thread {thread:6.2f}"
              f" ({unflushed:6.2f} without the flush's wait)  no spare core {bound:6.2f}")
    print(f"  rldk / JSONL: loop thread {cost['rldk'][0] / cost['jsonl'][0]:.2f}x "
          f"({cost['rldk'][2] / cost['jsonl'][2]:.2f}x without the block's flush wait, which a training loop pays "
          f"once, at close), no spare core {cost['rldk'][1] / cost['jsonl'][1]:.2f}x (target: <= 1.0x)")


def _background_cpu() -> float | None:
    """CPU seconds the rldk writer threads of this process have used (Linux; else None)."""
    import threading

    total = 0.0
    for thread in threading.enumerate():
        if thread.name.startswith("rldk-writer") and thread.native_id is not None:
            try:
                with open(f"/proc/self/task/{thread.native_id}/schedstat") as f:
                    total += int(f.read().split()[0]) / 1e9
            except (OSError, ValueError, IndexError):
                return None
    return total


def _empty(out, names):
    return (lambda: None), (lambda step, d: None), (lambda: None)


def _rldk(out, names):
    import pyarrow  # noqa: F401  (imported before the baseline RSS, like torch would be in training)
    import pyarrow.parquet  # noqa: F401

    import rldk.writer as w

    def setup():
        w.init(out, run_id="bench", capture_env=False)
        return w.log        # what ``w.log(...)`` resolves to once init has run

    return setup, w.log, w.close


def _rldk_s3(out, names):
    """rldk writing to ``s3://`` (the server named by ``AWS_ENDPOINT_URL``, started by
    ``--s3`` in its own process so that it does not share this process's GIL)."""
    import pyarrow  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import rldk.writer as w
    from rldk.core import fs

    bucket = f"bench-{os.getpid()}"
    fs.filesystem("s3").mkdir(bucket)

    def setup():
        w.init(f"s3://{bucket}/runs", run_id="bench", capture_env=False)
        return w.log

    return setup, w.log, w.close


def s3_column(steps: int, reps: int) -> None:
    """The writer's caller cost on S3 against local disk (bound: within 10%), interleaved,
    medians of ``reps``, k=10 and k=20, against a moto server on loopback."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", "import sys; from moto.server import main; "
                               f"sys.exit(main(['-H', '127.0.0.1', '-p', '{port}']))"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                      AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    try:
        for _ in range(100):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        for k in (10, 20):
            by: dict = {"rldk": [], "rldk_s3": []}
            for rep in range(reps):
                for logger in (("rldk", "rldk_s3") if rep % 2 == 0 else ("rldk_s3", "rldk")):
                    result = run_child(logger, steps, k)
                    if result:
                        by[logger].append(result)
            if by["rldk"] and by["rldk_s3"]:
                local, s3 = median_of(by["rldk"]), median_of(by["rldk_s3"])
                print(f"k={k}: caller local {local['caller_us']:.3f}, s3 {s3['caller_us']:.3f} us/value: "
                      f"s3 / local {s3['caller_us'] / local['caller_us']:.2f}x (bound <= 1.10x); "
                      f"total {local['total_us']:.3f} / {s3['total_us']:.3f} us/value")
    finally:
        server.terminate()
        server.wait()


def _rldk_python(out, names):
    """rldk without its compiled hot path (what a machine without a C compiler runs)."""
    os.environ["RLDK_PURE_PYTHON"] = "1"
    return _rldk(out, names)


def _jsonl(out, names):
    import orjson

    f = open(os.path.join(out, "log.jsonl"), "wb", buffering=1 << 20)
    dumps = orjson.dumps

    def log(step, d):
        d["step"] = step
        f.write(dumps(d) + b"\n")

    return (lambda: None), log, f.close


def _tensorboard(out, names):
    from torch.utils.tensorboard import SummaryWriter

    state = {}

    def setup():
        state["w"] = SummaryWriter(out)

    def log(step, d):
        add = state["w"].add_scalar
        for name, v in d.items():
            add(name, v, step)

    return setup, log, lambda: state["w"].close()


def _wandb(out, names):
    os.environ.update(WANDB_MODE="offline", WANDB_DIR=out, WANDB_SILENT="true",
                      WANDB_DISABLE_GIT="true", WANDB_CONSOLE="off")
    import wandb

    state = {}

    def setup():
        state["run"] = wandb.init(project="bench", dir=out, settings=wandb.Settings(
            x_disable_stats=True, console="off", save_code=False))

    def log(step, d):
        state["run"].log(d, step=step)

    return setup, log, lambda: state["run"].finish()


def _rldk_guards(out, names):
    """rldk with ``guards="default"``: the live analyzers run in a background thread."""
    import pyarrow  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import rldk.live.guards  # noqa: F401  (its imports are part of init, not of the loop)
    import rldk.writer as w

    def setup():
        w.init(out, run_id="bench", capture_env=False, guards="default")
        return w.log

    return setup, w.log, w.close


LOGGERS = {"empty": _empty, "none": _empty, "rldk": _rldk, "rldk_py": _rldk_python, "jsonl": _jsonl, "tensorboard": _tensorboard, "wandb": _wandb,
           "rldk_guards": _rldk_guards, "rldk_s3": _rldk_s3}


def guards_column(steps: int, reps: int, k: int = 10) -> None:
    """The caller-thread cost that guards add to rldk (the bound: 5%), median of ``reps``."""
    plain = [r for r in (run_child("rldk", steps, k) for _ in range(reps)) if r]
    guarded = [r for r in (run_child("rldk_guards", steps, k) for _ in range(reps)) if r]
    if plain and guarded:
        a, b = median_of(plain)["caller_us"], median_of(guarded)["caller_us"]
        print(f"\nguards (k={k}, {steps} steps): caller {a:.3f} -> {b:.3f} us/value "
              f"({(b / a - 1) * 100:+.1f}%; bound +5%)")


def run_child(logger: str, steps: int, k: int) -> dict | None:
    proc = subprocess.run([sys.executable, __file__, "--child", logger, str(steps), str(k)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  {logger}: failed ({proc.stderr.strip().splitlines()[-1:]})", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_of(results: list[dict]) -> dict:
    keys = ("caller_us", "total_us", "cpu_us", "bytes_per_value", "rss_growth_mb")
    out = dict(results[0])
    out.update({key: statistics.median(r[key] for r in results) for key in keys})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--slow-steps", type=int, default=10_000, help="steps for TensorBoard and wandb")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--long", type=int, default=1_000_000, help="steps of the RSS-flatness run (0: skip)")
    parser.add_argument("--loggers", help="default: empty,rldk,jsonl,tensorboard,wandb "
                        "(--realistic: none,rldk,jsonl)")
    parser.add_argument("--guards", action="store_true", help="only the guards column")
    parser.add_argument("--realistic", action="store_true", help="only the realistic-loop table")
    parser.add_argument("--s3", action="store_true",
                        help="only the S3 column: caller cost on s3:// (moto on loopback) vs local")
    parser.add_argument("--realistic-steps", type=int, default=3000)
    parser.add_argument("--blocks", type=int, default=0, metavar="CYCLES",
                        help="only the realistic loop in one process: CYCLES cycles of none / JSONL / rldk blocks")
    parser.add_argument("--block-steps", type=int, default=200)
    parser.add_argument("--pin", metavar="LOOP:ENCODER",
                        help="--blocks only: CPUs for the loop thread and rldk's writer threads, e.g. 2:3 (Linux)")
    args = parser.parse_args()
    print(f"# writer overhead, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    if args.guards:
        return guards_column(args.steps, args.reps)
    if args.s3:
        return s3_column(args.steps, args.reps)
    if args.blocks:
        return blocks(args.blocks, args.block_steps, pin=args.pin)
    if args.realistic:
        return realistic(args.realistic_steps, args.reps, (args.loggers or "none,rldk,jsonl").split(","))
    args.loggers = args.loggers or "empty,rldk,jsonl,tensorboard,wandb"
    rows = []
    loggers = args.loggers.split(",")
    for k in (10, 20):
        by: dict = {logger: [] for logger in loggers}
        for rep in range(args.reps):          # interleaved, so load on the machine hits every logger
            for logger in loggers[rep % len(loggers):] + loggers[:rep % len(loggers)]:
                steps = args.slow_steps if logger in ("tensorboard", "wandb") else args.steps
                result = run_child(logger, steps, k)
                if result:
                    by[logger].append(result)
        rows += [median_of(results) for results in by.values() if results]
    print(f"\n{'logger':<12}{'k':>4}{'steps':>9}{'caller us/v':>13}{'total us/v':>12}{'cpu us/v':>10}{'bytes/v':>9}"
          f"{'peak RSS +MB':>14}{'TB cost/this':>14}")
    for r in rows:
        tb = next((x for x in rows if x["logger"] == "tensorboard" and x["k"] == r["k"]), None)
        ratio = f"{tb['caller_us'] / r['caller_us']:.0f}x" if tb and r["caller_us"] > 0 else ""
        print(f"{r['logger']:<12}{r['k']:>4}{r['steps']:>9}{r['caller_us']:>13.3f}{r['total_us']:>12.3f}{r['cpu_us']:>10.3f}"
              f"{r['bytes_per_value']:>9.2f}{r['rss_growth_mb']:>14.1f}{ratio:>14}")
    for k in (10, 20):
        by = {r["logger"]: r for r in rows if r["k"] == k}
        if "rldk" in by:
            rl = by["rldk"]
            parts = [f"{name} {by[name]['caller_us'] / rl['caller_us']:.2f}x" for name in
                     ("jsonl", "tensorboard", "wandb") if name in by]
            print(f"k={k}: caller-thread cost of each logger relative to rldk (>1: rldk is cheaper): "
                  + ", ".join(parts)
                  + (f"; above the empty loop: {rl['caller_us'] - by['empty']['caller_us']:.3f} us/value"
                     if "empty" in by else ""))
            if "jsonl" in by:
                print(f"k={k}: rldk / orjson JSONL: caller {rl['caller_us'] / by['jsonl']['caller_us']:.2f}x, "
                      f"total {rl['total_us'] / by['jsonl']['total_us']:.2f}x, "
                      f"process CPU {rl['cpu_us'] / by['jsonl']['cpu_us']:.2f}x (target: caller <= 1.0x)")
    if args.long:
        short = run_child("rldk", args.steps, 10)
        long = run_child("rldk", args.long, 10)
        if short and long:
            print(f"\nRSS flatness (k=10): {args.steps} steps +{short['rss_growth_mb']:.1f} MB, "
                  f"{args.long} steps +{long['rss_growth_mb']:.1f} MB; "
                  f"caller {long['caller_us']:.3f} us/value, {long['bytes_per_value']:.2f} bytes/value")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--realistic-child":
        print(json.dumps(realistic_child(sys.argv[2], *map(int, sys.argv[3:]))))
    elif len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    else:
        main()
