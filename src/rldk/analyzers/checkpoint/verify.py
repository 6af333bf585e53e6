"""Verify that every logged checkpoint holds what an exact resume needs.

One :class:`CheckpointCheck` per ``save`` event: which parts it holds, whether its
file still exists and (``deep``) whether the file's model tensors are the ones
logged at save. :class:`VerifyResult` turns them into a report.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rldk.analyzers.checkpoint.events import LOG_ARG, NEEDED, OPTIONAL, CheckpointEvent
from rldk.analyzers.checkpoint.loading import load_state
from rldk.core.errors import UsageError
from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import Result
from rldk.writer.checkpoint import PARTS, tensor_checksums

NAME = "checkpoint_verify"
#: what a run without checkpoint events should log
LOG_HINT = ("log each save with rldk.writer.log_checkpoint(step, path, model, optimizer, scheduler, "
            "rng=True, dataloader_state=...)")


@dataclass(frozen=True)
class CheckpointCheck:
    """The verdict on one saved checkpoint of run ``run_id``.

    missing: needed parts not saved. optional_missing: parts whose absence may be
    harmless (scheduler). exists: the path exists now (None: no path logged).
    file_check: with ``deep``, "match" / "mismatch: ..." / "skipped: ..." for the
    model tensors in the file against the digests logged at save.
    """

    run_id: str
    step: int | None
    path: str | None
    exists: bool | None
    present: tuple[str, ...]
    missing: tuple[str, ...]
    optional_missing: tuple[str, ...]
    file_check: str | None = None

    @property
    def ok(self) -> bool:
        return not self.missing and self.exists is not False and not (
            self.file_check or "").startswith("mismatch")


@dataclass(frozen=True)
class VerifyResult(Result):
    """``rldk checkpoint verify``: one :class:`CheckpointCheck` per saved checkpoint.

    runs: the runs examined. without: those that logged no checkpoint event (nothing
    about them was verified). deep: whether files were loaded and compared.
    """

    runs: tuple[str, ...]
    checkpoints: tuple[CheckpointCheck, ...]
    without: tuple[str, ...] = ()
    deep: bool = False

    @property
    def passed(self) -> bool:
        return self.report().status == "ok"

    def report(self) -> Report:
        findings = [_verify_finding(c) for c in self.checkpoints if not c.ok]
        findings += [Finding("scheduler_not_saved", "info", f"checkpoint at step {c.step} has no "
                             "scheduler state", c.run_id, steps=(c.step, c.step),
                             fix="pass scheduler= to log_checkpoint and save its state_dict(), "
                             "unless the learning rate is constant")
                     for c in self.checkpoints if c.ok and c.optional_missing]
        checks = tuple(self._checks())
        table = ReportTable("checkpoints", ("run", "step", "path", "exists", "saved", "missing", "file"),
                            tuple((c.run_id, c.step, c.path, c.exists, ", ".join(c.present),
                                   ", ".join(c.missing + c.optional_missing), c.file_check)
                                  for c in self.checkpoints))
        return Report(NAME, f"Checkpoint verification: {', '.join(self.runs)}",
                      verdict(findings, checks, ("checkpoint_complete",)), self._summary(),
                      tuple(findings), (table,), self.to_dict(), checks)

    def _checks(self):
        for run_id in self.without:
            yield Check("checkpoint_events", "skipped", f"no checkpoint events: {LOG_HINT}", run_id)
        for c in self.checkpoints:
            yield Check("checkpoint_complete", "ran", f"step {c.step}: saved {', '.join(c.present) or 'nothing'}",
                        c.run_id)
            if self.deep:
                ran = c.file_check is not None and not c.file_check.startswith("skipped")
                yield Check("checkpoint_file_matches", "ran" if ran else "skipped",
                            f"step {c.step}: {c.file_check}", c.run_id)

    def _summary(self) -> str:
        if not self.checkpoints:
            return f"no checkpoint events in run {', '.join(self.without)}: {LOG_HINT}."
        bad = [c for c in self.checkpoints if not c.ok]
        runs = ", ".join(dict.fromkeys(c.run_id for c in self.checkpoints))
        return (f"{len(self.checkpoints)} checkpoint(s) of run {runs}: "
                + ("all hold what an exact resume needs." if not bad else
                   f"{len(bad)} cannot resume exactly (first at step {bad[0].step})."))


def _verify_finding(check: CheckpointCheck) -> Finding:
    run_id = check.run_id
    if check.missing:
        costs = "; ".join(f"{p}: {NEEDED[p]}" for p in check.missing)
        return Finding("checkpoint_incomplete", "error",
                       f"checkpoint at step {check.step} lacks {', '.join(check.missing)}",
                       run_id, steps=(check.step, check.step),
                       evidence={"missing": list(check.missing), "path": check.path},
                       fix=f"save and restore it ({costs}); log it with log_checkpoint(..., "
                           + ", ".join(LOG_ARG[p] for p in check.missing) + ")")
    if check.exists is False:
        return Finding("checkpoint_file_missing", "error", f"checkpoint file of step {check.step} "
                       f"is gone: {check.path}", run_id, steps=(check.step, check.step),
                       fix="keep checkpoints you may resume from, or log the path they are moved to")
    return Finding("checkpoint_file_changed", "error", f"checkpoint file of step {check.step} does "
                   f"not hold the model logged at save: {check.file_check}", run_id,
                   steps=(check.step, check.step), evidence={"path": check.path},
                   fix="the file was overwritten or saved from another state: save after the step "
                       "that log_checkpoint describes")


def check_event(event: CheckpointEvent, deep: bool = False) -> CheckpointCheck:
    """The verdict on one ``save`` event (``deep``: also load the file and compare)."""
    present = tuple(p for p in PARTS if event.parts.get(p))
    missing = tuple(p for p in NEEDED if p not in present)
    optional = tuple(p for p in OPTIONAL if p not in present)
    exists = Path(event.path).exists() if event.path else None
    file_check = None
    if deep:
        file_check = _file_check(event) if exists else "skipped: no file"
    return CheckpointCheck(event.run_id, event.step, event.path, exists, present, missing, optional, file_check)


def _file_check(event: CheckpointEvent) -> str:
    if not event.tensors:
        return "skipped: no model tensors logged"
    try:
        state = load_state(event.path)
    except UsageError as exc:
        return f"skipped: {exc}"
    found = _match_model(state, event.tensors)
    if found is None:
        return "skipped: the file has none of the model's tensor names"
    differ = [n for n, hx in found.items() if hx != event.tensors[n]]
    absent = [n for n in event.tensors if n not in found]
    if differ or absent:
        return (f"mismatch: {len(differ)} tensor(s) differ (first {differ[0]})" if differ else
                f"mismatch: {len(absent)} tensor(s) absent (first {absent[0]})")
    return f"match ({len(found)} tensors)"


def _match_model(state: dict, names: dict) -> dict | None:
    """Checksums of the model tensors in ``state``, found at top level or under one prefix."""
    flat = dict(tensor_checksums(state))
    for prefix in ("", *sorted({k.split(".", 1)[0] + "." for k in flat})):
        found = {n: flat[prefix + n] for n in names if prefix + n in flat}
        if found:
            return found
    return None


