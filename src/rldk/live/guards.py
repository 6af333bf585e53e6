"""Guards: the live analyzers inside the training process, and what to do when they fire.

    import rldk.writer as w
    w.init("runs/", run_id="grpo-1", guards="default")
    for step in ...:
        w.log(step, reward=r, kl=kl)
        if w.should_stop():          # a finding at or above Guards.stop_on was made
            break                    # save a checkpoint the usual way, then leave

A :class:`Guard` runs a :class:`rldk.live.monitor.Monitor` on its own run in a
background thread, off the training thread: every ``interval`` seconds (or when
a framework callback says a step was logged) it asks the writer to commit a
segment, reads the run's new committed segments and re-runs the analyzers. Each
new finding is written into the store as a ``run`` event named ``finding`` (attrs:
the finding and the action taken), then, by severity: printed as an
``RldkWarning``, passed to the user's ``hook``, and at ``stop_on`` the run is
asked to stop (``should_stop()`` turns True, or raises :class:`Stop` with
``raise_stop=True``; the TRL callback sets ``control.should_training_stop``). The
final checkpoint is the framework's business.

When the writer closes, the guard checks once more what was logged since its last check
(unless the run was already asked to stop): a run shorter than one check still has its
findings recorded.

The guard's own cost on the training thread is nil (``log`` is untouched); its
thread spends at most ``duty`` of the time evaluating (an evaluation that took
0.05 s waits 1 s before the next) so that it does not compete with the training
loop for the interpreter. A framework callback (TRL) may ask it to keep within
``max_lag`` logged steps: it then waits for the guard at most ``wait_secs`` per step.
"""
from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

from rldk.core.errors import UsageError
from rldk.live.monitor import LIVE_ANALYZERS, Monitor
from rldk.live.state import LiveFinding
from rldk.writer._limits import RldkWarning


class Stop(Exception):
    """Raised by ``should_stop()`` (with ``Guards(raise_stop=True)``) once a guard asked
    the run to stop; ``finding`` is the :class:`LiveFinding` that did."""

    def __init__(self, finding: LiveFinding):
        super().__init__(f"rldk guard stopped run {finding.run_id!r}: {finding.title} "
                         f"({finding.code}, from step {finding.onset})")
        self.finding = finding


@dataclass(frozen=True)
class Guards:
    """What a guard does (``guards="default"`` is ``Guards()``).

    stop_on: severity ("warning" | "error") at or above which the run is asked to
        stop; None never stops. Default "error": warnings (a truncation share, a
        reward-health hint) are for people, errors mean the run is wasting compute.
    warn_on: severity at or above which a finding is also raised as an RldkWarning.
    hook: called with each new LiveFinding, from the guard's thread; returning True
        asks the run to stop too.
    raise_stop: ``should_stop()`` raises :class:`Stop` instead of returning True.
    interval: seconds between the guard's checks when nothing wakes it.
    duty: largest share of the time the guard spends evaluating.
    max_lag, wait_secs: for framework callbacks, how many logged steps the guard
        may be behind before the training thread waits for it, and how long at most.
        0 (the default): the callback waits until the step just logged is checked, so
        a state that the rules confirm after 3 logged points (the onset and two more)
        stops the run at the onset + 2; 1 lets training run one step ahead of it.
    analyzers: the analyzers run (names in ``rldk.analyzers.REGISTRY``).
    """

    stop_on: str | None = "error"
    warn_on: str | None = "warning"
    hook: Callable | None = None
    raise_stop: bool = False
    interval: float = 1.0
    duty: float = 0.05
    max_lag: int = 0
    wait_secs: float = 30.0
    analyzers: tuple = field(default=LIVE_ANALYZERS)


def as_guards(spec) -> Guards | None:
    """``guards=`` as given to ``rldk.writer.init`` or ``RldkCallback``: None/False (no
    guard), True or "default", a :class:`Guards`, or a dict of its fields."""
    if spec is None or spec is False:
        return None
    if spec is True or spec == "default":
        return Guards()
    if isinstance(spec, Guards):
        return spec
    if isinstance(spec, dict):
        try:
            return Guards(**spec)
        except TypeError as exc:
            raise UsageError(f"guards: {exc}; fields: {', '.join(Guards.__dataclass_fields__)}") from None
    raise UsageError(f"guards={spec!r}: pass 'default', a rldk.live.Guards or a dict of its fields")


