"""Import speed: rldk's converters against the incumbent readers, measured in the same run.

    python benchmarks/import.py [--steps 100000] [--tags 10] [--repeats 3] [--workdir DIR] [--stream-mb 1024]

1. TensorBoard: a file of STEPS x TAGS scalars written with
   ``torch.utils.tensorboard.SummaryWriter``, loaded by
   - rldk: ``rldk.converters.convert_path(dir, "tensorboard", store)`` (read, CRC32C check,
     decode, and write the Parquet store), and the read+decode alone;
   - tensorboard's ``EventAccumulator`` (``size_guidance`` 0: keep every point);
   - ``tbparse.SummaryReader(dir).scalars``.
2. trainer_state.json: STEPS log rows x TAGS metrics, imported by rldk, against
   ``pandas.DataFrame(json.load(f)["log_history"])`` (parse only, no store).
3. JSON Lines: 10 x STEPS lines of TAGS metrics, imported by rldk (columnar batches through
   Polars, streaming), against ``polars.read_ndjson(f).write_parquet(...)`` (the floor:
   one parse, one Parquet file, the whole file in memory).
4. CSV: the same rows as a CSV file, imported by rldk (columnar blocks through Polars,
   streaming), against ``polars.read_csv(f).write_parquet(...)``.
5. Streaming: a JSONL file of ``--stream-mb`` MB imported by rldk in a fresh process
   (``benchmarks/faults.py``'s driver): its events, seconds and peak RSS (``VmHWM``).

Every measurement runs in a fresh subprocess (so peak RSS is that tool's own, the
process's ``VmHWM``), repeats are interleaved (each tool once per round, so load from
other jobs falls on all of them alike), and the table shows medians. CPU seconds (all
threads of the process) are shown beside wall seconds: on a shared machine they show
the work done, whatever else runs. No tool's import time is timed: the libraries a
tool uses (polars, pandas, tensorboard; for rldk pyarrow, pandas, which pyarrow imports
on its first array, rldk's writer, and Polars for JSONL and CSV) are imported before
its clock starts. The load average (``os.getloadavg``) is printed before and after.
Results also go to benchmarks/results/import.json.
"""
from __future__ import annotations

import argparse
import importlib.util
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


# ------------------------------------------------------------------ children
def child(tool: str, path: str, scratch: str) -> dict:
    """Load ``path`` with ``tool``; return seconds (imports excluded) and peak RSS (bytes)."""
    load = _loader(tool)
    t0, c0 = time.perf_counter(), time.process_time()
    points = load(path, scratch)
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "peak_rss": _peak_rss(), "points": points}


def _loader(tool: str):
    """Import what ``tool`` needs now (not timed: no tool's import time is) and return its load function."""
    if tool.startswith("rldk"):
        import pandas  # noqa: F401  (pyarrow imports it on its first array: an import, not timed)
        import pyarrow.parquet  # noqa: F401  (rldk imports these lazily; load them before the clock)

        import rldk.writer  # noqa: F401
    if tool in ("rldk-jsonl", "rldk-csv"):
        import polars  # noqa: F401  (rldk parses these with Polars: its import is not timed either)
    if tool == "rldk-tensorboard":
        from rldk.converters import convert_path
        return lambda path, scratch: convert_path(path, "tensorboard", scratch).rows
    if tool == "rldk-tensorboard-read":
        from rldk.converters import tensorboard
        return lambda path, _: sum(t.num_rows for r in tensorboard.read(path) for t in r.tables)
    if tool == "event_accumulator":
        from tensorboard.backend.event_processing.event_accumulator import (
            EventAccumulator,
        )

        def load(path, _):
            acc = EventAccumulator(path, size_guidance={"scalars": 0, "tensors": 0})
            acc.Reload()
            return sum(len(acc.Scalars(t)) for t in acc.Tags()["scalars"])
        return load
    if tool == "tbparse":
        from tbparse import SummaryReader
        return lambda path, _: len(SummaryReader(path).scalars)
    if tool == "rldk-trainer-state":
        from rldk.converters import convert_path
        return lambda path, scratch: convert_path(path, "trl", scratch).rows
    if tool == "rldk-jsonl":
        from rldk.converters import convert_path
        return lambda path, scratch: convert_path(path, "jsonl", scratch).rows
    if tool == "rldk-csv":
        from rldk.converters import convert_path
        return lambda path, scratch: convert_path(path, "csv", scratch).rows
    if tool in ("polars-jsonl", "polars-csv"):
        import polars as pl

        read = pl.read_ndjson if tool == "polars-jsonl" else pl.read_csv

        def load(path, scratch):
            frame = read(path)
            frame.write_parquet(Path(scratch) / "out.parquet")
            return frame.height * (frame.width - 1)
        return load
    if tool == "pandas-trainer-state":
        import pandas as pd

        def load(path, _):
            with open(Path(path) / "trainer_state.json") as f:
                frame = pd.DataFrame(json.load(f)["log_history"])
            return int(frame.drop(columns="step").notna().sum().sum())
        return load
    raise SystemExit(f"unknown tool {tool}")


