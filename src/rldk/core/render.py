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
import sys

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


def render_rows(frame, fmt: str, title: str | None = None, stream=None) -> None:
    """Write tabular rows in ``fmt`` to ``stream`` (stdout by default)."""
    stream = stream or sys.stdout
    columns, rows = rows_of(frame)
    if fmt == "json":
        stream.write(to_json([dict(zip(columns, r)) for r in rows]) + "\n")
    elif fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_cell(v) for v in r] for r in rows])
    elif fmt == "markdown":
        stream.write(markdown_table(columns, rows))
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, show_lines=False)
        for c in columns:
            table.add_column(c, overflow="fold")
        for r in rows:
            table.add_row(*[Text(_cell(v)) for v in r])     # Text: no markup from log contents
        Console(file=stream, width=200 if not stream.isatty() else None).print(table)


def markdown_table(columns, rows) -> str:
    buf = io.StringIO()
    buf.write("| " + " | ".join(escape_markdown(c) for c in columns) + " |\n")
    buf.write("|" + "---|" * len(columns) + "\n")
    for r in rows:
        buf.write("| " + " | ".join(escape_markdown(_cell(v)) for v in r) + " |\n")
    return buf.getvalue()
