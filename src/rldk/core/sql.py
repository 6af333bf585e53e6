"""SQL helpers: the one place where text from outside becomes SQL.

Values are always bound as parameters. The only things pasted into SQL text are
identifiers (through :func:`quote_identifier`) and file paths in ``read_parquet``
lists (through :func:`quote_literal`), because DuckDB views cannot take parameters.
"""
from __future__ import annotations


def quote_identifier(name: str) -> str:
    """``name`` as a DuckDB identifier: double-quoted, inner quotes doubled."""
    if "\x00" in name:
        raise ValueError("identifier contains a NUL character")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a DuckDB string literal: single-quoted, inner quotes doubled."""
    if "\x00" in text:
        raise ValueError("string contains a NUL character")
    return "'" + text.replace("'", "''") + "'"
