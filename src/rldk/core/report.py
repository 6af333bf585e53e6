"""The report model every analyzer produces, and its renderers.

An analyzer returns its own frozen result dataclass (with ``to_dict()``) and turns
it into a :class:`Report` for display. A Report is plain data: findings, named
tables and details. JSON is the source of truth (sorted keys, ``schema_version``);
Markdown and the rich terminal view are rendered from the same object, with
everything that came from logs escaped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from rldk import semantics
from rldk.core.render import (
    REPORT_SCHEMA_VERSION,
    console,
    escape_markdown,
    markdown_table,
    render_rows,
    rich_table,
    to_json,
)

SEVERITIES = ("info", "warning", "error")       # ascending
#: ok: checks ran, nothing wrong; problems: warnings/errors found; inconclusive: the
#: checks that define the analysis could not run (nothing was verified); skipped:
#: the analyzer lacked its events entirely and did not run.
STATUSES = ("ok", "problems", "inconclusive", "skipped")
CHECK_STATUSES = ("ran", "skipped")
INCONCLUSIVE_NOTE = "the checks that define this analysis could not run, so nothing was verified"


@dataclass(frozen=True)
class Check:
    """One check an analysis made or could not make.

    name: the check (a detector or rule code). status: "ran" or "skipped".
    detail: key numbers when it ran; when skipped, why and what to log to enable it.
    run_id: the run it concerns (None: the whole store).
    """

    name: str
    status: str
    detail: str = ""
    run_id: str | None = None

    def __post_init__(self):
        if self.status not in CHECK_STATUSES:
            raise ValueError(f"check status must be one of {CHECK_STATUSES}, not {self.status!r}")

    @property
    def ran(self) -> bool:
        return self.status == "ran"

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail, "run_id": self.run_id}


def verdict(findings, checks, required=()) -> str:
    """The status that ``findings`` and ``checks`` earn: "problems" when any finding
    is a warning or error (a found problem is conclusive); "inconclusive" when no
    check ran, or a ``required`` check name never ran; else "ok"."""
    if any(f.is_problem for f in findings):
        return "problems"
    ran = {c.name for c in checks if c.ran}
    if not ran or any(name not in ran for name in required):
        return "inconclusive"
    return "ok"


@dataclass(frozen=True)
class Finding:
    """One thing an analyzer found.

    code: stable machine name ("nan_onset", "kl_spike", ...).
    severity: "info" | "warning" | "error" ("warning" and "error" count as problems).
    title: one line a person reads first.
    run_id, metric: where (None when not tied to one).
    steps: the step range ``(first, last)`` it covers, or None.
    evidence: the numbers that back it (JSON-ready).
    fix: what to do about it.
    """

    code: str
    severity: str
    title: str
    run_id: str | None = None
    metric: str | None = None
    steps: tuple[int, int] | None = None
    evidence: dict = field(default_factory=dict)
    fix: str = ""

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")

    @property
    def is_problem(self) -> bool:
        return self.severity != "info"

    def to_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "title": self.title,
                "run_id": self.run_id, "metric": self.metric,
                "steps": list(self.steps) if self.steps is not None else None,
                "evidence": self.evidence, "fix": self.fix}


#: Finding codes that name the same problem as another analyzer's code (the key). Two
#: findings are one problem when they share the run, the problem (this table, else the
#: code itself), the quantity of their metric (``rldk.semantics``) and overlapping steps.
SAME_PROBLEM = {"zero_std_onset": "zero_std", "zero_std_groups": "zero_std",
                "kl_band_exceeded": "kl_above_target",
                "reward_nan": "nan_onset"}


def merge_duplicates(sourced) -> list[tuple[tuple[str, ...], Finding]]:
    """``(analyzers, finding)`` for each problem in ``sourced`` ((analyzer, Finding) pairs,
    in order): a problem that several analyzers found is one finding, the first one's,
    with the highest severity, the union of the steps and ``evidence["sources"]`` listing
    every analyzer's finding (analyzer, code, severity, title, steps)."""
    groups: dict[tuple, list[list[tuple[str, Finding]]]] = {}
    order: list[list[tuple[str, Finding]]] = []
    for analyzer, finding in sourced:
        bucket = groups.setdefault(_problem_key(finding), [])
        group = next((g for g in bucket if analyzer not in {a for a, _ in g}
                      and any(_overlap(finding.steps, f.steps) for _, f in g)), None)
        if group is None:
            group = []
            bucket.append(group)
            order.append(group)
        group.append((analyzer, finding))
    return [_merged(g) for g in order]


def _problem_key(f: Finding) -> tuple:
    quantity = semantics.classify(f.metric)[0] if f.metric else None
    metric = quantity.name if quantity is not None else f.metric
    return f.run_id, SAME_PROBLEM.get(f.code, f.code), metric


