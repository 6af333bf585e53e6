"""What the lineage analysis found: each run's graph and whether its recorded data still matches."""
from __future__ import annotations

from dataclasses import dataclass

from rldk.analyzers.lineage.graph import RECORD_HINT, LineageGraph
from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import Result

NAME = "lineage"
TITLE = "Dataset lineage"
#: the check without which nothing about lineage was verified
REQUIRED = ("dataset_events",)


@dataclass(frozen=True)
class RecordedData:
    """A dataset a run recorded by path, hashed again now.

    status: "unchanged", "changed" (the content hash differs from the recorded one),
    "missing" (the path does not resolve from here) or "not comparable" (the file
    hashes another way than the recorded data, e.g. in-memory rows recorded with
    the path of a CSV file). current: the digest now (None unless hashed).
    """

    run_id: str
    name: str
    path: str
    recorded: str
    status: str
    current: str | None = None


@dataclass(frozen=True)
class LineageResult(Result):
    """graphs: one per run that recorded dataset events. without: runs that recorded
    none. data: the recorded paths hashed again (empty when not checked)."""

    graphs: tuple[LineageGraph, ...]
    without: tuple[str, ...]
    data: tuple[RecordedData, ...] = ()
    verified_data: bool = True

    @property
    def passed(self) -> bool:
        return self.report().status == "ok"

    def report(self) -> Report:
        findings = tuple(_changed(d) for d in self.data if d.status == "changed")
        checks = tuple(self._checks())
        return Report(NAME, TITLE, verdict(findings, checks, REQUIRED), self._summary(), findings,
                      self._tables(), self.to_dict(), checks)

    def _checks(self):
        for g in self.graphs:
            yield Check("dataset_events", "ran", f"{len(g.nodes)} datasets, {len(g.edges)} transforms", g.run_id)
        for run_id in self.without:
            yield Check("dataset_events", "skipped", f"no dataset events: {RECORD_HINT}", run_id)
        yield from _data_checks(self)

    def _summary(self) -> str:
        if not self.graphs:
            return f"no run recorded dataset events ({RECORD_HINT})."
        parts = [f"{g.run_id}: {len(g.nodes)} datasets, {len(g.edges)} transforms" for g in self.graphs]
        changed = [d for d in self.data if d.status == "changed"]
        tail = (f"; {len(changed)} recorded dataset(s) changed since the run" if changed else
                "; recorded data unchanged" if any(d.status == "unchanged" for d in self.data) else "")
        return "; ".join(parts) + tail + "."

    def _tables(self) -> tuple[ReportTable, ...]:
        nodes = tuple((g.run_id, n.name, n.rows, n.digest[:16], n.path) for g in self.graphs for n in g.nodes)
        edges = tuple((g.run_id, e.function, len(e.inputs), len(e.outputs), e.step)
                      for g in self.graphs for e in g.edges)
        out = [ReportTable("datasets", ("run", "name", "rows", "digest", "path"), nodes),
               ReportTable("transforms", ("run", "function", "inputs", "outputs", "step"), edges)]
        if self.data:
            out.append(ReportTable("recorded data now", ("run", "name", "path", "status"),
                                   tuple((d.run_id, d.name, d.path, d.status) for d in self.data)))
        return tuple(out)


def _data_checks(result: LineageResult):
    if not result.graphs:
        return
    if not result.verified_data:
        yield Check("recorded_data_unchanged", "skipped", "not asked to hash the recorded data again")
        return
    if not result.data:
        yield Check("recorded_data_unchanged", "skipped", "no dataset was recorded by path: pass the "
                    "file to record(writer, name, 'train.parquet') (or path=) so it can be checked")
    for d in result.data:
        ran = d.status in ("unchanged", "changed")
        detail = d.status if ran else f"{d.path}: {d.status} (cannot hash it again from here)"
        yield Check("recorded_data_unchanged", "ran" if ran else "skipped", f"{d.name}: {detail}", d.run_id)


def _changed(d: RecordedData) -> Finding:
    return Finding("dataset_changed", "error", f"dataset {d.name} at {d.path} changed since run {d.run_id} "
                   f"recorded it", d.run_id, evidence={"recorded": d.recorded, "current": d.current},
                   fix="the data on disk is not what the run trained on: restore the recorded version, "
                       "or record the new one in a new run")
