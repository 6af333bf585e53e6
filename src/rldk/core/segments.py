"""Writing store files: atomic segment writes and merging segments into one file.

Every file is written under a hidden temporary name, fsynced and renamed into
place, so readers only ever see complete files.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from rldk.core.naming import temp_name


def file_metadata(path) -> dict:
    """The key-value metadata of a Parquet file's footer (``rldk.*`` keys among them)."""
    import pyarrow.parquet as pq

    return pq.read_metadata(path).metadata or {}


def _rldk_metadata(covers=None) -> dict:
    from rldk import __version__
    from rldk.schemas import META_COVERS, META_VERSION, META_WRITER, SCHEMA_VERSION

    meta = {META_VERSION: str(SCHEMA_VERSION).encode(), META_WRITER: f"rldk {__version__}".encode()}
    if covers:
        meta[META_COVERS] = json.dumps(sorted(covers)).encode()
    return meta


@contextlib.contextmanager
def _atomic_writer(directory: Path, name: str, schema, covers=None):
    """A ParquetWriter on a hidden temp file that is fsynced and renamed to ``name``
    on success, removed on failure. Files carry no Arrow schema (dictionary columns
    read back as plain strings) and the ``rldk.*`` footer metadata."""
    import pyarrow.parquet as pq

    from rldk.schemas import PARQUET_OPTIONS

    tmp = directory / temp_name(name)
    try:
        with open(tmp, "wb") as f:
            with pq.ParquetWriter(f, schema.remove_metadata(), **PARQUET_OPTIONS) as out:
                yield out
                out.add_key_value_metadata(_rldk_metadata(covers))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_segment(table, directory: Path, name: str) -> None:
    """Write ``table`` as ``directory/name`` atomically: temp file, fsync, rename."""
    with _atomic_writer(Path(directory), name, table.schema) as out:
        out.write_table(table, row_group_size=1 << 20)


def merge_segments(directory: Path, names: list[str], out_name: str, rows_per_group: int = 1 << 18) -> None:
    """Merge segment files into ``out_name`` (streaming, bounded memory), then delete them.

    The merged file lists the names it replaces in its metadata, so a reader that
    finds both (a crash between the rename and the deletes) counts each event once.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rldk.schemas import arrow_schema, conform, file_version

    directory = Path(directory)
    with _atomic_writer(directory, out_name, arrow_schema(), covers=names) as out:
        buf, rows = [], 0
        for name in names:
            pf = pq.ParquetFile(directory / name)
            version = file_version(pf.metadata.metadata)
            for i in range(pf.num_row_groups):
                part = conform(pf.read_row_group(i), version)
                buf.append(part)
                rows += part.num_rows
                if rows >= rows_per_group:
                    out.write_table(pa.concat_tables(buf), row_group_size=rows_per_group)
                    buf, rows = [], 0
        if buf:
            out.write_table(pa.concat_tables(buf), row_group_size=rows_per_group)
    for name in names:
        if name != out_name:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory / name)
