"""Rendering: one dispatcher from results to table / JSON / CSV / Markdown.

JSON (sorted keys, with ``schema_version``) is the source of truth; the other
formats are derived from the same rows. Anything that came from logs is escaped
for the target format (Markdown cells, terminal markup).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import sys

from rldk.core.naming import csv_cell

FORMATS = ("table", "json", "csv", "markdown")
REPORT_SCHEMA_VERSION = 1


def to_json(data) -> str:
    """Stable JSON: sorted keys, NaN/inf as null, dates as ISO strings."""
    return json.dumps(_jsonable(data), sort_keys=True, indent=2, allow_nan=False, default=str)


def _jsonable(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "to_dict") and not isinstance(obj, type):
        return _jsonable(obj.to_dict())
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return obj


def rows_of(frame) -> tuple[list[str], list[list]]:
    """Column names and rows of a Polars DataFrame (or a list of dicts)."""
    if hasattr(frame, "columns") and hasattr(frame, "rows"):
        return list(frame.columns), [list(r) for r in frame.rows()]
    rows = list(frame)
    columns = list(rows[0]) if rows else []
    return columns, [[r.get(c) for c in columns] for r in rows]


def escape_markdown(text: str) -> str:
    """Text safe inside a Markdown table cell: HTML and Markdown specials escaped."""
    out = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in "\\`*_{}[]()#+!|":
        out = out.replace(ch, "\\" + ch)
    return out.replace("\r", " ").replace("\n", " ")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def render_rows(frame, fmt: str, title: str | None = None, stream=None, wide: bool = False) -> None:
    """Write tabular rows in ``fmt`` to ``stream`` (stdout by default). JSON and CSV hold
    every cell; the terminal table is for people (:func:`rich_table`; ``wide``: lists in full)."""
    stream = stream or sys.stdout
    columns, rows = rows_of(frame)
    if fmt == "json":
        stream.write(to_json([dict(zip(columns, r)) for r in rows]) + "\n")
    elif fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow([csv_cell(c) for c in columns])
        writer.writerows([[csv_cell(_cell(v)) for v in r] for r in rows])
    elif fmt == "markdown":
        stream.write(markdown_table(columns, rows))
    else:
        console(stream).print(rich_table(columns, rows, title, wide=wide))


#: the width of terminal output written to a file or pipe without ``COLUMNS`` set
FILE_WIDTH = 120
#: lists longer than this are shown as their length in terminal tables (all with ``wide``)
LIST_SHOWN = 3


def console(stream):
    """A rich Console on ``stream`` as wide as the terminal (``COLUMNS`` when set; files
    and pipes without it: ``FILE_WIDTH``)."""
    from rich.console import Console

    tty = hasattr(stream, "isatty") and stream.isatty()
    return Console(file=stream, width=None if tty or "COLUMNS" in os.environ else FILE_WIDTH)


#: Cells up to this many characters are never wrapped in terminal tables.
SHORT_CELL = 12


def rich_table(columns, rows, title: str | None = None, wide: bool = False, caption=None):
    """A table that fits the console: the first column (the id) never wraps unless it
    alone is wider than the screen, the others wrap at spaces, long lists become their
    count (``LIST_SHOWN``; all of them with ``wide``). Cells are plain text: no markup
    from log contents."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False,
                  title_justify="left", caption_justify="left")
    texts = [[_cell(v) if wide else _short_cell(v) for v in r] for r in rows]
    for i, c in enumerate(columns):
        # a short value (a status, a step range, a duration) is kept whole: wrapping it
        # reads as two values; only long free text wraps
        longest = max((len(t[i]) for t in texts), default=0)
        whole = i == 0 or longest <= SHORT_CELL
        table.add_column(c, overflow="fold", no_wrap=i == 0,
                         min_width=max(len(str(c)), longest if whole else 0))
    for r in texts:
        table.add_row(*[Text(v) for v in r])
    return table


def record_tables(columns, rows):
    """One two-column table (field, value) per row, titled by its first cell: every
    value in full at any width."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    tables = []
    for r in rows:
        table = Table(title=_cell(r[0]), box=box.SIMPLE, show_header=False, pad_edge=False,
                      title_justify="left")
        table.add_column("field", no_wrap=True, style="bold")
        table.add_column("value", overflow="fold")
        for c, v in zip(columns[1:], r[1:]):
            table.add_row(Text(str(c)), Text(_cell(v)))
        tables.append(table)
    return Group(*tables)


def _short_cell(value) -> str:
    if isinstance(value, (list, tuple)) and len(value) > LIST_SHOWN:
        return f"{len(value)} items"
    return _cell(value)


def duration(seconds) -> str:
    """``seconds`` for people: "42.0s", "12m03s", "3h02m" ("" when unknown)."""
    if seconds is None or (isinstance(seconds, float) and not math.isfinite(seconds)):
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


#: the columns of a run overview for people (``Store.summary`` has every column)
RUN_COLUMNS = ("run", "status", "steps", "metrics", "wall")


def run_rows(summary) -> list[list]:
    """Rows of ``RUN_COLUMNS`` from ``Store.summary_rows()``: the step range, the metric
    count and the wall time in words."""
    out = []
    for r in summary:
        steps = "" if r["first_step"] is None else f"{r['first_step']}-{r['last_step']}"
        out.append([r["run_id"], r["status"], steps, r["metrics"], duration(r["wall_seconds"])])
    return out


def markdown_table(columns, rows) -> str:
    buf = io.StringIO()
    buf.write("| " + " | ".join(escape_markdown(c) for c in columns) + " |\n")
    buf.write("|" + "---|" * len(columns) + "\n")
    for r in rows:
        buf.write("| " + " | ".join(escape_markdown(_cell(v)) for v in r) + " |\n")
    return buf.getvalue()
