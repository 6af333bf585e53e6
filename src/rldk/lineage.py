"""Dataset lineage: content hashes of datasets, transforms as edges, manifests on disk.

A dataset's **content hash** depends only on its logical content: column names,
logical types and the values in row order. It does not depend on how the data is
chunked, on buffer layout (slice offsets, string vs large_string offsets, string
views, dictionary encoding, the bytes under null slots), on NaN bit patterns, on
column order, or on how a file was written (Parquet row groups, compression).
Any changed value, type, name or row order changes it.

How it is computed (``HASH_NAME``): rows are cut into blocks of ``BLOCK_ROWS``
logical rows. Within a block each column is serialised into streams (null
positions, fixed-width value bytes or variable-width bytes plus lengths, nested
children) hashed with xxh3-128; block digests combine into a column digest, and
the sorted column digests, the row count and the schema into the dataset digest
(a two-level Merkle tree). Blocks let ``verify`` say which rows changed.

Recording: :func:`record` writes a ``dataset`` event (digest, ivalue = rows,
attrs = schema and column digests); :func:`transform` / :func:`record_transform`
write a ``dataset`` event whose attrs hold an edge (input hashes, function name,
source hash, params, output hashes). :func:`write_manifest` writes
``<data>.rldk.json`` beside a file or directory and :func:`verify` recomputes it.
:func:`overlap` finds validation rows that also occur in training data.
"""
from __future__ import annotations

import functools
import inspect
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from rldk.core.errors import MissingEvents, RldkError, UsageError

HASH_NAME = "xxh3-128/rldk-lineage-v1"
BLOCK_ROWS = 1 << 13
MANIFEST_SUFFIX = ".rldk.json"
MANIFEST_VERSION = 1
TABLE_SUFFIXES = (".parquet", ".pq", ".arrow", ".feather", ".ipc", ".jsonl")
_READ_BYTES = 8 << 20


class MissingData(RldkError):
    """Data that a manifest or a run recorded is not on disk."""


# --------------------------------------------------------------------------- hashes
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


def _h():
    import xxhash

    return xxhash.xxh3_128()


def _u64(n: int) -> bytes:
    return int(n).to_bytes(8, "little", signed=True)


def _framed(text: str) -> bytes:
    data = text.encode("utf-8")
    return _u64(len(data)) + data


def logical_type(t) -> str:
    """A type's name with layout choices removed: large/view strings, binaries and
    lists collapse to one name, dictionaries to their value type, extensions to storage."""
    import pyarrow as pa
    import pyarrow.types as pt

    if pt.is_dictionary(t):
        return logical_type(t.value_type)
    if isinstance(t, pa.ExtensionType):
        return logical_type(t.storage_type)
    if pt.is_string(t) or pt.is_large_string(t) or _is_view(t, "string"):
        return "string"
    if pt.is_binary(t) or pt.is_large_binary(t) or _is_view(t, "binary"):
        return "binary"
    if pt.is_map(t):
        return f"map<{logical_type(t.key_type)}, {logical_type(t.item_type)}>"
    if pt.is_fixed_size_list(t):
        return f"list<{logical_type(t.value_type)}>[{t.list_size}]"
    if pt.is_list(t) or pt.is_large_list(t) or _is_view(t, "list"):
        return f"list<{logical_type(t.value_type)}>"
    if pt.is_struct(t):
        inner = ", ".join(f"{t.field(i).name}: {logical_type(t.field(i).type)}" for i in range(t.num_fields))
        return f"struct<{inner}>"
    return str(t)


def _is_view(t, family: str) -> bool:
    import pyarrow.types as pt

    check = getattr(pt, f"is_{family}_view", None)
    return bool(check and check(t))


class _ColumnState:
    """Hash streams of one column (or one nested child) within one row block."""

    def __init__(self):
        self.count = 0
        self.nulls, self.data, self.lengths = _h(), _h(), _h()
        self.children: dict[str, _ColumnState] = {}

    def child(self, key: str) -> "_ColumnState":
        if key not in self.children:
            self.children[key] = _ColumnState()
        return self.children[key]

    def update(self, arr) -> None:
        import numpy as np

        arr = _plain(arr)
        n = len(arr)
        if arr.null_count:
            where = np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False)) + self.count
            self.nulls.update(where.astype("<i8").tobytes())
        _update_values(self, arr)
        self.count += n

    def digest(self) -> bytes:
        h = _h()
        h.update(_u64(self.count))
        for stream in (self.nulls, self.data, self.lengths):
            h.update(stream.digest())
        for key in sorted(self.children):
            h.update(_framed(key) + self.children[key].digest())
        return h.digest()


