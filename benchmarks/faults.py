"""Fault injection: random SIGKILLs across logging, flush, close-merge and compaction,
converter fuzzing, and the memory of a large streamed import.

    python benchmarks/faults.py                       # 200 kills, 2,200 fuzzed inputs, 1 GB import
    python benchmarks/faults.py --kills 40 --fuzz 0 --import-mb 0     # a quick look

Each kill round starts a child that writes into a fresh store, SIGKILLs it at a
random instant, then checks: every ``*.parquet`` reads (pyarrow); plain DuckDB
over ``store/*.parquet`` never counts more events than rldk, and equals it once
rldk opened the store (which finishes an interrupted merge); every step the child
acknowledged (``flush()`` returned True, or ``close()`` returned) is there; and
in the tight-loop mode the events lost at the kill span at most one flush interval
(kill time minus the wall time of the last stored event). It prints the table of
docs/reliability.md. ``tests/test_faults_kill.py`` runs a few rounds of each mode.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("log", "flush", "close", "compact")
FLUSH_SECS = 1.0

# Logs as fast as it can, with a span every 20 steps and samples every 50 (the loop
# that starved the encoder), flush_secs=1; "flush" also flushes every 200 steps and
# prints the steps acknowledged; "close" closes after 12 flushes (a close-merge).
CHILD = r"""
import sys, time, rldk.writer as w
store, mode, flush_secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
w.init(store, run_id="victim", flush_secs=flush_secs, capture_env=False)
print("ready", flush=True)
step = 0
while True:
    w.log(step, a=float(step), b=step * 0.5)
    if step % 20 == 0:
        with w.span("rollout", step):
            pass
    if step % 50 == 0:
        w.log_samples(step, ["p"], ["r"], [0.5])
    if mode != "log" and step % 200 == 199:
        if w.flush():
            print(step, flush=True)
        if mode == "close" and step == 12 * 200 - 1:
            w.close()
            print("closed", flush=True)
            time.sleep(60)
    step += 1
"""

COMPACTOR = "import sys; from rldk.core.compaction import compact; print('ready', flush=True); " \
            "compact(sys.argv[1], force=True); print('done', flush=True)"


def _child(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE, text=True)


def _kill_after(proc: subprocess.Popen, delay: float) -> tuple[float, float, str]:
    assert proc.stdout.readline().strip() == "ready"
    ready_at = time.time()
    time.sleep(delay)
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    return ready_at, killed_at, out


def _seed_store(store: Path, runs: int = 3, steps: int = 600) -> int:
    """Finished runs of many small segments, for a compactor to merge."""
    from rldk.writer import EventWriter

    for r in range(runs):
        with EventWriter(store, f"done{r}", flush_secs=3600, capture_env=False, compact_on_close=False) as w:
            for step in range(steps):
                w.log(step, a=float(step))
                if step % 50 == 49:
                    w.flush()
    return runs * steps


def kill_round(store: Path, mode: str, rng: random.Random) -> dict:
    """One SIGKILL in ``mode``; returns the checks' results for the round."""
    if mode == "compact":
        logged = _seed_store(store)
        _, _, out = _kill_after(_child([COMPACTOR, str(store)]), rng.uniform(0.0, 1.5))
        acked = None
    else:
        logged = None
        delay = rng.uniform(0.0, 3.0) if mode != "close" else rng.uniform(1.0, 4.0)
        ready_at, killed_at, out = _kill_after(_child([CHILD, str(store), mode, str(FLUSH_SECS)]), delay)
        acked = max([int(x) for x in out.split() if x.isdigit()], default=None)
    result = check_store(store, logged, acked)
    if mode == "log":           # the start event is on disk at "ready": nothing later lost more
        result["loss_secs"] = killed_at - max(result["last_wall"] or 0.0, ready_at)
    result["closed"] = "closed" in out
    return result


def check_store(store: Path, logged: int | None, acked: int | None) -> dict:
    import duckdb
    import pyarrow.parquet as pq

    from rldk.core.store import open_store

    files = sorted(store.glob("*.parquet"))
    unreadable = 0
    for f in files:
        try:
            pq.read_table(f)
        except Exception:
            unreadable += 1
    plain_before = _plain(duckdb, store) if files else 0
    rldk_store = open_store(store)
    ours = rldk_store.sql("SELECT count(*) AS n FROM metrics")["n"][0]
    plain_after = _plain(duckdb, store)
    steps = rldk_store.sql("SELECT DISTINCT step FROM metrics WHERE name = 'a' ORDER BY step")["step"].to_list()
    walls = rldk_store.sql("SELECT epoch_ms(max(wall_time)) AS t FROM metrics")["t"][0]
    missing_acked = 0 if acked is None else len(set(range(acked + 1)) - set(steps))
    return {"unreadable": unreadable,
            "double_plain": int(plain_before > ours or plain_after != ours),
            "double_rldk": int(ours != len(rldk_store.sql("SELECT DISTINCT run_id, name, step, seq FROM metrics"))),
            "lost_acked": missing_acked + (0 if logged is None else abs(logged - ours)),
            "last_wall": walls / 1000.0 if walls is not None else None}


