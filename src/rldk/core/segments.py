"""Writing store files: atomic segment writes and merging segments into one file.

Every file is written under a hidden temporary name, fsynced and renamed into
place, so readers only ever see complete files.

Merging (a writer's close, ``rldk compact``) holds the store's lock
(:func:`store_lock`) and goes through a hidden *pending* file, so that a plain
``runs/*.parquet`` glob never counts an event twice, whatever instant the process
dies at:

1. write the merged rows to ``.<out>.<pid>.tmp``, fsync;
2. rename it to ``.<out>.merging`` (hidden, not ``*.parquet``), fsync the directory;
   its footer lists the input files it covers;
3. delete the inputs, fsync the directory;
4. rename ``.<out>.merging`` to ``<out>``, fsync the directory.

Killed in 1: an orphan ``.tmp`` (hidden; removed by :func:`repair`). Killed in
2-4: the pending file holds every event; rldk readers read it in place of the
inputs it covers that are still there, so rldk counts right at once; plain globs
never see both copies, but miss the events of inputs already deleted until the
next rldk open of the store (a writer's init, ``rldk compact``, any reader with
write access) rolls the merge forward (:func:`repair`). That window is the time
it takes to unlink the inputs (microseconds) and is the one thing not closable
without a directory rename.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from rldk.core.errors import StoreError
from rldk.core.naming import (
    LOCK_NAME,
    final_of_pending,
    is_pending,
    pending_name,
    temp_name,
    temp_pid,
)

#: an orphan temporary file is removed once its process is gone and it is this old
ORPHAN_SECS = 600.0


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


def merge_segments(directory: Path, names: list[str], out_name: str, rows_per_group: int = 1 << 18) -> bool:
    """Merge segment files into ``out_name`` (streaming, bounded memory), then delete them.

    The caller holds :func:`store_lock`. The sequence (pending file, deletes,
    publish) is in the module docstring. Inputs already gone (merged by another
    process) are left out; returns False when fewer than two inputs remain and
    nothing was done.
    """
    directory = Path(directory)
    names = [n for n in names if n != out_name and (directory / n).is_file()]
    if len(names) < 2:
        return False
    pending = pending_name(out_name)
    _write_merged(directory, names, pending, rows_per_group)
    fsync_dir(directory)
    _publish(directory, pending, names)
    return True


def _write_merged(directory: Path, names: list[str], out_name: str, rows_per_group: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rldk.schemas import arrow_schema, conform, file_version

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


def _publish(directory: Path, pending: str, covered) -> None:
    """Steps 3 and 4: delete the covered inputs, then give the pending file its final name."""
    for name in covered:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / name)
    fsync_dir(directory)
    os.replace(directory / pending, directory / final_of_pending(pending))
    fsync_dir(directory)


def covered_names(path) -> list[str]:
    """File names (same directory) that the merged file at ``path`` replaces."""
    from rldk.schemas import META_COVERS

    meta = file_metadata(path)
    return json.loads(meta[META_COVERS]) if META_COVERS in meta else []


def fsync_dir(directory: Path) -> None:
    """Make renames and deletes in ``directory`` durable (a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def store_lock(directory: Path, blocking: bool = True):
    """Hold the store directory's lock (``fcntl.flock`` on ``.rldk.lock``) for merges.

    Yields True when held; with ``blocking=False`` yields False at once when another
    process holds it. The kernel drops the lock when its holder dies, so a killed
    merge never blocks the store. Where ``fcntl`` is missing (Windows) merges run
    unlocked and that is documented.
    """
    try:
        import fcntl
    except ImportError:      # pragma: no cover - not POSIX
        yield True
        return
    fd = os.open(Path(directory) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)       # closing the descriptor releases the lock


def repair(directory: Path) -> dict:
    """Finish what killed processes left in ``directory``; the caller holds :func:`store_lock`.

    * a pending merge (``.<out>.merging``): delete the inputs it covers, publish it;
    * a published merged file whose inputs are still there (a store written by an
      older rldk, killed between its rename and its deletes): delete those inputs;
    * orphan temporaries (``.*.tmp``) of processes that are gone, older than
      :data:`ORPHAN_SECS`: delete them.

    Returns counts: ``published``, ``deleted`` (covered inputs), ``orphans``.
    """
    directory = Path(directory)
    done = {"published": 0, "deleted": 0, "orphans": 0}
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return done
    for name in entries:
        if is_pending(name):
            _publish(directory, name, covered_names(directory / name))
            done["published"] += 1
    for name in sorted(os.listdir(directory)):
        if name.endswith(".parquet") and not name.startswith("."):
            done["deleted"] += _delete_covered(directory, name)
        elif _is_orphan(directory / name):
            with contextlib.suppress(OSError):
                os.unlink(directory / name)
                done["orphans"] += 1
    return done


def _delete_covered(directory: Path, name: str) -> int:
    try:
        covered = covered_names(directory / name)
    except Exception:                 # unreadable: readers report it; nothing to repair here
        return 0
    count = 0
    for other in covered:
        if other != name and (directory / other).is_file():
            os.unlink(directory / other)
            count += 1
    if count:
        fsync_dir(directory)
    return count


def _is_orphan(path: Path) -> bool:
    pid = temp_pid(path.name)
    if pid is None:
        return False
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return False
    return age > ORPHAN_SECS and not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def repair_quietly(directory: Path) -> None:
    """:func:`repair` when the lock is free and the directory writable; else nothing
    (readers call this: they must never fail or wait because of it)."""
    directory = Path(directory)
    if not os.access(directory, os.W_OK):
        return
    with contextlib.suppress(OSError, StoreError), store_lock(directory, blocking=False) as held:
        if held:
            repair(directory)


def write_file_atomic(path, data: bytes | str) -> None:
    """Write a report or table file whole or not at all (temp file, fsync, rename).

    Raises :class:`StoreError` naming the file and the reason (disk full,
    permission) instead of leaving a truncated file behind.
    """
    path = Path(path)
    tmp = path.with_name(temp_name(path.name))
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}; free some space or "
                         "choose another output path") from None
