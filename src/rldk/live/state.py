"""What the live view keeps of each run: bounded, updated in time proportional to the
new rows, never to the run.

Per run: each metric's last step and value and its last ``SPARK_POINTS`` values
(for sparklines), the highest step, the newest event time, the status from the
run's ``end`` event, and the findings of its last evaluation. Memory per run is
bounded by the number of metric names, whatever the run's length.
"""
from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from rldk import semantics
from rldk.core.report import SEVERITIES

#: Quantities shown for each run (resolved to the run's own names through
#: ``rldk.semantics``), in order.
SHOWN = ("reward", "kl_to_ref", "entropy", "loss", "grad_norm", "response_length")
#: Values kept per metric for its sparkline.
SPARK_POINTS = 40


@dataclass(frozen=True)
class LiveFinding:
    """A problem finding of an analyzer on a live run.

    run_id, analyzer, code, severity ("warning" | "error"), metric (as logged),
    onset: the first step of the finding (``Finding.steps[0]``), title, fix;
    at_step: the run's highest logged step when it was found; found_at: Unix time.
    """

    run_id: str
    analyzer: str
    code: str
    severity: str
    metric: str | None
    onset: int | None
    title: str
    fix: str = ""
    at_step: int | None = None
    found_at: float = 0.0

    @property
    def key(self) -> tuple:
        return (self.run_id, self.analyzer, self.code, self.metric)

    def at_least(self, severity: str) -> bool:
        return SEVERITIES.index(self.severity) >= SEVERITIES.index(severity)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "analyzer": self.analyzer, "code": self.code,
                "severity": self.severity, "metric": self.metric, "onset": self.onset,
                "title": self.title, "fix": self.fix, "at_step": self.at_step,
                "found_at": round(self.found_at, 3)}


@dataclass
class RunState:
    """One run as the live view knows it (see the module docstring)."""

    run_id: str
    last: dict = field(default_factory=dict)        # metric -> (step, value)
    tails: dict = field(default_factory=dict)       # metric -> deque of recent values
    step: int | None = None
    rows: int = 0
    last_wall: float | None = None                  # newest event's wall time (Unix seconds)
    status: str = "running"                         # or the end event's status
    findings: dict = field(default_factory=dict)    # LiveFinding.key -> LiveFinding
    guard_findings: list = field(default_factory=list)   # run/finding events a guard wrote
    dirty: bool = False                             # rows arrived since the last evaluation
    next_eval: float = 0.0                          # monotonic time of the next allowed one
    eval_secs: float = 0.0                          # how long the last evaluation took
    _resolved: list = field(default_factory=list, repr=False)
    _resolved_names: int = -1

    def add(self, table) -> None:
        """Append one table of this run's rows (``rldk.live.tail.COLUMNS``)."""
        import pyarrow.compute as pc

        if not table.num_rows:
            return
        self.rows += table.num_rows
        wall = pc.max(table.column("wall_time")).value
        if wall is not None:
            self.last_wall = max(self.last_wall or 0.0, wall / 1000.0)
        kind = table.column("kind").cast("string")
        self._add_metrics(table.filter(pc.equal(kind, "metric")))
        self._add_run_events(table.filter(pc.equal(kind, "run")))
        self.dirty = True

    def _add_metrics(self, table) -> None:
        import pyarrow.compute as pc

        table = table.filter(pc.is_valid(table.column("step")))
        if not table.num_rows:
            return
        encoded = pc.dictionary_encode(table.column("name").cast("string")).combine_chunks()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        steps = table.column("step").to_numpy()
        values = table.column("value").to_numpy(zero_copy_only=False).astype(float)
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        names = encoded.dictionary.to_pylist()
        for group in np.split(order, bounds):
            self._extend(names[codes[group[0]]], steps[group], values[group])
        top = int(steps.max())
        self.step = top if self.step is None else max(self.step, top)

    def _extend(self, name: str, steps, values) -> None:
        tail = self.tails.get(name)
        if tail is None:
            tail = self.tails[name] = deque(maxlen=SPARK_POINTS)
        tail.extend(values[-SPARK_POINTS:].tolist())
        self.last[name] = (int(steps[-1]), float(values[-1]))

    def _add_run_events(self, table) -> None:
        for name, attrs in zip(table.column("name").to_pylist(), table.column("attrs").to_pylist()):
            data = _json(attrs)
            if name == "end":
                self.status = str(data.get("status", "complete"))
            elif name == "finding":
                self.guard_findings.append(data)

    # ------------------------------------------------------------------ views
    def shown(self) -> list[tuple[str, str, float, list]]:
        """``(quantity, metric, last value, recent values)`` of the ``SHOWN`` quantities."""
        if self._resolved_names != len(self.last):       # names only grow: resolve again then
            self._resolved = [(q, semantics.resolve(q, self.last)) for q in SHOWN]
            self._resolved_names = len(self.last)
        out = []
        for quantity, found in self._resolved:
            if found is None or found.metric not in self.last:
                continue
            sign = found.sign
            recent = [sign * v for v in self.tails[found.metric]]
            out.append((quantity, found.metric, sign * self.last[found.metric][1], recent))
        return out

    def state(self, now: float, stall_after: float) -> str:
        """"running", "stalled" (no event for ``stall_after`` seconds and no end
        event), or the end event's status ("complete", "failed", "terminated")."""
        if self.status != "running":
            return self.status
        if self.last_wall is not None and now - self.last_wall > stall_after:
            return "stalled"
        return "running"


def _json(text) -> dict:
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
