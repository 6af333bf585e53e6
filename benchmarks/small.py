"""Small is instant: ``rldk analyze`` / ``rldk report`` / ``rldk import`` on <= 10k events
and ``rldk --help``.

    python benchmarks/small.py [--repeats 7] [--workdir DIR]

Data: 7 runs x 100 steps x ~9 metrics (6,300 events, plus start/end events) through
the real writer; for the import, a JSONL log of 1,000 steps x 9 fields (8,000 events)
into a new store each time. ``rldk analyze`` runs as a user types it (no PNG plots:
they are opt-in). Each command is a whole process, timed from outside (median wall,
CPU and peak RSS of ``--repeats`` runs after one warm-up), printed beside
``python -c "import polars, duckdb"`` (the engines' own import) as a ratio, with the
load average before and after (2 shared cores: wall time depends on it).
Targets: analyze, report and import <= 1 s wall, --help <= 0.3 s.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analyze import ROOT, timed  # noqa: E402  (one way to time a whole process)

TARGETS = {"rldk --help": 0.3, "rldk analyze": 1.0, "rldk report": 1.0, "rldk import": 1.0}


def make_store(path: Path, runs: int = 7, steps: int = 100) -> Path:
    import numpy as np

    from rldk.writer import EventWriter

    rng = np.random.default_rng(0)
    for r in range(runs):
        with EventWriter(path, f"run{r}", capture_env=False, seed=r) as w:
            for s in range(steps):
                w.log(s, {"loss": 1.0 / (s + 1) + rng.normal(0, 0.01), "reward": 0.01 * s + rng.normal(0, 0.1),
                          "kl": 0.001 * s, "entropy": 2.0 - 0.005 * s, "grad_norm": abs(rng.normal(1, 0.1)),
                          "learning_rate": 1e-5, "response_length": 100 + s, "reward_std": 0.3,
                          "rewards/fn0/mean": 0.01 * s})
    return path


def make_log(path: Path, steps: int = 1000) -> Path:
    import json

    with open(path, "w", encoding="utf-8") as f:
        for s in range(steps):
            f.write(json.dumps({"step": s, "loss": 1.0 / (s + 1), "reward": 0.01 * s, "kl": 0.001 * s,
                                "entropy": 2.0 - 0.001 * s, "grad_norm": 1.0, "learning_rate": 1e-5,
                                "response_length": 100 + s, "reward_std": 0.3,
                                "timestamp": 1.7e9 + s}) + "\n")
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rldk-bench-small-"))
    store = work / "store"
    if not store.is_dir():
        make_store(store)
    log = work / "log.jsonl"
    if not log.is_file():
        make_log(log)
    for old in work.glob("imported*"):             # a previous call's imports (--workdir)
        shutil.rmtree(old)
    rldk = [sys.executable, "-m", "rldk.cli"]
    commands = {                                    # round i -> the command line
        'python -c "import polars, duckdb"': lambda i: [sys.executable, "-c", "import polars, duckdb"],
        "rldk --help": lambda i: [*rldk, "--help"],
        "rldk analyze": lambda i: [*rldk, "analyze", str(store), "--out-dir", str(work / "cards"),
                                   "--format", "json", "-o", os.devnull],
        "rldk report": lambda i: [*rldk, "report", str(store), "-o", str(work / "report.html")],
        "rldk import": lambda i: [*rldk, "import", "jsonl", str(log), "--out-dir", str(work / f"imported{i}")],
    }
    runs = {name: [] for name in commands}
    load_before = os.getloadavg()[0]
    for i in range(args.repeats + 1):               # the first round is a warm-up
        for name, cmd in commands.items():
            r = timed(cmd(i))
            if i:
                runs[name].append(r)
    base = next(iter(commands))
    print(f"{os.cpu_count()} CPUs, load {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; "
          f"7 runs x 100 steps (~6,300 events); median of {args.repeats}")
    print(f"{'command':<34} {'wall s':>7} {'cpu s':>6} {'MB':>5} {'x engines':>9}  target")
    for name, rs in runs.items():
        wall = statistics.median(r["wall"] for r in rs)
        ratio = statistics.median(a["wall"] / b["wall"] for a, b in zip(rs, runs[base]))
        target = TARGETS.get(name)
        verdict = "" if target is None else f"<= {target} s: {'met' if wall <= target else 'MISSED'}"
        codes = sorted({r['code'] for r in rs})
        print(f"{name:<34} {wall:7.3f} {statistics.median(r['cpu'] for r in rs):6.2f} "
              f"{statistics.median(r['rss_mb'] for r in rs):5.0f} {ratio:9.2f}  {verdict}"
              + (f" (exit {codes})" if codes != [0] and name != "rldk analyze" else ""))


if __name__ == "__main__":
    main()
