"""RNG digests are evidence, not outcome: what a differing RNG state means for a replica.

A replica is nondeterministic only when its *outcomes* differ: a tensor checksum,
a metric, or the steps it logged (``OUTCOMES``). A generator whose state differs
explains a difference; it is not one. Per replica, the first RNG source that
differs is:

* ``cause``: the outcomes differ from the step the RNG first differs, or later:
  the likely cause (it was drawn from, and what it drew changed the run);
* ``after``: the outcomes differed first: a consequence (a data-dependent number
  of draws), not the cause;
* ``unused``: every outcome is equal: an unseeded generator that nothing used,
  harmless (an info note, not a verdict).
"""
from __future__ import annotations

from dataclasses import dataclass

#: The levels whose differences make a replica nondeterministic, strongest first.
OUTCOMES = ("tensor", "metric", "steps")


@dataclass(frozen=True)
class RngRole:
    """The first differing RNG source of one replica, and what it means.

    replica: the run id; source: the RNG source (``numpy``, ``torch``, a generator
    passed to ``log_rng``); step: the first step its digest differs; role: cause,
    after or unused (see the module); outcome_step: the replica's first differing
    outcome (None: none differs).
    """

    replica: str
    source: str
    step: int
    role: str
    outcome_step: int | None


def first_outcome(divergences, replica: str | None = None):
    """The earliest outcome divergence (of ``replica``, or any): a LevelDivergence or None."""
    found = [d for d in divergences if d.step is not None and d.level in OUTCOMES
             and (replica is None or d.replica == replica)]
    return min(found, key=lambda d: (d.step, OUTCOMES.index(d.level)), default=None)


def rng_roles(divergences) -> list[RngRole]:
    """One :class:`RngRole` per replica whose RNG digests differ, in replica order."""
    out = []
    for d in divergences:
        if d.level != "rng" or d.step is None:
            continue
        outcome = first_outcome(divergences, d.replica)
        step = outcome.step if outcome is not None else None
        role = "unused" if step is None else "cause" if d.step <= step else "after"
        out.append(RngRole(d.replica, d.name, d.step, role, step))
    return out


def likely_cause(divergences) -> RngRole | None:
    """The RNG role that explains the earliest outcome divergence, if one does."""
    first = first_outcome(divergences)
    if first is None:
        return None
    return next((r for r in rng_roles(divergences) if r.replica == first.replica and r.role == "cause"),
                None)
