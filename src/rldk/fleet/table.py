"""The fleet table: one row per run, as a Result that renders itself."""
from __future__ import annotations

from dataclasses import dataclass

from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import Result
from rldk.fleet.tasks import KEY_METRICS, FleetRow


@dataclass(frozen=True)
class FleetResult(Result):
    """Every run of a store analysed on its own (``rows``, in run-id order) by the
    default analyzers; ``engine`` says where the tasks ran."""

    rows: tuple[FleetRow, ...]
    engine: str = "local"

    @property
    def checks(self) -> tuple[Check, ...]:
        """One per run: its analysis reached a verdict, or could not (error, or no check ran)."""
        return tuple(Check("run_analysis", "ran" if r.verdict in ("ok", "problems") else "skipped",
                           _detail(r), r.run_id) for r in self.rows)

    def report(self) -> Report:
        findings = tuple(_finding(r) for r in self.rows if r.worst and r.problems)
        status = verdict(findings, self.checks)
        counts = {v: sum(r.verdict == v for r in self.rows) for v in ("problems", "ok", "inconclusive", "error")}
        summary = f"{len(self.rows)} run(s): " + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        cols = ("run", "status", "last step", *KEY_METRICS, "verdict", "problems", "worst finding")
        rows = tuple((r.run_id, r.status, r.last_step, *(_short(r.metrics.get(q)) for q in KEY_METRICS),
                      r.verdict, r.problems, _worst_text(r)) for r in self.rows)
        return Report("fleet", "Fleet", status, summary, findings, (ReportTable("Runs", cols, rows),),
                      self.to_dict(), self.checks)


def _finding(r: FleetRow) -> Finding:
    w = r.worst
    return Finding(w["code"], w["severity"], f"{w['analyzer']}: {w['title']}", r.run_id, None,
                   tuple(w["steps"]) if w["steps"] else None, {"analyzer": w["analyzer"], "problems": r.problems},
                   f"rldk analyze on this run shows all {r.problems} problem(s) with their fixes")


def _detail(r: FleetRow) -> str:
    if r.errors:
        return "; ".join(f"{name} failed: {why}" for name, why in r.errors)
    if r.verdict == "inconclusive":
        return "no check that finds training problems could run: rldk analyze on the run says what to log"
    return f"{r.problems} problem(s)"


def _worst_text(r: FleetRow) -> str:
    if r.worst is None:
        return ""
    steps = r.worst["steps"]
    at = f" (step {steps[0]})" if steps else ""
    return f"{r.worst['severity']} {r.worst['code']}{at}"


def _short(value):
    return float(f"{value:.6g}") if isinstance(value, float) else value
