"""Following a growing store: each committed segment is read once, as it appears.

A :class:`Tailer` polls its paths (a listing and one ``stat`` per file: it works on
network filesystems where change notifications never arrive). Writers commit a
segment by renaming a complete, fsynced file into place and name their
temporaries with a leading dot, so a visible ``*.parquet`` file is whole; a file
that still cannot be read (a foreign tool copying a file in place) is retried
when it changes and reported once, in one line.

A store on object storage (``s3://bucket/prefix``, any fsspec URL) is listed
through the store reader's own listing (:func:`rldk.core.files.remote_listing`:
one LIST per poll, sizes and ETags, no cache) and read through its filesystem. An
object is listed only once its upload is complete (one PUT; a multipart upload in
progress is not listed), so there too a listed segment is whole. Merges on object
storage take no lock: a second merged file covering inputs another merged file
already replaced is held unread (``rldk compact`` removes one of them).

What a poll returns (:class:`Update`): the rows of the files that appeared
(``metric`` and ``run`` events only: what the live view shows), and the runs to
*reload*: a run whose files changed otherwise than by a new segment (a file
deleted, truncated or rewritten, or a compacted file covering segments not read
yet) is read again from its remaining files, so its state never double-counts
or keeps rows that are gone. A compacted file covering only segments already read
costs nothing: it takes their place unread. Foreign logs (a TRL output dir,
JSONL, TensorBoard files) are converted again through :mod:`rldk.data` when
their files change, and the converted store is followed like any other.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field

from rldk.core.errors import RldkError, StoreError
from rldk.core.files import remote_listing
from rldk.core.fs import ObjectDir, is_remote, open_binary
from rldk.core.naming import is_visible_segment
from rldk.core.segments import file_metadata
from rldk.data import open_input
from rldk.schemas import META_COVERS, arrow_schema

#: Columns the live view reads (payloads it never shows are not read).
COLUMNS = ("run_id", "rank", "seq", "step", "wall_time", "kind", "name", "value", "attrs")
#: Event kinds the live view keeps from each segment.
KINDS = ("metric", "run")


@dataclass
class Update:
    """What one poll found: ``tables`` of new rows (pyarrow, ``COLUMNS``), run ids to
    ``reload`` (drop their state first: their tables are in ``tables``), runs
    ``removed`` (no file holds them any more), and one-line ``warnings``."""

    tables: list = field(default_factory=list)
    reload: set = field(default_factory=set)
    removed: set = field(default_factory=set)
    warnings: list = field(default_factory=list)


class Tailer:
    """Follows ``paths`` (store directories, globs, files, or foreign logs).

    ``run_id``: follow one run only (files named ``<run_id>.*`` and its rows), as a
    guard inside a training process does. ``adapter``: convert every path with
    this converter format (as ``rldk import --adapter``).
    """

    def __init__(self, paths, adapter: str | None = None, run_id: str | None = None):
        single = isinstance(paths, (str, os.PathLike, ObjectDir))
        self.paths = [str(p) for p in ([paths] if single else paths)]
        self.adapter, self.run_id = adapter, run_id
        self.known: dict[str, tuple] = {}        # file -> (size, mtime_ns) when read
        self.file_runs: dict[str, set] = {}      # file -> run ids it holds
        self.covered: set[str] = set()           # files a compacted file replaces
        self.bad: dict[str, tuple] = {}          # unreadable file -> its signature then
        self.merged: dict[str, set] = {}         # merged file read -> the files it covers
        self.redundant: dict[str, tuple] = {}    # merged file -> (signature, covers): another holds them
        self._foreign: dict[str, tuple] = {}     # foreign path -> (signature, converted files)
        self._warned: set = set()

    # ------------------------------------------------------------------ polling
    def poll(self) -> Update:
        """Read what changed since the last poll (never raises for a bad file or path)."""
        update = Update()
        listed = self._list(update)
        for path in [f for f, sig in listed.items() if f in self.known and sig != self.known[f]]:
            if not self._converted_file(path):
                self._warn(update, ("rewritten", path), f"{path}: changed after it was committed "
                           "(truncated or rewritten); its run is read again")
            update.reload |= self._forget(path)
        new = {p: sig for p, sig in sorted(listed.items())
               if p not in self.known and p not in self.covered and self.bad.get(p) != sig
               and p not in self.redundant}
        covers = self._covers_of(new, update)
        for path, covered in covers.items():       # compacted files first: they retire segments
            if covered:
                self._compacted(path, new[path], covered, update)
        for path in [f for f in self.known if f not in listed and f not in self.covered]:
            update.reload |= self._forget(path)     # deleted: its runs are read again
        self._unheld(listed, update)
        for path, covered in covers.items():
            if not covered and path not in self.covered:
                self._add(path, new[path], update)
        self._reload(update, listed)
        return update

    def _converted_file(self, path: str) -> bool:
        return any(path in files for _sig, files in self._foreign.values())

    def run_files(self, run_id: str) -> list[str]:
        """The committed files holding ``run_id``, sorted (what an analyzer reads)."""
        return sorted(f for f, runs in self.file_runs.items() if run_id in runs and f not in self.covered)

    # ------------------------------------------------------------------ listing
    def _list(self, update: Update) -> dict[str, tuple]:
        """Every visible event file now, with its signature: (size, mtime_ns) of a local
        file, (size, etag) of an object."""
        out: dict[str, tuple] = {}
        for path in self.paths:
            if is_remote(path):
                out.update(self._objects(path, update))
                continue
            for f in self._files_of(path, update):
                try:
                    st = os.stat(f)
                except OSError:                      # vanished between listing and stat
                    continue
                out[f] = (st.st_size, st.st_mtime_ns)
        return out

    def _objects(self, url: str, update: Update) -> dict[str, tuple]:
        """The committed segment objects under ``url`` (the store reader's listing: an
        object shows once its upload completed), of ``run_id`` only when following one."""
        try:
            listed = remote_listing(url)
        except StoreError as exc:
            self._warn(update, ("list", url), str(exc))
            return {}
        prefix = f"{self.run_id}." if self.run_id else ""
        return {f: sig for f, sig in listed.items()
                if is_visible_segment(_name(f)) and _name(f).startswith(prefix)}

    def _files_of(self, path: str, update: Update) -> list[str]:
        if self.adapter is None and _is_store_path(path):
            return self._store_files(path)
        return self._converted(path, update)

    def _store_files(self, path: str) -> list[str]:
        if os.path.isdir(path):
            pattern = f"{glob.escape(self.run_id)}.*.parquet" if self.run_id else "*.parquet"
            found = glob.glob(os.path.join(glob.escape(path), "**", pattern), recursive=True)
        elif glob.has_magic(path):
            found = glob.glob(path, recursive=True)
        else:
            found = [path] if os.path.isfile(path) else []
        return [os.path.abspath(f) for f in found if is_visible_segment(os.path.basename(f))]

    def _converted(self, path: str, update: Update) -> list[str]:
        """A foreign log's converted store files, converted again when the log changed."""
        sig = _tree_signature(path)
        before = self._foreign.get(path)
        if before is not None and before[0] == sig:
            return before[1]
        try:
            files = [os.path.abspath(f) for f in open_input(path, self.adapter).files]
        except RldkError as exc:
            self._warn(update, ("convert", path, str(exc)), f"{path}: {exc}")
            return before[1] if before else []
        self._foreign[path] = (sig, files)
        return files

    # ------------------------------------------------------------------ reading
    def _covers_of(self, new: dict, update: Update) -> dict[str, set]:
        """For each new file, the files it replaces (empty for a plain segment)."""
        out = {}
        for path, sig in new.items():
            try:
                names = _covers(path)
            except FileNotFoundError:
                continue                              # compacted away already: next listing
            except Exception as exc:
                self._unreadable(path, sig, exc, update)
                continue
            folder = path.rsplit("/", 1)[0] if is_remote(path) else os.path.dirname(path)
            out[path] = {f"{folder}/{n}" if is_remote(path) else os.path.join(folder, n) for n in names}
        return out

    def _compacted(self, path: str, sig: tuple, covered: set, update: Update) -> None:
        if any(covered <= held for held in self.merged.values()):
            # a second merge of files another merged file already replaced (object
            # stores have no lock): its rows are held; `rldk compact` deletes one of them
            self.redundant[path] = (sig, covered)
            return
        self.merged[path] = covered
        if covered <= set(self.known):
            self._take_place(path, sig, covered)      # every row already read: nothing to do
            return
        for old in covered & set(self.known):         # partly read: read its runs again
            update.reload |= self._forget(old)
        self.covered |= covered
        self._add(path, sig, update)

    def _add(self, path: str, sig: tuple, update: Update) -> None:
        table = self._read(path, sig, update)
        if table is not None:
            self.known[path] = sig
            self.file_runs[path] = set(table.column("run_id").unique().to_pylist())
            update.tables.append(table)

    def _take_place(self, path: str, sig: tuple, covered: set) -> None:
        runs = set().union(*(self.file_runs.get(c, set()) for c in covered))
        for old in covered:
            self.known.pop(old, None)
            self.file_runs.pop(old, None)
        self.covered |= covered
        self.known[path], self.file_runs[path] = sig, runs

    def _read(self, path: str, sig: tuple, update: Update):
        try:
            return read_events(path, self.run_id)
        except FileNotFoundError:
            return None
        except Exception as exc:
            self._unreadable(path, sig, exc, update)
            return None

    def _unreadable(self, path, sig, exc, update) -> None:
        self.bad[path] = sig
        self._warn(update, ("bad", path), f"{path}: not a readable rldk event file "
                   f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}); "
                   "skipped (move it out of the store)")

    def _forget(self, path: str) -> set:
        """Drop a file that vanished or changed; the runs it held must be read again."""
        self.known.pop(path, None)
        self.merged.pop(path, None)
        return self.file_runs.pop(path, set())

    def _unheld(self, listed: dict, update: Update) -> None:
        """Redundant merged files still listed whose twin is gone are read in its place."""
        for path, (sig, covered) in list(self.redundant.items()):
            if path not in listed or not any(covered <= held for held in self.merged.values()):
                del self.redundant[path]
                if path in listed:
                    self._compacted(path, sig, covered, update)

    def _reload(self, update: Update, listed: dict) -> None:
        """Read every remaining file of the runs to reload; a run with none is removed."""
        if not update.reload:
            return
        import pyarrow.compute as pc

        runs = sorted(update.reload)
        update.tables = [t.filter(pc.invert(_isin(t, "run_id", runs))) for t in update.tables]
        for run_id in runs:
            files = self.run_files(run_id)
            if not files:
                update.removed.add(run_id)
            for f in files:
                table = self._read(f, listed.get(f), update)
                if table is not None:
                    update.tables.append(table.filter(_equals(table, "run_id", run_id)))
        update.reload -= update.removed

    def _warn(self, update: Update, key, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            update.warnings.append(message)


def read_events(path: str, run_id: str | None = None):
    """The ``metric`` and ``run`` rows of one event file (``COLUMNS``; pyarrow Table).
    Raises for a file that is not a readable rldk event file; an object is read
    through the store's filesystem (:mod:`rldk.core.fs`)."""
    import pyarrow.parquet as pq

    if is_remote(path):
        with open_binary(path) as f:
            return _events_of(pq.ParquetFile(f), run_id)
    return _events_of(pq.ParquetFile(path), run_id)


def _events_of(pf, run_id: str | None):
    import pyarrow as pa

    names = set(pf.schema_arrow.names)
    if not {"run_id", "kind", "name"} <= names:
        raise ValueError("no run_id/kind/name columns")
    present = [c for c in COLUMNS if c in names]
    table = pf.read(columns=present, use_threads=False)   # thread pools keep memory per thread
    keep = _isin(table, "kind", KINDS)
    if run_id is not None:
        keep = pa.compute.and_(keep, _equals(table, "run_id", run_id))
    table = table.filter(keep)
    for column in COLUMNS:
        if column not in present:
            table = table.append_column(column, pa.nulls(table.num_rows, arrow_schema().field(column).type))
    return table.select(list(COLUMNS))


def _equals(table, column: str, value):
    import pyarrow.compute as pc

    return pc.fill_null(pc.equal(table.column(column).cast("string"), value), False)


def _isin(table, column: str, values):
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.fill_null(pc.is_in(table.column(column).cast("string"), pa.array(values)), False)


def _covers(path: str) -> list[str]:
    """The segment names a compacted file replaces (empty for a plain segment)."""
    meta = file_metadata(path)
    return json.loads(meta[META_COVERS]) if META_COVERS in meta else []


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _is_store_path(path: str) -> bool:
    """A store directory (even an empty one, before the run's first segment), a glob,
    or a Parquet file; anything else is a foreign log."""
    if os.path.isdir(path):
        return _has_parquet_or_empty(path)
    return glob.has_magic(path) or path.endswith(".parquet") or not os.path.exists(path)


def _has_parquet_or_empty(path: str) -> bool:
    for _root, _dirs, files in os.walk(path):
        if any(f.endswith(".parquet") for f in files):
            return True
        if files:
            return False
    return True


def _tree_signature(path: str) -> tuple:
    """(files, total size, newest mtime) of a foreign log file or directory."""
    entries = [path] if os.path.isfile(path) else [
        os.path.join(root, f) for root, _dirs, files in os.walk(path) for f in files]
    size = newest = 0
    for f in entries:
        try:
            st = os.stat(f)
        except OSError:
            continue
        size, newest = size + st.st_size, max(newest, st.st_mtime_ns)
    return len(entries), size, newest
