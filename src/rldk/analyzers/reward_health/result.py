"""The reward-health result, its verdict and its report.

Which checks *define* reward health. Reward health asks two questions of every
analysed run, and a verdict needs an answer to both:

* is the reward a signal? ``reward_values`` (NaN / constant per-step reward),
  ``saturation`` (sample rewards piled at one value), ``zero_std_groups`` (GRPO
  groups without spread) or ``calibration`` (a reward model's preference accuracy);
* is the policy gaming it? ``length_hacking``, ``kl_band``, ``overoptimization``,
  ``component_divergence`` or ``calibration`` (its length-shortcut baseline).

A run where no check of one of these groups could run gets no verdict: the
result is "inconclusive" (``passed`` False, CLI exit 4) unless a problem was
found, and every skipped check says what to log. ``drift`` and ``leakage`` are
extra checks of the evaluation set-up; they never decide alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rldk.analyzers.reward_health.params import Params
from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import Result

NAME = "reward_health"
TITLE = "Reward health"
#: question -> the checks that answer it (any one that ran is enough).
DEFINING: dict[str, tuple[str, ...]] = {
    "reward-signal": ("reward_values", "saturation", "zero_std_groups", "calibration"),
    "reward-gaming": ("length_hacking", "kl_band", "overoptimization", "component_divergence",
                      "calibration"),
}
WINDOW_COLUMNS = ("run_id", "window", "first_step", "last_step", "reward_mean", "top_share",
                  "group_std", "zero_std_share", "length_rho")


@dataclass(frozen=True)
class RewardHealth(Result):
    """The reward-health result.

    run_ids: runs analysed. reward_cols: run id -> reward metric used (None: samples only).
    findings: what was found. checks: every detector per run, ran or skipped (with what
    to log). windows: per-window rows (``WINDOW_COLUMNS``: reward_mean, top_share,
    group_std = mean within-group reward std, zero_std_share, length_rho).
    calibration, drift, leakage: per-run details of those analyses (run id -> dict).
    """

    run_ids: tuple[str, ...]
    reward_cols: dict
    findings: tuple[Finding, ...]
    checks: tuple[Check, ...]
    windows: tuple[dict, ...] = ()
    calibration: dict = field(default_factory=dict)
    drift: dict = field(default_factory=dict)
    leakage: dict = field(default_factory=dict)
    params: Params = field(default_factory=Params)

    @property
    def undecided(self) -> dict[str, list[str]]:
        """Run id -> the questions (keys of ``DEFINING``) no check of which ran."""
        out = {}
        for run_id in self.run_ids:
            ran = {c.name for c in self.checks if c.run_id == run_id and c.ran}
            missing = [q for q, names in DEFINING.items() if not ran & set(names)]
            if missing:
                out[run_id] = missing
        return out

    @property
    def status(self) -> str:
        """"problems" (a warning or error), "inconclusive" (a run's defining checks could
        not run, see ``DEFINING``) or "ok"."""
        found = verdict(self.findings, self.checks)
        return "inconclusive" if found == "ok" and self.undecided else found

    @property
    def passed(self) -> bool:
        """True only when the status is "ok": checks ran and found nothing wrong."""
        return self.status == "ok"

    def to_dict(self) -> dict:
        # status and passed are derived (properties), but CI gates read them from the JSON.
        return {"analyzer": NAME, "status": self.status, "passed": self.passed, **super().to_dict()}

    def report(self) -> Report:
        details = {k: v for k, v in self.to_dict().items() if k not in ("findings", "checks", "windows")}
        return Report(NAME, TITLE, self.status, self.summary(), tuple(self.findings), self.tables(),
                      details, tuple(self.checks))

    def summary(self) -> str:
        ran = sum(c.ran for c in self.checks)
        counted = f"{ran} of {len(self.checks)} detector checks ran"
        problems = [f for f in self.findings if f.is_problem]
        if problems:
            return f"{len(problems)} problem(s) in {len(self.run_ids)} run(s); {counted}."
        undecided = self.undecided
        if undecided:
            gaps = "; ".join(f"run {run_id!r}: no {' and no '.join(qs)} check could run"
                             for run_id, qs in undecided.items())
            return f"No verdict: {gaps} (see the checks for what to log); {counted}."
        return (f"No reward problem found in {len(self.run_ids)} run(s); {counted} "
                "(the others lacked their events).")

    def tables(self) -> tuple[ReportTable, ...]:
        tables = [ReportTable("Detectors", ("run", "detector", "status", "detail"),
                              tuple((c.run_id, c.name, c.status, c.detail) for c in self.checks))]
        if self.windows:
            tables.append(ReportTable("Windows", WINDOW_COLUMNS,
                                      tuple(tuple(w.get(c) for c in WINDOW_COLUMNS) for w in self.windows)))
        for run_id, cal in self.calibration.items():
            tables.append(ReportTable(f"Reliability ({run_id})", ("bin", "count", "confidence", "accuracy"),
                                      tuple((b["bin"], b["count"], b["confidence"], b["accuracy"])
                                            for b in cal["bins"])))
        return tuple(tables)
