"""What a rule reports: a change of regime, from its onset step, with its evidence."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    """A detected change of regime: ``code`` (the event), the ``metric`` as logged,
    ``onset`` (first step of the new state) and ``last`` step, ``severity``, a one-line
    ``title`` and the ``evidence`` (levels, steps, thresholds)."""

    code: str
    metric: str
    onset: int
    last: int
    severity: str
    title: str
    evidence: dict = field(default_factory=dict)
