"""Gathering per-run results into the result of the whole store.

An analyzer in ``PER_RUN`` looks at each run on its own and lists its items run
by run, so its result over a store is its results over each run, concatenated in
run-id order: tuple fields are concatenated, dict fields (keyed by run) united,
every other field is equal in all parts. ``tests/test_fleet.py`` checks that this
gives the whole-store result for each of them.

An analyzer in ``SPLIT`` compares runs with a baseline (``divergence``), pools
rates across runs (``safety``) or lists the runs without a reward first
(``reward_health``): it computes a part over some runs (``run_part(store, params,
run_ids)``, plain data) and puts the parts of one store together itself
(``combine(parts, params, store)``); its own ``run`` is ``combine`` of one part, so
the parts computed as separate tasks give the local result exactly.
"""
from __future__ import annotations

import dataclasses

#: Analyzers whose whole-store result is the concatenation of their per-run results.
#: (``reward_health`` is not: it lists the runs that lack a reward first, as checks.)
PER_RUN = frozenset({"summary", "nan_onset", "spikes", "health", "profile", "memory_leak",
                     "rank_desync"})
#: Analyzers that compute parts over runs and combine them (``run_part`` / ``combine``).
SPLIT = frozenset({"divergence", "safety", "reward_health"})


class NotMergeable(Exception):
    """Per-run results that do not concatenate into one (then the store is analysed whole)."""


def merge(parts):
    """One result of the same class from per-run ``parts`` (in run-id order)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if any(type(p) is not type(first) for p in parts):
        raise NotMergeable(type(first).__name__)
    values = {f.name: _merge_field(f.name, [getattr(p, f.name) for p in parts])
              for f in dataclasses.fields(first) if f.init}
    return dataclasses.replace(first, **values)


def _merge_field(name, values):
    if all(isinstance(v, tuple) for v in values):
        return tuple(x for v in values for x in v)
    if all(isinstance(v, dict) for v in values):
        return _merge_dicts(name, values)
    if all(_same(v, values[0]) for v in values[1:]):
        return values[0]
    raise NotMergeable(f"field {name!r} differs between runs")


def _merge_dicts(name, values) -> dict:
    """Dicts keyed by run (disjoint keys) are united; a dict equal in every part (a
    lookup table) is kept; anything else is an aggregate that cannot be merged."""
    if all(_same(v, values[0]) for v in values[1:]):
        return values[0]
    out: dict = {}
    for v in values:
        if set(v) & set(out):
            raise NotMergeable(f"field {name!r} has the same keys in several runs")
        out.update(v)
    return out


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:                 # arrays and other values without one truth value
        return False