def _plain(arr):
    """``arr`` with layout-only encodings undone (dictionary, extension, views, maps)."""
    import pyarrow as pa
    import pyarrow.types as pt

    t = arr.type
    if pt.is_dictionary(t):
        return _plain(arr.dictionary_decode())
    if isinstance(t, pa.ExtensionType):
        return _plain(arr.storage)
    if _is_view(t, "string"):
        return arr.cast(pa.large_string())
    if _is_view(t, "binary"):
        return arr.cast(pa.large_binary())
    if _is_view(t, "list"):
        return arr.cast(pa.large_list(t.value_field))
    if pt.is_map(t):
        entry = pa.struct([pa.field("key", t.key_type), pa.field("value", t.item_type)])
        return arr.cast(pa.list_(entry))
    return arr


def _update_values(state: _ColumnState, arr) -> None:
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.types as pt

    t = arr.type
    if pt.is_null(t):
        return
    if pt.is_boolean(t):
        values = pc.fill_null(arr, False).to_numpy(zero_copy_only=False)
        state.data.update(values.astype(np.uint8).tobytes())
    elif pt.is_string(t) or pt.is_large_string(t) or pt.is_binary(t) or pt.is_large_binary(t):
        _update_varwidth(state, arr)
    elif pt.is_list(t) or pt.is_large_list(t) or pt.is_fixed_size_list(t):
        lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
        state.lengths.update(lengths.astype("<i8").tobytes())
        state.child("item").update(arr.flatten())
    elif pt.is_struct(t):
        for i, child in enumerate(arr.flatten()):
            state.child(t.field(i).name).update(child)
    elif getattr(t, "bit_width", 0) and t.bit_width % 8 == 0 and not pt.is_union(t):
        _update_fixed(state, arr)
    else:            # unions and other rare types: their Python values, in order
        for v in arr.to_pylist():
            state.data.update(_framed(repr(v)))


def _update_fixed(state: _ColumnState, arr) -> None:
    """Fixed-width values: the raw little-endian bytes, nulls zeroed, NaNs made canonical."""
    import numpy as np
    import pyarrow.types as pt

    width = arr.type.bit_width // 8
    n = len(arr)
    if n == 0:
        return
    buf = arr.buffers()[1]
    raw = np.frombuffer(buf, dtype=np.uint8, count=(arr.offset + n) * width)[arr.offset * width:]
    if pt.is_floating(arr.type):
        view = raw.view({2: np.float16, 4: np.float32, 8: np.float64}[width])
        nan = np.isnan(view)
        if nan.any():
            view = view.copy()
            view[nan] = np.nan
            raw = view.view(np.uint8)
    if arr.null_count:
        raw = raw.reshape(n, width).copy()
        raw[arr.is_null().to_numpy(zero_copy_only=False)] = 0
    state.data.update(memoryview(np.ascontiguousarray(raw)).cast("B"))


