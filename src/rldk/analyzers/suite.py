"""``rldk analyze``: run every applicable analyzer over a store and write the cards.

Not an analyzer itself: it opens the store once, runs the modules listed in
``rldk.analyzers.BUILTIN`` in order, and writes ``<analyzer>.json`` / ``.md`` (and
PNG plots) for each into the output directory, plus ``index.json`` / ``index.md``.

Options reach analyzers through their ``Params``: an option whose name is a field
of an analyzer's Params (``baseline``, ...) is set there; the other fields keep
their documented defaults. An analyzer is *skipped* (and says why) when
``applies(store)`` is False or it raises ``MissingEvents``; *error* when it raises
another ``RldkError``. Exit codes of the command: 0 clean, 3 problems, 1 errors or
nothing analyzable.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from rldk.analyzers import builtin
from rldk.core.errors import MissingEvents, RldkError
from rldk.core.report import Report, write_report


@dataclass(frozen=True)
class Outcome:
    """One analyzer's run: status "ok" | "problems" | "skipped" | "error", its summary,
    problem count, written files (json, markdown, plots) and seconds taken."""

    analyzer: str
    status: str
    summary: str
    problems: int
    files: dict
    seconds: float

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Analysis:
    """Everything ``analyze`` did: the runs, each analyzer's outcome and report."""

    paths: tuple[str, ...]
    out_dir: str
    runs: tuple[str, ...]
    outcomes: tuple[Outcome, ...]
    reports: tuple[Report, ...]

    @property
    def problems(self) -> list:
        return [f for r in self.reports for f in r.problems]

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "error"]

    def to_dict(self) -> dict:
        return {"paths": list(self.paths), "out_dir": self.out_dir, "runs": list(self.runs),
                "problems": len(self.problems), "outcomes": [o.to_dict() for o in self.outcomes]}

    def rich_summary(self):
        """A rich table: one row per analyzer with its status and verdict."""
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"rldk analyze: {len(self.runs)} run(s) -> {self.out_dir}",
                      show_lines=False, expand=False)
        for col in ("analyzer", "status", "summary"):
            table.add_column(col, overflow="fold")
        colour = {"ok": "green", "problems": "red", "skipped": "yellow", "error": "red"}
        for o in self.outcomes:
            table.add_row(o.analyzer, Text(o.status, style=colour[o.status]), Text(_short(o.summary)))
        return table


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def analyze(paths, baseline: str | None = None, out_dir="rldk_reports", plots: bool = True,
            modules=None, on_analyzer=None) -> Analysis:
    """Open ``paths`` as one store, run each analyzer, write cards into ``out_dir``.

    ``on_analyzer(name, index, total)``, when given, is called before each analyzer
    runs (the CLI draws its progress bar with it).

    Paths are event stores (files, directories, globs) or foreign logs, which are
    imported through the converters first (``rldk.ingest_runs``). Raises
    ``MissingEvents`` when there are no metric events at all (nothing to check).
    """
    store = open_paths(paths)
    if store.sql("SELECT 1 FROM metrics LIMIT 1").is_empty():
        raise MissingEvents(f"no metric events in {' '.join(map(str, _as_list(paths)))}: log "
                            "scalars with rldk.writer.log or import logs with `rldk import`")
    from rldk.analyzers import _series

    _series.prefetch([_series.Source(store, run_id) for run_id in store.run_ids])
    options = {"baseline": baseline}
    outcomes, reports = [], []
    chosen = list(modules if modules is not None else builtin())
    for index, module in enumerate(chosen):
        if on_analyzer is not None:
            on_analyzer(module.NAME, index, len(chosen))
        outcome, report = _run_one(module, store, options, out_dir, plots)
        outcomes.append(outcome)
        if report is not None:
            reports.append(report)
    analysis = Analysis(tuple(map(str, _as_list(paths))), str(out_dir), tuple(store.run_ids),
                        tuple(outcomes), tuple(reports))
    write_index(analysis)
    return analysis


def open_paths(paths):
    """One Store over ``paths``: event stores as they are, other logs converted."""
    from rldk.core.store import Store, ingest_runs, open_store

    paths = _as_list(paths)
    try:
        return open_store(paths)
    except RldkError:
        pass
    files: set[str] = set()
    for path in paths:
        runs = ingest_runs(str(path))
        if not runs:
            raise MissingEvents(f"no runs in {path}")
        files.update(runs[0].store.files)
    return Store(sorted(files))


def _as_list(paths):
    return [paths] if isinstance(paths, (str, Path)) else list(paths)


def params_for(module, options: dict):
    """The module's default Params with the matching ``options`` that are not None set."""
    fields = {f.name for f in dataclasses.fields(module.Params)}
    return module.Params(**{k: v for k, v in options.items() if k in fields and v is not None})


def _run_one(module, store, options, out_dir, plots):
    start = time.perf_counter()
    name = module.NAME
    try:
        params = params_for(module, options)
        if not module.applies(store):
            kinds = ", ".join(module.CONSUMES)
            return _skipped(name, f"not applicable: the store lacks the events it reads ({kinds})",
                            start), None
        result = module.run(store, params)
    except MissingEvents as exc:
        return _skipped(name, str(exc), start), None
    except RldkError as exc:
        return Outcome(name, "error", str(exc), 0, {}, time.perf_counter() - start), None
    report = result.report()
    pngs = plots_or_note(result, out_dir, module) if plots else {}
    files = dict(write_report(report, out_dir, pngs), plots=list(pngs.values()))
    return Outcome(name, report.status, report.summary, len(report.problems), files,
                   time.perf_counter() - start), report


def _skipped(name, why, start):
    return Outcome(name, "skipped", why, 0, {}, time.perf_counter() - start)


def plots_or_note(result, out_dir, module=None) -> dict[str, str]:
    """The module's PNG plots for ``result`` ({caption: path}); none without matplotlib."""
    from rldk.core.plots import MissingPlotting

    if module is None:
        import importlib

        module = importlib.import_module(type(result).__module__)
    make = getattr(module, "plots", None)
    if make is None:
        return {}
    try:
        return make(result, out_dir)
    except MissingPlotting:
        return {}


def write_index(analysis: Analysis) -> dict[str, str]:
    """``index.json`` and ``index.md`` in the output directory: one line per analyzer."""
    from rldk.core.render import escape_markdown, markdown_table, to_json

    out = Path(analysis.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.json").write_text(to_json(analysis.to_dict()) + "\n", encoding="utf-8")
    rows = [[o.analyzer, o.status, o.problems,
             f"[card]({o.analyzer}.md)" if o.files else "", _short(o.summary)]
            for o in analysis.outcomes]
    text = (f"# rldk analyze\n\nRuns: {escape_markdown(', '.join(analysis.runs))}  \n"
            f"Problems found: {len(analysis.problems)}\n\n"
            + markdown_table(["analyzer", "status", "problems", "card", "summary"], rows))
    # the card links are ours, not from logs: undo the escaping of their brackets
    text = text.replace("\\[card\\]\\(", "[card](").replace(".md\\)", ".md)")
    (out / "index.md").write_text(text, encoding="utf-8")
    return {"json": str(out / "index.json"), "markdown": str(out / "index.md")}
