"""The result of a resume check: where the resumed run departs and which state it lacked."""
from __future__ import annotations

from dataclasses import dataclass

from rldk.analyzers.checkpoint.events import LOG_ARG, CheckpointEvent
from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import Result, as_dict
from rldk.writer.checkpoint import PARTS

#: the run ids of the two runs a resume check compares
RUN_REFERENCE, RUN_RESUMED = "reference", "resumed"


@dataclass(frozen=True)
class MissingState:
    """A part of the training state that a resume did not carry over.

    part: model | optimizer | scheduler | rng | data. how: "not saved" (the
    checkpoint event lists it as missing) or "not restored" (the state after
    loading differs from the state saved). detail: which RNG sources / tensors.
    """

    part: str
    how: str
    detail: str = ""


@dataclass(frozen=True)
class ResumeCheckResult(Result):
    """An uninterrupted run to ``to`` against one stopped at ``at`` and resumed.

    exact: the resumed run equals the uninterrupted one at every level over
    steps 0..to. departs_at: first step where it does not (None when exact).
    before_resume: the two runs already differ at or before ``at`` (the run is
    not deterministic; no resume is involved). divergences: per level, from
    :func:`rldk.analyzers.determinism.compare_runs`. missing: the state the
    checkpoint lacked or the resume did not restore, most likely cause first.
    saved, loaded: the checkpoint events (loaded is None if the resumed run
    logged no ``load`` event).
    """

    at: int
    to: int
    divergences: tuple
    missing: tuple[MissingState, ...]
    saved: CheckpointEvent
    loaded: CheckpointEvent | None
    commands: tuple = ()
    store: str | None = None

    @property
    def departs_at(self) -> int | None:
        steps = [d.step for d in self.divergences if d.step is not None]
        return min(steps) if steps else None

    @property
    def exact(self) -> bool:
        return self.departs_at is None

    @property
    def passed(self) -> bool:
        return self.report().status == "ok"

    @property
    def before_resume(self) -> bool:
        return self.departs_at is not None and self.departs_at <= self.at

    def first(self, level: str):
        found = [d for d in self.divergences if d.level == level and d.step is not None]
        return min(found, key=lambda d: d.step) if found else None

    def to_dict(self) -> dict:
        # the verdict's derived values first, the checkpoint events reduced to what they say
        return {"exact": self.exact, "at": self.at, "to": self.to, "departs_at": self.departs_at,
                "before_resume": self.before_resume,
                "first_tensor": _name(self.first("tensor")), "first_rng_source": _name(self.first("rng")),
                "first_metric": _name(self.first("metric")),
                "missing_state": [as_dict(m) for m in self.missing],
                "divergences": [d.to_dict() for d in self.divergences],
                "checkpoint": {"path": self.saved.path, "step": self.saved.step,
                               "saved_parts": [p for p in PARTS if self.saved.parts.get(p)],
                               "load_event": self.loaded is not None},
                "commands": [c.to_dict() for c in self.commands], "store": self.store}

    def report(self) -> Report:
        findings, checks = tuple(_resume_findings(self)), _resume_checks(self)
        return Report("resume_check", "Resume check", verdict(findings, checks, ("resume_matches",)),
                      _resume_summary(self), findings, _resume_tables(self), self.to_dict(), checks)


def _name(d):
    return d.name if d is not None else None


def _resume_checks(r: ResumeCheckResult) -> tuple[Check, ...]:
    levels = ", ".join(sorted({d.level for d in r.divergences})) or "none"
    restored = (Check("state_restored", "ran", "the load event's parts compared with the saved ones",
                      RUN_RESUMED) if r.loaded is not None else
                Check("state_restored", "skipped", "no load event: call log_checkpoint(step, path, ..., "
                      "action='load') right after restoring", RUN_RESUMED))
    return (Check("resume_matches", "ran", f"steps 0..{r.to} compared at levels: {levels}"), restored)


def _resume_summary(r: ResumeCheckResult) -> str:
    if r.exact:
        return (f"Exact resume: stopped after step {r.at} and resumed, the run matches the "
                f"uninterrupted run at every step to {r.to}.")
    if r.before_resume:
        return (f"Not a resume problem: the two runs already differ at step {r.departs_at}, before "
                f"the checkpoint at step {r.at}; the run is not deterministic (run rldk check-determinism).")
    cause = r.missing[0] if r.missing else None
    what = f"; missing state: {cause.part} ({cause.how})" if cause else \
        "; every part of the checkpoint was saved and restored identically"
    return f"Resume departs at step {r.departs_at} (checkpoint after step {r.at}){what}."


def _resume_findings(r: ResumeCheckResult):
    out = []
    if not r.exact:
        cause = r.missing[0] if r.missing else None
        fix = (f"save and restore the {cause.part} state and log it with log_checkpoint(..., "
               f"{LOG_ARG[cause.part]})" if cause else
               "something outside the checkpoint changes on resume: global state (e.g. a counter, "
               "a cache), or a nondeterministic op after the resume")
        out.append(Finding("resume_departs", "error", f"resumed run departs at step {r.departs_at}",
                           RUN_RESUMED, steps=(r.departs_at, r.departs_at),
                           evidence={"first_tensor": _name(r.first("tensor")),
                                     "first_rng_source": _name(r.first("rng")),
                                     "first_metric": _name(r.first("metric"))}, fix=fix))
    for m in r.missing:
        severity = "error" if not r.exact else "info"      # harmless here: the resume was exact
        out.append(Finding(f"{m.part}_{m.how.replace(' ', '_')}", severity,
                           f"{m.part} state {m.how}: {m.detail}", RUN_RESUMED, steps=(r.at, r.at),
                           fix=f"save it in the checkpoint, restore it on resume, and pass "
                               f"{LOG_ARG[m.part]} to log_checkpoint"))
    if r.loaded is None:
        out.append(Finding("no_load_event", "info", "the resumed run logged no checkpoint load event",
                           RUN_RESUMED, fix="call log_checkpoint(step, path, ..., action='load') right "
                           "after restoring, so parts that are not restored are named"))
    return out


def _resume_tables(r: ResumeCheckResult):
    div = ReportTable("first departure per level", ("level", "step", "first name"),
                      tuple((d.level, d.step, d.name) for d in r.divergences))
    parts = ReportTable("checkpoint parts", ("part", "saved", "restored identically"),
                        tuple((p, bool(r.saved.parts.get(p)), _restored(r, p)) for p in PARTS))
    return div, parts


def _restored(r: ResumeCheckResult, part: str):
    if r.loaded is None or not r.saved.parts.get(part) or not r.loaded.parts.get(part):
        return None
    return r.saved.parts[part].get("digest") == r.loaded.parts[part].get("digest")