def _peak_rss() -> int:
    """VmHWM: this process's own peak (ru_maxrss would include the parent's, inherited at fork)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(tools: list, path: Path, repeats: int) -> list[dict]:
    """Each tool ``repeats`` times in fresh processes, interleaved; a summary row per tool."""
    runs: dict = {tool: [] for tool in tools}
    for _ in range(repeats):
        for tool in tools:
            runs[tool].append(_once(tool, path))
    return [{"tool": tool, "median_s": statistics.median(r["seconds"] for r in got),
             "runs_s": [round(r["seconds"], 3) for r in got],
             "median_cpu_s": statistics.median(r["cpu_seconds"] for r in got),
             "peak_rss_mb": round(statistics.median(r["peak_rss"] for r in got) / 1e6, 1),
             "points": got[0]["points"]} for tool, got in runs.items()]


def _once(tool: str, path: Path) -> dict:
    scratch = tempfile.mkdtemp(prefix="rldk-bench-store-")
    try:
        out = subprocess.run([sys.executable, __file__, "--child", tool, str(path), scratch],
                             capture_output=True, text=True, check=True, cwd=ROOT)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ inputs
def write_tensorboard(folder: Path, steps: int, tags: int) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    if any(folder.glob("*tfevents*")):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(folder), max_queue=10000, flush_secs=600)
    names = [f"train/metric_{j}" for j in range(tags)]
    for step in range(steps):
        for j, name in enumerate(names):
            writer.add_scalar(name, (step % 1000) * 0.001 + j, step)
    writer.close()
    return folder


def write_trainer_state(folder: Path, steps: int, tags: int) -> Path:
    import math
    import random

    file = folder / "trainer_state.json"
    if file.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    names = ["loss", "grad_norm", "learning_rate", "kl", "reward", "reward_std", "entropy",
             "completions/mean_length", "clip_ratio/region_mean", "epoch"][:tags]
    names += [f"extra/metric_{j}" for j in range(tags - len(names))]
    history = [{**{n: rng.random() for n in names}, "step": s} for s in range(1, steps + 1)]
    history[10]["grad_norm"] = math.nan
    state = {"global_step": steps, "max_steps": steps, "log_history": history}
    file.write_text(json.dumps(state, indent=2))
    return folder


def write_jsonl(folder: Path, steps: int, tags: int) -> Path:
    return _write_lines(folder / "log.jsonl", steps, tags, None,
                        lambda step, names, rng: json.dumps({"step": step, **{n: rng.random() for n in names}}))


def write_csv(folder: Path, steps: int, tags: int) -> Path:
    return _write_lines(folder / "log.csv", steps, tags, lambda names: ",".join(["step", *names]),
                        lambda step, names, rng: ",".join([str(step), *(repr(rng.random()) for _ in names)]))


def _write_lines(file: Path, steps: int, tags: int, header, line) -> Path:
    """``file`` with an optional ``header(names)`` line and one ``line(step, names, rng)``
    per step of ``tags`` seeded random metrics (kept when it already exists)."""
    import random

    if file.exists():
        return file
    file.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    names = [f"train/metric_{j}" for j in range(tags)]
    with open(file, "w") as f:
        if header:
            f.write(header(names) + "\n")
        for step in range(steps):
            f.write(line(step, names, rng) + "\n")
    return file


#: per group: the incumbent rldk is compared with, and the issue's target for the ratio
#: (incumbent seconds / rldk seconds: >= 10 for TensorBoard; >= 0.5, i.e. rldk within 2x, else)
INCUMBENTS = {"tensorboard": ("event_accumulator", 10.0), "trainer_state": ("pandas-trainer-state", 0.5),
              "jsonl": ("polars-jsonl", 0.5), "csv": ("polars-csv", 0.5)}


def ratio_line(group: str, rows: list) -> str:
    """One line: rldk's median against its incumbent's, wall and CPU, and the target."""
    ours, theirs = rows[0], next(r for r in rows if r["tool"] == INCUMBENTS[group][0])
    wall, cpu = theirs["median_s"] / ours["median_s"], theirs["median_cpu_s"] / ours["median_cpu_s"]
    target = INCUMBENTS[group][1]
    return (f"{group}: {theirs['tool']} takes {wall:.2f}x rldk's wall time ({cpu:.2f}x its CPU time); "
            f"rldk = {1 / wall:.2f}x the incumbent; target ratio >= {target:g}: "
            f"{'met' if wall >= target else 'NOT met'} (wall), {'met' if cpu >= target else 'NOT met'} (CPU)")


def stream(megabytes: int) -> dict:
    """The 1 GB streaming import of ``benchmarks/faults.py`` (a fresh process; VmHWM)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("faults", Path(__file__).with_name("faults.py"))
    faults = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(faults)
    rows, peak, secs, cpu = faults.run_import(megabytes)
    return {"megabytes": megabytes, "events": rows, "seconds": secs, "cpu_seconds": cpu, "peak_rss_mb": peak}


