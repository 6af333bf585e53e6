"""Generic CSV logs: a header row, then one row per logged step.

See :mod:`rldk.converters.tabular` for how columns become steps, metrics and
samples. Empty cells are missing values (nothing is stored for them, never a
zero). A row whose cell count differs from the header's is skipped and reported
with its line number (``--strict``: an error). A repeated header line (a logger
that rewrote its header when new keys appeared, then kept appending) switches to
the new header.
"""
from __future__ import annotations

import csv
from pathlib import Path

from rldk.converters.base import ConvertError, RunData, Skip, write_runs
from rldk.converters.jsonl import check_rows, report_non_numeric
from rldk.converters.tabular import RowCollector, parse_field_map

NAME = "csv"


def detect(path) -> bool:
    """True for a ``.csv`` file (or a directory with one) with a header row."""
    return bool(files(path, limit=1))


def files(path, limit: int | None = None) -> list[Path]:
    path = Path(path)
    found = [path] if path.is_file() else sorted(p for p in path.glob("*.csv") if p.is_file())
    out = [p for p in found if p.suffix == ".csv"]
    return out[:limit] if limit else out


def read(path, field_map=None, **_options) -> list[RunData]:
    path = Path(path)
    targets = [path] if path.is_file() else files(path)
    if not targets:
        raise ConvertError(f"{path}: no CSV file (*.csv) found")
    mapping = parse_field_map(field_map)
    return [read_file(f, mapping) for f in targets]


def read_file(file: Path, mapping: dict, comment: str | None = None) -> RunData:
    """The run in one CSV file; its tables are read as they are consumed (streaming)."""
    run = RunData(key=file.stem, source=str(file))
    run.tables = _tables(file, mapping, comment, run)
    return run


def _tables(file: Path, mapping: dict, comment: str | None, run: RunData):
    rows, header = RowCollector(mapping), None
    for lineno, cells in csv_lines(file, comment):
        if header is None or _is_header(cells, header):
            header = cells
            continue
        if len(cells) != len(header):
            reason = f"row has {len(cells)} cells, the header has {len(header)}; row skipped"
        else:
            rows.where = f"line {lineno}"
            reason = rows.add(dict(zip(header, cells)), rows.rows)
        if reason is not None:
            run.skipped.append(Skip(str(file), f"line {lineno}", reason))
        yield from rows.take()
    check_rows(file, rows.rows, run.skipped)
    report_non_numeric(file, rows, run.skipped)
    yield from rows.take(0)
    run.meta.update({**rows.meta(), "columns": header})


def csv_lines(file: Path, comment: str | None = None):
    """``(line number, cells)`` of each non-empty row, read as a stream; one error line
    for binary or non-UTF-8 input."""
    try:
        with open(file, "rb") as probe:
            head = probe.read(4096)
        handle = open(file, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ConvertError(f"{file}: cannot read ({exc.strerror})") from None
    if b"\0" in head:
        handle.close()
        raise ConvertError(f"{file}: binary file (NUL bytes), not CSV")
    csv.field_size_limit(1 << 24)
    with handle:
        reader = csv.reader(handle)
        try:
            for cells in reader:
                if cells and not (comment and cells[0].startswith(comment)):
                    yield reader.line_num, cells
        except UnicodeDecodeError:
            raise ConvertError(f"{file}:line {reader.line_num + 1}: not UTF-8 text; is this a CSV "
                               "file?") from None
        except csv.Error as exc:
            raise ConvertError(f"{file}:line {reader.line_num}: malformed CSV ({exc})") from None


def _is_header(cells: list, header: list) -> bool:
    """A later row that repeats header names (a rewritten header appended mid-file)."""
    return cells == header or len(set(cells) & set(header)) >= max(2, len(header) // 2) \
        and all(c and not _is_number(c) for c in cells)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def convert(path, target, run_id=None, strict: bool = False, **options):
    """Convert CSV logs at ``path`` into ``target`` (store directory or EventWriter)."""
    return write_runs(read(path, **options), target, run_id, NAME, source=str(path), strict=strict)
