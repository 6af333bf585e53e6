"""TensorBoard event files (``events.out.tfevents.*``), read without TensorFlow.

Each directory holding event files is one run (as in TensorBoard); its files are
read in name order (the name starts with the creation time), so a resumed run's
second file follows the first. Scalars (``add_scalar``'s ``simple_value`` and
new-style one-element tensors) become ``metric`` events with the tag as name, the
event's step and wall time; text summaries become ``metric`` events with a null
value and the text in ``text`` (the event schema's rule for non-numeric metrics).
Histograms, images and audio are counted in the run's import event, not imported.
How the run ended is "unknown" (event files hold no planned length); its seconds
are the span of its events' wall times.

Problems are reported, never hidden: a file cut mid-record (a run still writing,
or a truncated copy) imports every complete record and reports the index and byte
offset of the cut one; a record whose CRC32C fails is skipped and reported.
"""
from __future__ import annotations

from pathlib import Path

from rldk.converters import tfrecord
from rldk.converters.base import (
    ConvertError,
    RunData,
    Skip,
    facts,
    relative_key,
    walk_files,
    wall_span,
    write_runs,
)

NAME = "tensorboard"
MARKER = "tfevents"


def detect(path) -> bool:
    """True for an event file or a directory with one (at most 4 levels down)."""
    return bool(event_files(path, limit=1))


def event_files(path, limit: int | None = None) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path] if MARKER in path.name else []
    out = []
    for p in walk_files(path, 4):
        if MARKER in p.name:
            out.append(p)
            if limit and len(out) >= limit:
                break
    return sorted(out)


def read(path, verify_crc: bool = True, **_options) -> list[RunData]:
    """One :class:`RunData` per directory of event files under ``path``."""
    path = Path(path)
    files = event_files(path)
    if not files:
        raise ConvertError(f"{path}: no TensorBoard event files (events.out.tfevents.*) found")
    base = path if path.is_dir() else path.parent
    by_dir: dict[Path, list[Path]] = {}
    for f in files:
        by_dir.setdefault(f.parent, []).append(f)
    return [read_run(fs, relative_key(d, base), verify_crc) for d, fs in sorted(by_dir.items())]


def read_run(files: list[Path], key: str, verify_crc: bool = True) -> RunData:
    """Decode the event files of one run into metric and text tables."""
    tables, skipped, ignored, span = [], [], {}, []
    for f in files:
        decoded, skips = read_file(f, verify_crc)
        skipped += skips
        for reason, count in decoded.ignored.items():
            ignored[reason] = ignored.get(reason, 0) + count
        tables += _tables(decoded)
        span += [float(w.min()) for w in decoded.walls if len(w)] + [float(w.max()) for w in decoded.walls if len(w)]
        span += [t[1] for t in decoded.texts]
    meta = {"files": [f.name for f in files], "ignored": ignored,
            **facts("unknown", "TensorBoard event files record no planned length", wall_span(span))}
    return RunData(key=key or "run", source=str(files[0].parent), tables=tables, skipped=skipped, meta=meta)


def read_file(file: Path, verify_crc: bool = True):
    """``(Decoded, skips)`` for one event file."""
    try:
        buf = file.read_bytes()
    except OSError as exc:
        raise ConvertError(f"{file}: cannot read ({exc.strerror})") from None
    rec = tfrecord.read_records(buf, verify=verify_crc)
    skips = []
    if rec.error is not None:
        skips.append(Skip(str(file), f"record {rec.error.index}",
                          f"{rec.error.reason} at byte {rec.error.offset}; the {len(rec.starts)} "
                          "records before it were imported"))
    for i in rec.bad_crc[:20]:
        skips.append(Skip(str(file), f"record {i}", "data checksum (CRC32C) mismatch: record skipped"))
    if len(rec.bad_crc) > 20:
        skips.append(Skip(str(file), f"records {rec.bad_crc[20]}..{rec.bad_crc[-1]}",
                          f"{len(rec.bad_crc) - 20} more records with a CRC32C mismatch skipped"))
    decoded = tfrecord.decode(rec, skip=set(rec.bad_crc))
    for i, reason in decoded.malformed:
        skips.append(Skip(str(file), f"record {i}", reason))
    if len(rec.starts) == 0 and rec.error is None:
        skips.append(Skip(str(file), "record 0", "empty event file: no records"))
    return decoded, skips


def _tables(decoded) -> list:
    import numpy as np
    import pyarrow as pa

    out = []
    for step, wall, name, value in zip(decoded.steps, decoded.walls, decoded.names, decoded.values):
        n = len(step)
        out.append(pa.table({
            "step": pa.array(step, pa.int64()),
            "wall_time": pa.array(wall, pa.float64()),
            "kind": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array(["metric"])),
            "name": name,
            "value": pa.array(value, pa.float64()),
        }))
    if decoded.texts:
        steps, walls, tags, texts = zip(*decoded.texts)
        out.append(pa.table({
            "step": pa.array(steps, pa.int64()), "wall_time": pa.array(walls, pa.float64()),
            "kind": pa.array(["metric"] * len(tags), pa.string()),
            "name": pa.array(tags, pa.string()),
            "value": pa.nulls(len(tags), pa.float64()),
            "text": pa.array(texts, pa.string()),
        }))
    return out


def convert(path, target, run_id=None, strict: bool = False, **options):
    """Convert TensorBoard logs at ``path`` into ``target`` (store directory or EventWriter)."""
    return write_runs(read(path, **options), target, run_id, NAME, source=str(path), strict=strict)