def _update_varwidth(state: _ColumnState, arr) -> None:
    """Strings and binaries: their bytes back to back, and each value's length."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.types as pt

    if arr.null_count:        # bytes under a null slot are not part of the content
        arr = pc.fill_null(arr, "" if pt.is_string(arr.type) or pt.is_large_string(arr.type) else b"")
    n = len(arr)
    large = pt.is_large_string(arr.type) or pt.is_large_binary(arr.type)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if large else np.int32,
                            count=arr.offset + n + 1)[arr.offset:]
    state.lengths.update(np.diff(offsets).astype("<i8").tobytes())
    data = arr.buffers()[2]
    if data is not None and offsets[-1] > offsets[0]:
        state.data.update(memoryview(data)[int(offsets[0]):int(offsets[-1])])


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
        self._block: dict[str, _ColumnState] | None = None
        self._in_block = 0
        self._column_blocks: dict[str, list[bytes]] = {n: [] for n in self.order}
        self._blocks: list[str] = []

    def update(self, batch) -> None:
        start = 0
        while start < batch.num_rows:
            if self._block is None:
                self._block = {n: _ColumnState() for n in self.order}
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
        h = _h()
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
        top = _h()
        top.update(_framed("rldk-lineage-v1") + _u64(self.rows))
        top.update(_framed(json.dumps(schema, separators=(",", ":"))))
        for name, ltype in schema:
            h = _h()
            h.update(_framed(ltype))
            for d in self._column_blocks[name]:
                h.update(d)
            columns[name] = h.hexdigest()
            top.update(_framed(name) + h.digest())
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


def _jsonl_records(p: Path) -> list | None:
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

    records = _jsonl_records(p)
    if records is None:
        return _hash_bytes(p)
    try:
        return hash_table(pa.Table.from_pylist(records) if records else pa.table({}))
    except (pa.ArrowInvalid, pa.ArrowTypeError):        # rows with clashing types: not a table
        return _hash_bytes(p)


def _hash_bytes(p: Path) -> DatasetHash:
    h = _h()
    h.update(_framed("rldk-bytes-v1"))
    with open(p, "rb") as f:
        while chunk := f.read(_READ_BYTES):
            h.update(chunk)
    return DatasetHash(h.hexdigest(), None, format="bytes")


def _hash_directory(root: Path) -> DatasetHash:
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not _skipped(rel):
            files[rel] = hash_path(path)
    h = _h()
    h.update(_framed("rldk-directory-v1"))
    for rel, fh in files.items():
        h.update(_framed(rel) + bytes.fromhex(fh.digest))
    counted = [f.rows for f in files.values() if f.rows is not None]
    return DatasetHash(h.hexdigest(), sum(counted) if counted else None, format="directory",
                       size_bytes=sum(f.size_bytes or 0 for f in files.values()), files=files)


def _skipped(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/")) or rel.endswith(MANIFEST_SUFFIX)


# ------------------------------------------------------------------------ recording
def _writer(writer):
    if writer is not None:
        return writer
    import rldk.writer

    current = rldk.writer.current()
    if current is None or current._closed:
        raise UsageError("no writer to record lineage with: call rldk.writer.init(...) first, "
                         "or pass an EventWriter")
    return current


def record(writer, name: str, data, *, path=None, step=None) -> DatasetHash:
    """Hash ``data`` (in-memory data or a path) and write a ``dataset`` event.

    The event: name ``name``, digest the content hash, ivalue the row count, text
    the source path (``path``, or ``data`` itself when it is a path), attrs
    ``{"type": "dataset", "hash", "format", "schema", "columns"}``. ``writer`` is
    an ``EventWriter`` or None for the default ``rldk.writer`` one.
    """
    digest = hash_data(data)
    source = path if path is not None else (data if isinstance(data, (str, os.PathLike)) else None)
    attrs = {"type": "dataset", "hash": HASH_NAME, "format": digest.format,
             "schema": [list(s) for s in digest.schema], "columns": digest.columns}
    _writer(writer).log_event("dataset", name, step, digest=digest.digest, ivalue=digest.rows,
                              text=None if source is None else os.fspath(source), attrs=attrs)
    return digest


def source_hash(func) -> str:
    """xxh3-128 of a function's source text (of its bytecode when the source is unavailable)."""
    try:
        text = inspect.getsource(func).encode("utf-8")
    except (OSError, TypeError):
        code = getattr(func, "__code__", None)
        text = code.co_code if code is not None else repr(func).encode()
    h = _h()
    h.update(text)
    return h.hexdigest()


