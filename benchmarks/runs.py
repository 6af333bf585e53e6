"""``rldk runs`` on 10,000 files against DuckDB's own ``GROUP BY run_id`` over them.

    python benchmarks/runs.py [--repeats 5] [--workdir DIR]

Data: 500 runs x 20 segments of 250 metric events (10,000 files, 5 metrics x 50
steps each), every file committed by the writer's own commit function
(``rldk.core.segments.write_segment``: the footer metadata a store written by rldk
has, run summaries included), and the same rows without rldk's footer metadata
(files another tool wrote, or an older rldk), where ``rldk runs`` scans the rows.

Each command is a whole process timed from outside (``analyze.timed``: wall, CPU,
peak RSS through /usr/bin/time), the two sides alternating A B A B; the ratio is
the median of the pair-by-pair ratios (the ratio of median CPU seconds is printed
too: on a loaded machine it moves less than wall time). The incumbent is
``SELECT run_id, count(*), max(step) FROM read_parquet(...) GROUP BY run_id`` in a
fresh ``python -c`` with DuckDB. Target: <= 1.5x on the writer's files.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analyze import NAMED, ROOT, compare, finish, py, rldk  # noqa: E402  (one way to time a whole process)

TARGET = 1.5
GROUP_BY = ("import sys, duckdb; duckdb.sql(\"SELECT run_id, count(*), max(step) FROM read_parquet('\" "
            "+ sys.argv[1] + \"/*.parquet') GROUP BY run_id\").fetchall()")


def segment(run: int, seg: int):
    """One segment's rows: 50 steps x 5 metrics of run ``run`` (event schema)."""
    import numpy as np
    import pyarrow as pa

    from rldk.schemas import arrow_schema

    steps = np.repeat(np.arange(seg * 50, seg * 50 + 50), 5)
    n = len(steps)
    null = lambda t: pa.nulls(n, t)             # noqa: E731
    return pa.table({
        "run_id": pa.array(np.full(n, f"run{run:04d}")), "rank": pa.array(np.zeros(n, np.int32)),
        "seq": pa.array(np.arange(n, dtype=np.int64) + seg * n), "step": pa.array(steps),
        "wall_time": pa.array((1.7e12 + steps * 1000).astype("int64")).cast(pa.timestamp("ms")),
        "kind": pa.array(np.full(n, "metric")), "name": pa.array(np.tile(np.array(NAMED[:5]), 50)),
        "value": pa.array(np.random.default_rng(run).normal(size=n)),
        "ivalue": null(pa.int64()), "digest": null(pa.string()), "text": null(pa.string()),
        "attrs": null(pa.string())}, schema=arrow_schema().remove_metadata())


def many_files(workdir: Path, files: int = 10_000, per_run: int = 20) -> tuple[Path, Path]:
    """``files`` segment files as the writer commits them, and the same rows as plain Parquet."""
    import pyarrow.parquet as pq

    from rldk.core.segments import write_segment

    written, plain = workdir / f"writer-{files}", workdir / f"plain-{files}"
    if not plain.is_dir():
        for out in (written, plain):
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
        for r in range(files // per_run):
            for seg in range(per_run):
                name = f"run{r:04d}.r0.{seg:06d}.parquet"
                table = segment(r, seg)
                write_segment(table, written, name)
                pq.write_table(table, plain / name)
    return written, plain


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", default=None, help="keeps generated data between calls")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rldk-bench-runs-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "src"))
    written, plain = many_files(workdir)
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} before; data in {workdir}")
    results = {}
    for label, files in (("writer's files", written), ("plain Parquet (no rldk footer)", plain)):
        result = compare({"rldk runs": rldk("runs", files, "--format", "csv", "-o", os.devnull),
                          "duckdb group by": py(GROUP_BY, files)}, args.repeats)
        r, d = result["rldk runs"], result["duckdb group by"]
        print(f"rldk runs on 10,000 files ({label}): wall {r['wall']:.2f} s, cpu {r['cpu']:.2f} s, "
              f"peak {r['rss_mb']:.0f} MB; duckdb GROUP BY run_id: wall {d['wall']:.2f} s, "
              f"cpu {d['cpu']:.2f} s, peak {d['rss_mb']:.0f} MB; ratio {r['vs']['duckdb group by']:.2f}x"
              + (f" (target <= {TARGET}x)" if files == written else "")
              + f"; cpu ratio {r['cpu'] / d['cpu']:.2f}x")
        results[label] = result
    print(f"load {os.getloadavg()[0]:.1f} after; median of {args.repeats}")
    finish("runs", results, workdir, keep=bool(args.workdir))


if __name__ == "__main__":
    main()
