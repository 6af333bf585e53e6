"""The outcome of a bisection, and its report."""
from __future__ import annotations

from dataclasses import dataclass

from rldk.analyzers.bisect.predicate import Predicate
from rldk.analyzers.bisect.probe import Probe
from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import Result

NAME = "bisect"
TITLE = "Bisect on metrics"


@dataclass(frozen=True)
class BisectResult(Result):
    """The outcome of a bisection.

    first_bad: the first bad commit (None when skipped commits leave it ambiguous;
    then ``candidates`` lists the commits it could be). probes: every tested
    commit, in the order tested (the two ends first when ``ends_checked``).
    """

    good: str
    bad: str
    predicate: Predicate
    first_bad: str | None
    subject: str | None
    candidates: tuple[str, ...]
    probes: tuple[Probe, ...]
    ends_checked: bool = True

    @property
    def passed(self) -> bool:
        return self.report().status == "ok"

    def report(self) -> Report:
        findings = (Finding("first_bad_commit", "info", f"first bad commit: {self.first_bad} {self.subject}",
                            evidence={"commit": self.first_bad, "predicate": self.predicate.describe()},
                            fix="read what this commit changed: it is the first where "
                                f"{self.predicate.describe()}"),) if self.first_bad else ()
        checks = self._checks()
        rows = tuple((p.commit[:12], p.subject, p.verdict, p.value, p.reason, round(p.seconds, 2))
                     for p in self.probes)
        table = ReportTable(f"tested commits ({self.predicate.describe()} is bad)",
                            ("commit", "subject", "verdict", "value", "note", "seconds"), rows)
        return Report(NAME, TITLE, verdict(findings, checks, ("first_bad_commit",)), self.verdict_line(),
                      findings, (table,), self.to_dict(), checks)

    def verdict_line(self) -> str:
        if self.first_bad:
            return f"first bad commit: {self.first_bad} {self.subject}"
        listed = ", ".join(c[:12] for c in self.candidates)
        return f"the first bad commit is one of {listed} (commits in between could not be tested)"

    def _checks(self) -> tuple[Check, ...]:
        skipped = sum(p.verdict == "skip" for p in self.probes)
        ends = (Check("ends_separated", "ran", "--good is good and --bad is bad") if self.ends_checked else
                Check("ends_separated", "skipped", "--no-check-ends: the ends were not tested"))
        tested = Check("commits_tested", "ran", f"{len(self.probes)} commit(s) tested, {skipped} skipped")
        first = (Check("first_bad_commit", "ran", self.first_bad) if self.first_bad else
                 Check("first_bad_commit", "skipped", "untestable commits leave it ambiguous: make those "
                       "commits runnable, or judge them by another metric"))
        return ends, tested, first
