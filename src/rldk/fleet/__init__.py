"""Fleet analysis: the same analyzers fanned out over the runs of a store.

One task per run (``units``): it opens that run's files only, runs the analyzers
and returns plain data; the tasks run in this process (``engine="local"``) or as
Ray tasks (``engine="ray"``, the optional ``rldk[ray]`` extra). Two uses:

* :func:`fleet`: one table of all runs (status, last step, reward, kl_to_ref,
  entropy, loss, verdict, worst finding): ``rldk fleet PATHS``;
* :class:`Engine`: the engine of ``rldk analyze --engine ray``: the per-run
  analyzers' results are gathered into the whole store's result
  (``merge``), so the cards are the ones a local ``rldk analyze`` writes.
"""
from __future__ import annotations

from rldk.analyzers import DEFAULT
from rldk.data import open_input
from rldk.fleet.engines import ENGINES, NO_RAY, run_tasks
from rldk.fleet.merge import PER_RUN, NotMergeable, merge
from rldk.fleet.table import FleetResult
from rldk.fleet.tasks import KEY_METRICS, Failure, FleetRow, unit_results, unit_rows
from rldk.fleet.units import Unit, units

__all__ = ["ENGINES", "NO_RAY", "KEY_METRICS", "Engine", "FleetResult", "FleetRow", "Unit", "fleet",
           "units"]


def fleet(paths, engine: str = "local", workers: int | None = None) -> FleetResult:
    """Analyse each run of ``paths`` on its own with the default analyzers: a
    :class:`FleetResult` with one row per run, in run-id order."""
    store = open_input(paths)
    calls = [(u.files, u.run_ids, DEFAULT, {"baseline": None}) for u in units(store)]
    rows = run_tasks(unit_rows, calls, engine, workers)
    return FleetResult(tuple(row for unit in rows for row in unit), engine)


class Engine:
    """``rldk analyze``'s engine (``rldk.analyzers.suite.analyze(engine=...)``): the
    analyzers in ``PER_RUN`` run as one task per run and their results are merged;
    the others are left to the whole store (the suite computes them)."""

    def __init__(self, engine: str = "ray", workers: int | None = None):
        self.engine, self.workers = engine, workers

    def __call__(self, store, analyzers, options) -> dict:
        names = [a.name for a in analyzers if a.name in PER_RUN]
        parts = units(store)
        if not names or [r for u in parts for r in u.run_ids] != list(store.run_ids):
            return {}
        calls = [(u.files, names, dict(options)) for u in parts]
        results = run_tasks(unit_results, calls, self.engine, self.workers)
        out = {}
        for name in names:
            gathered = _gather([r[name] for r in results])
            if gathered is not None:
                out[name] = gathered
        return out


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
