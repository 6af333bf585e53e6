"""Analysis speed: ``rldk analyze`` against the engines it runs on, as ratios.

    python benchmarks/analyze.py                       # 1M and 10M events, scaling
    python benchmarks/analyze.py --events 1e6 --skip-scaling   # one quick ratio

(``rldk runs`` on 10,000 files has its own benchmark: ``benchmarks/runs.py``.)
    python benchmarks/analyze.py --large               # also 50M events (minutes)

Every figure is a whole process (``python -m rldk.cli ...`` or ``python -c ...``)
timed from outside (wall; CPU and peak RSS through ``/usr/bin/time``), the commands of a
comparison alternating A B A B so that drift of a shared machine hits both; the
ratios are medians of the pair-by-pair ratios.

1. ``rldk analyze --no-plots`` (every default analyzer) on two runs x N events
   (50 metrics; run b has a reward shift, NaNs and loss spikes) against
   hand-written DuckDB and Polars queries that compute the same first divergence
   per metric (first step where a and b differ) and per-metric summaries
   (rows, min, max, mean, last). Before timing, the two scripts' first divergences and
   summaries are checked equal (they compute the same thing). Targets: <= 2x the faster
   engine, <= 1.5 GB peak. Each analyzer's share of the analysis comes from ``index.json``.
2. Scaling: ``rldk analyze`` over events (1 run pair, 0.1M to 3M), runs (1 to
   1,000 runs of 200 steps x 10 metrics) and metrics (10 to 400, ``rewards/*/mean``
   beyond the 10 named ones); the fitted exponent of (time - startup) against size,
   startup being the import-only cost of the same modules. Target <= 1.1.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMED = ["loss", "grad_norm", "kl", "entropy", "reward", "reward_std", "learning_rate",
         "completions/mean_length", "completions/clipped_ratio", "frac_reward_zero_std"]
#: (level, scale of the variation) of each NAMED metric
LEVELS = [(1.0, 1.0), (1.0, 1.0), (0.05, 0.05), (2.0, 1.0), (0.5, 1.0), (0.3, 0.3), (1e-5, 0.0),
          (200.0, 100.0), (0.02, 0.02), (0.05, 0.05)]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
ENV.pop("PYTHONDONTWRITEBYTECODE", None)      # time what an installed rldk does: bytecode cached


# ---------------------------------------------------------------------- data
def metric_names(m: int) -> list[str]:
    return NAMED[:m] + [f"rewards/fn{i:03d}/mean" for i in range(max(0, m - len(NAMED)))]


def run_values(steps: int, m: int, seed: int, bug: bool):
    """(steps,) int64 and (steps, m) float64: a shared random walk plus the run's noise."""
    import numpy as np

    t = np.arange(steps)
    walk = np.cumsum(np.random.default_rng(0).normal(scale=0.01, size=(steps, m)), axis=0)
    noise = np.random.default_rng(seed).normal(scale=0.05, size=(steps, m))
    values = 1.0 + 0.1 * np.sin(t / 500.0)[:, None] + walk * 0.1 + noise
    for j, (offset, scale) in enumerate(LEVELS[:m]):
        values[:, j] = np.abs(offset + scale * (values[:, j] - 1.0))
    if bug and m > 4:
        values[int(steps * 0.6):, 4] += 1.0              # reward: level shift
        values[[steps // 5, steps // 3, steps // 2], 1] = np.nan
        values[[steps // 4, steps // 4 + 1], 0] *= 20.0  # loss spikes
    return t.astype(np.int64), values


def write_run(store: Path, run_id: str, steps: int, m: int, seed: int, bug: bool) -> None:
    """One run through the real writer (``EventWriter.append_table``)."""
    import numpy as np
    import pyarrow as pa

    from rldk.writer import EventWriter

    names = metric_names(m)
    t, values = run_values(steps, m, seed, bug)
    with EventWriter(store, run_id, seed=seed, capture_env=False, segment_rows=5_000_000) as w:
        chunk = max(1, 2_000_000 // m)
        for lo in range(0, steps, chunk):
            hi = min(steps, lo + chunk)
            n = (hi - lo) * m
            w.append_table(pa.table({
                "step": np.repeat(t[lo:hi], m), "wall_time": np.repeat(t[lo:hi] * 0.5 + 1.7e9, m),
                "kind": pa.array(["metric"] * n),
                "name": pa.DictionaryArray.from_arrays(np.tile(np.arange(m, dtype=np.int32), hi - lo),
                                                       names).cast(pa.string()),
                "value": values[lo:hi].reshape(-1)}))


def pair_store(workdir: Path, events: int, m: int = 50) -> Path:
    """Two runs (a, b) of ``events / 2 / m`` steps x ``m`` metrics (cached by size)."""
    store = workdir / f"pair-{events}x{m}" / "store"
    if not store.is_dir():
        steps = max(1, events // 2 // m)
        for run_id, seed, bug in (("a", 1, False), ("b", 2, True)):
            write_run(store, run_id, steps, m, seed, bug)
    return store


def runs_store(workdir: Path, runs: int, steps: int = 200, m: int = 10) -> Path:
    store = workdir / f"runs-{runs}x{steps}x{m}" / "store"
    if not store.is_dir():
        for i in range(runs):
            write_run(store, f"run{i:04d}", steps, m, seed=i, bug=i % 2 == 1)
    return store


# ------------------------------------------------------------------- engines
DUCKDB_SCRIPT = r"""
import sys, duckdb
files = sys.argv[1]
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")      # it would print to stdout
con.execute(f"CREATE VIEW m AS SELECT run_id, step, name, value FROM read_parquet('{files}/**/*.parquet') "
            "WHERE kind = 'metric' AND step IS NOT NULL")
summary = con.execute("SELECT run_id, name, count(*), min(value), max(value), avg(value), "
                      "arg_max(value, step) FROM m GROUP BY ALL").fetchall()
first = con.execute("SELECT a.name, min(a.step) FILTER (WHERE a.value IS DISTINCT FROM b.value) "
                    "FROM (FROM m WHERE run_id = 'a') a JOIN (FROM m WHERE run_id = 'b') b "
                    "USING (name, step) GROUP BY a.name").fetchall()
if sys.argv[2:] == ["--print"]:
    import json
    print(json.dumps({"summary": sorted([r[0], r[1], r[2], r[6]] for r in summary),
                      "first": sorted([n, s] for n, s in first if s is not None)}))
else:
    print(len(summary), len(first))
"""

POLARS_SCRIPT = r"""
import sys, polars as pl
files = sys.argv[1]
m = (pl.scan_parquet(f"{files}/**/*.parquet").filter((pl.col("kind") == "metric") & pl.col("step").is_not_null())
     .select("run_id", "step", "name", "value"))
v = pl.col("value")
summary = m.group_by("run_id", "name").agg(pl.len(), v.min().alias("min"), v.max().alias("max"),
                                            v.mean().alias("mean"), v.get(pl.col("step").arg_max()).alias("last"))
a, b = m.filter(pl.col("run_id") == "a"), m.filter(pl.col("run_id") == "b")
first = (a.join(b, on=["name", "step"]).filter(pl.col("value").ne_missing(pl.col("value_right")))
         .group_by("name").agg(pl.col("step").min()))
s, f = pl.collect_all([summary, first])
if sys.argv[2:] == ["--print"]:
    import json
    print(json.dumps({"summary": sorted(s.select("run_id", "name", "len", "last").rows()),
                      "first": sorted(f.rows())}, default=list))
else:
    print(s.height, f.height)
"""


def rldk(*args) -> list[str]:
    return [sys.executable, "-m", "rldk.cli", *map(str, args)]


def py(script: str, *args) -> list[str]:
    return [sys.executable, "-c", script, *map(str, args)]


# ------------------------------------------------------------------ measuring
def timed(cmd: list[str]) -> dict:
    """One whole process: wall and CPU seconds, peak RSS (MB), exit code. Memory and CPU
    come from /usr/bin/time: a child forked from this (larger) process would report
    this process's peak as its own."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", out.name, *cmd],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
        wall = time.perf_counter() - start
        user, system, peak_kb = out.read().split()[-3:]
    return {"wall": wall, "cpu": float(user) + float(system), "rss_mb": int(peak_kb) / 1024,
            "code": proc.returncode, "stderr": proc.stderr.decode(errors="replace")}


def checked(cmd: list[str]) -> dict:
    r = timed(cmd)
    if r["code"] not in (0, 3, 4):           # 3 / 4: problems found / inconclusive
        raise SystemExit(f"{' '.join(cmd[:6])}... exited {r['code']}:\n{r['stderr'][-2000:]}")
    return r


def compare(commands: dict[str, list[str]], repeats: int) -> dict:
    """Each command ``repeats`` times, interleaved; medians, and ratios to the first one
    (median of the pair-by-pair ratios of wall time)."""
    runs = {name: [] for name in commands}
    for _ in range(repeats):
        for name, cmd in commands.items():
            runs[name].append(checked(cmd))
    base = next(iter(commands))
    out = {}
    for name, rs in runs.items():
        out[name] = {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "rss_mb")}
        out[name]["vs"] = {other: statistics.median(a["wall"] / b["wall"] for a, b in zip(rs, runs[other]))
                           for other in commands if other != name}
    out["_base"] = base
    return out


def fit_exponent(sizes, seconds) -> float:
    """Least-squares slope of log(seconds) on log(size)."""
    xs, ys = [math.log(s) for s in sizes], [math.log(max(t, 1e-3)) for t in seconds]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


# ------------------------------------------------------------------ sections
def engines_agree(store: Path) -> None:
    """The two hand-written scripts compute the same summaries and first divergences."""
    out = {}
    for name, script in (("duckdb", DUCKDB_SCRIPT), ("polars", POLARS_SCRIPT)):
        proc = subprocess.run(py(script, store, "--print"), capture_output=True, text=True, env=ENV, check=True)
        out[name] = json.loads(proc.stdout)
    if out["duckdb"] != out["polars"]:
        raise SystemExit(f"the DuckDB and Polars scripts disagree on {store}")
    print(f"  engines agree: {len(out['duckdb']['summary'])} (run, metric) summaries, "
          f"{len(out['duckdb']['first'])} first divergences")


def engine_ratio(workdir: Path, events: int, repeats: int) -> dict:
    store = pair_store(workdir, events)
    out = workdir / "cards"
    commands = {"rldk analyze": rldk("analyze", store, "--no-plots", "--baseline", "a", "--out-dir", out,
                                     "--format", "json", "-o", os.devnull),
                "duckdb": py(DUCKDB_SCRIPT, store), "polars": py(POLARS_SCRIPT, store)}
    print(f"\n{events:,} events (2 runs x 50 metrics), median of {repeats}, load {os.getloadavg()[0]:.1f}:")
    engines_agree(store)
    result = compare(commands, repeats)
    index = json.loads((out / "index.json").read_text())
    total = sum(o["seconds"] for o in index["outcomes"]) or 1.0
    result["shares"] = {o["analyzer"]: (round(o["seconds"], 3), round(o["seconds"] / total, 3))
                        for o in index["outcomes"]}
    r = result["rldk analyze"]
    faster = min(("duckdb", "polars"), key=lambda e: result[e]["wall"])
    result["faster_engine"], result["ratio"] = faster, r["vs"][faster]
    for name in commands:
        x = result[name]
        print(f"  {name:<13} wall {x['wall']:7.2f} s  cpu {x['cpu']:7.2f} s  peak {x['rss_mb']:6.0f} MB")
    print(f"  ratio rldk analyze / faster engine ({faster}) {result['ratio']:.2f}x (target <= 2x); "
          f"/ duckdb {r['vs']['duckdb']:.2f}x, / polars {r['vs']['polars']:.2f}x; "
          f"peak {r['rss_mb']:.0f} MB (target <= 1536)")
    print("  analyzer shares: " + ", ".join(f"{a} {s:.2f} s ({p:.0%})" for a, (s, p) in result["shares"].items()))
    return result


def scaling(workdir: Path, axis: str, sizes: list[int], repeats: int) -> dict:
    """Median wall of ``rldk analyze`` at each size; exponent of (wall - startup)."""
    make = {"events": lambda n: pair_store(workdir, n, 10),
            "runs": lambda n: runs_store(workdir, n),
            "metrics": lambda n: pair_store(workdir, 40_000 * n, n)}[axis]
    startup = statistics.median(checked(py("import rldk.analyzers.suite, rldk.cli, polars, duckdb, numpy"))["wall"]
                                for _ in range(repeats))
    walls = []
    for n in sizes:
        store = make(n)
        cmd = rldk("analyze", store, "--no-plots", "--out-dir", workdir / "cards-scale", "--format", "json",
                   "-o", os.devnull)
        walls.append(statistics.median(checked(cmd)["wall"] for _ in range(repeats)))
    work = [max(w - startup, 1e-3) for w in walls]
    exponent, top = fit_exponent(sizes, work), fit_exponent(sizes[-2:], work[-2:])
    print(f"\nscaling in {axis}: " + ", ".join(f"{n:,}: {w:.2f} s" for n, w in zip(sizes, walls))
          + f"  (startup {startup:.2f} s)\n  fitted exponent of (time - startup) {exponent:.2f} "
          f"(target <= 1.1); between the two largest sizes {top:.2f}")
    return {"sizes": sizes, "walls": walls, "startup": startup, "exponent": exponent, "top_exponent": top}


def print_table(results: dict) -> None:
    """The figures the targets are about, in one table."""
    print(f"\nsummary (medians; load {os.getloadavg()[0]:.1f}):")
    print(f"  {'events':>12} {'rldk s':>8} {'duckdb s':>9} {'polars s':>9} {'ratio':>7} {'peak MB':>8}")
    for events, r in results["engine"].items():
        print(f"  {events:>12,} {r['rldk analyze']['wall']:>8.2f} {r['duckdb']['wall']:>9.2f} "
              f"{r['polars']['wall']:>9.2f} {r['ratio']:>6.2f}x {r['rldk analyze']['rss_mb']:>8.0f}")
    for axis, r in results.get("scaling", {}).items():
        print(f"  exponent in {axis}: {r['exponent']:.2f} ({r['sizes'][0]:,}..{r['sizes'][-1]:,}; target <= 1.1), "
              f"{r['top_exponent']:.2f} between the two largest")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=float, nargs="*", default=[1e6, 1e7],
                        help="event counts of the engine comparison (default 1e6 1e7)")
    parser.add_argument("--large", action="store_true", help="also 5e7 events (minutes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="keeps generated data between calls")
    parser.add_argument("--skip-scaling", action="store_true")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rldk-bench-analyze-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "src"))
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; data in {workdir}")
    results: dict = {"engine": {}}
    for events in [*map(int, args.events), *([50_000_000] if args.large else [])]:
        results["engine"][events] = engine_ratio(workdir, events, args.repeats)
    if not args.skip_scaling:
        results["scaling"] = {
            "events": scaling(workdir, "events", [100_000, 300_000, 1_000_000, 3_000_000], args.repeats),
            "runs": scaling(workdir, "runs", [1, 10, 100, 1000], args.repeats),
            "metrics": scaling(workdir, "metrics", [10, 50, 100, 400], args.repeats)}
    print_table(results)
    finish("analyze", results, workdir, keep=bool(args.workdir))


def finish(name: str, results: dict, workdir: Path, keep: bool) -> None:
    """Save ``results`` as benchmarks/results/NAME.json and drop a temporary workdir."""
    out = ROOT / "benchmarks" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {out}")
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