class Guard:
    """A running guard on ``writer``'s run (see the module docstring)."""

    def __init__(self, writer, guards: Guards):
        self.writer, self.policy = writer, guards
        self.monitor = Monitor(writer.dir, run_id=writer.run_id, analyzers=guards.analyzers,
                               min_interval=0.0, duty=guards.duty)
        self.findings: list[LiveFinding] = []
        self.stop_finding: LiveFinding | None = None
        self.checked_step: int | None = None       # highest step the analyzers have seen
        self._logged: int | None = None
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._closing = False
        self._warned: set = set()
        self._thread = threading.Thread(target=self._loop, name=f"rldk-guard-{writer.run_id}",
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ training side
    @property
    def stopped(self) -> bool:
        """True once a finding asked the run to stop."""
        return self.stop_finding is not None

    def should_stop(self) -> bool:
        """True once the run should stop (raises :class:`Stop` with ``raise_stop``)."""
        if self.stop_finding is not None and self.policy.raise_stop:
            raise Stop(self.stop_finding)
        return self.stop_finding is not None

    def logged(self, step: int) -> None:
        """A framework callback logged ``step``: check it soon, and, if the guard is
        more than ``max_lag`` logged steps behind, wait for it (``wait_secs`` at most)."""
        self._logged = step
        self._wake.set()
        behind = step - self.policy.max_lag
        with self._cond:
            self._cond.wait_for(lambda: self._caught_up(behind), timeout=self.policy.wait_secs)

    def _caught_up(self, step: int) -> bool:
        return (self.stop_finding is not None or self._closing or not self._thread.is_alive()
                or (self.checked_step is not None and self.checked_step >= step))

    def close(self, timeout: float = 30.0) -> None:
        """Stop the guard's thread (before the writer closes and merges its segments)."""
        self._closing = True
        self._wake.set()
        self._thread.join(timeout)

    # ------------------------------------------------------------ guard thread
    def _loop(self) -> None:
        next_check = 0.0
        while not self._closing:
            woken = self._wake.wait(self.policy.interval)
            self._wake.clear()
            if self._closing:
                break
            if not woken and time.monotonic() < next_check:
                continue
            started = time.monotonic()
            try:
                self.check()
            except Exception as exc:   # the guard must never take the training loop down
                self._warn_once(type(exc).__name__, f"rldk guard on run {self.writer.run_id!r}: "
                                f"{type(exc).__name__}: {exc}; still guarding")
            spent = time.monotonic() - started
            next_check = time.monotonic() + spent / self.policy.duty
        if self.stop_finding is None:
            # what was logged since the last check is judged too: a run shorter than one
            # check (or a check that took longer than the rest of the run) still records
            # its findings before the writer closes
            try:
                self.check()
            except Exception as exc:
                self._warn_once(type(exc).__name__, f"rldk guard on run {self.writer.run_id!r}: "
                                f"{type(exc).__name__}: {exc} in the last check")
        with self._cond:
            self._cond.notify_all()

    def check(self) -> list[LiveFinding]:
        """Commit what was logged, read it, run the analyzers, act on new findings."""
        self.writer.flush(timeout=60.0)
        poll = self.monitor.poll(force=True)
        state = self.monitor.runs.get(self.writer.run_id)
        for finding in poll.findings:
            self._act(finding)
        with self._cond:
            if state is not None and state.step is not None:
                self.checked_step = state.step
            self._cond.notify_all()
        return poll.findings

    def _act(self, finding: LiveFinding) -> None:
        policy = self.policy
        stop = policy.stop_on is not None and finding.at_least(policy.stop_on)
        if policy.hook is not None and policy.hook(finding) is True:
            stop = True
        action = "stop" if stop and self.stop_finding is None else "record"
        self.findings.append(finding)
        self.writer.log_event("run", "finding", finding.onset,
                              attrs={**finding.to_dict(), "action": action})
        if policy.warn_on is not None and finding.at_least(policy.warn_on):
            warnings.warn_explicit(f"rldk guard: run {finding.run_id!r}: {finding.title} "
                                   f"({finding.code}, from step {finding.onset})"
                                   + ("; asking the run to stop" if action == "stop" else ""),
                                   RldkWarning, "rldk.guard", 0, module="rldk.guard")
        if action == "stop":
            with self._cond:
                self.stop_finding = finding
                self._cond.notify_all()

    def _warn_once(self, key, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn_explicit(message, RldkWarning, "rldk.guard", 0, module="rldk.guard")


def start(writer, spec) -> Guard | None:
    """A running :class:`Guard` on ``writer`` for ``guards=spec`` (None for no guard)."""
    guards = as_guards(spec)
    return Guard(writer, guards) if guards is not None else None
