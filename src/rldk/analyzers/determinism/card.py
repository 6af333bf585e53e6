"""The determinism card: verdict, checks per replica and level, tables, findings."""
from __future__ import annotations

from rldk.core.report import Check, Finding, Report, ReportTable, verdict

#: The levels whose comparison makes the check conclusive (the "steps" level alone does not).
DEFINING = ("tensor", "rng", "metric")


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
    """A finding per replica and level that differs; notes on levels not logged; risky settings."""
    top = r.fixes[0].action if r.fixes else ""
    out = [Finding(f"{d.level}_diverged", "error", f"{d.level} '{d.name}' differs from step {d.step}",
                   d.replica, d.name if d.level == "metric" else None, (d.step, d.step),
                   _level_dict(d), top)
           for d in r.divergences if d.step is not None]
    if "tensor" not in r.levels_compared:
        out.append(Finding("no_tensor_events", "info", "no tensor checksums logged: tensors were not "
                           "compared", fix="log them with rldk.writer.log_tensors(step, model, 'grad')"))
    if "rng" not in r.levels_compared:
        out.append(Finding("no_rng_events", "info", "no RNG digests logged: RNG states were not "
                           "compared", fix="log them with rldk.writer.log_rng(step)"))
    out += [Finding("risky_setting", "warning" if r.differs else "info", f.reason, fix=f.action)
            for f in r.fixes if f.evidence == "setting"]
    return out


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
        return (f"Deterministic: {n} replicas are bit-identical over {r.steps_compared} steps "
                f"({', '.join(r.levels_compared)} compared).")
    parts = [f"step {r.first_divergent_step}"]
    if r.first_tensor:
        parts.append(f"first tensor {r.first_tensor}")
    if r.first_rng_source:
        parts.append(f"RNG source {r.first_rng_source}")
    if r.first_metric:
        parts.append(f"metric {r.first_metric}")
    return (f"Nondeterministic: {n} replicas differ from {parts[0]} ({'; '.join(parts[1:]) or 'no detail'}). "
            f"Top fix: {r.fixes[0].action if r.fixes else 'none found'}.")


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
