"""Training-health rules for RL / RLHF runs: one small detector per known failure.

Consumes ``metric`` events (and the run's ``start`` event for its config). Each
rule reads a few canonical metrics (resolved to each framework's names through
``rldk.analyzers._series``) and yields findings naming the metric, the step range,
the evidence and a fix. A rule whose metrics a run does not log is not applicable
to it (listed, never silently passed). Defaults, per rule (``Params``):

negative_kl      any logged mean KL below ``-negative_kl_tol``. With exact
                 sampling the mean KL(policy || reference) is >= 0; TRL's PPO docs
                 name negative KL a bug signal (generation kwargs such as top_k or
                 min_length that change the sampling distribution). Error.
kl_above_target  the median KL of the last third above ``(1 + kl_band)`` x the
                 target (the +-20% proportional band of the adaptive KL controller,
                 Ziegler et al. 2019). Needs a target: ``kl_target`` or the run's
                 config (``target_kl``, ``kl_target``, ``kl_ctrl.target_kl``, ...).
entropy_collapse policy entropy whose final level (median of the last tenth) is
                 below ``entropy_ratio`` (20%) of its early level (median of the first
                 tenth). SB3's ``train/entropy_loss`` is read as -entropy.
length_collapse  mean response length whose final level is below
                 ``length_ratio`` (30%) of its early level.
truncation       share of completions cut at the length limit
                 (``completions/clipped_ratio``): median of the last third at least
                 ``truncation_high`` (0.2), or up by ``truncation_rise`` (0.1) from the
                 first third. Rows where every completion was cut are listed.
zero_std         GRPO's ``frac_reward_zero_std`` (groups whose rewards are all equal:
                 zero advantage, no gradient) averaging at least ``zero_std_high``
                 (0.5). Error when at least half the rows are 1.0 (no signal at all).
kl_controller_stuck  an adaptive KL coefficient (one that changed at least once)
                 frozen for the last ``stuck_fraction`` (25%, >= 10 rows) of the run
                 while the KL is outside the target band (or, with no target, moved
                 by more than 50% over that stretch); or a coefficient pinned near 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rldk import semantics
from rldk.analyzers import _series
from rldk.analyzers.base import Analyzer
from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import Result


@dataclass(frozen=True)
class Params:
    """Thresholds of the rules (see the module docstring for their sources)."""

    negative_kl_tol: float = 1e-4
    kl_target: float | None = None
    kl_band: float = 0.2
    entropy_ratio: float = 0.2
    length_ratio: float = 0.3
    truncation_high: float = 0.2
    truncation_rise: float = 0.1
    zero_std_high: float = 0.5
    stuck_fraction: float = 0.25
    edge_fraction: float = 0.1


@dataclass(frozen=True)
class RunData:
    """What the rules see of one run: resolved series by canonical name, and config."""

    run_id: str
    series: dict
    names: dict          # canonical -> metric name as logged
    config: dict
    signs: dict = field(default_factory=dict)    # canonical -> -1 where logged negated

    def get(self, canonical):
        return self.series.get(canonical)


@dataclass(frozen=True)
class Rule:
    """code: the findings' code; reads: canonical metrics needed (all of them);
    check(run, params) yields findings."""

    code: str
    reads: tuple[str, ...]
    check: Callable
    doc: str


class NotApplicable(Exception):
    """A rule cannot judge this run (the message says why); never a silent pass."""


@dataclass(frozen=True)
class HealthResult(Result):
    """findings: all rules' findings; checked: (run, rule) pairs judged;
    not_applicable: (run, rule, why) triples (why: what to log or pass to enable
    it); curves: downsampled series of the metrics with findings (for plots)."""

    findings: tuple[Finding, ...]
    checked: tuple[tuple[str, str], ...]
    not_applicable: tuple[tuple[str, str, str], ...]
    curves: dict = field(default_factory=dict)

    @property
    def checks(self) -> tuple[Check, ...]:
        """One Check per (run, rule): ran, or could not run and why."""
        docs = {r.code: r.doc for r in RULES}
        return (tuple(Check(code, "ran", docs[code], run_id) for run_id, code in self.checked)
                + tuple(Check(code, "skipped", why, run_id)
                        for run_id, code, why in self.not_applicable))

    def report(self) -> Report:
        problems = [f for f in self.findings if f.is_problem]
        summary = ("; ".join(f"{f.run_id}: {f.title}" for f in problems) if problems else
                   f"{len(self.checked)} rule check(s) passed, {len(self.not_applicable)} not "
                   "applicable")
        rules = {r.code: r for r in RULES}
        rows = tuple((run_id, code, "finding" if any(f.code == code and f.run_id == run_id
                                                     for f in self.findings) else "ok",
                      rules[code].doc) for run_id, code in self.checked)
        rows += tuple((run_id, code, f"not applicable: {why}", rules[code].doc)
                      for run_id, code, why in self.not_applicable)
        return Report(analyzer=HealthAnalyzer.name, title=HealthAnalyzer.title, summary=summary,
                      status=verdict(self.findings, self.checks), findings=self.findings,
                      tables=(ReportTable("Rules", ("run", "rule", "result", "checks"), rows),),
                      details=self.to_dict(), checks=self.checks)


# ---------------------------------------------------------------- helpers
def _finite(s):
    keep = np.isfinite(s.values)
    return s.steps[keep], s.values[keep]


def _edges(values, fraction, least=3):
    """Median of the first and of the last ``fraction`` of values (at least ``least``)."""
    n = max(least, int(len(values) * fraction))
    return float(np.median(values[:n])), float(np.median(values[-n:])), n


def _at_least(values, n):
    if len(values) < n:
        raise NotApplicable(f"{len(values)} finite value(s), the rule needs {n}")


def _finding(code, severity, title, run: RunData, canonical, steps, evidence, fix):
    return Finding(code=code, severity=severity, title=title, run_id=run.run_id,
                   metric=run.names.get(canonical, canonical),
                   steps=(int(steps[0]), int(steps[-1])) if len(steps) else None,
                   evidence=evidence, fix=fix)


def _kl_target(run: RunData, params: Params):
    if params.kl_target is not None:
        return params.kl_target
    return _find_key(run.config, ("target_kl", "kl_target", "adap_kl_target")) or \
        _find_key(_find_key(run.config, ("kl_ctrl",)) or {}, ("target", "target_kl"))


def _find_key(obj, keys, depth=0):
    """First value under any of ``keys`` in a nested config dict."""
    if not isinstance(obj, dict) or depth > 4:
        return None
    for key in keys:
        if obj.get(key) is not None:
            return obj[key]
    for value in obj.values():
        found = _find_key(value, keys, depth + 1)
        if found is not None:
            return found
    return None


# ------------------------------------------------------------------- rules
def negative_kl(run: RunData, params: Params):
    steps, values = _finite(run.get("kl_to_ref"))
    _at_least(values, 1)
    bad = values < -params.negative_kl_tol
    if bad.any():
        at = steps[bad]
        yield _finding("negative_kl", "error",
                       f"mean KL negative at {int(bad.sum())} of {len(values)} steps "
                       f"(first {int(at[0])}, min {values.min():.4g})", run, "kl_to_ref", at,
                       {"count": int(bad.sum()), "rows": len(values), "first_step": int(at[0]),
                        "min": float(values.min()), "steps": at[:20].tolist()},
                       "The policy's samples do not come from the distribution the KL assumes: "
                       "check generation kwargs (top_k, top_p, min_length, suppressed EOS) and "
                       "that reference and policy log-probs use the same tokens and masks.")


def kl_above_target(run: RunData, params: Params):
    target = _kl_target(run, params)
    if target is None:
        raise NotApplicable("no KL target: pass kl_target or record target_kl in the run's config")
    steps, values = _finite(run.get("kl_to_ref"))
    n = max(3, len(values) // 3)
    late = float(np.median(values[-n:]))
    limit = (1 + params.kl_band) * float(target)
    if late > limit:
        above = steps[values > limit]
        yield _finding("kl_above_target", "warning",
                       f"KL {late:.4g} over the last third, above the target band "
                       f"(target {target}, +{params.kl_band:.0%})", run, "kl_to_ref", above,
                       {"late_median": late, "target": float(target), "limit": limit,
                        "rows_above": int(len(above)), "rows": len(values)},
                       "Raise the KL coefficient (or the adaptive controller's horizon), lower "
                       "the learning rate, or check that the reference model is the initial policy.")


def entropy_collapse(run: RunData, params: Params):
    steps, values = _finite(run.get("entropy"))
    _at_least(values, 6)
    early, late, n = _edges(values, params.edge_fraction)
    if early <= 0:
        raise NotApplicable(f"early entropy {early:.3g} is not positive (continuous actions?)")
    if late >= params.entropy_ratio * early:
        return
    below = np.flatnonzero(values < params.entropy_ratio * early)
    yield _finding("entropy_collapse", "warning",
                   f"entropy collapsed to {late:.3g}, {late / early:.0%} of its early level "
                   f"{early:.3g} (below {params.entropy_ratio:.0%} from step {int(steps[below[0]])})",
                   run, "entropy", steps[below],
                   {"early": early, "late": late, "ratio": late / early, "edge_rows": n,
                    "threshold": params.entropy_ratio * early,
                    "first_step_below": int(steps[below[0]])},
                   "The policy became nearly deterministic and stops exploring: raise the entropy "
                   "bonus (ent_coef) or the KL coefficient, lower the learning rate, or check "
                   "for reward hacking of a narrow behaviour.")


def length_collapse(run: RunData, params: Params):
    steps, values = _finite(run.get("response_length"))
    _at_least(values, 6)
    early, late, n = _edges(values, params.edge_fraction)
    if late >= params.length_ratio * early:
        return
    below = np.flatnonzero(values < params.length_ratio * early)
    yield _finding("length_collapse", "warning",
                   f"mean response length fell to {late:.4g} tokens, {late / early:.0%} of its "
                   f"early {early:.4g}", run, "response_length", steps[below],
                   {"early": early, "late": late, "ratio": late / early, "edge_rows": n,
                    "threshold": params.length_ratio * early},
                   "Short answers are being rewarded: check the reward for a length bias or an "
                   "exploit (empty or truncated answers scoring well) and the EOS handling.")


def truncation(run: RunData, params: Params):
    steps, values = _finite(run.get("truncation_ratio"))
    _at_least(values, 3)
    n = max(1, len(values) // 3)
    early, late = float(np.median(values[:n])), float(np.median(values[-n:]))
    if late < params.truncation_high and late - early < params.truncation_rise:
        return
    full = steps[values >= 1.0]
    rising = f", up from {early:.0%}" if late - early >= params.truncation_rise else ""
    title = (f"{late:.0%} of completions truncated at the length limit over the last third"
             f"{rising}" + (f"; all of them at {len(full)} step(s) (first {int(full[0])})"
                            if len(full) else ""))
    yield _finding("truncation", "warning", title, run, "truncation_ratio",
                   steps[values >= params.truncation_high],
                   {"early_median": early, "late_median": late, "max": float(values.max()),
                    "rows": len(values), "steps_all_truncated": full.tolist()[:50]},
                   "Raise max_completion_length, reward concise answers, or mask truncated "
                   "completions from the loss (TRL: mask_truncated_completions=True) so that "
                   "cut-off text is not reinforced.")


def zero_std(run: RunData, params: Params):
    steps, values = _finite(run.get("zero_std_frac"))
    _at_least(values, 1)
    if values.mean() < params.zero_std_high:
        return
    full = values >= 1.0
    severity = "error" if full.sum() * 2 >= len(values) else "warning"
    yield _finding("zero_std", severity,
                   f"frac_reward_zero_std averages {values.mean():.2f}; 1.0 (no group with any "
                   f"reward difference) in {int(full.sum())} of {len(values)} rows", run,
                   "zero_std_frac", steps[values >= params.zero_std_high],
                   {"mean": float(values.mean()), "rows_all_zero_std": int(full.sum()),
                    "rows": len(values), "first_all_zero_std": int(steps[full][0]) if full.any() else None},
                   "GRPO gets no advantage when every completion of a prompt scores the same: "
                   "make the reward less sparse (partial credit), raise num_generations or "
                   "temperature, or drop prompts that are always solved or always failed.")


def kl_controller_stuck(run: RunData, params: Params):
    steps, coef = _finite(run.get("kl_coef"))
    _at_least(coef, 10)
    if np.all(coef == coef[0]):
        raise NotApplicable("the KL coefficient never changes: fixed, not adaptive")
    if coef[-1] <= 1e-8:
        yield _stuck(run, steps[coef <= 1e-8], coef, "collapsed to 0")
        return
    changes = np.flatnonzero(coef[1:] != coef[:-1])
    frozen_from = int(changes[-1]) + 1
    tail = len(coef) - frozen_from
    if tail < max(10, params.stuck_fraction * len(coef)):
        return
    kl = run.get("kl_to_ref")
    target = _kl_target(run, params)
    reason = _kl_outside(kl, steps[frozen_from], target, params)
    if reason:
        yield _stuck(run, steps[frozen_from:], coef, f"frozen at {coef[-1]:.4g} for the last "
                                                     f"{tail} rows while {reason}")


def _kl_outside(kl, start_step, target, params):
    ks, kv = _finite(kl)
    kv = kv[ks >= start_step]
    if len(kv) < 3:
        return None
    if target is not None:
        outside = np.abs(kv / float(target) - 1) > params.kl_band
        return f"KL is outside the target band in {outside.mean():.0%} of them" if outside.mean() > 0.5 else None
    first, last = np.median(kv[:3]), np.median(kv[-3:])
    moved = abs(last - first) / max(abs(first), 1e-12)
    return f"KL moved from {first:.4g} to {last:.4g}" if moved > 0.5 else None


def _stuck(run, steps, coef, what):
    return _finding("kl_controller_stuck", "warning", f"adaptive KL coefficient {what}", run,
                    "kl_coef", steps, {"first": float(coef[0]), "last": float(coef[-1]),
                                       "min": float(coef.min()), "max": float(coef.max())},
                    "Check the controller's target and horizon, and that it is updated every step "
                    "(a coefficient clamped at a bound or never updated no longer controls KL).")


RULES: tuple[Rule, ...] = (
    Rule("negative_kl", ("kl_to_ref",), negative_kl, "mean KL below 0 (error)"),
    Rule("kl_above_target", ("kl_to_ref",), kl_above_target, "KL over the last third above target +20%"),
    Rule("entropy_collapse", ("entropy",), entropy_collapse, "entropy below 20% of its early level"),
    Rule("length_collapse", ("response_length",), length_collapse,
         "response length below 30% of its early level"),
    Rule("truncation", ("truncation_ratio",), truncation,
         "truncated share >= 0.2 late, or up by 0.1"),
    Rule("zero_std", ("zero_std_frac",), zero_std, "frac_reward_zero_std mean >= 0.5"),
    Rule("kl_controller_stuck", ("kl_coef", "kl_to_ref"), kl_controller_stuck,
         "adaptive KL coefficient frozen while KL drifts, or at 0"),
)

# ---------------------------------------------------------------- analyzer
class HealthAnalyzer(Analyzer):
    """The training-health rules (``RULES``, see the module docstring) over every run.
    A rule whose metrics a run lacks is a check that could not run (with what to log);
    a store where no rule could run is inconclusive."""

    name = "health"
    title = "Training health"
    consumes = ("metric", "run")
    Params = Params

    def applies(self, store) -> bool:
        return not store.sql("SELECT 1 FROM metrics LIMIT 1").is_empty()

    def run(self, store, params: Params | None = None) -> HealthResult:
        params = params or Params()
        findings, checked, not_applicable, curves = [], [], [], {}
        for run_id in store.run_ids:
            data = load_run(_series.Source(store, run_id))
            for rule in RULES:
                try:
                    found = check_rule(rule, data, params)
                except NotApplicable as exc:
                    not_applicable.append((data.run_id, rule.code, str(exc)))
                    continue
                checked.append((data.run_id, rule.code))
                findings += found
                for f in found:
                    curves[f"{data.run_id}/{rule.code}"] = _curve_of(data, rule, f)
        return HealthResult(tuple(findings), tuple(checked), tuple(not_applicable), curves)

    def plots(self, result: HealthResult, out_dir) -> dict[str, str]:
        """One PNG per finding (at most 12): the metric with the finding's steps marked."""
        from rldk.core.plots import metric_plot

        out = {}
        for f in result.findings[:12]:
            curve = result.curves.get(f"{f.run_id}/{f.code}")
            if not curve or not curve["steps"]:
                continue
            path = Path(out_dir) / f"health-{f.run_id}-{f.code}.png"
            marks = [(f.steps[0], f"{f.code}: step {f.steps[0]}")] if f.steps else []
            line = f.evidence.get("threshold")           # in the plotted (negated if so) units
            out[f"{f.run_id}: {f.title}"] = metric_plot(
                curve["steps"], curve["values"], path, title=f"{f.run_id}: {curve['metric']}",
                marks=marks, hline=(line, "threshold") if line is not None else None)
        return out