def record_transform(writer, function, inputs: dict, outputs: dict, params: dict | None = None,
                     *, step=None) -> dict:
    """Write one lineage edge: ``inputs`` and ``outputs`` map names to data or DatasetHash.

    The ``dataset`` event is named after the function; digest and ivalue are the
    first output's; attrs hold ``{"type": "transform", "function", "source_hash",
    "params", "inputs": [{name, digest, rows}], "outputs": [...]}``. Returns attrs.
    """
    def side(items):
        out = []
        for name, d in items.items():
            h = d if isinstance(d, DatasetHash) else hash_data(d)
            out.append({"name": str(name), "digest": h.digest, "rows": h.rows})
        return out

    name = getattr(function, "__name__", None) or str(function)
    attrs = {"type": "transform", "hash": HASH_NAME, "function": name,
             "qualname": getattr(function, "__qualname__", name),
             "module": getattr(function, "__module__", None),
             "source_hash": source_hash(function) if callable(function) else None,
             "params": _jsonable_params(params or {}), "inputs": side(inputs), "outputs": side(outputs)}
    first = attrs["outputs"][0] if attrs["outputs"] else {"digest": None, "rows": None}
    _writer(writer).log_event("dataset", name, step, digest=first["digest"], ivalue=first["rows"],
                              attrs=attrs)
    return attrs


def transform(writer=None, *, step=None):
    """Decorator recording each call of a dataset transform as a lineage edge.

    Arguments that are datasets (tables, ``datasets.Dataset``, DataFrames, lists of
    records) are the inputs, named by parameter; the others are the params. The
    return value is the output (a tuple or dict of datasets gives several).
    """
    def wrap(func):
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            result = func(*args, **kwargs)
            inputs = {k: v for k, v in bound.arguments.items() if _is_dataset(v)}
            params = {k: v for k, v in bound.arguments.items() if k not in inputs}
            record_transform(writer, func, inputs, _outputs(func, result), params, step=step)
            return result

        return wrapper

    return wrap


def _outputs(func, result) -> dict:
    if isinstance(result, dict) and result and all(_is_dataset(v) for v in result.values()):
        return result
    if isinstance(result, tuple) and result and all(_is_dataset(v) for v in result):
        return {f"{func.__name__}[{i}]": v for i, v in enumerate(result)}
    return {func.__name__: result}


def _is_dataset(v) -> bool:
    import pyarrow as pa

    if isinstance(v, (pa.Table, pa.RecordBatch)):
        return True
    if hasattr(v, "_indices") and hasattr(v, "data"):
        return True
    if hasattr(v, "iloc") or (hasattr(v, "to_arrow") and hasattr(v, "columns")):
        return True
    return isinstance(v, list) and bool(v) and all(isinstance(r, dict) for r in v)


def _jsonable_params(params: dict) -> dict:
    out = {}
    for k, v in params.items():
        try:
            json.dumps(v)
            out[k] = v
        except (TypeError, ValueError):
            out[k] = repr(v)[:200]
    return out


# ------------------------------------------------------------------------- manifests
def manifest_path(data_path) -> Path:
    """Where the manifest of ``data_path`` lives: ``<data_path>.rldk.json`` beside it."""
    p = Path(data_path)
    return p.with_name(p.name + MANIFEST_SUFFIX)


def write_manifest(data_path) -> Path:
    """Hash the file or directory ``data_path`` and write its manifest beside it."""
    p = Path(data_path)
    if not p.exists():
        raise MissingData(f"no such data file or directory: {p}")
    from rldk import __version__

    digest = hash_path(p)
    body = {"manifest_version": MANIFEST_VERSION, "path": p.name, "kind": "directory" if p.is_dir() else "file",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rldk": __version__,
            **digest.to_dict()}
    out = manifest_path(p)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out


@dataclass(frozen=True)
class Change:
    """One difference between a manifest and the data on disk.

    path: the file (relative to the manifest's data path; "" for the data itself).
    what: "missing" | "added" | "content" | "rows" | "schema" | "column" | "blocks".
    detail: the words and numbers (JSON-ready).
    """

    path: str
    what: str
    detail: dict

    def to_dict(self) -> dict:
        return {"path": self.path, "what": self.what, "detail": self.detail}


@dataclass(frozen=True)
class VerifyResult:
    """``verify`` of one manifest: status "ok", "changed" or "missing" (files gone)."""

    manifest: str
    data: str
    recorded: str
    current: str | None
    changes: tuple[Change, ...]

    @property
    def status(self) -> str:
        if any(c.what == "missing" for c in self.changes):
            return "missing"
        return "ok" if not self.changes else "changed"

    @property
    def missing(self) -> list[str]:
        return [c.path for c in self.changes if c.what == "missing"]

    def to_dict(self) -> dict:
        return {"manifest": self.manifest, "data": self.data, "status": self.status,
                "recorded": self.recorded, "current": self.current,
                "changes": [c.to_dict() for c in self.changes]}


