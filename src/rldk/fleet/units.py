"""Splitting a store into per-run units: the files each task opens.

A unit is one run and its files. Runs that share a file (a file holding several
runs, as an import can write) form one unit together, so that no event is read by
two tasks. The files of every run come from one pass over the footers (a file's
row groups name the runs they hold), not from a search of all files per run: the
split costs time linear in files and runs.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class Unit:
    """Runs analysed by one task (usually one) and the event files holding them."""

    run_ids: tuple[str, ...]
    files: tuple[str, ...]


def units(store) -> list[Unit]:
    """The store's units, in run-id order (runs that share a file are one unit)."""
    parent = {rid: rid for rid in store.run_ids}

    def root(rid):
        while parent[rid] != rid:
            parent[rid] = parent[parent[rid]]
            rid = parent[rid]
        return rid

    owner: dict[str, str] = {}
    files_of = files_by_run(store)
    for rid, files in files_of.items():
        for f in files:
            if f in owner:
                parent[root(rid)] = root(owner[f])
            else:
                owner[f] = rid
    groups: dict[str, list[str]] = {}
    for rid in store.run_ids:
        groups.setdefault(root(rid), []).append(rid)
    out = []
    for rids in groups.values():
        files = sorted({f for rid in rids for f in files_of[rid]})
        out.append(Unit(tuple(sorted(rids)), tuple(files)))
    return sorted(out, key=lambda u: u.run_ids[0])


def files_by_run(store) -> dict[str, list[str]]:
    """``{run id: the files that may hold it}`` (``Store.run_files`` of every run at once):
    a file's footer names its runs (a run_id range per row group); a file without
    run_id statistics may hold any run."""
    run_ids = list(store.run_ids)          # sorted
    out: dict[str, list[str]] = {rid: [] for rid in run_ids}
    for f in store.files:
        footer = store.footers.get(f)
        if footer is None or footer.runs is None:
            holders = run_ids
        else:
            holders = sorted({run_ids[i] for lo, hi in footer.runs
                              for i in range(bisect.bisect_left(run_ids, lo),
                                             bisect.bisect_right(run_ids, hi))})
        for rid in holders:
            out[rid].append(f)
    return out
