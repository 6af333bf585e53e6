"""wandb offline runs (``wandb/offline-run-*/run-<id>.wandb``), as OpenRLHF and others write them.

A ``.wandb`` file is a LevelDB-style log: a 7-byte header (``:W&B``, magic 0xBEE1,
version 0), then 32 KiB blocks of records, each ``uint32 crc32 | uint16 length |
uint8 type`` (full / first / middle / last fragment) followed by its bytes; a
record is one serialized ``wandb_internal_pb2.Record``. The framing is read here;
the Record protobuf is decoded with the classes the ``wandb`` package ships (it is
needed only for this format). ``history`` records become ``metric`` events at
their ``_step`` (names as logged, ``train/policy_loss``...); the run's config goes
into the import event. A fragment with a bad CRC32 is skipped and reported. How the
run ended is its ``exit`` record's code (0 complete, else failed; none: unknown), its
seconds the summary's ``_runtime`` (else the exit record's ``runtime``).
"""
from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

from rldk.converters.base import (
    ConvertError,
    RunData,
    Skip,
    facts,
    metric_table,
    relative_key,
    write_runs,
)

NAME = "wandb"
_HEADER = struct.Struct("<4sHB")
_RECORD = struct.Struct("<IHB")
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def detect(path) -> bool:
    """True for a ``.wandb`` file or a directory with one (3 levels down)."""
    return bool(files(path, limit=1))


def files(path, limit: int | None = None) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path] if path.suffix == ".wandb" and _has_header(path) else []
    found = [p for pattern in ("*.wandb", "*/*.wandb", "*/*/*.wandb", "*/*/*/*.wandb")
             for p in sorted(path.glob(pattern)) if _has_header(p)]
    by_target: dict = {}
    for p in found:               # wandb/latest-run is a symlink to one offline-run-* directory
        if p.resolve() not in by_target or by_target[p.resolve()].parent.is_symlink():
            by_target[p.resolve()] = p
    out = sorted(by_target.values())
    return out[:limit] if limit else out


def _has_header(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b":W&B"
    except OSError:
        return False


def read(path, **_options) -> list[RunData]:
    path = Path(path)
    found = files(path)
    if not found:
        raise ConvertError(f"{path}: no wandb offline run file (run-<id>.wandb) found")
    base = path if path.is_dir() else path.parent
    return [_read_file(f, relative_key(f.parent, base)) for f in found]


def records(buf: bytes, file: Path, skipped: list):
    """Yield the payload of each complete record (fragments joined)."""
    ident, magic, version = _HEADER.unpack_from(buf, 0) if len(buf) >= 7 else (b"", 0, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ConvertError(f"{file}: not a wandb run file (bad header)")
    pos, index, parts = 7, 0, []
    while pos + 7 <= len(buf):
        room = _BLOCK - pos % _BLOCK
        if room < 7:                                   # block trailer: zero padding
            pos += room
            continue
        crc, length, kind = _RECORD.unpack_from(buf, pos)
        data = buf[pos + 7:pos + 7 + length]
        if len(data) < length:
            skipped.append(Skip(str(file), f"record {index}", f"cut: {len(data)} of {length} bytes present"))
            return
        if zlib.crc32(data, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            skipped.append(Skip(str(file), f"record {index}", "CRC32 mismatch: record skipped"))
            parts = []
        elif kind == _FULL:
            yield index, data
        elif kind == _FIRST:
            parts = [data]
        elif kind == _MIDDLE and parts:
            parts.append(data)
        elif kind == _LAST and parts:
            yield index, b"".join(parts + [data])
            parts = []
        pos += 7 + length
        index += 1


def _read_file(file: Path, key: str) -> RunData:
    try:
        from wandb.proto import wandb_internal_pb2 as pb
    except ImportError:
        raise ConvertError(f"{file}: reading .wandb files needs the wandb package: pip install wandb") from None
    steps, names, values, skipped, config = [], [], [], [], {}
    ended: dict = {}                                   # exit code, runtimes
    for index, data in records(file.read_bytes(), file, skipped):
        record = pb.Record()
        try:
            record.ParseFromString(data)
        except Exception:  # protobuf's DecodeError; the record is skipped, not the file
            skipped.append(Skip(str(file), f"record {index}", "not a wandb Record: skipped"))
            continue
        kind = record.WhichOneof("record_type")
        if kind == "history":
            _history(record.history, index, file, steps, names, values, skipped)
        elif kind in ("config", "run"):
            updates = record.config.update if kind == "config" else record.run.config.update
            for item in updates:
                config[item.key or "/".join(item.nested_key)] = _json(item.value_json)
        elif kind == "summary":
            runtime = next((_json(i.value_json) for i in record.summary.update if i.key == "_runtime"), None)
            if isinstance(runtime, (int, float)) and not isinstance(runtime, bool):
                ended["summary_runtime"] = float(runtime)
        elif kind == "exit":
            ended["exit_code"], ended["exit_runtime"] = record.exit.exit_code, record.exit.runtime
    return RunData(key=key, source=str(file), tables=[metric_table(steps, names, values)], skipped=skipped,
                   meta={"config": config, **run_facts(ended)})


#: The exit code wandb records for a run that a KeyboardInterrupt ended (its exit hooks set
#: 255 for Ctrl-C, 1 for any other uncaught exception): stopped from outside, not failed.
WANDB_INTERRUPTED = 255


def run_facts(ended: dict) -> dict:
    """How the run ended by its own records (:func:`rldk.converters.base.facts`)."""
    seconds = ended.get("summary_runtime", ended.get("exit_runtime"))
    if "exit_code" not in ended:
        return facts("unknown", "wandb run file: no exit record (still running, or the process died)", seconds)
    code = ended["exit_code"]
    if code == WANDB_INTERRUPTED:
        return facts("killed", f"wandb exit record: exit_code {code}, a KeyboardInterrupt (Ctrl-C)", seconds)
    return facts("complete" if code == 0 else "failed", f"wandb exit record: exit_code {code}", seconds)


def _history(history, index, file, steps, names, values, skipped) -> None:
    items = {(item.key or "/".join(item.nested_key)): item.value_json for item in history.item}
    step = history.step.num if history.HasField("step") else _json(items.get("_step"))
    if not isinstance(step, int):
        skipped.append(Skip(str(file), f"record {index}", "history row without an integer _step"))
        return
    for name, raw in items.items():
        if name.startswith("_"):
            continue                                   # _step, _runtime, _timestamp
        value = _json(raw)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            steps.append(step), names.append(name), values.append(float(value))
        elif value in ("NaN", "nan"):
            steps.append(step), names.append(name), values.append(math.nan)


def _json(text):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def convert(path, target, run_id=None, strict: bool = False, **options):
    """Convert wandb offline runs at ``path`` into ``target``."""
    return write_runs(read(path, **options), target, run_id, NAME, source=str(path), strict=strict)
