"""Content hashes of datasets: the one hash both the writer and the analyzers use.

A dataset's **content hash** depends only on its logical content: column names,
logical types and the values in row order. It does not depend on how the data is
chunked, on buffer layout (slice offsets, string vs large_string offsets, string
views, dictionary encoding, the bytes under null slots), on NaN bit patterns, on
column order, or on how a file was written (Parquet row groups, compression).
Any changed value, type, name or row order changes it.

How it is computed (``HASH_NAME``): rows are cut into blocks of ``BLOCK_ROWS``
logical rows. Within a block each column is serialised into streams (see
:mod:`rldk.core._column_hash`) hashed with xxh3-128; block digests combine into a
column digest, and the sorted column digests, the row count and the schema into
the dataset digest (a two-level Merkle tree). Blocks let a verification say which
rows changed.

Recording datasets and transforms in a run is :mod:`rldk.writer.lineage`;
verifying manifests, lineage graphs and overlap is :mod:`rldk.analyzers.lineage`.
"""
from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from rldk.core._column_hash import ColumnState, framed, logical_type, new_hash, u64
from rldk.core.errors import RldkError, UsageError

HASH_NAME = "xxh3-128/rldk-lineage-v1"
BLOCK_ROWS = 1 << 13
MANIFEST_SUFFIX = ".rldk.json"
TABLE_SUFFIXES = (".parquet", ".pq", ".arrow", ".feather", ".ipc", ".jsonl")
_READ_BYTES = 8 << 20


class MissingData(RldkError):
    """Data that a manifest or a run recorded is not on disk."""


@dataclass(frozen=True)
class DatasetHash:
    """The content hash of one dataset.

    digest: 32 hex characters (xxh3-128), see the module docstring.
    rows: logical row count (None for files hashed as bytes).
    schema: ``((column, logical type), ...)`` sorted by column name.
    columns: column name -> column digest (which column changed).
    blocks: per-block digests of ``BLOCK_ROWS`` rows each (which rows changed).
    format: "table" (logical values), "bytes" (file content) or "directory".
    files: for directories, relative path -> the file's DatasetHash.
    """

    digest: str
    rows: int | None
    schema: tuple = ()
    columns: dict = field(default_factory=dict)
    blocks: tuple = ()
    format: str = "table"
    size_bytes: int | None = None
    files: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        # the manifest's shape (read back by from_dict): names the hash and the block size
        out = {"hash": HASH_NAME, "digest": self.digest, "rows": self.rows, "format": self.format,
               "schema": [list(s) for s in self.schema], "columns": dict(self.columns),
               "blocks": list(self.blocks), "block_rows": BLOCK_ROWS, "size_bytes": self.size_bytes}
        if self.files:
            out["files"] = {k: v.to_dict() for k, v in sorted(self.files.items())}
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetHash":
        files = {k: cls.from_dict(v) for k, v in (d.get("files") or {}).items()}
        return cls(d["digest"], d.get("rows"), tuple(tuple(s) for s in d.get("schema", ())),
                   dict(d.get("columns", {})), tuple(d.get("blocks", ())), d.get("format", "table"),
                   d.get("size_bytes"), files)


class TableHasher:
    """Incremental content hash of a table fed as record batches (any chunking).

    ``update(batch)`` takes a ``pyarrow.RecordBatch`` or ``Table``; ``result()``
    returns the :class:`DatasetHash`. Memory stays bounded by one batch.
    """

    def __init__(self, schema):
        names = list(schema.names)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise UsageError(f"cannot hash a table with duplicate column names: {', '.join(dupes)}")
        self.schema = schema
        self.order = sorted(names)
        self.rows = 0
        self._block: dict[str, ColumnState] | None = None
        self._in_block = 0
        self._column_blocks: dict[str, list[bytes]] = {n: [] for n in self.order}
        self._blocks: list[str] = []

    def update(self, batch) -> None:
        start = 0
        while start < batch.num_rows:
            if self._block is None:
                self._block = {n: ColumnState() for n in self.order}
            take = min(BLOCK_ROWS - self._in_block, batch.num_rows - start)
            piece = batch.slice(start, take)
            for name in self.order:
                column = piece.column(name)
                for chunk in getattr(column, "chunks", [column]):
                    self._block[name].update(chunk)
            self._in_block += take
            self.rows += take
            start += take
            if self._in_block == BLOCK_ROWS:
                self._close_block()

    def _close_block(self) -> None:
        h = new_hash()
        for name in self.order:
            d = self._block[name].digest()
            self._column_blocks[name].append(d)
            h.update(d)
        self._blocks.append(h.hexdigest())
        self._block, self._in_block = None, 0

    def result(self) -> DatasetHash:
        if self._block is not None:
            self._close_block()
        schema = tuple((n, logical_type(self.schema.field(n).type)) for n in self.order)
        columns = {}
        top = new_hash()
        top.update(framed("rldk-lineage-v1") + u64(self.rows))
        top.update(framed(json.dumps(schema, separators=(",", ":"))))
        for name, ltype in schema:
            h = new_hash()
            h.update(framed(ltype))
            for d in self._column_blocks[name]:
                h.update(d)
            columns[name] = h.hexdigest()
            top.update(framed(name) + h.digest())
        return DatasetHash(top.hexdigest(), self.rows, schema, columns, tuple(self._blocks))


def hash_table(table) -> DatasetHash:
    """Content hash of a ``pyarrow.Table`` or ``RecordBatch``."""
    hasher = TableHasher(table.schema)
    hasher.update(table)
    return hasher.result()


