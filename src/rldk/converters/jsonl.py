"""Generic JSON Lines logs: one JSON object a line, mapped with a field map.

See :mod:`rldk.converters.tabular` for how fields become steps, metrics and
samples. A line that is not valid JSON, or not an object, is skipped and
reported with its line number (``--strict``: an error); the rest is imported.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rldk.converters.base import ConvertError, RunData, Skip, write_runs
from rldk.converters.tabular import (
    FIRST_BYTES,
    RowCollector,
    count_byte,
    frame_tables,
    line_blocks,
    line_count,
    open_binary,
    parse_field_map,
    prefetched,
)

NAME = "jsonl"
SUFFIXES = (".jsonl", ".ndjson")       # and a .json file of JSON Lines (``files``)


def detect(path) -> bool:
    """True for a ``.jsonl``/``.ndjson`` file (or a directory with one) whose first line is
    an object, or a ``.json`` file whose first two lines are objects (Ray Tune / RLlib's
    ``result.json``: one result a line)."""
    return bool(files(path, limit=1))


def files(path, limit: int | None = None) -> list[Path]:
    path = Path(path)
    found = [path] if path.is_file() else sorted(p for p in path.glob("*") if p.is_file())
    out = [p for p in found if (p.suffix in SUFFIXES and _first_is_object(p))
           or (p.suffix == ".json" and _first_is_object(p, lines=2))]
    return out[:limit] if limit else out


def _first_is_object(path: Path, lines: int = 1) -> bool:
    """Whether each of the first ``lines`` non-empty lines of ``path`` is a JSON object (a
    pretty-printed JSON document's first line, ``{``, is not)."""
    seen = 0
    try:
        with open(path, "rb") as f:
            for raw in f:
                if not raw.strip():
                    continue
                try:
                    if not isinstance(json.loads(raw), dict):
                        return False
                except RecursionError:              # too deep to parse: an object if it starts as one
                    if not raw.lstrip().startswith(b"{"):
                        return False
                seen += 1
                if seen == lines:
                    return True
    except (OSError, ValueError):
        return False
    return False


def read(path, field_map=None, **_options) -> list[RunData]:
    path = Path(path)
    targets = [path] if path.is_file() else files(path)
    if not targets:
        raise ConvertError(f"{path}: no JSON Lines file (*.jsonl, *.ndjson, or a .json file of one object a line) found")
    mapping = parse_field_map(field_map)
    return [read_file(f, mapping) for f in targets]


def read_file(file: Path, mapping: dict) -> RunData:
    """The run in one JSON Lines file; its tables are read as they are consumed (streaming)."""
    run = RunData(key=file.stem, source=str(file))
    run.tables = _tables(file, mapping, run)
    return run


def _tables(file: Path, mapping: dict, run: RunData):
    """Batches of ~:data:`BATCH_BYTES` of lines, each parsed by Polars in one call (on a
    worker thread, ahead of this one: :func:`~rldk.converters.tabular.prefetched`); a
    batch Polars cannot take, or whose columns are irregular (text, mixed types), goes
    through the exact row path, which names each bad line."""
    rows, parser = RowCollector(mapping), _Parser()
    with open_binary(file, "JSON Lines") as handle:
        lineno = 0
        for batch in prefetched(line_blocks(handle, BATCH_BYTES, FIRST_BYTES), parser.batch):
            count, start, data = batch.lines, 0, batch.data
            while rows.step_field is None and start < len(data):    # rows until the first valid one
                end = data.find(b"\n", start) + 1 or len(data)
                lineno += 1
                _row_path(rows, data[start:end], lineno, file, run)
                count -= 1
                start = end
            tables = None
            if start < len(data):
                tables = _columnar(rows, parser.batch(data[start:]) if start else batch)
            if tables is None:
                for raw in _lines(data[start:]):
                    lineno += 1
                    _row_path(rows, raw, lineno, file, run)
                    yield from rows.take()
            else:
                lineno += count
                yield from rows.take(0)
                yield from tables
    check_rows(file, rows.rows, run.skipped)
    report_non_numeric(file, rows, run.skipped)
    run.skipped.sort(key=_line_order)
    yield from rows.take(0)
    run.meta.update(rows.meta())


#: bytes of lines per batch: 8 MB makes half the tables (and Arrow chunks) of 4 MB for the
#: writer to take; measured 5-9% less wall time on the 400 MB JSONL and 200 MB CSV of
#: benchmarks/import.py; the same peak RSS streaming 1 GB (429-432 MB, main 428-431 MB).
BATCH_BYTES = 1 << 23


def _lines(batch: bytes) -> list:
    """The lines of a batch split at ``\\n`` only (as reading the file line by line does)."""
    lines = batch.split(b"\n")
    if batch.endswith(b"\n"):
        lines.pop()
    return lines


@dataclass(frozen=True)
class Batch:
    """Whole lines of a file: their bytes, how many, and their Polars frame (None when
    Polars cannot take them)."""

    data: bytes
    lines: int
    frame: object


class _Parser:
    """Parses batches, keeping the last schema that read one (the next batch tries it first)."""

    def __init__(self):
        self.schema = None

    def batch(self, data: bytes) -> Batch:
        frame = _parse(data, self.schema)
        if frame is not None:
            self.schema = frame.schema
        return Batch(data, line_count(data), frame)


def _columnar(rows: RowCollector, batch: Batch):
    """The batch's event tables, or None when the row path must read it."""
    return None if batch.frame is None else frame_tables(rows, batch.frame)


def _parse(batch: bytes, schema):
    """The batch as one Polars frame (None if Polars cannot take it). The previous
    batch's ``schema`` is tried first: a third of the work of inferring one from every
    line, and kept only when :func:`_covers` proves no line holds a key it lacks."""
    import polars as pl

    if schema is not None:
        try:
            frame = pl.read_ndjson(batch, schema=schema)
            if _covers(frame, batch):
                return frame
        except Exception:  # a value of another type: infer this batch's own schema
            pass
    try:
        return pl.read_ndjson(batch, infer_schema_length=None)
    except Exception:  # Polars raises several types for input it cannot take: the row path decides
        return None


def _covers(frame, batch: bytes) -> bool:
    """True when ``frame`` (read with a given schema, which drops unknown keys) holds
    every key of ``batch`` that has a value. Every key is followed by one colon: the
    colons of the text, less one per value the frame holds, less one per ``:null``,
    leave none exactly when no key with a value was dropped (colons inside strings
    only make the check fail, never pass). Keys holding a colon: no proof."""
    import polars as pl

    held, stack = 0, list(frame.get_columns())
    while stack:
        series = stack.pop()
        if ":" in series.name:
            return False
        held += series.len() - series.null_count()
        if isinstance(series.dtype, pl.Struct):
            stack.extend(series.struct.unnest().get_columns())
    extra = count_byte(batch, b":") - held
    return extra <= 0 or extra <= batch.count(b":null") + batch.count(b": null")


def _row_path(rows: RowCollector, raw: bytes, lineno: int, file: Path, run: RunData) -> None:
    rows.where = f"line {lineno}"
    reason = _add_line(rows, raw)
    if reason is not None:
        run.skipped.append(Skip(str(file), f"line {lineno}", reason))


def _add_line(rows: RowCollector, raw: bytes) -> str | None:
    """Add one line's object; returns why the line was skipped, or None."""
    if not raw.strip():
        return None
    try:
        row = json.loads(raw.decode("utf-8").strip())
    except (ValueError, UnicodeDecodeError) as exc:
        return f"invalid JSON ({_short(exc)}); line skipped"
    except RecursionError:
        return "JSON nested too deeply to read; line skipped"
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not an object"
    return rows.add(row, rows.rows)


def check_rows(file: Path, count: int, skipped: list) -> None:
    """A file with nothing importable is an error naming why (empty, or its first bad line)."""
    if count:
        return
    if skipped:
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        raise ConvertError(f"{skipped[0]}{more}; no valid rows in the file")
    raise ConvertError(f"{file}: empty file: no rows to import")


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:80]


def convert(path, target, run_id=None, strict: bool = False, **options):
    """Convert JSON Lines at ``path`` into ``target`` (store directory or EventWriter)."""
    return write_runs(read(path, **options), target, run_id, NAME, source=str(path), strict=strict)


def report_non_numeric(file, rows, skipped: list) -> None:
    """One skip entry per numeric column that held values that are not numbers (where the
    first was); skips stay in line order."""
    for name, count, where, raw in rows.non_numeric():
        skipped.append(Skip(str(file), where,
                            f"{name}: {count} non-numeric value(s) left out of the metric (first "
                            f"{str(raw)[:40]!r}); the rest of the row was imported"))


def _line_order(skip) -> tuple:
    """Sort key of a skip entry: by its line number when it names one."""
    head, _, number = skip.where.rpartition(" ")
    return (0, int(number)) if number.isdigit() else (1, 0)
