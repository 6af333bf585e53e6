"""Manifests beside data on disk: recompute the content hash and say what changed.

A manifest (``<data>.rldk.json``, written by :func:`rldk.writer.lineage.write_manifest`)
holds the :class:`~rldk.core.hashing.DatasetHash` of a file or directory. :func:`verify`
rehashes the data and :func:`compare` names the difference: files missing or added,
rows, schema, columns and the row ranges (blocks) whose digests moved.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rldk.core.errors import RldkError, UsageError
from rldk.core.hashing import (
    BLOCK_ROWS,
    HASH_NAME,
    MANIFEST_SUFFIX,
    DatasetHash,
    MissingData,
    hash_path,
    manifest_path,
)
from rldk.core.result import as_dict


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
        # the JSON names the derived status next to the fields
        return {"manifest": self.manifest, "data": self.data, "status": self.status,
                "recorded": self.recorded, "current": self.current,
                "changes": [as_dict(c) for c in self.changes]}


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


