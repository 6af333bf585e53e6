"""Splitting a store into per-run units: the files each task opens.

A unit is one run and its files (``Store.run_files``). Runs that share a file (a
file holding several runs, as an import can write) form one unit together, so
that no event is read by two tasks.
"""
from __future__ import annotations

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
    files_of = {rid: store.run_files(rid) for rid in store.run_ids}
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
