"""``rldk analyze``: run every applicable analyzer over a store and write the cards.

Not an analyzer itself: it opens the input once (``rldk.data.open_input``), runs
the analyzers named in ``rldk.analyzers.DEFAULT`` in order, and writes ``<analyzer>.json`` / ``.md`` (and
PNG plots) for each into the output directory, plus ``index.json`` / ``index.md``.

Options reach analyzers through their ``Params``: an option whose name is a field
of an analyzer's Params (``baseline``, ...) is set there; the other fields keep
their documented defaults. An analyzer is *skipped* (and says why) when
``applies(store)`` is False or it raises ``MissingEvents``; *error* when it raises
another ``RldkError``. The whole analysis is *inconclusive* when no analyzer that
``defines_verdict`` reached a verdict (ok or problems): the store was read but not
checked for anything rldk looks for.

Defaults that find things: a store of exactly two runs is compared without
``baseline``: the first run by id is the baseline (pass ``baseline`` to choose).
A problem that two analyzers report (same run, same problem, overlapping steps:
``rldk.core.report.merge_duplicates``) is one finding in the analysis, listing both
in ``evidence["sources"]``; each analyzer's own card keeps its finding. Exit codes of the command: 0 clean, 3
problems, 4 inconclusive, 1 errors or nothing analyzable.
"""
from __future__ import annotations

import importlib
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from rldk.analyzers import _catalog, _series, default, modules
from rldk.core.errors import MissingEvents, RldkError
from rldk.core.fs import is_remote
from rldk.core.report import (
    STATUS_COLOURS,
    Check,
    Finding,
    Report,
    ReportTable,
    merge_duplicates,
    write_report,
)
from rldk.core.result import as_dict
from rldk.data import open_input

#: Stores of more events are read two runs at a time before the analyzers run
#: (``_series.prefetch``), and their analyzers run on worker threads (``_on_threads``); a
#: smaller one is read run by run as the analyzers ask, which costs less than starting
#: the threads.
PREFETCH_ROWS = 1_000_000
#: Above this many events the analyzers run two at a time; below, the series are short
#: enough that their Python work dominates and two threads only contend for the GIL
#: (measured, one against two threads: 1M events 0.56 / 0.60 s, 3M 1.00 / 0.98 s,
#: 10M 2.06 / 1.72 s). Between PREFETCH_ROWS and this they run one at a time on a
#: worker thread, once the store is read.
PARALLEL_ROWS = 3_000_000


@dataclass(frozen=True)
class Outcome:
    """One analyzer's run: status "ok" | "problems" | "inconclusive" | "skipped" | "error",
    its summary, problem count, written files (json, markdown, plots), seconds taken, and
    whether its verdict counts for the whole analysis (``Analyzer.defines_verdict``)."""

    analyzer: str
    status: str
    summary: str
    problems: int
    files: dict
    seconds: float
    defines_verdict: bool = True

    def to_dict(self) -> dict:
        return as_dict(self)


