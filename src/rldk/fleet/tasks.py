"""What one task does with one unit's files (in this process or on a Ray worker).

Everything a task needs travels in its arguments (file paths, analyzer names,
options) and everything it returns is plain picklable data: a task opens only its
own files, runs the analyzers and sends back their results (``unit_results``) or
one row per run for the fleet table (``unit_rows``).
"""
from __future__ import annotations

from dataclasses import dataclass

from rldk.analyzers import get
from rldk.analyzers.suite import NotApplicable, compute
from rldk.core.errors import MissingEvents, RldkError, UsageError
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
class FleetRow:
    """One run of the fleet table.

    status: complete, incomplete, failed, terminated or unknown (``Store.summary``).
    last_step: the run's last logged step. metrics: ``{quantity: last value or None}``
    for ``KEY_METRICS`` (the run's own name through ``rldk.semantics``). verdict:
    problems, ok, inconclusive or error (its analyzers together). problems: findings
    that are problems. worst: the most severe finding (earliest step first) as a dict
    with its analyzer, or None. errors: analyzers that failed, with why.
    """

    run_id: str
    status: str
    last_step: int | None
    metrics: dict
    verdict: str
    problems: int
    worst: dict | None
    errors: tuple[tuple[str, str], ...] = ()


def unit_results(files, names, options) -> dict:
    """``{analyzer name: Result | Failure}`` over the store of ``files``."""
    store = Store(list(files))
    out = {}
    for name in names:
        analyzer = get(name)
        try:
            out[name] = compute(analyzer, store, analyzer.params(**options))
        except NotApplicable as exc:
            out[name] = Failure("not_applicable", str(exc))
        except MissingEvents as exc:
            out[name] = Failure("missing", str(exc))
        except RldkError as exc:
            out[name] = Failure("error", str(exc))
    return out


def unit_rows(files, run_ids, names, options) -> tuple[FleetRow, ...]:
    """One :class:`FleetRow` per run of the unit (the default analyzers' verdicts)."""
    store = Store(list(files))
    results = unit_results(files, names, options)
    reports = {n: r.report() for n, r in results.items() if not isinstance(r, Failure)}
    errors = tuple((n, r.message) for n, r in results.items() if isinstance(r, Failure) and r.kind == "error")
    summary = {row["run_id"]: row for row in store.summary().iter_rows(named=True)}
    return tuple(_row(store, rid, summary[rid], reports, errors) for rid in run_ids)


def _row(store, run_id, facts, reports, errors) -> FleetRow:
    found = [(n, f) for n, r in reports.items() for f in r.findings if f.run_id in (run_id, None)]
    problems = [(n, f) for n, f in found if f.is_problem]
    concluded = any(r.status in ("ok", "problems") and get(n).defines_verdict for n, r in reports.items())
    verdict = ("error" if errors else "problems" if problems else "ok" if concluded else "inconclusive")
    return FleetRow(run_id, facts["status"], facts["last_step"], last_values(store, run_id), verdict,
                    len(problems), _worst(found), errors)


def _worst(found) -> dict | None:
    if not found:
        return None
    name, f = max(found, key=lambda nf: (SEVERITIES.index(nf[1].severity),
                                         -(nf[1].steps[0] if nf[1].steps else 1 << 62)))
    return {"analyzer": name, "code": f.code, "severity": f.severity, "title": f.title,
            "steps": list(f.steps) if f.steps else None}


def last_values(store, run_id) -> dict:
    """``{quantity: last logged value or None}`` of ``KEY_METRICS`` in one run."""
    run = store.run(run_id)
    out = {}
    for quantity in KEY_METRICS:
        try:
            frame = run.metric(quantity)
        except UsageError:
            out[quantity] = None
            continue
        out[quantity] = float(frame["value"][-1]) if frame.height else None
    return out
