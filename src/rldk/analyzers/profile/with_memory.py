"""What ``rldk profile`` shows: the time profile and the memory trends of a store,
as one result whose report merges both (each keeps its own card too)."""
from __future__ import annotations

from dataclasses import dataclass

from rldk.analyzers.memory_leak import HOW_TO_LOG, MemoryLeakAnalyzer, MemoryLeakResult
from rldk.analyzers.memory_leak import Params as MemoryParams
from rldk.analyzers.profile.analyzer import ProfileAnalyzer
from rldk.analyzers.profile.params import HOW_TO_TIME, Params
from rldk.analyzers.profile.result import ProfileResult
from rldk.core.errors import MissingEvents
from rldk.core.report import Check, Report, ReportTable, verdict
from rldk.core.result import Result


@dataclass(frozen=True)
class ComputeProfile(Result):
    """timing: the time profile (None when no run is timed); memory: the memory trends
    (None without memory events); missing: one line per part that lacked its events."""

    timing: ProfileResult | None
    memory: MemoryLeakResult | None
    missing: tuple[str, ...] = ()

    def parts(self) -> list[tuple[object, Result]]:
        """(analyzer, result) of each part that ran: what gets a card of its own."""
        return [(a, r) for a, r in ((ProfileAnalyzer(), self.timing), (MemoryLeakAnalyzer(), self.memory))
                if r is not None]

    def bottlenecks(self) -> list[str]:
        """Per run: the dominant phase and what grew."""
        out = {}
        for p in (self.timing.profiles if self.timing else ()):
            out[p.run_id] = p.bottleneck
        for t in (self.memory.leaks if self.memory else ()):
            grew = f"memory leak: {t.describe()}"
            out[t.run_id] = f"{out[t.run_id]}; {grew}" if t.run_id in out else grew
        return [f"{run}: {text}" for run, text in sorted(out.items())]

    def to_dict(self) -> dict:
        # named by analysis ("profile", "memory_leak") as their cards are, plus the bottlenecks
        return {"profile": self.timing.to_dict() if self.timing else None,
                "memory_leak": self.memory.to_dict() if self.memory else None,
                "bottleneck": self.bottlenecks(), "missing": list(self.missing)}

    def report(self) -> Report:
        reports = [r.report() for _, r in self.parts()]
        findings = tuple(f for r in reports for f in r.findings)
        checks = tuple(c for r in reports for c in r.checks)
        if self.timing is None:
            checks += (Check("step_time_regression", "skipped", HOW_TO_TIME),)
        if self.memory is None:
            checks += (Check("memory_trend", "skipped", HOW_TO_LOG),)
        problems = [f.title for f in findings if f.is_problem]
        summary = "; ".join(problems) if problems else "; ".join(
            [f"bottleneck: {line}" for line in self.bottlenecks()] or ["no step-time regression, no memory leak"])
        bottlenecks = ReportTable("Bottlenecks", ("run", "bottleneck"),
                                  tuple(tuple(line.split(": ", 1)) for line in self.bottlenecks()))
        return Report("profile", "Compute and memory profile", verdict(findings, checks), summary,
                      findings, tuple(t for r in reports for t in r.tables) + (bottlenecks,),
                      self.to_dict(), checks)


def compute_profile(store, params: Params | None = None,
                    memory_params: MemoryParams | None = None) -> ComputeProfile:
    """Time profile and memory trends of a store; MissingEvents only when both lack events."""
    params = params or Params()
    memory_params = memory_params or MemoryParams(run_id=params.run_id)
    timing = memory = None
    missing = []
    try:
        timing = ProfileAnalyzer().run(store, params)
    except MissingEvents as exc:
        missing.append(f"time profile skipped: {exc}")
    try:
        memory = MemoryLeakAnalyzer().run(store, memory_params)
    except MissingEvents as exc:
        missing.append(f"memory analysis skipped: {exc}")
    if timing is None and memory is None:
        raise MissingEvents("; ".join(m.split(": ", 1)[1] for m in missing))
    return ComputeProfile(timing, memory, tuple(missing))