@dataclass(frozen=True)
class Analysis:
    """Everything ``analyze`` did: the runs, each analyzer's outcome and report."""

    paths: tuple[str, ...]
    out_dir: str
    runs: tuple[str, ...]
    outcomes: tuple[Outcome, ...]
    reports: tuple[Report, ...]
    baseline: str | None = None

    @cached_property
    def findings(self) -> list[tuple[tuple[str, ...], Finding]]:
        """``(analyzers, finding)`` for every finding of every report, a problem that
        several analyzers found merged into one (``merge_duplicates``)."""
        return merge_duplicates((r.analyzer, f) for r in self.reports for f in r.findings)

    @property
    def problems(self) -> list:
        return [f for _, f in self.findings if f.is_problem]

    @property
    def merged(self) -> int:
        """Findings that were reported by more than one analyzer (and merged)."""
        return sum(len(analyzers) > 1 for analyzers, _ in self.findings)

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "error"]

    @property
    def status(self) -> str:
        """"error", "problems", "inconclusive" (no verdict-defining analyzer concluded) or "ok"."""
        if self.errors:
            return "error"
        if self.problems:
            return "problems"
        concluded = [o for o in self.outcomes if o.defines_verdict and o.status in ("ok", "problems")]
        return "ok" if concluded else "inconclusive"

    def to_dict(self) -> dict:
        # not the generic shape: the reports have cards of their own; status and the
        # problem count are what index.json readers (CI gates) look at first
        return {"paths": list(self.paths), "out_dir": self.out_dir, "runs": list(self.runs),
                "baseline": self.baseline, "status": self.status, "problems": len(self.problems),
                "outcomes": [o.to_dict() for o in self.outcomes]}

    def report(self) -> Report:
        """The whole analysis as one Report (what ``rldk analyze`` prints): every problem,
        every check (an applicable analyzer that lacked its events is a check that could
        not run), one row per analyzer. Errors are not in it: the CLI prints them apart."""
        findings = tuple(self.problems)
        checks = tuple(c for r in self.reports for c in r.checks)
        checks += tuple(Check(o.analyzer, "skipped", o.summary) for o in self.outcomes
                        if o.status == "skipped" and o.defines_verdict)
        status = "problems" if findings else ("inconclusive" if self.status == "inconclusive" else "ok")
        rows = tuple((o.analyzer, o.status, o.problems, o.summary) for o in self.outcomes)
        return Report("index", f"rldk analyze: {len(self.runs)} run(s)", status, self._summary(status),
                      findings, (ReportTable("Analyzers", ("analyzer", "status", "problems", "summary"),
                                             rows),), self.to_dict(), checks)

    def _summary(self, status: str) -> str:
        runs = ", ".join(self.runs)
        if status == "problems":
            by = [f"{o.analyzer} ({o.problems})" for o in self.outcomes if o.problems]
            merged = f"; {self.merged} found by more than one analyzer, counted once" if self.merged else ""
            return f"{len(self.problems)} problem(s) in {runs}: {', '.join(by)}{merged}"
        if status == "inconclusive":
            return (f"nothing verified in {runs}: no check that finds training problems could run "
                    "(see the checks that could not run)")
        concluded = [o.analyzer for o in self.outcomes if o.status == "ok" and o.defines_verdict]
        return f"no problems in {runs}; checked by {', '.join(concluded)}"

    def rich_summary(self):
        """A rich table: one row per analyzer with its status and whole verdict (long
        verdicts wrap), then, when inconclusive, the checks that could not run."""
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"rldk analyze: {len(self.runs)} run(s) -> {self.out_dir}: "
                            f"{self.status.upper()}", show_lines=False, expand=False)
        for col in ("analyzer", "status", "summary"):
            table.add_column(col, overflow="fold")
        colour = STATUS_COLOURS
        for o in self.outcomes:
            table.add_row(o.analyzer, Text(o.status, style=colour[o.status]), Text(o.summary))
        if self.status != "inconclusive":
            return table
        from rich.console import Group

        return Group(table, Text(self.inconclusive_reason(), style="yellow"))

    def inconclusive_reason(self) -> str:
        """Why nothing was verified: the checks that could not run, with what to log."""
        skipped = [f"{o.analyzer}: {o.summary}" for o in self.outcomes
                   if o.defines_verdict and o.status == "skipped"]
        skipped += [f"{r.analyzer}/{c.name}{f' ({c.run_id})' if c.run_id else ''}: {c.detail}"
                    for r in self.reports for c in dict.fromkeys(r.skipped_checks)]
        return ("INCONCLUSIVE: no check that finds training problems could run. Could not run:\n  "
                + "\n  ".join(skipped or ["(no analyzer applied)"]))


def analyze(paths, baseline: str | None = None, out_dir="rldk_reports", plots: bool = True,
            analyzers=None, on_analyzer=None, store=None, engine=None) -> Analysis:
    """Open ``paths`` as one store, run each analyzer, write cards into ``out_dir``.

    ``on_analyzer(name, index, total)``, when given, is called before each analyzer
    runs (the CLI draws its progress bar with it). ``store``: ``paths`` already opened
    (``rldk.data.open_input``), so that a caller that reads them again (the HTML
    report) opens them once. ``engine(store, analyzers, options)``, when given,
    computes the results instead (``rldk.fleet``: one task per run) and returns
    ``{name: callable}``: each callable returns that analyzer's Result or raises as
    :func:`compute` would.

    Paths are event stores (files, directories, globs) or foreign logs, which are
    imported through the converters first (``rldk.ingest_runs``). Without ``baseline``,
    a store of exactly two runs uses the first by id (``default_baseline``). Raises
    ``MissingEvents`` when there are no metric events at all (nothing to check).
    """
    store = open_input(paths) if store is None else store
    if engine is not None or not any(is_remote(f) for f in store.files):
        return _analyze(paths, store, baseline, out_dir, plots, analyzers, on_analyzer, engine)
    with store.reading_local_copies():      # objects: one GET each, not one per query
        analysis = _analyze(paths, store, baseline, out_dir, plots, analyzers, on_analyzer, engine)
    _series.clear_cache()
    return analysis


