"""Replicas compared with the reference replica at every level: tensor, RNG, metric, steps.

The bitwise levels use :func:`rldk.analyzers.divergence.compare_digests`; the metric
level :func:`rldk.analyzers.divergence.first_divergence` in exact mode. A level a
run does not log is recorded as skipped, with what to log.
"""
from __future__ import annotations

from rldk.analyzers import _series
from rldk.analyzers.determinism.metrics import compared_metrics
from rldk.analyzers.determinism.result import LEVELS, LevelDivergence
from rldk.analyzers.divergence import compare_digests, first_divergence
from rldk.core.errors import MissingEvents, UsageError

STEP_SETS_SQL = """
SELECT run_id, list_sort(list(DISTINCT step)) AS steps
FROM events
WHERE step IS NOT NULL AND kind IN ('metric', 'tensor', 'rng') AND run_id IN (SELECT unnest($ids))
GROUP BY run_id
"""

_LOG_HOW = {"tensor": "log them with rldk.writer.log_tensors(step, model, 'grad') in every replica",
            "rng": "log them with rldk.writer.log_rng(step) in every replica"}


def replica_runs(store, runs) -> list:
    """The Runs named by ``runs`` (None: every run of the store); at least two."""
    chosen = [store.run(r) for r in runs] if runs else store.runs()
    if len(chosen) < 2:
        raise UsageError(f"a determinism check needs at least 2 replica runs; the store has "
                         f"{len(chosen)}: {', '.join(r.id for r in chosen) or 'none'}")
    return chosen


def step_window(store, run_ids: list[str], steps: int | None) -> list[int]:
    """Steps logged by every replica, sorted; the first ``steps`` of them if given."""
    sets = step_sets(store, run_ids, (None, None))
    if not any(sets.values()):
        raise MissingEvents(f"runs {', '.join(run_ids)} have no metric, tensor or rng events with a "
                            "step: log them with rldk.writer.log / log_tensors / log_rng")
    common = sorted(set.intersection(*(sets.get(r, set()) for r in run_ids)))
    if not common:
        raise MissingEvents(f"runs {', '.join(run_ids)} share no step: nothing to compare")
    if steps is not None and len(common) < steps:
        raise MissingEvents(f"runs {', '.join(run_ids)} share {len(common)} steps, fewer than the "
                            f"{steps} asked (--steps)")
    return common[:steps] if steps is not None else common


def compare_replicas(store, runs, signals, window):
    """Each replica against the first: ``(levels compared, divergences, comparisons)``."""
    out, comparisons = [], []
    ids = [r.id for r in runs]
    for other in runs[1:]:
        found, div = pair(store, runs[0], other, signals, window, ids)
        if div is not None:
            comparisons.append({k: v for k, v in div.to_dict().items() if k != "curve"})
        out += found
    levels = {d.level for d in out if d.compared}
    return tuple(lv for lv in LEVELS if lv in levels), out, comparisons


def compare_runs(store, reference, other, signals=None, window=(None, None)) -> list[LevelDivergence]:
    """``other`` against ``reference`` (Runs of ``store``) at every level.

    One :class:`LevelDivergence` per level (tensor, rng, metric: skipped when a run
    does not log it; steps), restricted to steps within ``window`` (inclusive; None:
    open). Metrics are compared exactly, names resolved through :mod:`rldk.semantics`.
    """
    ids = [reference.id, other.id]
    sets = step_sets(store, ids, (None, None))
    common = sorted(sets.get(ids[0], set()) & sets.get(ids[1], set()))
    if not common:
        raise MissingEvents(f"runs {ids[0]} and {ids[1]} share no step: nothing to compare")
    lo = window[0] if window[0] is not None else common[0]
    hi = window[1] if window[1] is not None else common[-1]
    return pair(store, reference, other, signals, (lo, hi), ids)[0]


def pair(store, reference, other, signals, window, ids):
    """``(divergences, Divergence or None)`` of one run against the reference over ``window``."""
    a, b = _series.Source(store, reference.id), _series.Source(store, other.id)
    found = [_bitwise_level(other.id, level, compare_digests(a, b, level), window) for level in ("tensor", "rng")]
    names, skipped = compared_metrics(store, ids, signals)
    div = None
    if names:
        div = first_divergence(a, b, [s.signal for s in names], mode="exact", bitwise=False)
        found.append(_metric_level(other.id, div.signals, window, skipped))
    else:
        found.append(LevelDivergence(other.id, "metric", None, None, {"left_out": skipped},
                                     f"no comparable metric (left out as clock/throughput/memory: "
                                     f"{', '.join(skipped) or 'none'}): log training metrics or "
                                     "name them with --signals"))
    sets = step_sets(store, [reference.id, other.id], window)
    found.append(_steps_level(other.id, sets.get(reference.id, set()), sets.get(other.id, set()), window))
    return found, div


def _in_window(step, window) -> bool:
    return step is not None and window[0] <= step and (window[1] is None or step <= window[1])


def _bitwise_level(replica, level, ev, window) -> LevelDivergence:
    if ev is None:
        return LevelDivergence(replica, level, None, None, {"first_step": window[0]},
                               f"not logged by both runs: {_LOG_HOW[level]}")
    detail = {"first_step": window[0], "compared": ev.compared, "steps": ev.steps,
              "only_reference": ev.only_a, "only_replica": ev.only_b}
    if not _in_window(ev.first_step, window):
        return LevelDivergence(replica, level, None, None, detail)
    detail.update(differing=ev.differing, names=list(ev.names))
    return LevelDivergence(replica, level, ev.first_step, ev.first_name, detail)


def _metric_level(replica, signals, window, skipped) -> LevelDivergence:
    detail = {"first_step": window[0], "signals": len(signals), "left_out": list(skipped)}
    found = [s for s in signals if _in_window(s.exact_step, window)]
    if not found:
        return LevelDivergence(replica, "metric", None, None, detail)
    first = min(found, key=lambda s: s.exact_step)
    at = [s for s in found if s.exact_step == first.exact_step]
    detail.update(names=[s.signal for s in at], value_reference=first.value_a, value_replica=first.value_b)
    return LevelDivergence(replica, "metric", first.exact_step, first.signal, detail)


def step_sets(store, ids, window) -> dict[str, set]:
    """run id -> the steps it logged metrics, tensors or RNG at, within ``window``."""
    lo, hi = window
    frame = store.sql(STEP_SETS_SQL, {"ids": ids})
    return {row["run_id"]: {s for s in row["steps"] if (lo is None or s >= lo) and (hi is None or s <= hi)}
            for row in frame.iter_rows(named=True)}


def _steps_level(replica, ref: set, other: set, window) -> LevelDivergence:
    only_ref, only_other = sorted(ref - other), sorted(other - ref)
    detail = {"first_step": window[0], "only_reference": only_ref[:20], "only_replica": only_other[:20]}
    if not only_ref and not only_other:
        return LevelDivergence(replica, "steps", None, None, detail)
    step = min(only_ref[:1] + only_other[:1])
    name = "step missing in replica" if only_ref and only_ref[0] == step else "extra step in replica"
    return LevelDivergence(replica, "steps", step, name, detail)
