"""Analysis speed: ``first_divergence`` and ``rldk analyze`` against pandas and Polars.

    python benchmarks/analyze.py [--steps 200000] [--metrics 50] [--repeats 3] [--workdir DIR]
    python benchmarks/analyze.py --steps 1000000 --only rldk --repeats 1     # the 100M-event case

Data (generated first, never timed): two runs of STEPS steps x METRICS metrics,
written through the real writer (``EventWriter.append_table``) into one event
store, and the same numbers as JSONL logs (one JSON object per step, as TRL's and
verl's file loggers write them). Run B has another seed, a level shift in
``reward`` from 60% of the run, NaN grad norms at three steps and loss spikes.

Tools, each in a fresh subprocess (so peak RSS is its own; library imports happen
before the clock):

- ``rldk-divergence``: ``first_divergence(a, b)`` over every metric (exact and
  statistical levels);
- ``rldk-analyze``: ``rldk.analyzers.suite.analyze(store, baseline="a")`` with the
  summary, NaN-onset, spike, health and divergence analyzers, cards written
  (``rldk-analyze-plots`` adds the PNGs; ``rldk-analyze-all`` runs every analyzer
  in ``BUILTIN``, as the ``rldk analyze`` command does);
- ``pandas-jsonl``: ``pandas.read_json(lines=True)`` of both logs, then the same
  computation (summary, NaN onset, rolling-median spikes, health rules, exact
  first difference and warm-up-band CUSUM per metric) with pandas/NumPy;
- ``pandas-parquet`` / ``polars-parquet``: the same from the event store's Parquet
  files, pivoted to one column per metric with pandas / Polars.

- ``pandas-jsonl-long``: the same from one JSONL line per event (run_id, step, name,
  value), the long format of the issue's baseline, read in chunks of 2M lines.

Medians over ``--repeats`` of wall-clock and CPU (user + system) seconds; each
tool's figures are also shown as multiples of ``rldk-analyze``'s. On a shared
machine the CPU seconds are the steadier comparison. Results go to
benchmarks/results/analyze-<steps>x<metrics>.json.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMED = ["loss", "grad_norm", "kl", "entropy", "reward", "reward_std", "learning_rate",
         "completions/mean_length", "completions/clipped_ratio", "frac_reward_zero_std"]
SPIKY = ("loss", "grad_norm", "kl")
#: (level, scale of the variation) of each NAMED metric
LEVELS = [(1.0, 1.0), (1.0, 1.0), (0.05, 0.05), (2.0, 1.0), (0.5, 1.0), (0.3, 0.3), (1e-5, 0.0),
          (200.0, 100.0), (0.02, 0.02), (0.05, 0.05)]
TOOLS = ("rldk-divergence", "rldk-analyze", "rldk-analyze-plots", "rldk-analyze-all",
         "pandas-jsonl", "pandas-jsonl-long", "pandas-parquet", "polars-parquet")
#: The analyzers of the drift / training-health card (``rldk-analyze``); ``rldk-analyze-all``
#: runs every analyzer in ``rldk.analyzers.BUILTIN``, as the ``rldk analyze`` command does.
CORE = ("summary", "nan_onset", "spikes", "health", "divergence")


# ---------------------------------------------------------------------- data
def metric_names(m: int) -> list[str]:
    return NAMED[:m] + [f"rewards/fn{i:02d}/mean" for i in range(max(0, m - len(NAMED)))]


def run_values(steps: int, m: int, seed: int, bug: bool):
    """(steps,) int64 and (steps, m) float64: a curve shared by both runs (a random
    walk drawn with a fixed seed) plus noise drawn with the run's ``seed``."""
    import numpy as np

    t = np.arange(steps)
    walk = np.cumsum(np.random.default_rng(0).normal(scale=0.01, size=(steps, m)), axis=0)
    noise = np.random.default_rng(seed).normal(scale=0.05, size=(steps, m))
    values = 1.0 + 0.1 * np.sin(t / 500.0)[:, None] + walk * 0.1 + noise
    for j, (offset, scale) in enumerate(LEVELS[:m]):     # the named metrics' usual ranges
        values[:, j] = np.abs(offset + scale * (values[:, j] - 1.0))
    if bug:
        values[int(steps * 0.6):, 4] += 1.0              # reward: level shift
        values[[steps // 5, steps // 3, steps // 2], 1] = np.nan
        values[[steps // 4, steps // 4 + 1], 0] *= 20.0  # loss spikes
    return t.astype(np.int64), values


def generate(workdir: Path, steps: int, m: int, jsonl: bool) -> dict:
    """Write the store (real writer) and the JSONL logs; returns their paths."""
    import numpy as np
    import pyarrow as pa

    from rldk.writer import EventWriter

    store = workdir / "store"
    names = metric_names(m)
    paths = {"store": str(store), "jsonl": {}}
    for run_id, seed, bug in (("a", 1, False), ("b", 2, True)):
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
        if jsonl:
            paths["jsonl"][run_id] = str(workdir / f"{run_id}.jsonl")
            _write_jsonl(paths["jsonl"][run_id], t, values, names)
    if jsonl:
        paths["long_jsonl"] = str(workdir / "events.jsonl")
        _write_long_jsonl(paths["long_jsonl"], steps, m, names)
    return paths


def _write_long_jsonl(path, steps, m, names):
    """Both runs as one event per line: {"run_id", "step", "name", "value"} (NaN as null)."""
    import orjson

    with open(path, "wb") as f:
        for run_id, seed, bug in (("a", 1, False), ("b", 2, True)):
            t, values = run_values(steps, m, seed, bug)
            for i in range(len(t)):
                step = int(t[i])
                f.write(b"".join(orjson.dumps({"run_id": run_id, "step": step, "name": n,
                                               "value": None if v != v else v}) + b"\n"
                                 for n, v in zip(names, values[i].tolist())))


def _write_jsonl(path, t, values, names):
    import orjson

    with open(path, "wb") as f:
        for i in range(len(t)):
            row = {"step": int(t[i])}
            row.update(zip(names, values[i].tolist()))
            f.write(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")


# --------------------------------------------------------------- incumbents
def reference_analysis(frames: dict) -> dict:
    """The computation of ``rldk analyze --baseline a`` + ``first_divergence`` on wide
    pandas frames (index step, one column per metric), with pandas and NumPy."""
    import numpy as np

    out = {"summary": {}, "nan": {}, "spikes": {}, "health": {}}
    for run_id, df in frames.items():
        finite = df.where(np.isfinite(df))
        out["summary"][run_id] = {"rows": df.count().to_dict(), "mean": finite.mean().to_dict(),
                                  "min": finite.min().to_dict(), "max": finite.max().to_dict(),
                                  "last": finite.ffill().iloc[-1].to_dict()}
        bad = ~np.isfinite(df)
        out["nan"][run_id] = {c: int(df.index[bad[c]].min()) for c in df.columns if bad[c].any()}
        out["spikes"][run_id] = {}
        for name in SPIKY:
            s = finite[name].dropna()
            prior = s.rolling(25, min_periods=10).median().shift(1)
            p90 = s.rolling(25, min_periods=10).quantile(0.9).shift(1)
            hit = (prior > 0) & (prior >= 0.2 * p90) & (s > 5 * prior)
            out["spikes"][run_id][name] = s.index[hit].tolist()[:20]
        ent = finite["entropy"].dropna()
        n = max(3, len(ent) // 10)
        out["health"][run_id] = {"entropy_collapse": bool(ent.iloc[-n:].median() < 0.2 * ent.iloc[:n].median())}
    out["divergence"] = _divergence(frames["a"], frames["b"])
    return out


def _divergence(a, b) -> dict:
    """Per metric: first exactly differing step, and the start of the warm-up-band CUSUM
    excursion (rldk's rules: sigma from the MAD, mean |dev| or a floor; equal values 0;
    one-sided NaN +clip; threshold split over the metrics)."""
    import numpy as np

    joined = a.join(b, how="inner", lsuffix="_a", rsuffix="_b")
    steps = joined.index.to_numpy()
    h = max(5.0, np.log(len(steps) * len(a.columns) / 0.01) - 1.166)
    result = {}
    for name in a.columns:
        va, vb = joined[f"{name}_a"].to_numpy(), joined[f"{name}_b"].to_numpy()
        same = (va == vb) | (np.isnan(va) & np.isnan(vb))
        first = steps[np.argmax(~same)] if (~same).any() else None
        d = vb - va
        w = min(max(len(d) // 10, 10), 500)
        early = d[:w][np.isfinite(d[:w])]
        dev = np.abs(early - np.median(early))
        sigma = 1.4826 * np.median(dev) or 1.2533 * dev.mean() or max(np.abs(early).max(), 1.0) * 1e-12
        with np.errstate(invalid="ignore", divide="ignore"):
            z = d / sigma
        bad = ~np.isfinite(z)
        start = None
        for side in (z, -z):
            x = np.where(bad, np.where(same, 0.0, 2.5), np.clip(side, -2.5, 2.5)) - 0.5
            c = np.cumsum(x)
            s = c - np.minimum.accumulate(np.minimum(c, 0))
            over = np.flatnonzero(s > h)
            if len(over):
                zeros = np.flatnonzero(s[:over[0]] == 0)
                cand = steps[zeros[-1] + 1 if len(zeros) else 0]
                start = cand if start is None else min(start, cand)
        result[name] = {"exact": None if first is None else int(first),
                        "start": None if start is None else int(start)}
    return result


def _pandas_jsonl(paths, _scratch):
    import pandas as pd

    frames = {r: pd.read_json(p, lines=True).set_index("step") for r, p in paths["jsonl"].items()}
    return reference_analysis(frames)


def _pandas_jsonl_long(paths, _scratch):
    import numpy as np
    import pandas as pd

    chunks = []
    for chunk in pd.read_json(paths["long_jsonl"], lines=True, chunksize=2_000_000,
                              dtype={"step": "int64", "value": "float64"}):
        chunk["run_id"] = chunk["run_id"].astype("category")
        chunk["name"] = chunk["name"].astype("category")
        chunks.append(chunk)
    events = pd.concat(chunks, ignore_index=True)
    events["value"] = events["value"].astype(float).fillna(np.nan)
    frames = {r: g.drop_duplicates(["step", "name"], keep="last")
              .set_index(["step", "name"])["value"].unstack().sort_index()
              for r, g in events.groupby("run_id", observed=True)}
    return reference_analysis(frames)


def _pandas_parquet(paths, _scratch):
    import pandas as pd

    from rldk.core.store import resolve_files

    events = pd.read_parquet(resolve_files(paths["store"]), columns=["run_id", "kind", "name", "step", "value"])
    events = events[events["kind"] == "metric"]
    frames = {r: g.pivot_table(index="step", columns="name", values="value", aggfunc="last", dropna=False)
              for r, g in events.groupby("run_id")}
    return reference_analysis(frames)


def _polars_parquet(paths, _scratch):
    import polars as pl

    from rldk.core.store import resolve_files

    frames = {}
    lf = pl.scan_parquet(resolve_files(paths["store"])).filter(pl.col("kind") == "metric")
    for run_id in ("a", "b"):
        wide = (lf.filter(pl.col("run_id") == run_id).select("step", "name", "value").collect()
                .pivot(on="name", index="step", values="value", aggregate_function="last").sort("step"))
        frames[run_id] = wide.to_pandas().set_index("step")
    return reference_analysis(frames)


# ----------------------------------------------------------------------- rldk
def _rldk_divergence(paths, _scratch):
    from rldk.analyzers.divergence import first_divergence
    from rldk.core.store import open_store

    d = first_divergence("a", "b", store=open_store(paths["store"]))
    return {"step": d.step, "signal": d.signal, "mode": d.mode}


def _rldk_analyze(paths, scratch, plots=False, every=False):
    from rldk.analyzers import builtin
    from rldk.analyzers.suite import analyze

    modules = builtin() if every else [m for m in builtin() if m.NAME in CORE]
    result = analyze(paths["store"], baseline="a", out_dir=scratch, plots=plots, modules=modules)
    return {"outcomes": {o.analyzer: o.status for o in result.outcomes}, "problems": len(result.problems)}


def _loader(tool: str):
    """Import what ``tool`` needs now (not timed) and return its function."""
    import duckdb  # noqa: F401
    import numpy  # noqa: F401
    import polars  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import rldk.analyzers.suite
    for module in rldk.analyzers.builtin():      # analyzer modules imported before the clock
        module.NAME
    if tool.startswith("pandas"):
        import pandas  # noqa: F401
    if tool == "rldk-analyze-plots":
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
        return lambda p, s: _rldk_analyze(p, s, plots=True)
    if tool == "rldk-analyze-all":
        return lambda p, s: _rldk_analyze(p, s, every=True)
    return {"rldk-divergence": _rldk_divergence, "rldk-analyze": _rldk_analyze,
            "pandas-jsonl": _pandas_jsonl, "pandas-jsonl-long": _pandas_jsonl_long,
            "pandas-parquet": _pandas_parquet,
            "polars-parquet": _polars_parquet}[tool]


def child(tool: str, paths: dict, scratch: str) -> dict:
    run = _loader(tool)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    t0 = time.perf_counter()
    out = run(paths, scratch)
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime - cpu0,
            "peak_rss": usage.ru_maxrss * 1024,
            "result": json.loads(json.dumps(out, default=str))}


def measure(tool: str, paths: dict, repeats: int, workdir: Path) -> dict:
    runs = []
    for i in range(repeats):
        scratch = workdir / f"out-{tool}-{i}"
        shutil.rmtree(scratch, ignore_errors=True)
        proc = subprocess.run([sys.executable, __file__, "--child", tool, json.dumps(paths), str(scratch)],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            raise SystemExit(f"{tool} failed:\n{proc.stderr[-3000:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "cpu_seconds": statistics.median(r["cpu"] for r in runs),
            "all_seconds": [round(r["seconds"], 3) for r in runs],
            "peak_rss_mb": statistics.median(r["peak_rss"] for r in runs) / 2**20,
            "result": runs[0]["result"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--metrics", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--only", choices=("all", "rldk"), default="all",
                        help="rldk: only rldk's own tools (no JSONL logs, no incumbents)")
    parser.add_argument("--all-analyzers", action="store_true",
                        help="also time rldk-analyze-all (every BUILTIN analyzer, as the command)")
    parser.add_argument("--child", nargs=3, metavar=("TOOL", "PATHS", "SCRATCH"))
    args = parser.parse_args()
    if args.child:
        tool, paths, scratch = args.child
        print(json.dumps(child(tool, json.loads(paths), scratch)))
        return
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rldk-bench-analyze-"))
    tag = f"{args.steps}x{args.metrics}"
    data = workdir / tag
    marker = data / "paths.json"
    if marker.is_file() and (args.only == "rldk" or "long_jsonl" in json.loads(marker.read_text())):
        paths = json.loads(marker.read_text())
    else:
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        t0 = time.perf_counter()
        paths = generate(data, args.steps, args.metrics, jsonl=args.only == "all")
        marker.write_text(json.dumps(paths))
        print(f"generated {2 * args.steps * args.metrics:,} events in {time.perf_counter() - t0:.1f} s "
              f"(not timed below)")
    tools = [t for t in TOOLS if (args.only == "all" or t.startswith("rldk"))
             and (args.all_analyzers or t != "rldk-analyze-all")]
    results = {t: measure(t, paths, args.repeats, workdir) for t in tools}
    base = results["rldk-analyze"]["seconds"]
    print(f"\n{2 * args.steps * args.metrics:,} events ({tag} per run, 2 runs), "
          f"median of {args.repeats}, {os.cpu_count()} CPUs")
    base_cpu = results["rldk-analyze"]["cpu_seconds"]
    print(f"{'tool':<20} {'seconds':>9} {'x rldk-analyze':>15} {'CPU s':>8} {'x (CPU)':>8} "
          f"{'peak RSS MB':>12}  runs (s)")
    for tool, r in results.items():
        print(f"{tool:<20} {r['seconds']:>9.3f} {r['seconds'] / base:>15.1f} {r['cpu_seconds']:>8.2f} "
              f"{r['cpu_seconds'] / base_cpu:>8.1f} {r['peak_rss_mb']:>12.0f}  {r['all_seconds']}")
    div = results["rldk-divergence"]["result"]
    print(f"\nrldk first divergence: step {div['step']} in {div['signal']} ({div['mode']} level)")
    for tool in ("pandas-jsonl", "pandas-jsonl-long", "pandas-parquet", "polars-parquet"):
        if tool in results:
            starts = {n: v["start"] for n, v in results[tool]["result"]["divergence"].items()
                      if v["start"] is not None}
            print(f"{tool} reference: change starts {starts}")
    out = ROOT / "benchmarks" / "results" / f"analyze-{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"events": 2 * args.steps * args.metrics, "repeats": args.repeats,
                               "cpus": os.cpu_count(), "results": results}, indent=2, default=str))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
