"""Content hashing throughput against reading the same Parquet file.

Writes a Parquet file shaped like an RL prompt/response dataset (id int64, prompt
and response strings, reward float64, token ids list<int32>, a nullable score),
then times, median of ``--reps`` runs each:

    read          pyarrow.parquet.read_table(path)                (the incumbent)
    hash file     rldk.core.hashing.hash_path(path)   (streams the file: read + hash)
    hash table    rldk.core.hashing.hash_table(table) (already in memory)

and prints the ratios to the read. Target: hashing a file within 2x of reading it.

    python benchmarks/lineage.py --rows 500000 --reps 5
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def make_table(rows: int, seed: int = 0):
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    words = np.array(["the", "reward", "policy", "model", "answer", "step", "value", "token", "is", "a"])
    prompt_len = rng.integers(8, 30, rows)
    resp_len = rng.integers(20, 80, rows)
    text = lambda lens: [" ".join(words[rng.integers(0, len(words), n)]) for n in lens]
    tokens = pa.ListArray.from_arrays(
        pa.array(np.concatenate([[0], np.cumsum(resp_len)]).astype(np.int32)),
        pa.array(rng.integers(0, 50_000, int(resp_len.sum())).astype(np.int32)))
    score = rng.normal(size=rows)
    return pa.table({"id": np.arange(rows), "prompt": text(prompt_len), "response": text(resp_len),
                     "reward": rng.normal(size=rows), "tokens": tokens,
                     "score": pa.array(score, mask=rng.random(rows) < 0.1)})


def median_seconds(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> None:
    import pyarrow.parquet as pq

    from rldk.core.hashing import hash_path, hash_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    table = make_table(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.parquet")
        pq.write_table(table, path, compression="zstd", row_group_size=100_000)
        size = os.path.getsize(path)
        mem = table.nbytes
        assert hash_path(path).digest == hash_table(table).digest      # same content, same hash
        read = median_seconds(lambda: pq.read_table(path), args.reps)
        hash_file = median_seconds(lambda: hash_path(path), args.reps)
        hash_mem = median_seconds(lambda: hash_table(table), args.reps)
    print(f"{args.rows:,} rows, {mem / 2**20:,.0f} MiB in memory, {size / 2**20:,.0f} MiB Parquet (zstd); "
          f"median of {args.reps}")
    for name, secs in (("read (pyarrow.parquet.read_table)", read), ("hash file (read + hash)", hash_file),
                       ("hash table (in memory)", hash_mem)):
        print(f"  {name:36s} {secs * 1000:8.1f} ms  {mem / 2**20 / secs:8.0f} MiB/s  "
              f"{secs / read:5.2f}x read")
    verdict = "within" if hash_file <= 2 * read else "NOT within"
    print(f"hashing the file takes {hash_file / read:.2f}x the read: {verdict} the 2x target")


if __name__ == "__main__":
    main()
