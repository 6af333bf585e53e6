"""Generic CSV logs: a header row, then one row per logged step.

Tab-separated tables (``.tsv``; a ``.txt`` whose first line holds tabs and no comma, as
Spinning Up's ``progress.txt``) are read the same way, cell by cell. A chart's CSV export
from the wandb web page (``Step``, then ``<run name> - <metric>`` columns) becomes one run
per run name (:func:`wandb_export`); TensorBoard's CSV download of one scalar
(``Wall time``, ``Step``, ``Value``) is that scalar, named by its file (:func:`tensorboard_export`).

See :mod:`rldk.converters.tabular` for how columns become steps, metrics and
samples. Empty cells are missing values (nothing is stored for them, never a
zero). A row whose cell count differs from the header's is skipped and reported
with its line number (``--strict``: an error). A repeated header line (a logger
that rewrote its header when new keys appeared, then kept appending) switches to
the new header.
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

from rldk.converters.base import ConvertError, RunData, Skip, metric_table, write_runs
from rldk.converters.jsonl import check_rows, report_non_numeric
from rldk.converters.tabular import (
    FIRST_BYTES,
    RowCollector,
    count_byte,
    frame_tables,
    line_blocks,
    line_count,
    number,
    open_binary,
    parse_field_map,
    prefetched,
)

NAME = "csv"


def detect(path) -> bool:
    """True for a ``.csv`` file, a tab-separated one (``tab_separated``), or a directory
    with one."""
    return bool(files(path, limit=1))


def files(path, limit: int | None = None) -> list[Path]:
    path = Path(path)
    found = [path] if path.is_file() else sorted(
        p for pattern in ("*.csv", "*.tsv", "*.txt") for p in path.glob(pattern) if p.is_file())
    out = [p for p in found if p.suffix == ".csv" or tab_separated(p)]
    return out[:limit] if limit else out


def tab_separated(file: Path) -> bool:
    """A table whose cells are separated by tabs: a ``.tsv`` file, or a ``.txt`` one whose
    first line holds tabs and no comma (Spinning Up's ``progress.txt``)."""
    if file.suffix == ".tsv":
        return True
    if file.suffix != ".txt":
        return False
    try:
        with open(file, "rb") as handle:
            first = handle.readline(1 << 16)
    except OSError:
        return False
    return b"\t" in first and b"," not in first


def read(path, field_map=None, **_options) -> list[RunData]:
    path = Path(path)
    targets = [path] if path.is_file() else files(path)
    if not targets:
        raise ConvertError(f"{path}: no CSV file (*.csv, *.tsv, or a tab-separated *.txt) found")
    mapping = parse_field_map(field_map)
    out = []
    for f in targets:
        header = None if mapping else _header(f)
        export = wandb_export(f, header) if header else None
        out.extend(export if export is not None else [read_file(f, mapping or tensorboard_export(f, header))])
    return out


def _header(file: Path) -> list | None:
    """The first row of ``file`` as the csv module reads it, or None when it cannot be read."""
    try:
        with open(file, newline="", encoding="utf-8") as handle:
            return next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def tensorboard_export(file: Path, header: list | None) -> dict:
    """The field map of a scalar's CSV download from TensorBoard (columns ``Wall time``,
    ``Step``, ``Value``; saved as ``run-<run>-tag-<tag>.csv``, the tag's ``/`` written
    ``_``): its ``Value`` is the metric the tag names, with the ``/`` put back where that
    gives a name the semantics table knows (``rollout_ep_rew_mean`` -> ``rollout/ep_rew_mean``);
    {} for any other CSV (``header``: its first row)."""
    if header != ["Wall time", "Step", "Value"]:
        return {}
    from rldk import semantics

    tag = file.stem.split("-tag-", 1)[1] if "-tag-" in file.stem else file.stem
    candidates = [tag] + [tag[:i] + "/" + tag[i + 1:] for i, c in enumerate(tag) if c == "_"]
    known = [c for c in candidates if semantics.classify(c, flattened=False)[0] is not None]
    return {"Value": known[0] if known else tag}


#: A column of a chart's CSV export from the wandb web page: ``<run name> - <metric>``, with
#: ``__MIN``/``__MAX`` beside it (the range of each point where the chart sampled).
_WANDB_COLUMN = re.compile(r"^(?P<run>.+?) - (?P<metric>.+?)(?P<bound>__MIN|__MAX)?$")


def wandb_export(file: Path, header: list) -> list[RunData] | None:
    """The runs of a wandb chart's CSV export ("Download CSV" on the web page: a ``Step``
    column, then ``<run name> - <metric>`` columns with their ``__MIN``/``__MAX`` bounds,
    one run or several side by side), one run per run name, each metric under its own
    name; or None when ``file`` is not one (read as a plain CSV then). The bounds are left
    out (the logged value is the column itself); an empty cell is a step where that run
    logged nothing (``header``: its first row)."""
    if header[0] != "Step" or len(header) < 2:
        return None
    columns = [_WANDB_COLUMN.match(c) for c in header[1:]]
    if not all(columns) or all(m["bound"] for m in columns):
        return None
    try:
        with open(file, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            next(reader)
            series = {}                              # run name -> (steps, names, values)
            skipped = []                             # reported once, with the first run
            for lineno, cells in enumerate(reader, start=2):
                if not cells:
                    continue
                step = number(cells[0])
                if step is None or not math.isfinite(step) or step != int(step) or len(cells) != len(header):
                    skipped.append(Skip(str(file), f"line {lineno}", "no integer Step, or a cell count "
                                                                     "unlike the header's; row skipped"))
                    continue
                for m, cell in zip(columns, cells[1:]):
                    if cell == "" or m["bound"]:
                        continue
                    value = number(cell)
                    if value is None:
                        skipped.append(Skip(str(file), f"line {lineno}", f"{m.string!r} is {cell!r}, not a "
                                                                         "number; that value left out"))
                        continue
                    steps, names, values = series.setdefault(m["run"], ([], [], []))
                    steps.append(int(step))
                    names.append(m["metric"])
                    values.append(value)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    runs = []
    for name, (steps, names, values) in series.items():
        run = RunData(key=f"{file.stem}/{name}" if len(series) > 1 else file.stem, source=str(file),
                      tables=[metric_table(steps, names, values)], skipped=[] if runs else skipped,
                      meta={"step_field": "Step", "wandb_run_name": name, "format": "wandb chart CSV export"})
        runs.append(run)
    return runs or None


def read_file(file: Path, mapping: dict, comment: str | None = None) -> RunData:
    """The run in one CSV file; its tables are read as they are consumed (streaming)."""
    run = RunData(key=file.stem, source=str(file))
    run.tables = _tables(file, mapping, comment, run)
    return run


#: bytes of lines per batch: 8 MB makes half the tables (and Arrow chunks) of 4 MB for the
#: writer to take; measured 5-9% less wall time on the 400 MB JSONL and 200 MB CSV of
#: benchmarks/import.py; the same peak RSS streaming 1 GB (429-432 MB, main 428-431 MB).
BATCH_BYTES = 1 << 23
_FIELD_LIMIT = 1 << 24          # the csv module's limit on one cell (its own default is 128 KiB)


def _tables(file: Path, mapping: dict, comment: str | None, run: RunData):
    """Blocks of ~:data:`BATCH_BYTES` of plain lines (see :func:`_plain`), each parsed
    by Polars in one call (on a worker thread, ahead of this one:
    :func:`~rldk.converters.tabular.prefetched`); a block with a cell that is neither a
    number nor empty, a blank or ragged line, or a repeated header goes through the row
    path, which names each bad line. From the first block that needs the csv module's
    quoting rules on, the rest of the file streams through it (:func:`csv_lines`)."""
    rows, state = RowCollector(mapping), _State()
    # a tab-separated table (small, written by a research logger) goes through the row path
    pieces = (((n, cells) for n, cells in csv_lines(file, comment, delimiter="\t"))
              if tab_separated(file) else _pieces(file, comment, rows, state))
    for lineno, piece in pieces:
        if isinstance(piece, Block):
            tables = _columnar(rows, state, piece)
            if tables is not None:
                yield from rows.take(0)
                yield from tables
                continue
            piece = _plain_rows(file, piece.data, lineno)
        else:
            piece = [(lineno, piece)]
        for at, cells in piece:
            _add_row(rows, state, file, at, cells, run)
            yield from rows.take()
    check_rows(file, rows.rows, run.skipped)
    report_non_numeric(file, rows, run.skipped)
    yield from rows.take(0)
    run.meta.update({**rows.meta(), "columns": state.header})


class _State:
    """The header in force (a rewritten header replaces it) and whether blocks may go columnar."""

    def __init__(self):
        self.header = None
        self.columnar = True        # False once a header cell is a number (a repeat could pass as data)


def _add_row(rows: RowCollector, state: _State, file: Path, lineno: int, cells: list, run: RunData) -> None:
    """One row through the row path: a (repeated) header, a ragged row, or data."""
    if state.header is None or _is_header(cells, state.header):
        state.header = _uncommented(cells) if state.header is None else cells
        state.columnar = state.columnar and not any(_is_number(c) for c in cells)
        return
    if len(cells) != len(state.header):
        reason = f"row has {len(cells)} cells, the header has {len(state.header)}; row skipped"
    else:
        rows.where = f"line {lineno}"
        reason = rows.add(dict(zip(state.header, cells)), rows.rows)
    if reason is not None:
        run.skipped.append(Skip(str(file), f"line {lineno}", reason))


def _pieces(file: Path, comment: str | None, rows: RowCollector, state: _State):
    """``(first line number, Block)`` of plain blocks once the header and the first
    data row are read, else ``(line number, cells)`` of single rows."""
    def prepare(data: bytes) -> Block:
        return Block.of(data, comment)

    handle = open_binary(file, "CSV")
    with handle:
        lineno, offset = 0, 0
        for block in prefetched(line_blocks(handle, BATCH_BYTES, FIRST_BYTES), prepare):
            data = block.data
            if not block.plain:
                yield from csv_lines(file, comment, offset, lineno)
                return
            start = 0
            while (rows.step_field is None or not state.columnar) and start < len(data):
                end = data.find(b"\n", start) + 1 or len(data)
                lineno += 1
                yield from _plain_rows(file, data[start:end], lineno, bom=offset + start == 0)
                start = end
            if start < len(data):
                rest = prepare(data[start:]) if start else block
                yield lineno + 1, rest
                lineno += rest.lines
            offset += len(data)


@dataclass(frozen=True)
class Block:
    """Whole lines of a CSV file: their bytes, how many, whether they are ``plain``
    (:func:`_plain`), and when every line holds as many cells as the first, ``width``,
    their cells as a frame of floats (None when a cell is not a number)."""

    data: bytes
    lines: int
    plain: bool
    width: int | None = None
    frame: object = None

    @classmethod
    def of(cls, data: bytes, comment: str | None) -> "Block":
        lines = line_count(data)
        if not _plain(data, comment):
            return cls(data, lines, False)
        first = data.find(b"\n")
        width = data.count(b",", 0, first if first >= 0 else len(data)) + 1
        if not _even(data, width - 1, lines):
            return cls(data, lines, True)
        return cls(data, lines, True, width, _numbers(data, width))


def _plain(block: bytes, comment: str | None) -> bool:
    """True when every line of ``block`` is a row the csv module would split at its
    commas alone: no quotes, NULs, carriage returns but in ``\\r\\n`` line ends,
    comment lines or lines near the csv module's field size limit."""
    return not (b'"' in block or b"\0" in block or len(block) > _FIELD_LIMIT or not _crlf_only(block)
                or comment and (b"\n" + comment.encode()) in b"\n" + block)


def _crlf_only(block: bytes) -> bool:
    """True when every carriage return of ``block`` ends a line (``\\r\\n``, as Python's
    csv writer ends them); a lone one splits a row for the csv module."""
    import numpy as np

    if b"\r" not in block:
        return True
    data = np.frombuffer(block, np.uint8)
    at = np.flatnonzero(data == ord("\r"))
    return bool(at[-1] + 1 < len(data) and (data[at + 1] == ord("\n")).all())


def _plain_rows(file: Path, block: bytes, lineno: int, bom: bool = False) -> list:
    """``(line number, cells)`` of each non-empty line of a plain block (cells split at commas)."""
    try:
        text = block.decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as exc:
        line = lineno + block.count(b"\n", 0, exc.start)
        raise ConvertError(f"{file}:line {line}: not UTF-8 text; is this a CSV file?") from None
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    if "\r" in text:
        lines = [line.removesuffix("\r") for line in lines]
    return [(lineno + i, line.split(",")) for i, line in enumerate(lines) if line]


def _columnar(rows: RowCollector, state: _State, block: Block):
    """The block's event tables through Polars, or None when the row path must read it
    (a blank or ragged line, a cell that is neither a number nor empty, a repeated header)."""
    header = state.header
    if (not state.columnar or len(set(header)) != len(header) or block.width != len(header)
            or block.frame is None):
        return None
    frame = block.frame.clone()              # cheap (shared columns); renamed without a query
    frame.columns = header
    return frame_tables(rows, frame)


def _even(block: bytes, commas: int, lines: int) -> bool:
    """True when the ``lines`` lines of ``block`` hold ``commas`` commas each. Their total is
    checked: Polars refuses a line with more cells than the header, so a line with
    fewer (a blank one among them) makes the total fall short."""
    import numpy as np

    if commas == 0:                      # one column: only a blank line could be short
        if b"\r" in block:
            return False
        ends = np.frombuffer(block, np.uint8) == ord("\n")
        return not (ends[0] or (ends[1:] & ends[:-1]).any())
    return count_byte(block, b",") == commas * lines


def _numbers(block: bytes, width: int):
    """The block as a frame of ``width`` float columns (empty cells null), read as
    Python's ``float`` reads each cell; None when a cell is not a number."""
    import polars as pl

    names = [f"c{i}" for i in range(width)]
    options = dict(has_header=False, quote_char=None, comment_prefix=None, raise_if_empty=False)
    try:
        return pl.read_csv(block, schema={n: pl.Float64 for n in names}, **options)
    except Exception:  # a cell Polars does not read as a float, or a line with more cells than
        # the header: read them as text, decide each (Polars refuses the long line again)
        try:
            frame = pl.read_csv(block, schema={n: pl.String for n in names}, **options)
        except Exception:  # not UTF-8, or other input the row path must report
            return None
        return _python_floats(frame)


def _python_floats(frame):
    """Text columns as floats by Python's ``float`` of each distinct cell ("1_000",
    surrounding spaces...); None when one is not a number at all."""
    import polars as pl

    out = []
    for series in frame.get_columns():
        fast = series.cast(pl.Float64, strict=False)
        failed = series.filter(fast.is_null() & series.is_not_null()).unique()
        mapping = {raw: number(raw) for raw in failed.to_list()}
        if any(value is None for value in mapping.values()):
            return None
        if mapping:
            fast = fast.fill_null(series.replace_strict(mapping, default=None, return_dtype=pl.Float64))
        out.append(fast)
    return pl.DataFrame(out)


def csv_lines(file: Path, comment: str | None = None, offset: int = 0, lineno: int = 0,
              delimiter: str = ","):
    """``(line number, cells)`` of each non-empty row, read as a stream from byte
    ``offset`` (line ``lineno`` + 1); one error line for binary or non-UTF-8 input.
    Cells of a tab-separated table (``delimiter``) lose the spaces around them."""
    handle = open_binary(file, "CSV")
    handle.seek(offset)
    csv.field_size_limit(_FIELD_LIMIT)
    with io.TextIOWrapper(handle, encoding="utf-8-sig" if offset == 0 else "utf-8", newline="") as text:
        reader = csv.reader(text, delimiter=delimiter)
        try:
            for cells in reader:
                if delimiter != ",":
                    cells = [c.strip() for c in cells]
                if cells and not (comment and cells[0].startswith(comment)):
                    yield lineno + reader.line_num, cells
        except UnicodeDecodeError:
            raise ConvertError(f"{file}:line {lineno + reader.line_num + 1}: not UTF-8 text; is this a CSV "
                               "file?") from None
        except csv.Error as exc:
            raise ConvertError(f"{file}:line {lineno + reader.line_num}: malformed CSV ({exc})") from None


def _uncommented(header: list) -> list:
    """The first header without the comment mark a logger put before it: TorchBeast's
    ``FileWriter`` (DouZero, RLCard's DMC, the NetHack baselines) writes
    ``# _tick,_time,frames,...``, whose first column is ``_tick``, not ``# _tick``."""
    name = header[0].lstrip("#").strip() if header and header[0].startswith("#") else ""
    return [name, *header[1:]] if name else header


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
