"""Compaction: merge each finished run's segment files into one (``rldk compact``).

Sits above :mod:`rldk.core.store` (it reads run statuses) and
:mod:`rldk.core.segments` (it merges), so neither needs the other's upper half.
"""
from __future__ import annotations

import os
from pathlib import Path

from rldk.core.naming import new_session
from rldk.core.segments import merge_segments
from rldk.core.store import open_store


def compact(paths, force: bool = False) -> list[dict]:
    """Merge each run's files (per directory) into one ``<run_id>.compact-<token>.parquet``.

    Runs without an ``end`` event may still be writing and are skipped unless
    ``force``. Returns one dict per run: run_id, directory, files merged, output
    file (None when skipped or already a single file) and a note.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    store = open_store(paths)
    status = {r[0]: r[1] for r in store.sql("SELECT run_id, status FROM runs").rows()}
    groups: dict[tuple[str, str], list[str]] = {}
    report = []
    for path in store.files:
        ids = pc.unique(pq.read_table(path, columns=["run_id"]).column("run_id")).to_pylist()
        if len(ids) != 1:
            report.append({"run_id": ",".join(ids), "directory": os.path.dirname(path), "files": 1,
                           "output": None, "note": f"{os.path.basename(path)} holds several runs; left as is"})
            continue
        groups.setdefault((os.path.dirname(path), ids[0]), []).append(os.path.basename(path))
    for (directory, run_id), names in sorted(groups.items()):
        row = {"run_id": run_id, "directory": directory, "files": len(names), "output": None}
        if len(names) == 1:
            row["note"] = "already one file"
        elif status.get(run_id) == "incomplete" and not force:
            row["note"] = "no end event (still running or crashed); pass --force to merge anyway"
        else:
            out = f"{run_id}.compact-{new_session()}.parquet"
            merge_segments(Path(directory), sorted(names), out)
            row.update(output=out, note="merged")
        report.append(row)
    return report