def check_rule(rule: Rule, data: RunData, params: Params) -> list[Finding]:
    """The findings of ``rule`` on one run; NotApplicable (saying what to log) when the run
    lacks a metric the rule reads or the rule cannot judge it."""
    missing = [c for c in rule.reads if c not in data.series]
    if missing:
        raise NotApplicable("not logged: " + "; ".join(how_to_log(c) for c in missing))
    return list(rule.check(data, params))


def how_to_log(canonical: str) -> str:
    """``entropy (log it as entropy, objective/entropy or actor/entropy)``: what enables a rule."""
    q = semantics.quantity(canonical)
    names = [n for n in (q.names if q else ()) if not n.startswith("-")][:3]
    if not names:
        return canonical
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return f"{canonical} (log it as {listed})"


def _curve_of(data: RunData, rule: Rule, f: Finding) -> dict:
    canonical = rule.reads[0]
    label = f"-{f.metric}" if data.signs.get(canonical, 1) == -1 else f.metric
    return _curve(data.series[canonical], label)


def load_run(source) -> RunData:
    """Resolve and load the metrics the rules read for one run (a ``_series.Source``)."""
    available = _series.metric_counts(source)
    wanted = {c for rule in RULES for c in rule.reads}
    found = {c: r for c in wanted if (r := semantics.resolve(c, available)) is not None}
    loaded = _series.load_series(source, sorted({r.metric for r in found.values()}))
    series = {}
    for c, r in found.items():
        s = loaded[r.metric]
        series[c] = s if r.sign == 1 else _series.Series(s.name, s.steps, -s.values, s.duplicates,
                                                          s.non_numeric, s.first_non_numeric)
    names = {c: r.metric for c, r in found.items()}
    signs = {c: r.sign for c, r in found.items()}
    return RunData(source.run_id, series, names, _series.run_facts(source).meta.get("config") or {},
                   signs)


def _curve(series, metric, points: int = 400) -> dict:
    n = len(series)
    idx = np.unique(np.linspace(0, n - 1, min(n, points)).astype(int)) if n else np.array([], int)
    return {"metric": metric, "steps": series.steps[idx].tolist(),
            "values": [float(v) if np.isfinite(v) else None for v in series.values[idx]]}
