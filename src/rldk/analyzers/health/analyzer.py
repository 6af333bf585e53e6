"""Training-health rules for RL / RLHF runs, over every run of a store.

Consumes ``metric`` events (and the run's ``start`` event for its config). Each
rule reads one or two quantities (``rldk.semantics``) and yields findings naming
the run's own metric, the step range from the onset, the evidence and a fix.
The onset rules (``rldk.analyzers.health.onset``) find the first step of a bad
regime on the quantity's own scale and noise; the KL rules
(``rldk.analyzers.health.kl``) check the KL against the controller's target. A
rule whose quantities a run does not log could not run (listed with what to log,
never silently passed); a store where no rule could run is inconclusive.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rldk.analyzers import _series
from rldk.analyzers.base import Analyzer, has_events
from rldk.analyzers.health.data import EVAL, RunData, curve_of, how_to_log, load_run
from rldk.analyzers.health.kl import kl_above_target, kl_controller_stuck, negative_kl
from rldk.analyzers.health.onset import onset_rule
from rldk.analyzers.health.params import NotApplicable, Params
from rldk.analyzers.health.result import HealthResult
from rldk.core.naming import safe_file_stem
from rldk.core.report import Finding
from rldk.detectors import rules as onset_rules


@dataclass(frozen=True)
class Rule:
    """code: the findings' code; reads: canonical metrics needed (all of them);
    check(run, params) yields findings."""

    code: str
    reads: tuple[str, ...]
    check: Callable
    doc: str


def _onset(quantity):
    return lambda run, params: onset_rule(quantity, run, params)


RULES: tuple[Rule, ...] = (
    Rule("negative_kl", ("kl_to_ref",), negative_kl, "mean KL below 0 (error)"),
    Rule("kl_above_target", ("kl_to_ref",), kl_above_target, "KL over the last third above target +20%"),
    Rule("kl_controller_stuck", ("kl_coef", "kl_to_ref"), kl_controller_stuck,
         "adaptive KL coefficient frozen while KL drifts, or at 0"),
    *(Rule(code, (q,), _onset(q), doc) for code, q, doc in (
        ("reward_collapse_or_degradation", "reward",
         "reward collapse to its floor; sustained degradation from its peak"),
        ("episode_return_degradation", "episode_return",
         "sustained degradation from its peak (to the end, or a tenth of the run before recovering)"),
        ("eval_return_degradation", "eval/episode_return",
         "evaluation return: sustained degradation from its peak"),
        ("entropy_collapse", "entropy", "entropy below 20% of a level it held, staying"),
        ("length_collapse_or_explosion", "response_length",
         "response length below 1/3 or above 3x a level it held, staying"),
        ("episode_length_collapse", "episode_length",
         "episode length below 1/3 of a level it held, staying, while the episode return collapses"),
        ("truncation_onset", "truncation_ratio", "truncated share entering >= 50% and staying, "
                                                  "or rising from <= 2% to >= 10% and staying"),
        ("zero_std_onset", "zero_std_frac", "zero-std groups entering >= 50% and staying"),
        ("kl_blowup", "kl_to_ref", "KL above 1 nat, 10x the level before (in one jump or a climb)"),
        ("grad_norm_explosion", "grad_norm", "grad norm 10x a level it held"),
        ("clip_ratio_blowup", "clip_ratio", "clip fraction entering >= 30% and staying"),
        ("approx_kl_blowup", "ppo_approx_kl", "PPO approx KL at >= 0.1 nats per update, staying; "
         "bursts of 2+ updates over 10 nats (100x the run's median) or 1 nat (100x the level before)"),
        ("loss_divergence", "loss", "a positive loss 100x a level it held, staying (beyond what "
         "the episode return's size explains, when the run logs one), or for a tenth of the run "
         "before it came back"),
        ("value_loss_divergence", "value_loss",
         "value loss 10x a level it held, staying, while the episode return declines, "
         "or 100x the level just before while the return's size does not explain it "
         "(100x without a return), or so for a tenth of the run before it came back"),
        ("dpo_accuracy_collapse", "dpo_accuracy", "preference accuracy stuck at one value"),
    ) if q.removeprefix(EVAL) in onset_rules.RULES),
)
#: Every quantity some rule reads (loaded once per run).
#: ``action_std`` tells a Gaussian policy's entropy; ``response_length_max``, the generation cap.
WANTED = sorted({c for rule in RULES for c in rule.reads}
                | {s + p for p in onset_rules.partners() for s in ("", EVAL)}
                | {"action_std", "response_length_max"})


class HealthAnalyzer(Analyzer):
    """The training-health rules (``RULES``, see the module docstring) over every run.
    A rule whose metrics a run lacks is a check that could not run (with what to log);
    a store where no rule could run is inconclusive."""

    name = "health"
    title = "Training health"
    consumes = ("metric", "run")
    Params = Params

    def applies(self, store) -> bool:
        return has_events(store, ("metric",))

    def run(self, store, params: Params | None = None) -> HealthResult:
        params = params or Params()
        findings, checked, not_applicable, curves, fired = [], [], [], {}, []
        for run_id in store.run_ids:
            data = load_run(_series.Source(store, run_id), WANTED)
            for rule in RULES:
                try:
                    found = check_rule(rule, data, params)
                except NotApplicable as exc:
                    not_applicable.append((data.run_id, rule.code, str(exc)))
                    continue
                checked.append((data.run_id, rule.code))
                findings += found
                fired += [(data.run_id, rule.code)] if found else []
                for f in found:
                    curves[f"{data.run_id}/{f.code}"] = curve_of(data, rule.reads[0], f)
        return HealthResult(tuple(findings), tuple(checked), tuple(not_applicable), curves,
                            tuple(fired),
                            {r.code: r.doc for r in RULES})

    def plots(self, result: HealthResult, out_dir) -> dict[str, str]:
        """One PNG per finding (at most 12): the metric with the finding's steps marked."""
        from rldk.core.plots import metric_plot

        out = {}
        for f in result.findings[:12]:
            curve = result.curves.get(f"{f.run_id}/{f.code}")
            if not curve or not curve["steps"]:
                continue
            path = Path(out_dir) / f"health-{safe_file_stem(f.run_id)}-{safe_file_stem(f.code)}.png"
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
        raise NotApplicable("not logged: " + "; ".join(how_to_log(c, data.lookalikes.get(c, ()))
                                                       for c in missing))
    return list(rule.check(data, params))
