"""What one task does with one unit's files (in this process or on a Ray worker).

Everything a task needs travels in its arguments (file paths and their footers,
analyzer names, options) and everything it returns is plain picklable data, no
event tables: a task opens only its own files, once (one :class:`Store` over the
footers the caller already read), runs the analyzers and sends back their results
(``unit_results``) or one row per run for the fleet table (``unit_rows``). The
series the analyzers load are shared among them through ``_series``' cache, which
is emptied before and after each unit, so a worker holds one unit's data at a time.
Objects on object storage are fetched once each, concurrently, into a temporary
folder for the task (``rldk.core.fs.local_copies``, when they fit in half its free
space): every query then reads local bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

from rldk import semantics
from rldk.analyzers import _series, get
from rldk.analyzers.suite import NotApplicable, compute
from rldk.core.errors import MissingEvents, RldkError
from rldk.core.fs import local_copies, scratch_budget
from rldk.core.report import SEVERITIES
from rldk.core.store import Store

#: The quantities the fleet table shows (canonical names, resolved per run by rldk.semantics).
KEY_METRICS = ("reward", "kl_to_ref", "entropy", "loss")


@dataclass(frozen=True)
class Failure:
    """An analyzer that produced no result on a unit: ``kind`` is "not_applicable",
    "missing" (MissingEvents: ``message`` says what to log) or "error"."""

    kind: str
    message: str

    def raise_it(self):
        raise {"not_applicable": NotApplicable, "missing": MissingEvents}.get(self.kind, RldkError)(self.message)


@dataclass(frozen=True)
class Part:
    """A split analyzer's part of a unit (``run_part``: see ``rldk.fleet.merge``), or
    the Failure that stopped it; ``applies``: whether the unit has its events."""

    applies: bool
    part: object


@dataclass(frozen=True)
class FleetRow:
    """One run of the fleet table.

    status: complete, incomplete, failed, killed or unknown, and last_step: the run's
    last metric step, both as the summary analyzer reports them. metrics:
    ``{quantity: last value or None}`` for ``KEY_METRICS`` (the run's own name
    through ``rldk.semantics``). verdict: problems, ok, inconclusive or error (its
    analyzers together). problems: findings that are problems. worst: the most
    severe finding (earliest step first) as a dict with its analyzer, or None.
    errors: analyzers that failed, with why.
    """

    run_id: str
    status: str
    last_step: int | None
    metrics: dict
    verdict: str
    problems: int
    worst: dict | None
    errors: tuple[tuple[str, str], ...] = ()


def unit_results(files, footers, names, options, split=(), base_files=()) -> dict:
    """``{analyzer name: Result | Failure}`` over the unit of ``files``, and for the
    analyzers in ``split`` ``{name: Part}`` (divergence over the unit and the baseline's
    ``base_files``)."""
    _series.clear_cache()
    with local_copies([*files, *base_files], max_bytes=scratch_budget()) as copies:
        store = Store(list(files), footers, copies=copies)
        out = {name: _result(get(name), store, options) for name in names if name not in split}
        for name in split:
            both = (Store(sorted({*files, *base_files}), footers, copies=copies) if name == "divergence"
                    else store)
            out[name] = _part(get(name), both, store, options)
    _series.clear_cache()           # the copies are gone: no cached read may point at them
    return out


def _result(analyzer, store, options):
    try:
        return compute(analyzer, store, analyzer.params(**options))
    except NotApplicable as exc:
        return Failure("not_applicable", str(exc))
    except MissingEvents as exc:
        return Failure("missing", str(exc))
    except RldkError as exc:
        return Failure("error", str(exc))


def _part(analyzer, store, own, options) -> Part:
    try:
        applies = analyzer.applies(own)
        return Part(applies, analyzer.run_part(store, analyzer.params(**options), own.run_ids))
    except RldkError as exc:
        return Part(True, Failure("error", str(exc)))


def unit_rows(files, footers, run_ids, names, options) -> tuple[FleetRow, ...]:
    """One :class:`FleetRow` per run of the unit (the default analyzers' verdicts)."""
    _series.clear_cache()
    with local_copies(files, max_bytes=scratch_budget()) as copies:
        store = Store(list(files), footers, copies=copies)
        results = {name: _result(get(name), store, options) for name in names}
        reports = {n: r.report() for n, r in results.items() if not isinstance(r, Failure)}
        errors = tuple((n, r.message) for n, r in results.items()
                       if isinstance(r, Failure) and r.kind == "error")
        facts = _facts(store, results.get("summary"))
        rows = tuple(_row(store, rid, facts[rid], reports, errors) for rid in run_ids)
    _series.clear_cache()
    return rows


def _facts(store, summary) -> dict:
    """``{run id: (status, last step)}`` from the summary analyzer's result, or from the
    store's run table when it failed."""
    if summary is not None and not isinstance(summary, Failure):
        return {r.run_id: (r.status, r.last_step) for r in summary.runs}
    return {row["run_id"]: (row["status"], row["last_step"]) for row in store.summary().iter_rows(named=True)}


def _row(store, run_id, facts, reports, errors) -> FleetRow:
    found = [(n, f) for n, r in reports.items() for f in r.findings if f.run_id in (run_id, None)]
    problems = [(n, f) for n, f in found if f.is_problem]
    concluded = any(r.status in ("ok", "problems") and get(n).defines_verdict for n, r in reports.items())
    verdict = ("error" if errors else "problems" if problems else "ok" if concluded else "inconclusive")
    return FleetRow(run_id, *facts, last_values(store, run_id), verdict, len(problems), _worst(found), errors)


def _worst(found) -> dict | None:
    if not found:
        return None
    name, f = max(found, key=lambda nf: (SEVERITIES.index(nf[1].severity),
                                         -(nf[1].steps[0] if nf[1].steps else 1 << 62)))
    return {"analyzer": name, "code": f.code, "severity": f.severity, "title": f.title,
            "steps": list(f.steps) if f.steps else None}


def last_values(store, run_id) -> dict:
    """``{quantity: last value or None}`` of ``KEY_METRICS`` in one run, as
    ``Run.metric(quantity)`` gives it (from the series the analyzers already loaded)."""
    source = _series.Source(store, run_id)
    names = list(_series.run_index(source))
    out = {}
    for quantity in KEY_METRICS:
        found = semantics.resolve(quantity, names)
        series = _series.load_series(source, [found.metric]).get(found.metric) if found else None
        out[quantity] = float(series.values[-1]) * found.sign if series is not None and len(series) else None
    return out
