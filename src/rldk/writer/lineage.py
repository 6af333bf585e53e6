"""Recording dataset lineage from a training run, and manifests beside data on disk.

:func:`record` writes a ``dataset`` event (digest, ivalue = rows, attrs = schema
and column digests); :func:`transform` / :func:`record_transform` write a
``dataset`` event whose attrs hold an edge (input hashes, function name, source
hash, params, output hashes). :func:`write_manifest` writes ``<data>.rldk.json``
beside a file or directory. The hashes are :mod:`rldk.core.hashing`'s; reading
them back (graph, verify, overlap) is :mod:`rldk.analyzers.lineage`.
"""
from __future__ import annotations

import functools
import inspect
import json
import os
import time
from pathlib import Path

from rldk import __version__
from rldk.core.errors import UsageError
from rldk.core.hashing import (
    HASH_NAME,
    DatasetHash,
    MissingData,
    hash_data,
    hash_path,
    manifest_path,
    source_hash,
)
from rldk.writer import current

MANIFEST_VERSION = 1


def _writer(writer):
    if writer is not None:
        return writer
    found = current()
    if found is None or found._closed:
        raise UsageError("no writer to record lineage with: call rldk.writer.init(...) first, "
                         "or pass an EventWriter")
    return found


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


def write_manifest(data_path) -> Path:
    """Hash the file or directory ``data_path`` and write its manifest beside it."""
    p = Path(data_path)
    if not p.exists():
        raise MissingData(f"no such data file or directory: {p}")
    digest = hash_path(p)
    body = {"manifest_version": MANIFEST_VERSION, "path": p.name, "kind": "directory" if p.is_dir() else "file",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rldk": __version__,
            **digest.to_dict()}
    out = manifest_path(p)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out


