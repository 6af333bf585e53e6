"""A Parquet file's footer, read without pyarrow: what the store needs of it.

Opening a store reads every file's footer (column names, row count, key-value
metadata, per row group the statistics of a few columns). pyarrow reads one in tens
of microseconds but costs 0.1 s to import, which is most of what a small analysis
pays before it reads a row. The footer is a Thrift struct (``FileMetaData``) in the
compact protocol, so :func:`decode` reads it here in Python: fields it does not need
are skipped, not built. :func:`file_meta` falls back to pyarrow for what this
reader does not take (an encrypted footer), and :func:`from_pyarrow` reads pyarrow's
metadata through the same methods: a store of many files reads its footers through
pyarrow, whose reader is faster once imported (tests compare the two on every kind
of file rldk reads).

Statistics are read as Arrow's reader reads them: ``min_value`` / ``max_value`` when
the file defines its column orders, the deprecated ``min`` / ``max`` only for numbers
(their sort order was wrong for bytes), none where the writer's version is known to
get them wrong; strings decoded from UTF-8
where the schema says they are text; dates, times, timestamps and decimals not read.
A column whose statistics are not read has none, so a reader that prunes by them
reads it whole.
"""
from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

MAGIC = b"PAR1"


@dataclass(frozen=True)
class Stats:
    """One column chunk's statistics: min and max (None unless both are known) and the
    null count (None when not recorded)."""

    min: object
    max: object
    null_count: int | None

    @property
    def has_min_max(self) -> bool:
        return self.min is not None and self.max is not None


@dataclass(frozen=True)
class FileMeta:
    """names: the leaf column names; rows: the row count; kv: key-value metadata (bytes
    to bytes); groups: per row group, per column, its :class:`Stats` or None."""

    names: tuple[str, ...]
    rows: int
    kv: dict
    groups: tuple[tuple[Stats | None, ...], ...]

    def column_stats(self, column: str) -> list[Stats | None] | None:
        """The statistics of ``column`` in each row group, or None without that column."""
        if column not in self.names:
            return None
        index = self.names.index(column)
        return [group[index] for group in self.groups]


def file_meta(source, arrow: bool = False) -> "FileMeta | ArrowMeta":
    """The :class:`FileMeta` of ``source``: a local path or an open binary file.
    ``arrow``: read through pyarrow when it is installed (:class:`ArrowMeta`)."""
    if arrow:
        try:
            return from_pyarrow(_pyarrow_metadata(source))
        except ImportError:
            pass
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            data = _footer_bytes(f)
    else:
        data = _footer_bytes(source)
    if data is None:                                   # an encrypted footer: pyarrow's job
        return from_pyarrow(_pyarrow_metadata(source))
    return decode(data)


def _footer_bytes(f) -> bytes | None:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    if size < 12:
        raise ValueError(f"{size} bytes: too short for a Parquet file")
    f.seek(size - 8)
    tail = f.read(8)
    length, magic = struct.unpack("<i4s", tail)
    if magic == b"PARE":
        return None
    if magic != MAGIC or not 0 < length <= size - 12:
        raise ValueError("no Parquet footer at the end of the file")
    f.seek(size - 8 - length)
    data = f.read(length)
    if len(data) != length:
        raise ValueError("the file ended inside its footer")
    return data


# ----------------------------------------------------------------- Thrift compact
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)


