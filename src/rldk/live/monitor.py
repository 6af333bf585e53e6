"""The live monitor: follow a store, keep each run's state, find problems as they appear.

Reading is incremental (:mod:`rldk.live.tail`: each committed segment once, rows
appended to bounded per-run state). Finding problems is *not* a second
implementation: a run that received rows is evaluated by the same registered
analyzers ``rldk analyze`` runs (``LIVE_ANALYZERS``, through
``rldk.analyzers.get``), on a store of that run's committed files, so a live
finding has the code and onset step that ``rldk analyze`` reports for the same
events. With ``isolate=True`` (``rldk watch``) the analyzers run in a child process
(:mod:`rldk.live.worker`), so the watcher holds no DuckDB or Polars memory while
it polls. Evaluations are throttled per run: at most one per ``min_interval``
seconds, and never more than ``duty`` of the time (an evaluation that took 0.1 s
starts the next ``0.1 / duty`` s after it started; an evaluator's first evaluation,
which pays for imports once, does not count), so a long run cannot make the watcher
busy; a run that ends is evaluated at once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from rldk.live.state import LiveFinding, RunState
from rldk.live.tail import Tailer
from rldk.live.worker import Child, InProcess

#: The analyzers run on each live run: the per-run analyses of ``rldk analyze``
#: (``rldk.analyzers.DEFAULT`` minus the store summary, cross-run drift, profiling
#: and the text-sample safety scan, which find no training-health problems).
LIVE_ANALYZERS: tuple[str, ...] = ("nan_onset", "spikes", "health", "memory_leak", "reward_health")
#: An evaluation that keeps failing (a file compacted away mid-read is retried at
#: the next poll) is reported after this many tries in a row.
FAILURES_BEFORE_WARNING = 3


@dataclass
class Poll:
    """What one poll found: new ``findings`` (LiveFinding), runs ``changed`` (got
    rows), runs ``removed``, and one-line ``warnings``."""

    findings: list = field(default_factory=list)
    changed: set = field(default_factory=set)
    removed: set = field(default_factory=set)
    warnings: list = field(default_factory=list)


class Monitor:
    """Follows ``paths`` and evaluates the runs in them (see the module docstring).

    adapter: converter format for foreign logs. run_id: follow one run only.
    analyzers: names in ``rldk.analyzers.REGISTRY``. min_interval, duty: the
    evaluation throttle per run. stall_after: seconds without events after which a
    run with no end event is shown as stalled. isolate: evaluate in a child
    process, ended after ``worker_idle`` seconds without work (call :meth:`close`
    when done, or use the monitor as a context manager).
    """

    def __init__(self, paths, *, adapter: str | None = None, run_id: str | None = None,
                 analyzers=LIVE_ANALYZERS, min_interval: float = 1.0, duty: float = 0.25,
                 stall_after: float = 120.0, isolate: bool = False, worker_idle: float = 10.0):
        self.tailer = Tailer(paths, adapter, run_id)
        self.evaluator = Child(analyzers, worker_idle) if isolate else InProcess(analyzers)
        self.min_interval, self.duty, self.stall_after = min_interval, duty, stall_after
        self.runs: dict[str, RunState] = {}
        self.emitted: set = set()          # keys of findings already reported
        self._failures: dict[str, int] = {}
        self._warned: set = set()

    def poll(self, force: bool = False) -> Poll:
        """Read new segments, then evaluate the runs that are due (all changed runs
        when ``force``). Never raises for a bad file, a vanished run or an analyzer
        error: those become warnings."""
        update = self.tailer.poll()
        out = Poll(warnings=list(update.warnings), removed=set(update.removed))
        for run_id in update.reload | update.removed:
            self.runs.pop(run_id, None)
        for table in update.tables:
            for run_id, part in _by_run(table):
                state = self.runs.get(run_id)
                if state is None:
                    state = self.runs[run_id] = RunState(run_id)
                before = state.status
                state.add(part)
                out.changed.add(run_id)
                if state.status != before:
                    state.next_eval = 0.0              # a run that ended: evaluate now
        now = time.monotonic()
        for state in list(self.runs.values()):
            if state.dirty and (force or now >= state.next_eval):
                out.findings += self.evaluate(state, out.warnings)
        self.evaluator.tidy()
        return out

    def close(self) -> None:
        """End the evaluation child process, if any."""
        self.evaluator.close()

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def evaluate(self, state: RunState, warnings: list | None = None) -> list[LiveFinding]:
        """Run the analyzers on ``state``'s run; its new problem findings."""
        start = time.monotonic()
        state.dirty = False
        at_step = state.step
        try:
            found = self.evaluator(state.run_id, self.tailer.run_files(state.run_id))
        except Exception as exc:      # a file compacted away mid-read: try again next poll
            self._failed(state, exc, warnings)
            return []
        finally:
            wall = time.monotonic() - start
            state.eval_secs = wall
            state.next_eval = start + max(self.min_interval, min(wall, self.evaluator.secs) / self.duty)
        self._failures.pop(state.run_id, None)
        now = time.time()
        state.findings = {live.key: live for live in
                          (LiveFinding(**f, at_step=at_step, found_at=now) for f in found)}
        new = [f for key, f in state.findings.items() if key not in self.emitted]
        self.emitted.update(f.key for f in new)
        return new

    def _failed(self, state: RunState, exc: Exception, warnings) -> None:
        state.dirty = True
        n = self._failures[state.run_id] = self._failures.get(state.run_id, 0) + 1
        kind = getattr(exc, "kind", type(exc).__name__)
        key = (state.run_id, kind)
        if n >= FAILURES_BEFORE_WARNING and warnings is not None and key not in self._warned:
            self._warned.add(key)
            warnings.append(f"run {state.run_id}: analysis failed {n} times in a row "
                            f"({kind}: {(str(exc).splitlines() or [''])[0][:160]}); still trying")

    def findings(self) -> list[LiveFinding]:
        """Every run's current findings, by run, then onset."""
        out = [f for s in self.runs.values() for f in s.findings.values()]
        return sorted(out, key=lambda f: (f.run_id, f.onset if f.onset is not None else -1, f.code))


def _by_run(table):
    """``(run_id, rows)`` for each run in a table of events."""
    import pyarrow.compute as pc

    ids = table.column("run_id").cast("string")
    runs = pc.unique(ids).to_pylist()
    if len(runs) == 1:
        yield runs[0], table
        return
    for run_id in runs:
        yield run_id, table.filter(pc.equal(ids, run_id))
