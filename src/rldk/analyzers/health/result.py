"""The health analyzer's result: findings, which rules ran on which run, and why the
others could not."""
from __future__ import annotations

from dataclasses import dataclass, field

from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import Result


@dataclass(frozen=True)
class HealthResult(Result):
    """findings: all rules' findings; checked: (run, rule) pairs judged;
    not_applicable: (run, rule, why) triples (why: what to log or pass to enable
    it); curves: downsampled series of the metrics with findings (for plots)."""

    findings: tuple[Finding, ...]
    checked: tuple[tuple[str, str], ...]
    not_applicable: tuple[tuple[str, str, str], ...]
    curves: dict = field(default_factory=dict)
    fired: tuple[tuple[str, str], ...] = ()                       # (run, rule) pairs with findings
    rule_docs: dict = field(default_factory=dict, repr=False)     # rule code -> what it checks

    @property
    def checks(self) -> tuple[Check, ...]:
        """One Check per (run, rule): ran, or could not run and why."""
        docs = self.rule_docs
        return (tuple(Check(code, "ran", docs.get(code, ""), run_id) for run_id, code in self.checked)
                + tuple(Check(code, "skipped", why, run_id)
                        for run_id, code, why in self.not_applicable))

    def report(self) -> Report:
        problems = [f for f in self.findings if f.is_problem]
        summary = ("; ".join(f"{f.run_id}: {f.title}" for f in problems) if problems else
                   f"{len(self.checked)} rule check(s) passed, {len(self.not_applicable)} not "
                   "applicable")
        docs = self.rule_docs
        rows = tuple((run_id, code, "finding" if (run_id, code) in self.fired else "ok",
                      docs.get(code, "")) for run_id, code in self.checked)
        rows += tuple((run_id, code, f"not applicable: {why}", docs.get(code, ""))
                      for run_id, code, why in self.not_applicable)
        return Report(analyzer="health", title="Training health", summary=summary,
                      status=verdict(self.findings, self.checks), findings=self.findings,
                      tables=(ReportTable("Rules", ("run", "rule", "result", "checks"), rows),),
                      details=self.to_dict(), checks=self.checks)