class _Reader:
    """Thrift's compact protocol over ``data``: varints, zigzag integers, binaries,
    lists, structs; ``skip`` passes over a value of any type without building it."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def varint(self) -> int:
        data, pos, shift, out = self.data, self.pos, 0, 0
        while True:
            byte = data[pos]
            pos += 1
            out |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.pos = pos
                return out
            shift += 7

    def integer(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def binary(self) -> bytes:
        n = self.varint()
        start = self.pos
        self.pos = start + n
        if self.pos > len(self.data):
            raise ValueError("a footer field runs past the footer's end")
        return self.data[start:self.pos]

    def fields(self):
        """Yield ``(field id, type)`` of a struct's fields; the caller reads or skips each value."""
        last = 0
        while True:
            header = self.data[self.pos]
            self.pos += 1
            kind = header & 0x0F
            if kind == _STOP:
                return
            delta = header >> 4
            last = last + delta if delta else self.integer()
            yield last, kind

    def list_header(self) -> tuple[int, int]:
        header = self.data[self.pos]
        self.pos += 1
        size = header >> 4
        return (self.varint() if size == 15 else size), header & 0x0F

    def value(self, kind: int):
        """A scalar value of ``kind`` (booleans come in the field header)."""
        if kind in (_TRUE, _FALSE):
            return kind == _TRUE
        if kind in (_I16, _I32, _I64):
            return self.integer()
        if kind == _BINARY:
            return self.binary()
        if kind == _BYTE:
            self.pos += 1
            return self.data[self.pos - 1]
        if kind == _DOUBLE:
            self.pos += 8
            return struct.unpack_from("<d", self.data, self.pos - 8)[0]
        self.skip(kind)
        return None

    def skip(self, kind: int) -> None:
        if kind in (_TRUE, _FALSE):
            return
        if kind == _BYTE:
            self.pos += 1
        elif kind in (_I16, _I32, _I64):
            self.varint()
        elif kind == _DOUBLE:
            self.pos += 8
        elif kind == _BINARY:
            length = self.varint()                     # before reading pos: varint moves it
            self.pos += length
        elif kind in (_LIST, _SET):
            size, element = self.list_header()
            for _ in range(size):
                self._skip_element(element)
        elif kind == _MAP:
            size = self.varint()
            if size:
                types = self.data[self.pos]
                self.pos += 1
                for _ in range(size):
                    self._skip_element(types >> 4)
                    self._skip_element(types & 0x0F)
        elif kind == _STRUCT:
            for _, inner in self.fields():
                self.skip(inner)
        else:
            raise ValueError(f"unknown Thrift type {kind} in the footer")

    def _skip_element(self, kind: int) -> None:
        if kind in (_TRUE, _FALSE):                    # in a list a boolean is one byte
            self.pos += 1
        else:
            self.skip(kind)


# --------------------------------------------------------------- FileMetaData
#: Parquet physical types (``Type`` in parquet.thrift)
BOOLEAN, INT32, INT64, INT96, FLOAT, DOUBLE, BYTE_ARRAY, FIXED_LEN_BYTE_ARRAY = range(8)


def decode(data: bytes) -> FileMeta:
    """The :class:`FileMeta` of a serialised ``FileMetaData``."""
    r = _Reader(data)
    leaves, rows, kv, groups, created_by, ordered = [], 0, {}, [], b"", False
    for field, kind in r.fields():
        if field == 2 and kind == _LIST:
            leaves = _schema(r)
        elif field == 3:
            rows = r.integer()
        elif field == 4 and kind == _LIST:
            groups = _row_groups(r)
        elif field == 5 and kind == _LIST:
            kv = _key_values(r)
        elif field == 6 and kind == _BINARY:
            created_by = r.binary()
        elif field == 7:
            ordered = True                             # column orders: TYPE_ORDER is the one kind
            r.skip(kind)
        else:
            r.skip(kind)
    names = tuple(name for name, _, _ in leaves)
    trusted = _ordered_stats(created_by)
    decoded = tuple(tuple(_stats(raw, leaves[i], trusted, ordered) if i < len(leaves) else None
                          for i, raw in enumerate(group)) for group in groups)
    if any(len(group) != len(leaves) for group in decoded):
        raise ValueError("a row group's columns do not match the schema")
    return FileMeta(names, rows, kv, decoded)


