"""The determinism card: verdict, checks per replica and level, tables, findings.

The verdict comes from outcomes (tensors, metrics, logged steps); each differing
RNG source is a finding that explains (likely cause), follows (consequence) or
does not matter (unused, harmless; info) — see :mod:`.rng`.
"""
from __future__ import annotations

from rldk.analyzers.determinism.rng import OUTCOMES, likely_cause, rng_roles
from rldk.core.report import Check, Finding, Report, ReportTable, verdict

#: The levels whose comparison makes the check conclusive (RNG states and the "steps"
#: level alone do not: they say nothing of the run's outcome values).
DEFINING = ("tensor", "metric")


def checks(r) -> list[Check]:
    """One check per replica and level: ran, or skipped with why and what to log."""
    return [Check(d.level, "skipped" if d.skipped else "ran", d.skipped or _ran_detail(d), d.replica)
            for d in r.divergences]


def _ran_detail(d) -> str:
    if d.level == "metric":
        return f"{d.detail.get('signals', 0)} metric(s) compared"
    if d.level == "steps":
        return "logged steps compared"
    return f"{d.detail.get('compared', 0)} {d.level} digests at {d.detail.get('steps', 0)} steps"


def findings(r) -> list[Finding]:
    """A finding per replica and outcome level that differs, one per differing RNG source
    (cause, consequence or unused); notes on levels not logged; risky settings."""
    top = r.fixes[0].action if r.fixes else ""
    out = [Finding(f"{d.level}_diverged", "error", f"{d.level} '{d.name}' differs from step {d.step}",
                   d.replica, d.name if d.level == "metric" else None, (d.step, d.step),
                   _level_dict(d), top)
           for d in r.divergences if d.step is not None and d.level in OUTCOMES]
    out += [_rng_finding(role, top) for role in rng_roles(r.divergences)]
    if "tensor" not in r.levels_compared:
        out.append(Finding("no_tensor_events", "info", "no tensor checksums logged: tensors were not "
                           "compared", fix="log them with rldk.writer.log_tensors(step, model, 'grad')"))
    if "rng" not in r.levels_compared:
        out.append(Finding("no_rng_events", "info", "no RNG digests logged: RNG states were not "
                           "compared", fix="log them with rldk.writer.log_rng(step)"))
    out += [Finding("risky_setting", "warning" if r.differs else "info", f.reason, fix=f.action)
            for f in r.fixes if f.evidence == "setting"]
    return out


_SEED_IT = ("seed it (rldk.seed_everything(seed) seeds python, numpy and torch) so that it stays "
            "harmless if the code starts drawing from it")


def _rng_finding(role, top: str) -> Finding:
    where = f"RNG source '{role.source}' differs from step {role.step}"
    if role.role == "unused":
        return Finding("rng_unused", "info", f"{where}, but every metric and tensor is equal: an "
                       "unused RNG, harmless", role.replica, steps=(role.step, role.step),
                       evidence=_role_dict(role), fix=_SEED_IT)
    if role.role == "cause":
        return Finding("rng_cause", "warning", f"{where}, and the outcomes differ from step "
                       f"{role.outcome_step}: the likely cause", role.replica,
                       steps=(role.step, role.outcome_step), evidence=_role_dict(role), fix=top)
    return Finding("rng_after", "info", f"{where}, after the outcomes differ (step "
                   f"{role.outcome_step}): a consequence, not the cause", role.replica,
                   steps=(role.step, role.step), evidence=_role_dict(role))


def _role_dict(role) -> dict:
    return {"replica": role.replica, "source": role.source, "step": role.step, "role": role.role,
            "outcome_step": role.outcome_step}


def _level_dict(d) -> dict:
    return {"replica": d.replica, "level": d.level, "step": d.step, "name": d.name, "detail": d.detail}


def status_of(r) -> str:
    """problems when a replica differs; inconclusive when no defining level was compared."""
    return verdict(findings(r), [c for c in checks(r) if c.name in DEFINING])


def report(r) -> Report:
    status = status_of(r)
    return Report("determinism", "Determinism check", status, summary(r, status), tuple(findings(r)),
                  tables(r), r.to_dict(), tuple(checks(r)))


def summary(r, status: str) -> str:
    n = len(r.replicas)
    if status == "inconclusive":
        why = "; ".join(dict.fromkeys(d.skipped for d in r.divergences if d.skipped)) or "nothing compared"
        return f"Inconclusive: {n} replicas could not be compared at any level ({why})."
    if status == "ok":
        unused = sorted({x.source for x in rng_roles(r.divergences)})
        if not unused:
            return (f"Deterministic: {n} replicas are bit-identical over {r.steps_compared} steps "
                    f"({', '.join(r.levels_compared)} compared).")
        compared = ", ".join(lv for lv in r.levels_compared if lv != "rng")
        return (f"Deterministic: {n} replicas give identical outcomes over {r.steps_compared} steps "
                f"({compared} compared); RNG source(s) {', '.join(unused)} differ but were not used: "
                "harmless.")
    parts = [f"step {r.first_divergent_step}"]
    if r.first_tensor:
        parts.append(f"first tensor {r.first_tensor}")
    if r.first_metric:
        parts.append(f"metric {r.first_metric}")
    cause = likely_cause(r.divergences)
    why = (f" Likely cause: RNG source '{cause.source}', which differs from step {cause.step}."
           if cause else "")
    return (f"Nondeterministic: {n} replicas differ from {parts[0]} ({'; '.join(parts[1:]) or 'no detail'})."
            f"{why} Top fix: {r.fixes[0].action if r.fixes else 'none found'}.")


def tables(r) -> tuple[ReportTable, ...]:
    div = ReportTable("first divergence per replica and level",
                      ("replica", "level", "step", "first name", "not compared because"),
                      tuple((d.replica, d.level, d.step, d.name, d.skipped) for d in r.divergences))
    spread = ReportTable("metric spread across replicas",
                         ("metric", "steps", "differing steps", "first differing step",
                          "max abs diff", "max rel diff", "max CV"),
                         tuple((s.metric, s.steps, s.differing_steps, s.first_diff_step,
                                s.max_abs_diff, s.max_rel_diff, s.max_cv) for s in r.spread))
    env = ReportTable("environment audit (training process)", ("setting", "value", "note"),
                      tuple((e["setting"], _audit_value(e), e["note"]) for e in r.environment))
    fixes = ReportTable("fixes, ranked by evidence", ("rank", "evidence", "do", "why"),
                        tuple((i + 1, f.evidence, f.action, f.reason) for i, f in enumerate(r.fixes)))
    log = (lambda c: c.log) if r.store is not None else (lambda c: "removed (pass --keep to keep)")
    runs = ReportTable("replica runs", ("replica", "exit", "seconds", "log"),
                       tuple((f"replica-{i}", c.returncode, round(c.seconds, 2), log(c))
                             for i, c in enumerate(r.commands)))
    return (div, spread, env, fixes) + ((runs,) if r.commands else ())


def _audit_value(row):
    if row["same"]:
        return row["value"]
    return "; ".join(f"{k}: {v}" for k, v in row["values"].items())
