"""The drift card: a comparison's verdict in words, its report, checks and plot.

Runs are named by id, always in the order A then B: the title ("Drift card: a vs
b"), the verdict ("... = 1.0 in a vs 1.5 in b") and the plot agree. "identical
before" is said only when the runs share a step before the divergent one.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rldk.analyzers.divergence.params import NAME
from rldk.core.naming import safe_file_stem
from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import as_dict

_CURVE_POINTS = 600
SIGNAL_COLUMNS = ("signal", "common_steps", "exact_step", "change_start", "alarm_step",
                  "direction", "magnitude", "z", "max_abs_delta", "band_sigma", "precision", "note")


# ----------------------------------------------------------------- the curve
def curve(steps, va, vb, band) -> dict:
    """The signal downsampled to at most ``_CURVE_POINTS`` points (JSON-ready lists)."""
    n = len(steps)
    idx = np.unique(np.linspace(0, n - 1, min(n, _CURVE_POINTS)).astype(int)) if n else np.array([], int)
    out = {"steps": steps[idx].tolist(), "a": _floats(va[idx]), "b": _floats(vb[idx])}
    if band is not None:
        out["band_low"], out["band_high"] = _floats(band[0][idx]), _floats(band[1][idx])
    return out


def _floats(x) -> list:
    return [v if math.isfinite(v) else None for v in np.asarray(x, dtype=float).tolist()]


# ------------------------------------------------------------------- verdict
#: A statistical verdict without replicas is weak: the verdict's suffix, and the finding's reason.
WEAK_NOTE = "weak verdict: no replicas, so the band does not cover seed-to-seed variation"
WEAK_REASON = ("weak verdict: without replicas the noise band is the early spread of one "
               "difference, which does not measure how far runs of one configuration drift "
               "apart by seed (a seed's offset lasts the whole run and reads as a divergence)")
WEAK_FIX = ("Pass other seeds of each configuration as replicas (rldk diff --replicas-a RUN "
            "--replicas-b RUN; first_divergence(..., replicas_a=[...], replicas_b=[...])): the "
            "band then covers seed-to-seed variation.")


def verdict_text(a: str, b: str, mode, headline, compared, tensors, rng, weak=False) -> str:
    """The comparison's finding in one sentence, naming runs ``a`` and ``b``."""
    text = _verdict_text(a, b, mode, headline, compared, tensors, rng)
    return f"{text} ({WEAK_NOTE})" if weak else text


def _verdict_text(a: str, b: str, mode, headline, compared, tensors, rng) -> str:
    step, signal, level = headline
    runs = f"runs {a} and {b}"
    n = max((s.common_steps for s in compared), default=0)
    if step is None and mode == "exact":
        parts = [f"{len(compared)} signal(s) identical on all common steps (up to {n})"]
        parts += [f"{ev.kind} digests equal at {ev.steps} step(s)" for ev in (tensors, rng) if ev]
        return f"{runs} are identical: " + "; ".join(parts)
    if step is None:
        return (f"{runs} do not diverge: no signal leaves its noise band over {n} common steps "
                f"({len(compared)} signal(s))")
    if level == "bitwise":
        return f"{runs} diverge at step {step}: " + _bitwise_detail(step, tensors, rng, compared)
    s = next(x for x in compared if x.signal == signal)
    if level == "exact":
        before = ("identical before" if step > first_shared_step(compared, tensors, rng)
                  else "their first common step")
        precision = ", compared at float32 precision" if s.precision == "float32" else ""
        return (f"{runs} diverge at step {step}: {signal} = {s.value_a!r} in {a} vs "
                f"{s.value_b!r} in {b} ({before}{precision})")
    return (f"{runs} diverge from step {step}: {signal} in {b} drifts {s.direction} from {a} "
            f"(CUSUM alarm at {s.alarm_step}, shift {_num(s.magnitude)} = {_num(s.z)} sigma, "
            f"band from {_band_words(s.band)})")


def _band_words(band) -> str:
    if band.source != "replicas":
        return band.source
    return f"the replicas' seed spread, +-{band.width:.3g} sigma"


def first_shared_step(compared, tensors=None, rng=None) -> int | None:
    """The first step both runs logged anything compared (signals, digests)."""
    firsts = [s.first_step for s in compared if s.first_step is not None]
    firsts += [ev.first_common for ev in (tensors, rng) if ev is not None and ev.first_common is not None]
    return min(firsts, default=None)


def _bitwise_detail(step, tensors, rng, compared) -> str:
    parts = []
    if tensors is not None and tensors.first_step == step:
        more = f" (first of {tensors.differing})" if tensors.differing > 1 else ""
        parts.append(f"tensor {tensors.first_name} differs{more}")
    if rng is not None:
        if rng.first_step == step:
            parts.append(f"RNG source {rng.first_name} differs")
        elif rng.first_step is None or rng.first_step > step:
            parts.append("RNG streams still equal")
    first_metric = min((s.exact_step for s in compared if s.exact_step is not None), default=None)
    if first_metric is not None:
        parts.append(f"first metric difference at step {first_metric}")
    return "; ".join(parts)


def _num(x) -> str:
    return "n/a" if x is None else f"{x:+.4g}"


