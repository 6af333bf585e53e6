"""The event table: one long Arrow schema shared by every event kind.

Every row is one event. The identifying columns are the same for all kinds; each
kind documents which payload columns it fills (``KINDS``). A store is any set of
Parquet files with this schema, so ``duckdb -c "SELECT * FROM 'runs/*.parquet'"``
works with no rldk code at all.

Columns
-------
run_id     string      the run the event belongs to (every row carries it)
rank       int32       process rank within the run (0 for single-process runs)
seq        int64       order of the writer call that produced the row, per writer session
step       int64|null  training step; null for events that belong to no step
wall_time  timestamp[ms] (UTC)  when the writer call happened
kind       string      event kind, one of ``KINDS``
name       string      metric / tensor / RNG source / span name, namespaces kept
value      float64     the numeric payload (metric value, span seconds, tensor L2 norm, ...)
ivalue     int64       exact integer payload (int metrics, tensor checksum, byte counts, ...)
digest     string      hex digest (RNG state, tensor checksum, content hash)
text       string      text payload (sample response, checkpoint path, non-numeric value)
attrs      string      JSON object with the rest (sample prompt, tensor stats, run config)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

#: Version of the event table layout, stored in each file's key-value metadata
#: under ``rldk.schema_version``. Readers accept every version up to this one.
SCHEMA_VERSION = 1

#: Key-value metadata keys written into every Parquet segment.
META_VERSION = b"rldk.schema_version"
META_COVERS = b"rldk.covers"          # JSON list of segment file names a compacted file replaces
META_WRITER = b"rldk.writer"

COLUMNS = (
    "run_id", "rank", "seq", "step", "wall_time", "kind", "name",
    "value", "ivalue", "digest", "text", "attrs",
)


@dataclass(frozen=True)
class KindSpec:
    """What one event kind means and which payload columns it fills.

    ``required`` columns are non-null on every row of the kind; ``optional`` may be
    filled; the other payload columns are always null for it.
    """

    name: str
    description: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()


KINDS: dict[str, KindSpec] = {k.name: k for k in (
    KindSpec("metric", "a scalar logged with writer.log(); value is NaN/inf as logged; "
             "ints also in ivalue; non-numeric values keep value null and their text in text",
             optional=("value", "ivalue", "text", "attrs")),
    KindSpec("rng", "digest of one RNG state (name: python, numpy, torch, cuda:N, or a "
             "generator's name) from writer.log_rng()", required=("digest",)),
    KindSpec("tensor", "one tensor's bit-exact checksum (name: '<group>/<tensor name>', group "
             "param|grad|buffer|optimizer); ivalue: checksum, digest: its hex, value: L2 norm, "
             "attrs: dtype, shape, numel, min, max, nan, inf",
             required=("ivalue", "digest", "attrs"), optional=("value",)),
    KindSpec("memory", "a memory reading in bytes (host/rss, cuda:N/allocated, "
             "cuda:N/reserved, cuda:N/peak_allocated) or a count (cuda:N/alloc_retries)",
             required=("value",), optional=("ivalue",)),
    KindSpec("span", "a timed section: value is its duration in seconds, wall_time its start",
             required=("value",), optional=("attrs",)),
    KindSpec("sample", "one generated text: text is the response, attrs.prompt the prompt, "
             "value the reward (null when not given), attrs the extra fields",
             required=("text", "attrs"), optional=("value",)),
    KindSpec("checkpoint", "a saved checkpoint: text is its path, digest a digest of the "
             "saved state, attrs the per-part digests", optional=("text", "digest", "attrs")),
    KindSpec("dataset", "a dataset or transform in the lineage graph: digest is the content "
             "hash, ivalue the row count, attrs the schema/edges", optional=("digest", "ivalue", "text", "attrs")),
    KindSpec("run", "run metadata: name 'start' (attrs: config, seed, git, packages, host, "
             "argv, environment audit) and 'end' (attrs: status and writer counters)",
             required=("attrs",)),
    KindSpec("writer", "writer diagnostics: dropped or malformed values, write errors "
             "(name says which, ivalue how many)", optional=("ivalue", "text", "attrs")),
)}


@lru_cache(maxsize=1)
def arrow_schema():
    """The Arrow schema of the event table (pyarrow is imported on first use)."""
    import pyarrow as pa

    return pa.schema([
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("step", pa.int64()),
        pa.field("wall_time", pa.timestamp("ms")),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("ivalue", pa.int64()),
        pa.field("digest", pa.string()),
        pa.field("text", pa.string()),
        pa.field("attrs", pa.string()),
    ])


@lru_cache(maxsize=1)
def memory_schema():
    """The schema the writer holds events in before writing: like :func:`arrow_schema`
    but with run_id, kind and name dictionary-encoded (4 bytes a row instead of the
    string). Files are written without the Arrow schema (``store_schema=False``),
    so readers see plain strings either way."""
    import pyarrow as pa

    dict_string = pa.dictionary(pa.int32(), pa.string())
    fields = [pa.field(f.name, dict_string, nullable=f.nullable) if f.name in ("run_id", "kind", "name")
              else f for f in arrow_schema()]
    return pa.schema(fields)


#: Parquet encodings chosen per column: rows arrive step-major, so step, seq and
#: wall_time are near-monotonic (delta encoding makes them almost free) and float
#: values compress best split by byte plane. Measured: ~3.7 bytes per float32-born
#: metric value for 10 metrics a step (see benchmarks/writer_overhead.py).
PARQUET_OPTIONS = dict(
    compression="zstd",
    compression_level=3,
    use_dictionary=["run_id", "kind", "name", "digest"],
    column_encoding={
        "rank": "DELTA_BINARY_PACKED",
        "seq": "DELTA_BINARY_PACKED",
        "step": "DELTA_BINARY_PACKED",
        "wall_time": "DELTA_BINARY_PACKED",
        "value": "BYTE_STREAM_SPLIT",
        "ivalue": "DELTA_BINARY_PACKED",
    },
    write_statistics=True,
    store_schema=False,
)


#: the columns a segment compresses with LZ4 (see SEGMENT_PARQUET_OPTIONS)
_SEGMENT_LZ4 = ("run_id", "rank", "seq", "step", "kind", "name", "ivalue", "digest", "wall_time")

#: Segments written fast: an import's (``rldk import``: millions of rows in one go), and
#: a live writer's small segments, which close() merges into one file written with
#: :data:`PARQUET_OPTIONS` (2026-12-03, a live segment of 10,700 values, 535 steps of 20
#: float32-born metrics, 200 writes interleaved with numpy work: 3.9 -> 2.9 ms of the
#: training process's CPU, 3.28 -> 3.55 bytes a value until the merge). Measured for
#: imports on benchmarks/import.py's 10M metric rows of random values, against 0.78 s
#: of encoding with :data:`PARQUET_OPTIONS`: values handed
#: to the encoder 64K at a time instead of 1,024 (-0.16 s); statistics only where readers
#: use them (run_id, rank, kind: a file's one run, kind and rank; step and value: their
#: null counts; wall_time for time filters), none on seq, name and the text payload
#: (-0.03-0.05 s); LZ4 on the identity columns (constant or delta-encoded, tiny either
#: way), the one rank stored plain, which LZ4 shrinks faster than delta encoding does
#: (-0.03 s); zstd at level 1 (Arrow's default) on the payload (value, text, attrs): LZ4
#: on values saves 0.1 s more but makes logs whose values compress 30% larger. In all 0.6-0.65 s,
#: the same size. Then (the 200 MB CSV of benchmarks/import.py, 7 interleaved runs):
#: pages of up to 8 MB (pyarrow 26 also caps a page at 20,000 rows by default; a cap of 1M
#: rows measured no faster in 2026-12) and LZ4 on ivalue and
#: digest, which no converter writes, and on wall_time: Arrow makes a zstd context for
#: every page it compresses, a cost of its own where a page holds nothing (all null);
#: 1.46 -> 1.42 s, 1.81 -> 1.73 s CPU. Timestamps, where a log has them, take 0.44 instead
#: of 0.26 bytes a row (of ~7). LZ4 on text and attrs too (for a CSV without a text
#: column) measured no faster in 11 interleaved runs: not done. Then zstd at level -1 (its
#: fast mode) on values: 0.680 -> 0.651 s (11 interleaved fresh processes); per 840k
#: values 9.2 -> 6.6 ms for random doubles (+1.5% bytes), 11.6 -> 11.0 ms for float32-born
#: noisy series (3.11 -> 3.20 bytes a value), 9.2 -> 8.0 ms for rounded schedules (+1%);
#: the 109 logs of benchmarks/data/real take the same bytes either way.
SEGMENT_PARQUET_OPTIONS = dict(
    {k: v for k, v in PARQUET_OPTIONS.items() if k != "compression_level"},
    compression={c: "lz4" if c in _SEGMENT_LZ4 else "zstd" for c in COLUMNS},
    column_encoding={**PARQUET_OPTIONS["column_encoding"], "rank": "PLAIN"},
    write_batch_size=1 << 16,
    data_page_size=8 << 20,
    write_statistics=["run_id", "rank", "step", "wall_time", "kind", "value"],
    compression_level={"value": -1},
)