def _schema(r: _Reader) -> list[tuple[str, int | None, str]]:
    """``(name, physical type, how its statistics read)`` of each leaf column, in order
    (the first element is the root); how: "text", "unsigned" or "" (as stored)."""
    size, _ = r.list_header()
    leaves = []
    for position in range(size):
        name, physical, children, how = "", None, 0, ""
        for field, kind in r.fields():
            if field == 1:
                physical = r.integer()
            elif field == 4:
                name = r.binary().decode("utf-8", "replace")
            elif field == 5:
                children = r.integer()
            elif field == 6:
                how = _converted(r.integer()) or how
            elif field == 10 and kind == _STRUCT:
                how = _logical(r) or how
            else:
                r.skip(kind)
        if position and not children:
            leaves.append((name, physical, how))
    return leaves


#: converted types (``ConvertedType``): UTF8, ENUM, JSON are text; UINT_8..UINT_64 unsigned
_TEXT_CONVERTED = {0, 4, 19}
_UNSIGNED_CONVERTED = {11, 12, 13, 14}
#: LogicalType union members that are text: STRING, ENUM, JSON; INTEGER is 10
_TEXT_LOGICAL = {1, 4, 12}
_INTEGER_LOGICAL = 10


#: converted types and LogicalType members whose statistics are not read: decimals,
#: dates, times, timestamps, intervals (and FLOAT16): pyarrow gives them as objects
_OPAQUE_CONVERTED = {5, 6, 7, 8, 9, 10, 21}
_OPAQUE_LOGICAL = {5, 6, 7, 8, 15}


def _converted(code: int) -> str:
    if code in _OPAQUE_CONVERTED:
        return "opaque"
    return "text" if code in _TEXT_CONVERTED else "unsigned" if code in _UNSIGNED_CONVERTED else ""


def _logical(r: _Reader) -> str:
    """How a LogicalType union reads: "text", "unsigned" (an INTEGER that is not signed) or ""."""
    how = ""
    for member, kind in r.fields():
        if member in _TEXT_LOGICAL or member in _OPAQUE_LOGICAL:
            how = "text" if member in _TEXT_LOGICAL else "opaque"
            r.skip(kind)
        elif member == _INTEGER_LOGICAL and kind == _STRUCT:
            for field, inner in r.fields():
                signed = r.value(inner)
                if field == 2 and signed is False:
                    how = "unsigned"
        else:
            r.skip(kind)
    return how


def _row_groups(r: _Reader) -> list[list]:
    size, _ = r.list_header()
    groups = []
    for _ in range(size):
        columns = []
        for field, kind in r.fields():
            if field == 1 and kind == _LIST:
                count, _ = r.list_header()
                columns = [_column_chunk(r) for _ in range(count)]
            else:
                r.skip(kind)
        groups.append(columns)
    return groups


def _column_chunk(r: _Reader):
    """The raw statistics fields of one ColumnChunk's ColumnMetaData ({} when none; None
    when the chunk has no statistics)."""
    raw = None
    for field, kind in r.fields():
        if field == 3 and kind == _STRUCT:
            for inner, inner_kind in r.fields():
                if inner == 12 and inner_kind == _STRUCT:
                    raw = {f: r.value(k) for f, k in r.fields()}
                else:
                    r.skip(inner_kind)
        else:
            r.skip(kind)
    return raw


def _key_values(r: _Reader) -> dict:
    size, _ = r.list_header()
    out = {}
    for _ in range(size):
        key = value = None
        for field, kind in r.fields():
            if field == 1:
                key = r.binary()
            elif field == 2:
                value = r.binary()
            else:
                r.skip(kind)
        if key is not None:
            out[key] = value if value is not None else b""
    return out


def _ordered_stats(created_by: bytes) -> str:
    """Which columns' min and max the file's writer got right, as Arrow's reader judges
    it: "all"; "signed" (parquet-cpp before 1.3.0, parquet-mr before 1.10.0: a column
    sorted unsigned, text among them, only when its min equals its max); "numbers"
    (parquet-mr before 1.8.0: no byte array)."""
    match = re.match(rb"(\S+) version (\d+)\.(\d+)\.(\d+)", created_by)
    if match is None:
        return "all"
    app, version = match.group(1), tuple(int(v) for v in match.groups()[1:])
    if app == b"parquet-mr" and version < (1, 8, 0):
        return "numbers"
    if (app == b"parquet-cpp" and version < (1, 3, 0)) or (app == b"parquet-mr" and version < (1, 10, 0)):
        return "signed"
    return "all"