def to_arrow(data):
    """An Arrow table from a table, record batch, HF ``datasets.Dataset``, pandas or
    Polars DataFrame, list of records (dicts) or list of scalars (column "value")."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if hasattr(data, "_indices") and hasattr(data, "data") and hasattr(data.data, "table"):
        table = data.data.table                  # a datasets.Dataset: apply its row selection
        indices = data._indices
        return table if indices is None else table.take(indices.column(0))
    if hasattr(data, "to_arrow") and callable(data.to_arrow):          # Polars
        return data.to_arrow()
    if hasattr(data, "iloc") and hasattr(data, "columns"):              # pandas
        return pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, (list, tuple)):
        if all(isinstance(r, dict) for r in data):
            return pa.Table.from_pylist(list(data)) if data else pa.table({})
        return pa.table({"value": pa.array(list(data))})
    raise UsageError(f"cannot hash a {type(data).__name__}: pass an Arrow table, a datasets.Dataset, "
                     "a pandas/Polars DataFrame, a list of records, or a file path")


def hash_data(data) -> DatasetHash:
    """Content hash of in-memory data (see :func:`to_arrow`) or of a path (:func:`hash_path`)."""
    if isinstance(data, (str, os.PathLike)):
        return hash_path(data)
    return hash_table(to_arrow(data))


def hash_path(path) -> DatasetHash:
    """Content hash of a file or a directory.

    Parquet, Arrow IPC/Feather and JSON Lines files are hashed by logical content
    (JSONL rows parsed as a list of records; a file whose rows do not form a table
    is hashed as bytes); other files by their bytes. A directory combines its
    files' hashes by relative path, skipping hidden files and rldk manifests.
    """
    p = Path(path)
    if p.is_dir():
        return _hash_directory(p)
    if not p.is_file():
        raise MissingData(f"no such data file: {p}")
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".pq"):
        result = _hash_parquet(p)
    elif suffix in (".arrow", ".feather", ".ipc"):
        result = _hash_ipc(p)
    elif suffix == ".jsonl":
        result = _hash_jsonl(p)
    else:
        result = _hash_bytes(p)
    return _with_size(result, p.stat().st_size)


def _with_size(h: DatasetHash, size: int) -> DatasetHash:
    return DatasetHash(h.digest, h.rows, h.schema, h.columns, h.blocks, h.format, size, h.files)


def _hash_parquet(p: Path) -> DatasetHash:
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(p)
    except Exception as exc:
        raise RldkError(f"{p}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    hasher = TableHasher(reader.schema_arrow)
    for batch in reader.iter_batches(batch_size=BLOCK_ROWS):
        hasher.update(batch)
    return hasher.result()


def _hash_ipc(p: Path) -> DatasetHash:
    import pyarrow as pa

    with pa.memory_map(str(p)) as source:
        try:
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            source.seek(0)
            try:
                reader = pa.ipc.open_stream(source)     # datasets' save_to_disk writes streams
            except pa.ArrowInvalid as exc:
                raise RldkError(f"{p}: not an Arrow IPC file or stream ({exc})") from None
            batches = iter(reader)
        hasher = TableHasher(reader.schema)
        for batch in batches:
            hasher.update(batch)
        return hasher.result()


def jsonl_records(p: Path) -> list | None:
    """The records of a JSON Lines file; None when a line is JSON but not an object."""
    records = []
    with open(p, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RldkError(f"{p}:{lineno}: invalid JSON ({exc.msg}); fix the line or hash "
                                "the file under another extension (as bytes)") from None
            if not isinstance(record, dict):
                return None
            records.append(record)
    return records


def _hash_jsonl(p: Path) -> DatasetHash:
    import pyarrow as pa

    records = jsonl_records(p)
    if records is None:
        return _hash_bytes(p)
    try:
        return hash_table(pa.Table.from_pylist(records) if records else pa.table({}))
    except (pa.ArrowInvalid, pa.ArrowTypeError):        # rows with clashing types: not a table
        return _hash_bytes(p)


def _hash_bytes(p: Path) -> DatasetHash:
    h = new_hash()
    h.update(framed("rldk-bytes-v1"))
    with open(p, "rb") as f:
        while chunk := f.read(_READ_BYTES):
            h.update(chunk)
    return DatasetHash(h.hexdigest(), None, format="bytes")


def _hash_directory(root: Path) -> DatasetHash:
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not skipped_path(rel):
            files[rel] = hash_path(path)
    h = new_hash()
    h.update(framed("rldk-directory-v1"))
    for rel, fh in files.items():
        h.update(framed(rel) + bytes.fromhex(fh.digest))
    counted = [f.rows for f in files.values() if f.rows is not None]
    return DatasetHash(h.hexdigest(), sum(counted) if counted else None, format="directory",
                       size_bytes=sum(f.size_bytes or 0 for f in files.values()), files=files)


def manifest_path(data_path) -> Path:
    """Where the manifest of ``data_path`` lives: ``<data_path>.rldk.json`` beside it."""
    p = Path(data_path)
    return p.with_name(p.name + MANIFEST_SUFFIX)


def skipped_path(rel: str) -> bool:
    """Whether a directory's hash leaves out ``rel``: hidden files and rldk manifests."""
    return any(part.startswith(".") for part in rel.split("/")) or rel.endswith(MANIFEST_SUFFIX)


def source_hash(func) -> str:
    """xxh3-128 of a function's source text (of its bytecode when the source is unavailable)."""
    try:
        text = inspect.getsource(func).encode("utf-8")
    except (OSError, TypeError):
        code = getattr(func, "__code__", None)
        text = code.co_code if code is not None else repr(func).encode()
    h = new_hash()
    h.update(text)
    return h.hexdigest()