def _analyze(paths, store, baseline, out_dir, plots, analyzers, on_analyzer, engine) -> Analysis:
    rows = sum(f.rows for f in store.footers.values())
    # the catalog scan releases the GIL: modules needed next are imported meanwhile
    _import_meanwhile(*(["polars"] if engine is not None or _series.reads_polars(rows) else []),
                      *(modules() if analyzers is None else []))
    if "metric" not in _kinds(store, engine):
        raise MissingEvents(f"no metric events in {' '.join(map(str, _as_list(paths)))}: log "
                            "scalars with rldk.writer.log or import logs with `rldk import`")
    large = engine is None and rows > PREFETCH_ROWS
    if large:
        chosen = _prefetching(store, analyzers)
    else:
        chosen = list(analyzers if analyzers is not None else default())
    baseline = baseline if baseline is not None else default_baseline(store.run_ids)
    options = {"baseline": baseline}
    outcomes, reports = [], []
    if engine is not None:
        computed = engine(store, chosen, options)
    else:
        computed = _on_threads(store, chosen, options, 2 if rows > PARALLEL_ROWS else 1) if large else {}
    for index, analyzer in enumerate(chosen):
        if on_analyzer is not None:
            on_analyzer(analyzer.name, index, len(chosen))
        outcome, report = _run_one(analyzer, store, options, out_dir, plots, computed.get(analyzer.name))
        outcomes.append(outcome)
        if report is not None:
            reports.append(report)
    analysis = Analysis(tuple(map(str, _as_list(paths))), str(out_dir), tuple(store.run_ids),
                        tuple(outcomes), tuple(reports), baseline)
    write_index(analysis)
    return analysis


def _import_meanwhile(*names: str) -> None:
    """Start importing the modules ``names`` on another thread, to overlap work that
    releases the GIL (polars takes 0.1 s to import, the default analyzers 0.05 s)."""
    def load():
        for name in names:
            try:
                importlib.import_module(name)
            except ImportError:            # whoever needs it says so
                pass

    threading.Thread(target=load, daemon=True).start()


def _prefetching(store, analyzers) -> list:
    """The analyzers to run (their modules imported), while the store's runs are read
    into the series cache (``_series.prefetch``) on other threads: the reads release
    the GIL, so the imports cost no time of their own."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        reading = pool.submit(_series.prefetch, [_series.Source(store, r) for r in store.run_ids])
        chosen = list(analyzers if analyzers is not None else default())
        reading.result()
    return chosen


def _on_threads(store, chosen, options, workers: int = 2) -> dict:
    """``{name: Background}``: the analyzers computed ``workers`` at a time on worker
    threads, in order, from the series cache. On a large store most of an analysis is
    NumPy and Polars work on long arrays, which releases the GIL, so on two cores two
    analyzers go faster than one; each computes from its own data, so the results are
    the ones a serial run gives."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=workers)
    computed = {a.name: Background(pool, a, store, options) for a in chosen}
    pool.shutdown(wait=False)                # the workers stop once every one is done
    return computed


class Background:
    """One analyzer computed on a worker thread: calling it waits for its Result (or raises
    as :func:`compute` would); ``seconds`` is then the computation's own duration."""

    def __init__(self, pool, analyzer, store, options):
        self.seconds: float | None = None
        self._future = pool.submit(self._compute, analyzer, store, options)

    def _compute(self, analyzer, store, options):
        start = time.perf_counter()
        try:
            return compute(analyzer, store, analyzer.params(**options))
        finally:
            self.seconds = time.perf_counter() - start

    def __call__(self):
        return self._future.result()