def find_manifest(path) -> Path:
    """The manifest named by ``path``: the file itself or ``<path>.rldk.json``."""
    p = Path(path)
    if p.name.endswith(MANIFEST_SUFFIX) and p.is_file():
        return p
    candidate = manifest_path(p)
    if candidate.is_file():
        return candidate
    if not p.exists():
        raise MissingData(f"no such data file or manifest: {p}")
    raise UsageError(f"no manifest for {p} (looked for {candidate}): write one with "
                     f"`rldk lineage record {p}`")


def verify(path) -> VerifyResult:
    """Recompute the hash of the data a manifest describes and compare.

    ``path`` is a manifest or the data beside it. Raises :class:`MissingData` when
    the data itself is gone; files missing inside a directory are reported as
    changes of kind "missing" (status "missing").
    """
    mpath = find_manifest(path)
    try:
        body = json.loads(mpath.read_text(encoding="utf-8"))
        recorded = DatasetHash.from_dict(body)
        name = str(body["path"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise RldkError(f"{mpath}: not an rldk lineage manifest ({exc}); re-record it with "
                        "`rldk lineage record DATA`") from None
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise RldkError(f"{mpath}: its data path {name!r} is not a name beside the manifest; "
                        "re-record it with `rldk lineage record DATA`")
    data = mpath.parent / name
    if body.get("hash") != HASH_NAME:
        raise RldkError(f"{mpath}: hashed with {body.get('hash')!r}, this rldk computes {HASH_NAME!r}: "
                        "re-record the manifest")
    if not data.exists():
        raise MissingData(f"data missing: {data} (recorded in {mpath}): restore it, or re-record "
                          f"with `rldk lineage record {data}`")
    current = hash_path(data)
    return VerifyResult(str(mpath), str(data), recorded.digest, current.digest,
                        tuple(compare(recorded, current)))


def compare(recorded: DatasetHash, current: DatasetHash, path: str = "") -> list[Change]:
    """What differs between two hashes of the same data: files, rows, schema, columns, blocks."""
    if recorded.digest == current.digest:
        return []
    if recorded.format == "directory" or current.format == "directory":
        return _compare_dirs(recorded, current, path)
    changes = []
    if recorded.rows != current.rows:
        changes.append(Change(path, "rows", {"recorded": recorded.rows, "current": current.rows}))
    if recorded.schema != current.schema:
        changes.append(Change(path, "schema", {"recorded": [list(s) for s in recorded.schema],
                                               "current": [list(s) for s in current.schema]}))
    for name in sorted(set(recorded.columns) & set(current.columns)):
        if recorded.columns[name] != current.columns[name]:
            changes.append(Change(path, "column", {"column": name}))
    rows = _changed_rows(recorded, current)
    if rows:
        changes.append(Change(path, "blocks", {"row_ranges": rows}))
    if not changes:
        changes.append(Change(path, "content", {"recorded": recorded.digest, "current": current.digest}))
    return changes


def _changed_rows(recorded: DatasetHash, current: DatasetHash) -> list[list[int]]:
    """Row ranges ``[first, last]`` of blocks whose digests differ (same-length blocks only)."""
    out = []
    for i, (a, b) in enumerate(zip(recorded.blocks, current.blocks)):
        if a != b:
            last = min((i + 1) * BLOCK_ROWS, max(recorded.rows or 0, current.rows or 0)) - 1
            out.append([i * BLOCK_ROWS, last])
    return out


def _compare_dirs(recorded: DatasetHash, current: DatasetHash, path: str) -> list[Change]:
    prefix = f"{path}/" if path else ""
    changes = []
    for rel in sorted(set(recorded.files) | set(current.files)):
        if rel not in current.files:
            changes.append(Change(prefix + rel, "missing", {"recorded": recorded.files[rel].digest}))
        elif rel not in recorded.files:
            changes.append(Change(prefix + rel, "added", {"current": current.files[rel].digest}))
        else:
            changes.extend(compare(recorded.files[rel], current.files[rel], prefix + rel))
    return changes


# ----------------------------------------------------------------------------- graph
@dataclass(frozen=True)
class LineageNode:
    """A dataset in a run's lineage: its content digest, a name, rows, source path."""

    digest: str
    name: str
    rows: int | None
    path: str | None = None

    def to_dict(self) -> dict:
        return {"digest": self.digest, "name": self.name, "rows": self.rows, "path": self.path}


@dataclass(frozen=True)
class LineageEdge:
    """A transform: ``function`` (with the hash of its source) turned inputs into outputs."""

    function: str
    source_hash: str | None
    params: dict
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    step: int | None = None

    def to_dict(self) -> dict:
        return {"function": self.function, "source_hash": self.source_hash, "params": self.params,
                "inputs": list(self.inputs), "outputs": list(self.outputs), "step": self.step}


@dataclass(frozen=True)
class LineageGraph:
    """The datasets and transforms one run recorded (from its ``dataset`` events)."""

    run_id: str
    nodes: tuple[LineageNode, ...]
    edges: tuple[LineageEdge, ...]

    def node(self, digest: str) -> LineageNode:
        return next(n for n in self.nodes if n.digest == digest)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "nodes": [n.to_dict() for n in self.nodes],
                "edges": [e.to_dict() for e in self.edges]}

    def to_text(self) -> str:
        """The graph as an indented tree: roots first, each transform under its first input."""
        lines = [f"lineage of run {self.run_id}: {len(self.nodes)} datasets, {len(self.edges)} transforms"]
        produced = {d for e in self.edges for d in e.outputs}
        shown: set[str] = set()
        for node in self.nodes:
            if node.digest not in produced:
                self._text_tree(node.digest, "", lines, shown)
        for node in self.nodes:                       # cycles or nodes only reachable oddly
            if node.digest not in shown:
                self._text_tree(node.digest, "", lines, shown)
        return "\n".join(lines)

    def _text_tree(self, digest: str, indent: str, lines: list, shown: set) -> None:
        node = self.node(digest)
        seen = digest in shown
        lines.append(f"{indent}{_node_label(node)}{'  (see above)' if seen else ''}")
        shown.add(digest)
        if seen:
            return
        children = [e for e in self.edges if e.inputs and e.inputs[0] == digest]
        for edge in children:
            others = [self.node(d).name for d in edge.inputs[1:]]
            also = f" (+ {', '.join(others)})" if others else ""
            lines.append(f"{indent}  └─ {_edge_label(edge)}{also} ->")
            for out in edge.outputs:
                self._text_tree(out, indent + "       ", lines, shown)


def _node_label(node: LineageNode) -> str:
    rows = f"{node.rows:,} rows" if node.rows is not None else "bytes"
    where = f"  {node.path}" if node.path else ""
    return f"{node.name}  [{rows}, {node.digest[:12]}]{where}"


def _edge_label(edge: LineageEdge) -> str:
    params = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in edge.params.items())
    src = f" src {edge.source_hash[:8]}" if edge.source_hash else ""
    return f"{edge.function}({params}){src}"


