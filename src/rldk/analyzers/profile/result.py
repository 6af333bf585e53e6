"""The profile's result: one :class:`RunProfile` per timed run, and its report
(findings: step-time regressions, the bottleneck; tables: time by phase, step time
and throughput, top operators; checks: regression search, throughput, MFU)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from rldk.analyzers.profile.breakdown import PhaseTime
from rldk.analyzers.profile.params import HOW_TO_TIME, Params
from rldk.analyzers.profile.regression import ChangePoint
from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import Result

#: The check that defines the profile: without it the card is inconclusive.
REQUIRED = ("step_time_regression",)
HOW_TO_MFU = "pass the model's parameter count and the device peak FLOP/s (--model-params, --peak-flops)"


@dataclass(frozen=True)
class RunProfile:
    """The profile of one run.

    step_source: where step time came from ("span:step", "metric:<name>", "wall-clock").
    steps, step_seconds: steps with a step time and their total seconds.
    median_step: median seconds per step. phases: per timed name. by_phase:
    phase -> share of step time (incl. "unaccounted" when positive).
    excluded_steps: steps left out of the regression search (checkpoint/eval).
    change_points: step-time changes (slowdowns are regressions).
    tokens_per_second, samples_per_second, mfu: None when unknown; logged: the
    medians of throughput metrics the trainer logged itself.
    bottleneck: one sentence naming the dominant phase.
    operators: the top operators of ``rldk.writer.profile`` windows:
        ``{"operator", "self_seconds", "calls", "steps", "share"}`` (share of the
        profiled self time of these operators).
    curve: ``{"steps": [...], "seconds": [...]}`` step time per step, for plots
        (not part of ``to_dict``).
    """

    run_id: str
    step_source: str
    steps: int
    step_seconds: float
    median_step: float
    phases: tuple[PhaseTime, ...]
    by_phase: dict
    excluded_steps: tuple[int, ...]
    change_points: tuple[ChangePoint, ...]
    tokens_per_second: float | None
    samples_per_second: float | None
    mfu: float | None
    logged: dict = field(default_factory=dict)
    bottleneck: str = ""
    notes: tuple[str, ...] = ()
    operators: tuple[dict, ...] = ()
    curve: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def regressions(self) -> list[ChangePoint]:
        return [c for c in self.change_points if c.regression]

    @property
    def checks(self) -> tuple[Check, ...]:
        """Regression search, throughput and MFU: ran, or could not (and what to log)."""
        tokens = "tokens/s unknown: log tokens per step as metric 'tokens' or pass tokens_per_step"
        return (Check("step_time_regression", "ran", f"{self.steps} steps, step time from "
                                                     f"{self.step_source}", self.run_id),
                Check("throughput", "ran", f"{self.tokens_per_second:.4g} tokens/s", self.run_id)
                if self.tokens_per_second is not None else
                Check("throughput", "skipped", tokens, self.run_id),
                Check("mfu", "ran", f"{self.mfu:.1%}", self.run_id) if self.mfu is not None else
                Check("mfu", "skipped", HOW_TO_MFU, self.run_id))


@dataclass(frozen=True)
class ProfileResult(Result):
    """Profiles of the runs that have timing events; ``skipped``: runs without any."""

    params: Params
    profiles: tuple[RunProfile, ...]
    skipped: tuple[str, ...] = ()

    @property
    def checks(self) -> tuple[Check, ...]:
        return (tuple(c for p in self.profiles for c in p.checks)
                + tuple(Check("step_time_regression", "skipped", HOW_TO_TIME, r) for r in self.skipped))

    def report(self) -> Report:
        return _report(self)


def _report(result: ProfileResult) -> Report:
    findings = []
    for p in result.profiles:
        for c in p.change_points:
            findings.append(_change_finding(p.run_id, c))
        findings.append(Finding("bottleneck", "info", p.bottleneck, p.run_id, None, None, dict(p.by_phase)))
    problems = [f for f in findings if f.is_problem]
    lines = [f"{p.run_id}: {p.bottleneck}" for p in result.profiles]
    summary = "; ".join(f.title for f in problems) if problems else "no step-time regression; " + "; ".join(lines)
    if result.skipped:
        summary += f". Not profiled (no span events or timing metrics): {', '.join(result.skipped)}"
    tables = (_phase_table(result), _throughput_table(result))
    if any(p.operators for p in result.profiles):
        tables += (_operator_table(result),)
    checks = result.checks
    return Report("profile", "Compute profile", verdict(findings, checks, REQUIRED), summary,
                  tuple(findings), tables, result.to_dict(), checks)


def _change_finding(run_id: str, c: ChangePoint) -> Finding:
    verb = "rose" if c.ratio > 1 else "fell"
    title = (f"step time {verb} {max(c.ratio, 1 / c.ratio):.2f}x at step {c.step} "
             f"({c.before:.3g} s -> {c.after:.3g} s median)")
    if c.explained:
        moved = max(c.per_work, 1 / c.per_work) >= c.min_ratio
        title += (f" with {c.work} {c.work_ratio:.2f}x: the time per unit of work "
                  + (f"{'fell' if c.per_work < 1 else 'rose'} {max(c.per_work, 1 / c.per_work):.2f}x"
                     if moved else "held"))
    fix = ("compare the phases before and after this step (rldk profile --format json), and what "
           "changed then: sequence lengths, batch, a new eval or logging call, memory pressure")
    code = ("step_time_regression" if c.regression else "step_time_with_work" if c.ratio > 1
            else "step_time_speedup")
    return Finding(code, "warning" if c.regression else "info", title, run_id, "step_time",
                   (c.step, c.step), c.to_dict(), fix if c.regression else "")


def _phase_table(result: ProfileResult) -> ReportTable:
    rows = []
    for p in result.profiles:
        for ph in p.phases:
            rows.append((p.run_id, ph.phase, ph.name, ph.source, round(ph.seconds, 4),
                         round(ph.seconds / max(ph.steps, 1), 5), f"{ph.share:.1%}"))
        if p.by_phase.get("unaccounted", 0) > 0:
            share = p.by_phase["unaccounted"]
            rows.append((p.run_id, "other", "(unaccounted)", p.step_source, round(share * p.step_seconds, 4),
                         round(share * p.step_seconds / p.steps, 5), f"{share:.1%}"))
    return ReportTable("Time by phase", ("run", "phase", "name", "source", "seconds", "s/step",
                                         "share of step"), tuple(rows))


def _throughput_table(result: ProfileResult) -> ReportTable:
    rows = tuple((p.run_id, p.steps, p.step_source, round(p.median_step, 5),
                  _round(p.tokens_per_second), _round(p.samples_per_second),
                  None if p.mfu is None else f"{p.mfu:.1%}", json.dumps(p.logged, sort_keys=True) if p.logged else "")
                 for p in result.profiles)
    return ReportTable("Step time and throughput", ("run", "steps", "step time from", "median s/step",
                                                   "tokens/s", "samples/s", "MFU", "logged"), rows)


def _operator_table(result: ProfileResult) -> ReportTable:
    rows = tuple((p.run_id, o["operator"], o["calls"], o["steps"], round(o["self_seconds"], 6),
                  f"{o['share']:.1%}") for p in result.profiles for o in p.operators)
    return ReportTable("Top operators (torch.profiler windows)",
                       ("run", "operator", "calls", "steps", "self seconds", "share"), rows)


def _round(v):
    return None if v is None or not math.isfinite(v) else round(v, 3)
