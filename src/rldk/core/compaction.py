"""Compaction: merge each finished run's segment files into one (``rldk compact``).

Sits above :mod:`rldk.core.store` (it reads run statuses) and
:mod:`rldk.core.segments` (it merges), so neither needs the other's upper half.

Each directory is compacted under its store lock (the lock a writer's close-merge
takes too), after finishing what killed merges left (:func:`~rldk.core.segments.repair`),
and its files are listed again inside the lock: two ``rldk compact`` at once, or
one racing a writer's close, merge each file once. Running it again changes nothing.
"""
from __future__ import annotations

import os

from rldk.core.errors import StoreError
from rldk.core.fs import is_remote, location, open_binary
from rldk.core.naming import new_session, safe_file_stem
from rldk.core.segments import merge_segments, repair, store_lock
from rldk.core.store import open_store, resolve_files


def compact(paths, force: bool = False) -> list[dict]:
    """Merge each run's files (per directory) into one ``<run_id>.compact-<token>.parquet``.

    Runs without an ``end`` event may still be writing and are skipped unless
    ``force``. Returns one dict per run: run_id, directory, files merged, output
    file (None when skipped or already a single file) and a note. A directory that
    cannot be written (disk full, permissions) raises :class:`StoreError` naming it;
    what was merged before stays merged and nothing is half-done.
    """
    folders = sorted({os.path.dirname(f) for f in resolve_files(paths)})
    report = []
    for folder in folders:
        try:
            with store_lock(location(folder)):
                report.extend(_compact_folder(folder, paths, force))
        except Exception as exc:             # OSError, or an object storage client's error
            if isinstance(exc, StoreError) or not (isinstance(exc, OSError) or is_remote(folder)):
                raise
            reason = getattr(exc, "strerror", None) or exc
            raise StoreError(f"cannot compact {folder}: {reason}; free some space "
                             "(or fix permissions) and run `rldk compact` again") from None
    return report


def _compact_folder(folder: str, paths, force: bool) -> list[dict]:
    repaired = repair(location(folder))
    store = open_store(paths)              # listed again, inside the lock
    files = [f for f in store.files if os.path.dirname(f) == folder]
    status = dict(store.summary().select("run_id", "status").rows())    # from the footers' summaries
    groups: dict[str, list[str]] = {}
    report = []
    for path in files:
        ids = _run_ids(store, path)
        if len(ids) != 1:
            report.append({"run_id": ",".join(ids), "directory": folder, "files": 1, "output": None,
                           "note": f"{os.path.basename(path)} holds several runs; left as is"})
            continue
        groups.setdefault(ids[0], []).append(os.path.basename(path))
    for run_id, names in sorted(groups.items()):
        report.append(_compact_run(folder, run_id, names, status.get(run_id), force))
    if repaired["published"] or repaired["deleted"]:
        report.append({"run_id": "", "directory": folder, "files": repaired["deleted"], "output": None,
                       "note": f"repaired: {repaired['published']} interrupted merges finished, "
                               f"{repaired['deleted']} already-merged files removed"})
    return report


def _compact_run(folder: str, run_id: str, names: list[str], status, force: bool) -> dict:
    row = {"run_id": run_id, "directory": folder, "files": len(names), "output": None}
    if len(names) == 1:
        row["note"] = "already one file"
    elif status == "incomplete" and not force:
        row["note"] = "no end event (still running or crashed); pass --force to merge anyway"
    else:
        out = f"{safe_file_stem(run_id)}.compact-{new_session()}.parquet"   # ids from files are untrusted
        merge_segments(location(folder), sorted(names), out)
        row.update(output=out, note="merged")
    return row


def _run_ids(store, path: str) -> list[str]:
    """The run ids in one file: from its footer when each row group holds one run, else
    read from its run_id column."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    footer = store.footers.get(path)
    if footer is not None and footer.exact_runs is not None:
        return sorted(footer.exact_runs)
    with open_binary(path) as f:
        return pc.unique(pq.read_table(f, columns=["run_id"]).column("run_id")).to_pylist()