def lineage_graph(store, run_id: str | None = None) -> LineageGraph:
    """Build the lineage graph of ``run_id`` (the only run when None) from its dataset events."""
    run = _pick_run(store, run_id)
    events = run.events("dataset")
    if events.is_empty():
        raise MissingEvents(f"run {run.id!r} has no dataset events: record datasets with "
                            "rldk.lineage.record(writer, name, data) and transforms with "
                            "@rldk.lineage.transform(writer)")
    nodes: dict[str, LineageNode] = {}
    edges = []
    for row in events.iter_rows(named=True):
        attrs = json.loads(row["attrs"]) if row["attrs"] else {}
        if attrs.get("type") == "transform":
            for side in ("inputs", "outputs"):
                for item in attrs.get(side, []):
                    nodes.setdefault(item["digest"], LineageNode(item["digest"], item["name"], item["rows"]))
            edges.append(LineageEdge(attrs.get("function") or row["name"], attrs.get("source_hash"),
                                     attrs.get("params") or {},
                                     tuple(i["digest"] for i in attrs.get("inputs", [])),
                                     tuple(o["digest"] for o in attrs.get("outputs", [])), row["step"]))
        elif row["digest"]:
            old = nodes.get(row["digest"])
            if old is None or old.path is None:      # a recorded name wins over an edge's name
                nodes[row["digest"]] = LineageNode(row["digest"], row["name"], row["ivalue"], row["text"])
    return LineageGraph(run.id, tuple(nodes.values()), tuple(edges))


