"""The safety result (per run and pooled), its verdict and its report."""
from __future__ import annotations

from dataclasses import dataclass, field

from rldk.analyzers.safety.curve import curve_windows
from rldk.analyzers.safety.judge import DEFINING
from rldk.analyzers.safety.lexicon import LEXICON_VERSION
from rldk.analyzers.safety.params import Params
from rldk.core.report import Check, Report, ReportTable, verdict
from rldk.core.result import Result

NAME = "safety"
TITLE = "Safety evaluation"
LIMITS = ("Lexicon-based (regular expressions in rldk/analyzers/safety/lexicon.py, version "
          f"{LEXICON_VERSION}), not a learned classifier: English only; paraphrases, other "
          "languages and novel jailbreaks are missed; idioms and fiction can be flagged. "
          "No model is downloaded. Treat flags as examples to read, not verdicts.")


@dataclass(frozen=True)
class RunSafety:
    """The safety evaluation of one run (or one JSONL file).

    run_id. samples: how many. labels: where the harmful/benign prompt labels came
    from ("logged" or "lexicon"). rates: name -> Rate (refusal_overall,
    refusal_benign, refusal_harmful, harmful_content, jailbreak_answered). curve:
    per-step rows (step, n, refusals, rate, lower, upper). change: the refusal-rate
    change point (or None). findings, examples (finding code -> list of {step,
    prompt, response, match}), checks (ran / could not run, with what to log).
    """

    run_id: str
    samples: int
    labels: str
    rates: dict
    curve: tuple
    change: dict | None
    findings: tuple
    examples: dict
    checks: tuple = ()

    @property
    def decided(self) -> bool:
        """Whether a check that defines the verdict (``judge.DEFINING``) ran."""
        return any(c.ran and c.name in DEFINING for c in self.checks)


@dataclass(frozen=True)
class SafetyResult(Result):
    """Safety evaluation of every run: ``runs`` (RunSafety, by run id), ``rates``
    pooled over all runs, and the ``params`` used."""

    runs: tuple
    rates: dict
    params: Params = field(default_factory=Params)

    @property
    def run_ids(self) -> tuple:
        return tuple(r.run_id for r in self.runs)

    @property
    def samples(self) -> int:
        return sum(r.samples for r in self.runs)

    @property
    def findings(self) -> tuple:
        return tuple(f for r in self.runs for f in r.findings)

    @property
    def checks(self) -> tuple[Check, ...]:
        return tuple(c for r in self.runs for c in r.checks)

    @property
    def status(self) -> str:
        """"problems", "inconclusive" (a run where no refusal rate could be judged) or "ok"."""
        found = verdict(self.findings, self.checks)
        return "inconclusive" if found == "ok" and not all(r.decided for r in self.runs) else found

    @property
    def passed(self) -> bool:
        """True only when the status is "ok"."""
        return self.status == "ok"

    def to_dict(self) -> dict:
        # status, passed, samples and the classifier's limits are derived, but belong in the JSON.
        return {"analyzer": NAME, "status": self.status, "passed": self.passed, "run_ids": list(self.run_ids),
                "samples": self.samples, "limits": LIMITS, **super().to_dict()}

    def summary(self) -> str:
        problems = [f for f in self.findings if f.is_problem]
        status = self.status
        if status == "inconclusive":
            return _no_verdict([r for r in self.runs if not r.decided], self.params.min_samples)
        head = f"{len(problems)} safety problem(s)" if problems else "No safety problem flagged"
        labels = ", ".join(sorted({r.labels for r in self.runs}))
        return (f"{head} in {self.samples} samples of {len(self.runs)} run(s); prompt labels: {labels}; "
                "lexicon-based flags (see Method and limits).")

    def report(self) -> Report:
        details = {k: v for k, v in self.to_dict().items() if k != "findings"}
        return Report(NAME, TITLE, self.status, self.summary(), self.findings, self.tables(), details,
                      self.checks)

    def tables(self) -> tuple[ReportTable, ...]:
        rows = tuple((r.run_id, k, v.count, v.total, v.rate, v.lower, v.upper)
                     for r in self.runs for k, v in r.rates.items())
        tables = [ReportTable("Rates (Wilson 95% CI)", ("run", "rate", "count", "of", "value", "lower", "upper"),
                              rows),
                  ReportTable("Refusal rate by step window", ("run", "first_step", "last_step", "n", "refusals",
                                                              "rate", "lower", "upper"),
                              tuple((r.run_id, *w) for r in self.runs
                                    for w in curve_windows(r.curve, self.params.windows)))]
        ex = [(r.run_id, code, e["step"], e["prompt"][:200], e["response"][:200], e["match"])
              for r in self.runs for code, items in r.examples.items() for e in items]
        if ex:
            tables.append(ReportTable("Examples (escaped, truncated to 200 characters)",
                                      ("run", "finding", "step", "prompt", "response", "match"), tuple(ex)))
        tables.append(ReportTable("Method and limits", ("what", "detail"),
                                  (("classifier", LIMITS),
                                   ("refusal window", f"first {self.params.refusal_window} characters"),
                                   ("intervals", "Wilson score, 95%"))))
        return tuple(tables)


def _no_verdict(runs, min_samples: int) -> str:
    """"too few samples (3 < 10): no verdict", per undecided run when there are several."""
    def why(r: RunSafety) -> str:
        if r.samples < min_samples:
            return f"too few samples ({r.samples} < {min_samples})"
        benign, harmful = r.rates["refusal_benign"].total, r.rates["refusal_harmful"].total
        return (f"too few prompts of one kind to judge a refusal rate (benign {benign}, harmful {harmful}; "
                f"needs {min_samples})")

    if len(runs) == 1:
        return f"{why(runs[0])}: no verdict"
    return "; ".join(f"run {r.run_id!r}: {why(r)}" for r in runs) + ": no verdict"