# ------------------------------------------------------------------ main
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--tags", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="keep the generated inputs here (reused)")
    parser.add_argument("--skip-incumbents", action="store_true")
    parser.add_argument("--only", default=None,
                        help="comma-separated groups: tensorboard,trainer_state,jsonl,csv,stream")
    parser.add_argument("--stream-mb", type=int, default=1024, help="size of the streamed JSONL (0: skip)")
    parser.add_argument("--child", nargs=3, metavar=("TOOL", "PATH", "SCRATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    wanted = set(args.only.split(",")) if args.only else set(INCUMBENTS) | {"stream"}
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rldk-bench-"))
    t = time.perf_counter()
    inputs = {"tensorboard": lambda: write_tensorboard(work / f"tb_{args.steps}x{args.tags}", args.steps, args.tags),
              "trainer_state": lambda: write_trainer_state(work / f"trl_{args.steps}x{args.tags}", args.steps, args.tags),
              "jsonl": lambda: write_jsonl(work / f"jsonl_{args.steps * 10}x{args.tags}", args.steps * 10, args.tags),
              "csv": lambda: write_csv(work / f"csv_{args.steps * 10}x{args.tags}", args.steps * 10, args.tags)}
    paths = {group: make() for group, make in inputs.items() if group in wanted}
    sizes = ", ".join(f"{g} {_size(p) / 1e6:.1f} MB" for g, p in paths.items())
    load_before = _load()
    print(f"inputs in {work} ({time.perf_counter() - t:.0f} s to write): {sizes}; {os.cpu_count()} CPUs; "
          f"load average {load_before}", flush=True)
    tools = {"tensorboard": ["rldk-tensorboard", "rldk-tensorboard-read", "event_accumulator", "tbparse"],
             "trainer_state": ["rldk-trainer-state", "pandas-trainer-state"],
             "jsonl": ["rldk-jsonl", "polars-jsonl"], "csv": ["rldk-csv", "polars-csv"]}
    results, ratios = {}, []
    for group, path in paths.items():
        names = [x for x in tools[group] if x.startswith("rldk")] if args.skip_incumbents else tools[group]
        missing = [x for x in names if importlib.util.find_spec(_PACKAGES.get(x, "rldk")) is None]
        if missing:
            print(f"{group}: not measured, package not installed: {', '.join(missing)}", flush=True)
            names = [x for x in names if x not in missing]
        rows = measure(names, path, args.repeats)
        base, base_cpu = rows[0]["median_s"], rows[0]["median_cpu_s"]
        for row in rows:
            row["x_rldk"] = round(row["median_s"] / base, 2)
            row["x_rldk_cpu"] = round(row["median_cpu_s"] / base_cpu, 2)
            print(f"{group:14s} {row['tool']:24s} median {row['median_s']:6.2f} s wall "
                  f"{row['median_cpu_s']:6.2f} s CPU  runs {row['runs_s']}  peak RSS {row['peak_rss_mb']:6.1f} MB  "
                  f"points {row['points']:>8}  {row['x_rldk']:5.2f}x rldk (CPU {row['x_rldk_cpu']:5.2f}x)",
                  flush=True)
        results[group] = rows
        if not args.skip_incumbents:
            ratios.append(ratio_line(group, rows))
    for line in ratios:
        print(line)
    if "stream" in wanted and args.stream_mb:
        results["stream"] = got = stream(args.stream_mb)
        print(f"stream: JSONL of {got['megabytes']} MB: {got['events']} events in {got['seconds']} s "
              f"({got['cpu_seconds']} s CPU), peak RSS {got['peak_rss_mb']} MB (target <= 512 MB: "
              f"{'met' if got['peak_rss_mb'] <= 512 else 'NOT met'})", flush=True)
    load_after = _load()
    print(f"load average after: {load_after}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "import.json").write_text(json.dumps({"steps": args.steps, "tags": args.tags, "repeats": args.repeats,
                                                 "cpus": os.cpu_count(), "load_average": [load_before, load_after],
                                                 "ratios": ratios,
                                                 "results": results}, indent=2))


#: the package each incumbent needs (a tool whose package is missing is left out, and said)
_PACKAGES = {"event_accumulator": "tensorboard", "tbparse": "tbparse", "pandas-trainer-state": "pandas",
             "polars-jsonl": "polars", "polars-csv": "polars"}


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else path.stat().st_size


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