# -------------------------------------------------------------------- report
def card(comparisons, baseline: str | None = None, errors=()) -> Report:
    """The drift card of one or more comparisons (Report: findings, checks, per-signal tables)."""
    diverged = [c for c in comparisons if c.diverged]
    if len(comparisons) == 1 and not errors:
        c = comparisons[0]
        title, summary = f"Drift card: {c.run_a} vs {c.run_b}", c.verdict
    else:
        title = f"Drift card: {len(comparisons)} runs vs baseline {baseline}"
        summary = (f"{len(diverged)} of {len(comparisons)} runs diverge from {baseline}: "
                   + ", ".join(f"{c.run_b} at step {c.step}" for c in diverged) if diverged
                   else f"no run diverges from {baseline}")
    findings = tuple(_finding(c) for c in diverged) + tuple(
        Finding("weak_verdict", "info", f"{c.run_a} vs {c.run_b}: {WEAK_REASON}", run_id=c.run_b,
                fix=WEAK_FIX) for c in comparisons if c.weak) + tuple(
        Finding("not_compared", "warning", f"{run_id} not compared with {baseline}: {message}",
                run_id=run_id, fix="See the message; compare the runs with `rldk diff`.")
        for run_id, message in errors)
    checks = tuple(ch for c in comparisons for ch in comparison_checks(c)) + tuple(
        Check("compare", "skipped", message, run_id) for run_id, message in errors)
    return Report(analyzer=NAME, title=title, status=verdict(findings, checks), summary=summary,
                  findings=findings, checks=checks,
                  tables=tuple(_signal_table(c, len(comparisons) > 1) for c in comparisons),
                  details={"comparisons": [c.to_dict() for c in comparisons]})


def comparison_checks(c) -> list[Check]:
    """What one comparison checked: each signal at its level, tensors, RNG states."""
    out = []
    for s in c.signals:
        skipped = not s.common_steps or (c.mode == "statistical" and s.threshold is None)
        detail = s.note if skipped else f"{s.signal}: {s.common_steps} common steps ({s.name_a} vs {s.name_b})"
        out.append(Check(c.mode, "skipped" if skipped else "ran", detail, c.run_b))
    for kind, ev, how in (("tensor", c.tensors, "rldk.writer.log_tensors(step, model)"),
                          ("rng", c.rng, "rldk.writer.log_rng(step)")):
        if ev is None:
            out.append(Check(kind, "skipped", f"not logged by both runs: log them with {how}", c.run_b))
        else:
            out.append(Check(kind, "ran", f"{ev.compared} digests at {ev.steps} common steps", c.run_b))
    return out


def _finding(c) -> Finding:
    statistical = c.level == "statistical"
    at_start = c.step is not None and c.step <= (first_shared_step(c.signals, c.tensors, c.rng) or 0)
    if statistical:
        fix = (f"Look at what changed around that step in {c.run_b} (learning-rate schedule, data "
               "order, code or config); the two runs' start events hold their configs.")
    elif at_start:
        fix = ("The runs differ from their first common step: they do not start from the same "
               "state (seed, initial weights, config); diff their configs, then rerun with "
               "`rldk check-determinism` to tell a bug from nondeterminism.")
    else:
        fix = ("The runs were identical before this step: diff their configs and code, then "
               "rerun with `rldk check-determinism` to tell a bug from nondeterminism.")
    evidence = {"level": c.level, "mode": c.mode, "run_a": c.run_a, "run_b": c.run_b, "weak": c.weak}
    s = next((x for x in c.signals if x.signal == c.signal), None)
    if s is not None:
        evidence.update({k: v for k, v in as_dict(s).items()
                         if k in ("exact_step", "value_a", "value_b", "change_start", "alarm_step",
                                  "magnitude", "z", "threshold", "precision")})
    if c.tensors is not None and c.level == "bitwise":
        evidence["tensors"] = c.tensors.to_dict()
    return Finding(code="first_divergence", severity="warning" if statistical else "error",
                   title=c.verdict, run_id=c.run_b, metric=c.signal,
                   steps=(c.step, c.step), evidence=evidence, fix=fix)


def _signal_table(c, several: bool) -> ReportTable:
    rows = tuple((s.signal, s.common_steps, s.exact_step, s.change_start, s.alarm_step,
                  s.direction, s.magnitude, s.z, s.max_abs_delta,
                  s.band.sigma if s.band else None, s.precision, s.note) for s in c.signals)
    name = f"Signals: {c.run_a} vs {c.run_b}" if several else "Signals"
    return ReportTable(name, SIGNAL_COLUMNS, rows)


# ---------------------------------------------------------------------- plot
def plots(result, out_dir) -> dict[str, str]:
    """PNG of each comparison's plotted signal: both curves, the band, the divergence step
    (``result``: a Divergence, or a DivergenceResult of several)."""
    from rldk.core.plots import divergence_plot

    out = {}
    for c in getattr(result, "comparisons", (result,)):
        if not c.curve.get("steps"):
            continue
        path = Path(out_dir) / f"divergence-{safe_file_stem(c.run_b)}.png"
        signal = c.curve["signal"]
        labels = [run if not reps else f"{run} + {len(reps)} replica(s): median"
                  for run, reps in ((c.run_a, c.replicas_a), (c.run_b, c.replicas_b))]
        caption = f"{signal}: {c.run_a} vs {c.run_b}"
        out[caption] = divergence_plot(c.curve, path, title=caption, labels=labels, step=c.step)
    return out