def _overlap(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a[0] <= b[1] and b[0] <= a[1]


def _merged(group) -> tuple[tuple[str, ...], Finding]:
    analyzers = tuple(a for a, _ in group)
    if len(group) == 1:
        return analyzers, group[0][1]
    first = group[0][1]
    worst = max((f for _, f in group), key=lambda f: SEVERITIES.index(f.severity))
    spans = [f.steps for _, f in group if f.steps is not None]
    steps = (min(s[0] for s in spans), max(s[1] for s in spans)) if spans else None
    sources = [{"analyzer": a, "code": f.code, "severity": f.severity, "title": f.title,
                "steps": list(f.steps) if f.steps is not None else None} for a, f in group]
    return analyzers, replace(first, severity=worst.severity, title=worst.title, steps=steps,
                              evidence=dict(first.evidence, sources=sources))


@dataclass(frozen=True)
class ReportTable:
    """A named table in a report: column names and rows of JSON-ready cells."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "columns": list(self.columns), "rows": [list(r) for r in self.rows]}


@dataclass(frozen=True)
class Report:
    """What one analyzer says about a store.

    analyzer: the analyzer's name (file stem of its outputs).
    title: heading of its card.
    status: one of ``STATUSES`` (``verdict`` computes it from findings and checks).
    summary: one or two sentences, the verdict in words.
    findings, tables: as above. details: analyzer-specific JSON.
    checks: what was checked and what could not be (with what to log).
    """

    analyzer: str
    title: str
    status: str
    summary: str
    findings: tuple[Finding, ...] = ()
    tables: tuple[ReportTable, ...] = ()
    details: dict = field(default_factory=dict)
    checks: tuple[Check, ...] = ()

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.is_problem]

    @property
    def skipped_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.ran]

    def to_dict(self) -> dict:
        findings = sorted(self.findings, key=lambda f: -SEVERITIES.index(f.severity))
        return {"schema_version": REPORT_SCHEMA_VERSION, "analyzer": self.analyzer,
                "title": self.title, "status": self.status, "summary": self.summary,
                "findings": [f.to_dict() for f in findings],
                "checks": [c.to_dict() for c in self.checks],
                "tables": [t.to_dict() for t in self.tables], "details": self.details}

    def __str__(self) -> str:
        return f"{self.title}: {self.status.upper()}: {self.summary}"

    def __rich__(self):
        return rich_view(self)

    def to_markdown(self, images: dict[str, str] | None = None) -> str:
        return to_markdown(self, images)


def to_markdown(report: Report | dict, images: dict[str, str] | None = None) -> str:
    """The Markdown card of a report (``images``: caption -> relative PNG path)."""
    d = report.to_dict() if isinstance(report, Report) else report
    out = [f"# {escape_markdown(d['title'])}", "",
           f"**Status:** {d['status']}  ", escape_markdown(d["summary"]), ""]
    if d["status"] == "inconclusive":
        out += [f"> **INCONCLUSIVE:** {INCONCLUSIVE_NOTE} (listed under Checks).", ""]
    if d["findings"]:
        out += ["## Findings", ""]
        rows = [[f["severity"], f["code"], f["title"], f["run_id"] or "", f["metric"] or "",
                 "" if f["steps"] is None else f"{f['steps'][0]}-{f['steps'][1]}", f["fix"]]
                for f in d["findings"]]
        out.append(markdown_table(["severity", "code", "finding", "run", "metric", "steps", "fix"], rows))
    skipped = [c for c in d.get("checks", []) if c["status"] != "ran"]
    if d.get("checks"):
        ran = len(d["checks"]) - len(skipped)
        out += ["## Checks", "", f"{ran} ran, {len(skipped)} could not run.", ""]
        if skipped:
            rows = [[c["name"], c["run_id"] or "", c["detail"]] for c in skipped]
            out.append(markdown_table(["could not run", "run", "why / what to log"], rows))
    for table in d["tables"]:
        out += [f"## {escape_markdown(table['name'])}", "", markdown_table(table["columns"], table["rows"])]
    for caption, path in (images or {}).items():
        out += [f"![{escape_markdown(caption)}]({path})", ""]
    return "\n".join(out) + "\n"


def write_report(report: Report, out_dir, plots: dict[str, str] | None = None) -> dict[str, str]:
    """Write ``<analyzer>.json`` and ``<analyzer>.md`` into ``out_dir``; returns their paths.

    ``plots`` maps captions to PNG paths already written (linked from the card).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": str(out / f"{report.analyzer}.json"), "markdown": str(out / f"{report.analyzer}.md")}
    Path(paths["json"]).write_text(to_json(report.to_dict()) + "\n", encoding="utf-8")
    images = {c: os.path.relpath(p, out) for c, p in (plots or {}).items()}
    Path(paths["markdown"]).write_text(to_markdown(report, images), encoding="utf-8")
    return paths


STATUS_COLOURS = {"ok": "green", "problems": "red", "inconclusive": "yellow", "skipped": "yellow",
                  "error": "red"}


def rich_view(report: Report):
    """A rich renderable (panel with the findings table) for terminal output."""
    from rich.console import Group
    from rich.text import Text

    colour = STATUS_COLOURS[report.status]
    parts = [Text(report.summary)]
    if report.status == "inconclusive":
        parts.append(Text(f"INCONCLUSIVE: {INCONCLUSIVE_NOTE}:", style="bold yellow"))
        parts.append(_bullets(dict.fromkeys(_skipped_line(c) for c in report.skipped_checks)))
    elif report.skipped_checks:
        names = ", ".join(dict.fromkeys(c.name for c in report.skipped_checks))
        parts.append(Text(f"Could not run: {names}", style="yellow"))
        hints = dict.fromkeys(_skipped_line(c) for c in report.skipped_checks
                              if semantics.MAP_HINT in c.detail)
        if hints:
            parts.append(Text("Checks a metric map would let run (the run's own names that look "
                              "like what they read):", style="yellow"))
            parts.append(_bullets(hints))
    if report.findings:
        parts.append(_findings_grid(report.findings))
    return _Card(Text(f"{report.title} [{report.status}]"), Group(*parts), colour)


def _findings_grid(findings):
    """Findings most severe first: the severity, then the title, where (run, metric,
    steps) and the fix, each wrapping at spaces in the width there is."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold", ratio=1)
    for f in sorted(findings, key=lambda f: -SEVERITIES.index(f.severity)):
        where = " · ".join(x for x in (f.run_id and f"run {f.run_id}", f.metric and f"metric {f.metric}",
                                       f.steps is not None and f"steps {f.steps[0]}-{f.steps[1]}",
                                       _found_by(f)) if x)
        lines = [Text(f.title, style="bold")]
        lines += [Text(where, style="dim")] if where else []
        lines += [Text(f"Fix: {f.fix}")] if f.fix else []
        grid.add_row(Text(f.severity.upper(), style=SEVERITY_COLOURS.get(f.severity, "")), Group(*lines))
    return grid


def _bullets(lines):
    """``  - line`` per line, wrapped lines indented under the text."""
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold", ratio=1)
    for line in lines:
        grid.add_row(Text("  -", style="yellow"), Text(line, style="yellow"))
    return grid


def _found_by(f: Finding) -> str:
    sources = f.evidence.get("sources") if isinstance(f.evidence, dict) else None
    if not isinstance(sources, list) or len(sources) < 2:
        return ""
    return "found by " + " and ".join(str(s.get("analyzer")) for s in sources if isinstance(s, dict))


SEVERITY_COLOURS = {"error": "red", "warning": "yellow"}


class _Card:
    """A panel whose title is never cut: a title wider than the screen becomes the
    first line inside the panel (rich would shorten it with an ellipsis)."""

    def __init__(self, title, body, colour: str):
        self.title, self.body, self.colour = title, body, colour

    def __rich_console__(self, console, options):
        from rich.console import Group
        from rich.panel import Panel

        if self.title.cell_len + 6 <= options.max_width:
            yield Panel(self.body, title=self.title, border_style=self.colour)
        else:
            heading = self.title.copy()
            heading.stylize("bold")
            yield Panel(Group(heading, self.body), border_style=self.colour)


def _skipped_line(check: Check) -> str:
    return f"{check.name}{f' ({check.run_id})' if check.run_id else ''}: {check.detail}"


def render_report(report: Report, fmt: str, stream) -> None:
    """Write ``report`` to ``stream`` as ``fmt``: "json" (the source of truth), "markdown",
    "csv" (its findings, or its first table when it has no findings) or "table" (a rich
    panel and its tables)."""
    if fmt == "json":
        stream.write(to_json(report.to_dict()) + "\n")
    elif fmt == "markdown":
        stream.write(to_markdown(report))
    elif fmt == "csv":
        render_rows(_csv_rows(report), "csv", stream=stream)
    else:
        out = console(stream)
        out.print(rich_view(report))
        for table in report.tables:
            out.print(rich_table(table.columns, table.rows, title=table.name))


def _csv_rows(report: Report) -> list[dict]:
    if report.findings or not report.tables:
        rows = [f.to_dict() for f in report.findings]
        return rows or [{"code": "", "severity": "", "title": ""}]
    table = report.tables[0]
    return [dict(zip(table.columns, row)) for row in table.rows]
