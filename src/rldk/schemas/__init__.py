"""Versioned schema of the event table, validation and schema evolution."""
from __future__ import annotations

from rldk.schemas.events import (
    COLUMNS,
    KINDS,
    META_COVERS,
    META_VERSION,
    META_WRITER,
    PARQUET_OPTIONS,
    SCHEMA_VERSION,
    SEGMENT_PARQUET_OPTIONS,
    KindSpec,
    arrow_schema,
    memory_schema,
)

__all__ = [
    "COLUMNS", "KINDS", "META_COVERS", "META_VERSION", "META_WRITER", "PARQUET_OPTIONS", "SEGMENT_PARQUET_OPTIONS",
    "SCHEMA_VERSION", "KindSpec", "arrow_schema", "memory_schema", "conform", "file_version", "validate",
]

_PAYLOAD = ("value", "ivalue", "digest", "text", "attrs")


def file_version(metadata: dict | None) -> int:
    """Schema version recorded in a Parquet file's key-value metadata.

    Files written by other tools carry none; they are read as the current version
    as long as their columns conform (see :func:`conform`).
    """
    raw = (metadata or {}).get(META_VERSION)
    return int(raw) if raw is not None else SCHEMA_VERSION


def conform(table, version: int):
    """Bring a table read from a file of schema ``version`` to the current schema.

    Columns an older (or foreign) file lacks are added as nulls and every column is
    cast to the current type, so segments of different versions concatenate.
    Raises ``ValueError`` for a version newer than this rldk knows.
    """
    import pyarrow as pa

    if version > SCHEMA_VERSION:
        raise ValueError(f"schema version {version} is newer than this rldk reads "
                         f"({SCHEMA_VERSION}): upgrade rldk")
    schema = arrow_schema()
    cols = []
    for field in schema:
        if field.name in table.column_names:
            cols.append(table.column(field.name).cast(field.type))
        else:
            cols.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(cols, schema=schema.remove_metadata())


def validate(table) -> list[str]:
    """Problems with a table of events, one line each (empty when valid).

    Checks the columns and types against :func:`arrow_schema`, that every ``kind``
    is known and that each kind's required payload columns are filled.
    """
    import pyarrow.compute as pc

    problems = []
    schema = arrow_schema()
    for field in schema:
        if field.name not in table.column_names:
            problems.append(f"missing column {field.name!r}")
        elif table.schema.field(field.name).type != field.type:
            problems.append(f"column {field.name!r} is {table.schema.field(field.name).type}, "
                            f"expected {field.type}")
    if problems:
        return problems
    for kind in pc.unique(table.column("kind")).to_pylist():
        spec = KINDS.get(kind)
        if spec is None:
            problems.append(f"unknown kind {kind!r}")
            continue
        rows = table.filter(pc.equal(table.column("kind"), kind))
        for col in spec.required:
            nulls = rows.column(col).null_count
            if nulls:
                problems.append(f"{nulls} {kind} row(s) without {col}")
    return problems
