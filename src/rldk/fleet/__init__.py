"""Fleet analysis: the same analyzers fanned out over the runs of a store.

One task per run (``units``): it opens that run's files only, runs the analyzers
and returns plain data; the tasks run in this process (``engine="local"``) or as
Ray tasks (``engine="ray"``, the optional ``rldk[ray]`` extra) on one Ray instance
started once per call. Two uses:

* :func:`fleet`: one table of all runs (status, last step, reward, kl_to_ref,
  entropy, loss, verdict, worst finding): ``rldk fleet PATHS``;
* :class:`Engine`: the engine of ``rldk analyze --engine ray``: every default
  analyzer runs in the per-run tasks (``merge.PER_RUN`` results are concatenated,
  ``merge.SPLIT`` parts combined by their analyzer), so the cards are the ones a
  local ``rldk analyze`` writes.
"""
from __future__ import annotations

from rldk.analyzers import DEFAULT
from rldk.analyzers.suite import not_applicable
from rldk.data import open_input
from rldk.fleet.engines import ENGINES, NO_RAY, run_tasks
from rldk.fleet.merge import PER_RUN, SPLIT, NotMergeable, merge
from rldk.fleet.table import FleetResult
from rldk.fleet.tasks import KEY_METRICS, Failure, FleetRow, unit_results, unit_rows
from rldk.fleet.units import Unit, units

__all__ = ["ENGINES", "NO_RAY", "KEY_METRICS", "Engine", "FleetResult", "FleetRow", "Unit", "fleet",
           "units"]


def fleet(paths, engine: str = "local", workers: int | None = None) -> FleetResult:
    """Analyse each run of ``paths`` on its own with the default analyzers: a
    :class:`FleetResult` with one row per run, in run-id order."""
    store = open_input(paths)
    calls = [(u.files, footers_of(store, u.files), u.run_ids, DEFAULT, {"baseline": None})
             for u in units(store)]
    rows = run_tasks(unit_rows, calls, engine, workers)
    return FleetResult(tuple(row for unit in rows for row in unit), engine)


def footers_of(store, files) -> dict | None:
    """The footers ``store`` already read for ``files`` (a task then reads none), or None."""
    footers = store.footers
    return {f: footers[f] for f in files} if all(f in footers for f in files) else None


class Engine:
    """``rldk analyze``'s engine (``rldk.analyzers.suite.analyze(engine=...)``): the
    analyzers in ``PER_RUN`` and ``SPLIT`` run in one task per run and their results
    are gathered; the others are left to the whole store (the suite computes them)."""

    def __init__(self, engine: str = "ray", workers: int | None = None):
        self.engine, self.workers = engine, workers

    def __call__(self, store, analyzers, options) -> dict:
        parts = units(store)
        if [r for u in parts for r in u.run_ids] != list(store.run_ids):
            return {}                       # runs sharing files interleave: analyse whole
        split = [a for a in analyzers if a.name in SPLIT and _splits(a, store, options)]
        names = [a.name for a in analyzers if a.name in PER_RUN] + [a.name for a in split]
        if not names:
            return {}
        base = next((u.files for u in parts if options.get("baseline") in u.run_ids), ())
        calls = []
        for u in parts:
            files = tuple(sorted({*u.files, *base}))
            calls.append((u.files, footers_of(store, files), names, dict(options),
                          tuple(a.name for a in split), base))
        results = run_tasks(unit_results, calls, self.engine, self.workers)
        out = {}
        for name in names:
            if name not in SPLIT:
                gathered = _gather([r[name] for r in results])
                if gathered is not None:
                    out[name] = gathered
        for analyzer in split:
            out[analyzer.name] = _combined(analyzer, [r[analyzer.name] for r in results], options, store)
        return out


def _splits(analyzer, store, options) -> bool:
    """Whether ``analyzer``'s parts can be computed per run with these options: divergence
    needs a baseline in the store; reward_health no against/validation run."""
    params = analyzer.params(**options)
    if analyzer.name == "divergence":
        return params.baseline in store.run_ids
    return getattr(params, "against", None) is None and getattr(params, "validation", None) is None


def _gather(parts):
    """A callable returning the merged result (or raising as the whole store would),
    or None when the parts do not merge (then the store is analysed whole)."""
    errors = [p for p in parts if isinstance(p, Failure) and p.kind == "error"]
    done = [p for p in parts if not isinstance(p, Failure)]
    if errors:
        return errors[0].raise_it
    if not done:
        missing = [p for p in parts if p.kind == "missing"]
        return (missing or parts)[0].raise_it
    try:
        merged = merge(done)
    except NotMergeable:
        return None
    return lambda: merged


def _combined(analyzer, parts, options, store):
    """A callable returning the split analyzer's result from its parts (``Part``), or
    raising as the whole store would: the first error, or not applicable when no
    unit has the analyzer's events."""
    errors = [p.part for p in parts if isinstance(p.part, Failure)]
    if errors:
        return errors[0].raise_it

    def combine():
        if not any(p.applies for p in parts):
            raise not_applicable(analyzer)
        return analyzer.combine([p.part for p in parts], analyzer.params(**options), store)
    return combine