def _plain(duckdb, store: Path) -> int:
    if not any(store.glob("*.parquet")):
        return 0
    return duckdb.sql(f"SELECT count(*) FROM '{store}/*.parquet' WHERE kind = 'metric'").fetchall()[0][0]


def run_kills(kills: int, seed: int = 15) -> dict:
    rng = random.Random(seed)
    totals = {m: {"kills": 0, "unreadable": 0, "double_plain": 0, "double_rldk": 0, "lost_acked": 0,
                  "max_loss_secs": 0.0} for m in MODES}
    root = Path(tempfile.mkdtemp(prefix="rldk-faults-"))
    try:
        for i in range(kills):
            mode = MODES[i % len(MODES)]
            r = kill_round(root / f"k{i}", mode, rng)
            t = totals[mode]
            t["kills"] += 1
            for key in ("unreadable", "double_plain", "double_rldk", "lost_acked"):
                t[key] += r[key]
            t["max_loss_secs"] = max(t["max_loss_secs"], r.get("loss_secs", 0.0))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return totals


def run_fuzz(per_format: int) -> tuple[int, str]:
    env = {**os.environ, "RLDK_FUZZ_EXAMPLES": str(per_format)}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_convert_fuzz.py", "-k", "mutated"], env=env, capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parent.parent)
    counts = [line for line in out.stdout.splitlines() if " passed" in line or " failed" in line]
    return out.returncode, counts[-1].strip("= ") if counts else out.stderr[-300:]


# VmHWM, the importing process's own peak: getrusage's ru_maxrss carries this driver's
# size across fork and exec
MEASURE = r"""
import sys, time
from rldk.converters import convert_path
t, c = time.perf_counter(), time.process_time()
s = convert_path(sys.argv[1], "jsonl", sys.argv[2])
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(s.rows, hwm // 1024, round(time.perf_counter() - t, 1), round(time.process_time() - c, 1))
"""


def peak_rss_mb() -> int:
    """This process's own peak RSS in MB (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def run_import(megabytes: int) -> tuple[int, int, float, float]:
    """Import a generated JSONL file of ``megabytes`` in a fresh process: (events, peak
    RSS MB, wall seconds, CPU seconds)."""
    root = Path(tempfile.mkdtemp(prefix="rldk-import-"))
    try:
        src = root / "big.jsonl"
        line = '{"step": %d, "reward": 0.5, "kl": 0.01, "loss": 1.25, "entropy": 2.5, "lr": 1e-05, "len": 120}\n'
        with open(src, "w") as f:
            step = 0
            while f.tell() < megabytes << 20:
                f.write("".join(line % (step + i) for i in range(20_000)))
                step += 20_000
        out = subprocess.run([sys.executable, "-c", MEASURE, str(src), str(root / "out")],
                             capture_output=True, text=True, check=True)
        rows, peak, secs, cpu = out.stdout.split()
        return int(rows), int(peak), float(secs), float(cpu)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--fuzz", type=int, default=200, help="fuzzed inputs per format (11 formats)")
    parser.add_argument("--import-mb", type=int, default=1024)
    args = parser.parse_args()
    print("| check | kills | unreadable files | double counts (plain DuckDB) | double counts (rldk) "
          "| acknowledged events lost | max loss at a kill (s) |")
    print("|---|---|---|---|---|---|---|")
    if args.kills:
        for mode, t in run_kills(args.kills).items():
            loss = f"{t['max_loss_secs']:.2f} (flush_secs={FLUSH_SECS:g})" if mode == "log" else "-"
            print(f"| SIGKILL during {mode} | {t['kills']} | {t['unreadable']} | {t['double_plain']} | "
                  f"{t['double_rldk']} | {t['lost_acked']} | {loss} |")
    if args.fuzz:
        code, line = run_fuzz(args.fuzz)
        print(f"\nconverter fuzz, {args.fuzz} x 11 formats: {'0 tracebacks' if code == 0 else 'FAILED'} ({line})")
    if args.import_mb:
        rows, peak, secs, cpu = run_import(args.import_mb)
        print(f"JSONL import of {args.import_mb} MB: {rows} events in {secs} s ({cpu} s CPU), "
              f"peak RSS {peak} MB (the importing process's VmHWM)")
    print(f"(peak RSS of this driver: {peak_rss_mb()} MB)")


if __name__ == "__main__":
    main()
