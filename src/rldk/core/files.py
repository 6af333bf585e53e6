"""Which files a store is: literal paths, pending merges, covered segments, footers.

``resolve_files`` turns the paths a user names into event files (an existing path
is literal, a folder is searched recursively, each real folder once); ``_live_files``
drops the segments a merged file covers, reading every footer once
(:class:`Footer`: metadata, columns, the run_id range of each row group), which
the store keeps for per-run file selection.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache

from rldk.core.errors import StoreError
from rldk.core.fs import filesystem, is_remote, open_binary, protocol, strip, url_of
from rldk.core.naming import PENDING_SUFFIX, is_pending
from rldk.core.segments import repair_quietly


def resolve_files(paths) -> list[str]:
    """Event files named by ``paths`` (files, directories, globs), sorted, deduplicated.

    An existing path is literal; directories are searched recursively for
    ``*.parquet`` (symlinked folders once: files are deduplicated by their real
    path). Hidden files are skipped, except pending merges (``.*.parquet.merging``)
    in the directories searched, which readers must see. Object storage URLs
    (``s3://bucket/prefix``) are listed the same way (:func:`_remote_matches`).
    Raises :class:`StoreError` when nothing matches.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: dict[str, str] = {}                    # real path -> path as found
    real_folders: dict[str, str] = {}
    for raw in paths:
        if is_remote(raw):
            found.update((m, m) for m in _remote_matches(str(raw)))
        elif os.path.isdir(raw):
            for real, path in _walk(str(raw)):
                found.setdefault(real, path)
        else:
            for match in _matches(str(raw)):
                if os.path.isfile(match) and _readable_name(os.path.basename(match)):
                    found.setdefault(_real_path(match, real_folders), os.path.abspath(match))
    if not found:
        shown = ", ".join(str(p) for p in paths)
        raise StoreError(f"no event files (*.parquet) in {shown}: write some with rldk.writer "
                         "or import logs with `rldk import`")
    return sorted(found.values())


def _readable_name(name: str) -> bool:
    return not name.startswith(".") or is_pending(name)


def _real_path(path: str, real_folders: dict[str, str]) -> str:
    """``os.path.realpath(path)``, resolving each folder once (10,000 files in one
    folder: one folder resolution and one ``lstat`` each, not a walk of every component)."""
    if os.path.islink(path):
        return os.path.realpath(path)
    folder, name = os.path.split(path)
    real = real_folders.get(folder)
    if real is None:
        real = real_folders[folder] = os.path.realpath(folder or ".")
    return os.path.join(real, name)


def _matches(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    if glob.has_magic(path):
        matches = glob.glob(path, recursive=True)
        folders = {os.path.dirname(m) for m in matches if os.path.isfile(m)}
        return matches + [p for folder in folders for p in _pending_in(folder)]
    raise StoreError(f"{path}: no such file or directory")


def _remote_matches(url: str) -> list[str]:
    return sorted(remote_listing(url))


def remote_listing(url: str) -> dict[str, tuple]:
    """Visible ``*.parquet`` objects named by ``url`` (an object, a glob, or a prefix
    searched recursively, hive folders included), each with its ``(size, etag)``.

    Listings are fresh (no cache). An object is listed once its upload is complete
    (one PUT, or a completed multipart upload): what is listed is whole. Raises
    :class:`StoreError` when the store cannot be listed (credentials, endpoint).
    """
    import glob as _glob

    proto, key = protocol(url), strip(url).rstrip("/")
    fs = filesystem(proto)
    fs.invalidate_cache()
    try:
        if _glob.has_magic(key) and not fs.exists(key):
            infos = fs.glob(key, detail=True)
        elif key.endswith(".parquet") and fs.isfile(key):
            infos = {key: fs.info(key)}
        else:
            infos = fs.find(key, detail=True)
    except FileNotFoundError:
        infos = {}
    except Exception as exc:
        raise StoreError(f"{url}: cannot list ({type(exc).__name__}: {exc}); check the "
                         "credentials (AWS_* variables) and the endpoint") from None
    return {url_of(proto, k): object_signature(info) for k, info in infos.items()
            if k.endswith(".parquet") and not k.rsplit("/", 1)[-1].startswith(".")
            and info.get("type", "file") != "directory"}


def object_signature(info: dict) -> tuple:
    """``(size, etag)`` of an object from its fsspec info (the modification time where
    the store gives no ETag): it changes when the object is replaced."""
    return (info.get("size"), info.get("ETag") or info.get("etag") or info.get("LastModified")
            or info.get("mtime"))


def _walk(root: str) -> list[tuple[str, str]]:
    """``(real path, absolute path)`` of the ``*.parquet`` files and pending merges under
    ``root``; each real folder once (no symlink loops). Directory entries say what is a
    file and what a link, so a plain file costs no system call of its own."""
    out, seen = [], set()
    stack = [os.path.abspath(root)]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        folders = []
        for entry in entries:
            name = entry.name
            if entry.is_dir():
                if not name.startswith("."):
                    folders.append(entry.path)
            elif (name.endswith(".parquet") or name.endswith(PENDING_SUFFIX)) and _readable_name(name) \
                    and entry.is_file():
                out.append((os.path.realpath(entry.path) if entry.is_symlink()
                            else os.path.join(real, name), entry.path))
        stack.extend(reversed(folders))         # depth first, by name (as os.walk)
    return out


def _pending_in(folder: str) -> list[str]:
    try:
        return [os.path.join(folder, n) for n in os.listdir(folder or ".") if is_pending(n)]
    except OSError:
        return []


def live_files(files: list[str]) -> tuple[list[str], dict]:
    """Drop files that a merged file in the same directory lists as covered (and files a
    merge deleted since they were listed). Returns the live files and all their footers."""
    from rldk.schemas import META_COVERS, SCHEMA_VERSION, file_version

    footers = read_footers(files)
    covered: set[str] = set()
    merged: dict[str, set[str]] = {}
    live = []
    for path in files:
        footer = footers[path]
        if footer is None:                 # published or deleted by a merge since we listed it
            continue
        meta = footer.meta
        if file_version(meta) > SCHEMA_VERSION:
            raise StoreError(f"{path}: schema version {file_version(meta)} is newer than this rldk "
                             f"reads ({SCHEMA_VERSION}): upgrade rldk")
        if META_COVERS in meta:
            folder = os.path.dirname(path)
            merged[path] = {os.path.join(folder, n) for n in json.loads(meta[META_COVERS])}
            covered.update(merged[path])
        live.append(path)
    covered.update(_redundant(merged))
    kept = [f for f in live if f not in covered]
    return kept, {f: footers[f] for f in kept}


def _redundant(merged: dict[str, set[str]]) -> set[str]:
    """Merged files whose inputs another merged file covers too (two unlocked merges of the
    same files on object storage): the first by name is read, the others are redundant."""
    holders: dict[str, list[str]] = {}
    for path, inputs in merged.items():
        for name in inputs:
            holders.setdefault(name, []).append(path)
    out = set()
    for path, inputs in merged.items():
        # a file covering all of ``inputs`` holds any one of them: look only at those
        for other in holders[next(iter(inputs))] if inputs else ():
            theirs = merged[other]
            if other != path and inputs <= theirs and (inputs != theirs or other < path):
                out.add(path)
                break
    return out


def repaired(files: list[str], paths) -> list[str]:
    """``files`` again after finishing merges that killed processes left pending (when
    the folder is writable and its lock free; else the pending files are read as they are)."""
    folders = sorted({os.path.dirname(f) for f in files
                      if is_pending(os.path.basename(f)) and not is_remote(f)})
    for folder in folders:
        repair_quietly(folder)
    return resolve_files(paths) if folders else files


@dataclass(frozen=True)
class Footer:
    """What a file's Parquet footer says, read once per store.

    columns: the file's column names; rows: its row count; runs: per row group, the
    (min, max) of its run_id statistics, or None when a row group has none (then any
    run may be there); meta: its key-value metadata (``rldk.*`` keys among them).
    """

    columns: tuple[str, ...]
    rows: int
    runs: tuple[tuple[str, str], ...] | None
    meta: dict = field(default_factory=dict, compare=False)

    def may_hold(self, run_id: str) -> bool:
        return self.runs is None or any(lo <= run_id <= hi for lo, hi in self.runs)

    @property
    def exact_runs(self) -> set[str] | None:
        """The run ids in the file when every row group holds one run, else None."""
        if self.runs is None or any(lo != hi for lo, hi in self.runs):
            return None
        return {lo for lo, _ in self.runs}


def read_footer(path: str, through_arrow: bool = False) -> Footer | None:
    """The :class:`Footer` of one event file (its metadata only; no data is read), or
    None when the file is gone (a merge published or deleted it since it was listed).
    ``through_arrow``: read it with pyarrow (faster per file, 0.1 s to import)."""
    try:
        if is_remote(path):
            with open_binary(path) as f:
                meta = _metadata(f, through_arrow)
        else:
            meta = _metadata(path, through_arrow)
    except FileNotFoundError:
        return None
    except Exception as exc:
        raise StoreError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc}); "
                         "move it out of the store") from None
    columns = _interned(meta.names)
    stats = meta.column_stats("run_id")
    if stats is None or not all(s is not None and s.has_min_max for s in stats):
        return Footer(columns, meta.rows, None, meta.kv)
    return Footer(columns, meta.rows, tuple((s.min, s.max) for s in stats), meta.kv)