def _stats(raw: dict | None, leaf: tuple, trusted: str, ordered: bool) -> Stats | None:
    """One chunk's Stats from its raw Statistics fields, read as Arrow's reader reads
    them: ``min_value`` / ``max_value`` when the file defines its column orders, the
    deprecated ``min`` / ``max`` only for columns sorted signed (numbers); then dropped
    where the writer's version got them wrong (:func:`_ordered_stats`)."""
    if raw is None:
        return None
    _, physical, how = leaf
    null_count = raw.get(3)
    signed = physical in (INT32, INT64, FLOAT, DOUBLE) and how != "unsigned"
    low, high = (raw.get(6), raw.get(5)) if ordered else (None, None)
    if (low is None or high is None) and signed:
        low, high = raw.get(2), raw.get(1)
    if (low is None or high is None or how == "opaque" or physical == INT96
            or (trusted == "signed" and not signed and low != high)
            or (trusted == "numbers" and physical in (BYTE_ARRAY, FIXED_LEN_BYTE_ARRAY))):
        return Stats(None, None, null_count)
    try:
        return Stats(_plain(low, physical, how), _plain(high, physical, how), null_count)
    except (struct.error, UnicodeDecodeError):
        return Stats(None, None, null_count)


def _plain(data: bytes, physical: int | None, how: str):
    """A statistic's PLAIN-encoded bytes as a Python value."""
    if physical == INT32:
        return struct.unpack("<I" if how == "unsigned" else "<i", data)[0]
    if physical == INT64:
        return struct.unpack("<Q" if how == "unsigned" else "<q", data)[0]
    if physical == DOUBLE:
        return struct.unpack("<d", data)[0]
    if physical == FLOAT:
        return struct.unpack("<f", data)[0]
    if physical == BOOLEAN:
        return bool(data[0])
    if physical == BYTE_ARRAY and how == "text":
        return data.decode("utf-8")
    return bytes(data)


# ------------------------------------------------------------------ pyarrow's
def _pyarrow_metadata(source):
    """pyarrow's ``FileMetaData`` of ``source`` (through its reader class: ``pq.read_metadata``
    builds a ``ParquetFile`` whose Python set-up doubles the cost of a footer)."""
    if not isinstance(source, (str, os.PathLike)):
        source.seek(0)
    try:
        from pyarrow._parquet import ParquetReader

        reader = ParquetReader()
        reader.open(source)
        return reader.metadata
    except (ImportError, TypeError, AttributeError):   # a pyarrow that changed it: the public way
        import pyarrow.parquet as pq

        return pq.read_metadata(source)


def from_pyarrow(meta) -> "ArrowMeta":
    """pyarrow's ``FileMetaData`` with :class:`FileMeta`'s reading methods."""
    return ArrowMeta(meta)


class ArrowMeta:
    """pyarrow's ``FileMetaData`` read like a :class:`FileMeta`: a column's statistics are
    converted when asked for (a store of 10,000 files asks for one column's)."""

    def __init__(self, meta):
        self._meta = meta
        self.names = tuple(meta.schema.names)
        self.rows = meta.num_rows
        self.kv = dict(meta.metadata or {})

    def column_stats(self, column: str) -> list[Stats | None] | None:
        if column not in self.names:
            return None
        index = self.names.index(column)
        return [_from_pyarrow_stats(self._meta.row_group(g).column(index).statistics)
                for g in range(self._meta.num_row_groups)]


def _from_pyarrow_stats(stats) -> Stats | None:
    if stats is None:
        return None
    null_count = stats.null_count if getattr(stats, "has_null_count", True) else None
    if not stats.has_min_max or not isinstance(stats.min, (int, float, str, bytes)):
        return Stats(None, None, null_count)       # dates, times, decimals: not read
    return Stats(stats.min, stats.max, null_count)