def _pick_run(store, run_id):
    if run_id is not None:
        return store.run(run_id)
    runs = store.runs()
    if len(runs) != 1:
        raise UsageError(f"the store holds {len(runs)} runs ({', '.join(r.id for r in runs)}): pick one with --run")
    return runs[0]


def render_png(graph: LineageGraph, path) -> str:
    """Draw the graph (datasets as boxes in columns by depth, transforms as labelled
    arrows) into a PNG at ``path`` with matplotlib; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depth = _depths(graph)
    columns: dict[int, list[str]] = {}
    for n in graph.nodes:
        columns.setdefault(depth[n.digest], []).append(n.digest)
    pos = {d: (x * 3.2, -y * 1.4) for x, ds in columns.items() for y, d in enumerate(ds)}
    width = 3.2 * max(columns) + 3.2
    height = 1.4 * (max(len(v) for v in columns.values()) - 1) + 1.4
    fig, ax = plt.subplots(figsize=(max(4.0, width * 1.1), max(2.0, height * 1.1)))
    for edge in graph.edges:
        for src in edge.inputs:
            for dst in edge.outputs:
                (x0, y0), (x1, y1) = pos[src], pos[dst]
                ax.annotate("", xy=(x1 - 1.1, y1), xytext=(x0 + 1.1, y0),
                            arrowprops={"arrowstyle": "->", "color": "0.35"})
                ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.15, _safe(edge.function), ha="center",
                        fontsize=7, color="0.25")
    for n in graph.nodes:
        x, y = pos[n.digest]
        rows = f"{n.rows:,} rows" if n.rows is not None else "bytes"
        ax.text(x, y, _safe(f"{n.name}\n{rows} · {n.digest[:10]}"), ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "#e8f0fe", "edgecolor": "#4a6fa5"})
    ax.set_xlim(-1.6, width - 1.6)
    ax.set_ylim(-height + 0.7, 0.7)
    ax.axis("off")
    ax.set_title(_safe(f"lineage of run {graph.run_id}"), fontsize=10)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def _safe(text: str) -> str:
    """Text for matplotlib with mathtext off: a '$' from a log must not start a formula."""
    return str(text).replace("\\", "\\\\").replace("$", r"\$")


def _depths(graph: LineageGraph) -> dict[str, int]:
    """Longest-path depth of each node (0 for roots); bounded so cycles terminate."""
    depth = {n.digest: 0 for n in graph.nodes}
    for _ in range(len(graph.nodes)):
        changed = False
        for e in graph.edges:
            base = max((depth[i] for i in e.inputs), default=-1) + 1
            for o in e.outputs:
                if depth[o] < base and base < len(graph.nodes):
                    depth[o], changed = base, True
        if not changed:
            break
    return depth


# --------------------------------------------------------------------------- overlap
@dataclass(frozen=True)
class Overlap:
    """Rows of a validation set whose content also occurs in a training set.

    columns: the columns compared. shared_rows: validation rows found in training
    (duplicates counted each time). fraction: shared_rows / val_rows.
    examples: up to 5 ``{"val_index", "train_index"}`` pairs (0-based row numbers).
    """

    columns: tuple[str, ...]
    train_rows: int
    val_rows: int
    shared_rows: int
    examples: tuple[dict, ...]
    normalized: bool = False

    @property
    def fraction(self) -> float:
        return self.shared_rows / self.val_rows if self.val_rows else 0.0

    def to_dict(self) -> dict:
        return {"columns": list(self.columns), "train_rows": self.train_rows, "val_rows": self.val_rows,
                "shared_rows": self.shared_rows, "fraction": self.fraction,
                "examples": list(self.examples), "normalized": self.normalized}


def overlap(train, val, columns=None, *, normalize: bool = False) -> Overlap:
    """Validation rows whose content (over ``columns``) also appears in training.

    ``train`` and ``val`` are anything :func:`hash_data` accepts (a list of strings
    is one column "value"). ``columns`` defaults to the columns both share.
    ``normalize`` compares strings lower-cased with whitespace collapsed. Rows are
    matched by a hash of their values and then compared exactly, so a hash
    collision never counts as a match.
    """
    import polars as pl

    left, right = _frame(train), _frame(val)
    cols = _overlap_columns(left, right, columns)
    left, right = left.select(cols), right.select(cols)
    if normalize:
        left, right = _normalized(left), _normalized(right)
    for c in cols:
        if left.schema[c] != right.schema[c]:
            raise UsageError(f"column {c!r} is {left.schema[c]} in train but {right.schema[c]} in val: "
                             "cast one side, or compare other columns")
    lh = left.hash_rows(seed=0)
    rh = right.hash_rows(seed=0)
    first_train = (pl.DataFrame({"h": lh, "train_index": pl.int_range(0, len(lh), eager=True)})
                   .group_by("h").agg(pl.col("train_index")))
    cand = (pl.DataFrame({"h": rh, "val_index": pl.int_range(0, len(rh), eager=True)})
            .join(first_train, on="h", how="inner").sort("val_index"))
    pairs = cand.select("val_index", "train_index").explode("train_index")
    equal = [a == b for a, b in zip(left[pairs["train_index"]].rows(), right[pairs["val_index"]].rows())]
    matches = {}                                  # val row -> first train row with equal values
    for (val_index, train_index), same in zip(pairs.iter_rows(), equal):
        if same and val_index not in matches:
            matches[val_index] = train_index
    examples = tuple({"val_index": v, "train_index": t} for v, t in sorted(matches.items())[:5])
    return Overlap(tuple(cols), left.height, right.height, len(matches), examples, normalize)


def load_table(path):
    """An Arrow table from a Parquet, Arrow IPC/Feather, JSON Lines or CSV file, or from
    every such file of a directory (concatenated in path order)."""
    import pyarrow as pa

    p = Path(path)
    if p.is_dir():
        files = [f for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in
                 (*TABLE_SUFFIXES, ".csv") and not _skipped(f.relative_to(p).as_posix())]
        if not files:
            raise UsageError(f"no data files (.parquet, .arrow, .jsonl, .csv) in directory {p}")
        return pa.concat_tables([load_table(f) for f in files], promote_options="default")
    if not p.is_file():
        raise MissingData(f"no such data file: {p}")
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.read_table(p)
    if suffix in (".arrow", ".feather", ".ipc"):
        return _read_ipc(p)
    if suffix == ".jsonl":
        records = _jsonl_records(p)
        if records is None:
            raise UsageError(f"{p}: its lines are not JSON objects, so it is not a table of records")
        return pa.Table.from_pylist(records)
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        return pcsv.read_csv(p)
    raise UsageError(f"cannot read {p} as a table: use a .parquet, .arrow, .feather, .jsonl or .csv file")


def _read_ipc(p: Path):
    import pyarrow as pa

    with pa.memory_map(str(p)) as source:
        try:
            return pa.ipc.open_file(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_stream(source).read_all()


def _frame(data):
    import polars as pl

    return pl.from_arrow(to_arrow(data))


def _overlap_columns(left, right, columns) -> list[str]:
    if columns:
        cols = [columns] if isinstance(columns, str) else list(columns)
        for side, frame in (("train", left), ("val", right)):
            absent = [c for c in cols if c not in frame.columns]
            if absent:
                raise UsageError(f"{side} has no column {absent[0]!r}; columns: {', '.join(frame.columns)}")
        return cols
    cols = [c for c in left.columns if c in right.columns]
    if not cols:
        raise UsageError(f"train and val share no column (train: {', '.join(left.columns)}; "
                         f"val: {', '.join(right.columns)}): pass columns=")
    return cols


def _normalized(frame):
    import polars as pl

    exprs = [pl.col(c).str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
             if frame.schema[c] == pl.String else pl.col(c) for c in frame.columns]
    return frame.select(exprs)