def _metadata(source, through_arrow: bool = False):
    """The footer of ``source`` (a path or an open binary file): ``parquet_footer.file_meta``."""
    from rldk.core.parquet_footer import file_meta

    return file_meta(source, through_arrow)


def only_metrics_of(path: str, run_id: str) -> bool:
    """Whether the statistics of the local file ``path`` show every row to be a metric
    event of ``run_id`` with a step (a writer's metric segment)."""
    if is_remote(path):
        return False
    meta = _metadata(path)
    return (single_values(meta, ("kind", "run_id")) == {"kind": "metric", "run_id": run_id}
            and no_nulls(meta, "step"))


def single_values(meta, columns) -> dict:
    """Per column of ``columns`` whose statistics in every row group of ``meta`` (a
    footer's ``FileMeta``) show one value and no null: that value (the file's rows all have it)."""
    out = {}
    for column in columns:
        stats = meta.column_stats(column)
        if stats and all(_no_nulls(s) and s.has_min_max for s in stats):
            seen = {v for s in stats for v in (s.min, s.max)}
            if len(seen) == 1:
                out[column] = seen.pop()
    return out


def no_nulls(meta, column: str) -> bool:
    """Whether the statistics of every row group of ``meta`` count no null in ``column``."""
    stats = meta.column_stats(column)
    return stats is not None and all(_no_nulls(s) for s in stats)


def _no_nulls(stats) -> bool:
    return stats is not None and stats.null_count == 0


@lru_cache(maxsize=64)
def _interned(columns: tuple[str, ...]) -> tuple[str, ...]:
    return columns                     # one tuple per schema, however many files share it


def read_footers(files: list[str]) -> dict[str, Footer | None]:
    """Footers of ``files``: local files in this thread (a footer read is mostly Python
    and Thrift work under the GIL: threads made 10,000 reads 2x slower), objects on
    remote storage on 16 threads (each read is a network round trip). More than
    ``ARROW_FOOTERS`` files are read through pyarrow, fewer in Python (no import)."""
    from concurrent.futures import ThreadPoolExecutor

    arrow = len(files) > ARROW_FOOTERS
    if len(files) < 2 or not any(is_remote(f) for f in files):
        return {f: read_footer(f, arrow) for f in files}
    with ThreadPoolExecutor(max_workers=16) as pool:
        return dict(zip(files, pool.map(lambda f: read_footer(f, arrow), files)))


#: A store of more files reads their footers through pyarrow: 0.1 s to import, then
#: 60-100 us a footer, against 300-500 us in Python (``rldk.core.parquet_footer``).
ARROW_FOOTERS = 256