def _kinds(store, engine) -> frozenset:
    """The store's event kinds: from one catalog scan that also indexes every run for
    the analyzers (``_catalog.warm``), or, when an engine reads the runs elsewhere,
    whether there is any metric event."""
    if engine is None:
        return _catalog.warm(store).kinds
    return frozenset() if store.sql("SELECT 1 FROM metrics LIMIT 1").is_empty() else frozenset({"metric"})


def default_baseline(run_ids) -> str | None:
    """The baseline when none is given: with exactly two runs, the first by id (the
    other is compared with it); with more, None (which one is the reference is the
    user's call: ``--baseline RUN``)."""
    return sorted(run_ids)[0] if len(run_ids) == 2 else None


def _as_list(paths):
    return [paths] if isinstance(paths, (str, Path)) else list(paths)


def compute(analyzer, store, params):
    """``analyzer``'s Result over ``store``; raises :class:`NotApplicable` when it does not
    apply, ``MissingEvents`` or another ``RldkError`` as its ``run`` does."""
    if not analyzer.applies(store):
        raise not_applicable(analyzer)
    return analyzer.run(store, params)


def not_applicable(analyzer) -> "NotApplicable":
    """The error of ``analyzer`` on a store without any of the events it reads."""
    kinds = ", ".join(analyzer.consumes)
    return NotApplicable(f"not applicable: the store lacks the events it reads ({kinds})")



class NotApplicable(MissingEvents):
    """``applies(store)`` is False: the store lacks every kind of event the analyzer reads."""



def _run_one(analyzer, store, options, out_dir, plots, computed=None):
    start = time.perf_counter()
    name, counts = analyzer.name, analyzer.defines_verdict
    try:
        params = analyzer.params(**options)
        result = computed() if computed is not None else compute(analyzer, store, params)
    except MissingEvents as exc:
        return _skipped(name, str(exc), _began(start, computed), counts), None
    except RldkError as exc:
        return Outcome(name, "error", str(exc), 0, {}, time.perf_counter() - _began(start, computed),
                       counts), None
    start = _began(start, computed)
    report = result.report()
    pngs = plots_or_note(analyzer, result, out_dir) if plots else {}
    files = dict(write_report(report, out_dir, pngs), plots=list(pngs.values()))
    return Outcome(name, report.status, report.summary, len(report.problems), files,
                   time.perf_counter() - start, counts), report


def _began(start: float, computed) -> float:
    """When the analyzer's work began, as its seconds count it: a computation on a worker
    thread (:class:`Background`) counts its own duration, not the wait for it."""
    seconds = getattr(computed, "seconds", None)
    return start if seconds is None else time.perf_counter() - seconds


def _skipped(name, why, start, counts):
    return Outcome(name, "skipped", why, 0, {}, time.perf_counter() - start, counts)


def plots_or_note(analyzer, result, out_dir) -> dict[str, str]:
    """The analyzer's PNG plots for ``result`` ({caption: path}); none without matplotlib."""
    from rldk.core.plots import MissingPlotting

    try:
        return analyzer.plots(result, out_dir)
    except MissingPlotting:
        return {}


def write_index(analysis: Analysis) -> dict[str, str]:
    """``index.json`` and ``index.md`` in the output directory: one line per analyzer."""
    from rldk.core.render import escape_markdown, markdown_table, to_json

    out = Path(analysis.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.json").write_text(to_json(analysis.to_dict()) + "\n", encoding="utf-8")
    rows = [[o.analyzer, o.status, o.problems,
             f"[card]({o.analyzer}.md)" if o.files else "", o.summary]
            for o in analysis.outcomes]
    text = (f"# rldk analyze\n\nRuns: {escape_markdown(', '.join(analysis.runs))}  \n"
            f"Status: {analysis.status}  \nProblems found: {len(analysis.problems)}\n\n"
            + markdown_table(["analyzer", "status", "problems", "card", "summary"], rows))
    # the card links are ours, not from logs: undo the escaping of their brackets
    text = text.replace("\\[card\\]\\(", "[card](").replace(".md\\)", ".md)")
    if analysis.status == "inconclusive":
        lines = analysis.inconclusive_reason().split("\n")
        text += "\n" + "\n".join(["**" + escape_markdown(lines[0]) + "**", ""]
                                  + [f"- {escape_markdown(line.strip())}" for line in lines[1:]]) + "\n"
    (out / "index.md").write_text(text, encoding="utf-8")
    return {"json": str(out / "index.json"), "markdown": str(out / "index.md")}
