"""Parameters of the health rules and the helpers every rule shares."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rldk.core.report import Finding


@dataclass(frozen=True)
class Params:
    """Thresholds of the KL rules (``rldk.analyzers.health.kl``). The onset rules take
    theirs from ``rldk.detectors.rules``, where each is named and justified.

    negative_kl_tol: a mean KL below minus this is negative [1e-4 nats].
    kl_target: the KL controller's target [None: from the run's config].
    kl_band: tolerated excess over the target [0.2].
    stuck_fraction: share of the run a frozen coefficient must span [0.25].
    """

    negative_kl_tol: float = 1e-4
    kl_target: float | None = None
    kl_band: float = 0.2
    stuck_fraction: float = 0.25


class NotApplicable(Exception):
    """A rule cannot judge this run (the message says why); never a silent pass."""


def finite(s):
    """``(steps, values)`` of a series without its non-finite values."""
    keep = np.isfinite(s.values)
    return s.steps[keep], s.values[keep]


def at_least(values, n):
    if len(values) < n:
        raise NotApplicable(f"{len(values)} finite value(s), the rule needs {n}")


def finding(code, severity, title, run, canonical, steps, evidence, fix) -> Finding:
    """A finding of ``run`` on quantity ``canonical`` over ``steps`` (first, last)."""
    return Finding(code=code, severity=severity, title=title, run_id=run.run_id,
                   metric=run.names.get(canonical, canonical),
                   steps=(int(steps[0]), int(steps[-1])) if len(steps) else None,
                   evidence=evidence, fix=fix)
