"""What the detectors of one run share: its data, its windows, and what they found."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from rldk.analyzers.reward_health.data import (
    VAL_SPLITS,
    Samples,
    Series,
    load_series,
    pick_name,
)
from rldk.analyzers.reward_health.params import Params
from rldk.core.report import Check, Finding


@dataclass
class Context:
    """One run under analysis (built once per run; the detectors append to it).

    windows: per-window rows (run_id, window, first_step, last_step, reward_mean,
    top_share, group_std, zero_std_share, length_rho) that detectors fill in.
    """

    run: object
    params: Params
    reward: Series | None
    all_samples: Samples         # every sample event of the run
    names: list[str]
    windows: list[dict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @cached_property
    def samples(self) -> Samples:
        """The policy's training samples: not validation, not preference pairs."""
        s = self.all_samples
        return s.select(np.array([sp not in VAL_SPLITS and pr is None
                                  for sp, pr in zip(s.split, s.pair)], dtype=bool))

    def ran(self, detector: str, detail: str) -> None:
        self.checks.append(Check(detector, "ran", detail, self.run.id))

    def skipped(self, detector: str, why: str) -> None:
        """Record that ``detector`` could not run; ``why`` says what to log to enable it."""
        self.checks.append(Check(detector, "skipped", why, self.run.id))

    def find(self, code, severity, title, metric=None, steps=None, evidence=None, fix="") -> None:
        steps = None if steps is None else (int(steps[0]), int(steps[1]))
        self.findings.append(Finding(code, severity, title, self.run.id, metric, steps,
                                     finite_json(evidence or {}), fix))

    def series(self, wanted: str | None, quantity) -> Series | None:
        """The run's metric for ``quantity`` (or the named ``wanted`` one), or None."""
        return load_series(self.run, pick_name(self.names, wanted, quantity))


def finite_json(obj):
    """``obj`` with NumPy values as Python ones and non-finite floats as None (evidence is JSON)."""
    if isinstance(obj, dict):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
