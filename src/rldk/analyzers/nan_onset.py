"""NaN/inf onset: which metric went non-finite first, and what followed.

Consumes ``metric`` events. For each run, every metric with a NaN or +-inf value
(in its series: one value per step, the last logged) is listed with its first and
last non-finite step, ordered by first step (ties by name), so the card reads like
"old_log_prob NaN at 812, then kl_loss (812), pg_loss (813), grad_norm (813)":
the first metric is closest to the cause.

A metric that is non-finite to its last logged value is *persistent* (the weights
or optimizer state are likely NaN: error). One that recovers is *intermittent*
(typically fp16 loss-scale overflow, where the scaler skips the step and the
reported grad norm is NaN/inf: warning).

A metric that was never finite, at any of its logged values, had no onset: nothing
went from a number to NaN. When it is no quantity of the semantics table (ML-Agents'
``Policy/Discrete Entropy Coeff`` in a run with continuous actions, NaN on every row),
it is a metric of a branch the run does not use, listed as info; a training quantity (a loss, a
reward, a grad norm) that was never finite stays in the onset finding.

A grad norm that was finite and goes non-finite rarely (on at most OVERFLOW_SHARE of its
values), finite again at its last, while every other metric of the run stays finite, is
fp16 dynamic loss scaling at work: an overflowing step's gradients are inf, the scaler
skips that step and lowers its scale (PyTorch's GradScaler, apex, DeepSpeed's "OVERFLOW!
Skipping step"), and nothing reaches the weights: info (``overflow_skips``). Weights that
took a non-finite update would make the loss non-finite too. A norm non-finite from its
first value stays an onset: the corpus labels one (the shared fixtures' TRL DPO run, NaN
at steps 1 and 2 of a run that goes on overflowing).

A quantity that the semantics table says is undefined at some steps by its definition
(explained variance, 1 - Var(returns - values) / Var(returns), where a batch's returns are
all equal: SB3 logs NaN there; an episode statistic before any episode ended: RLlib logs
NaN there), a statistic of the loss computation (a loss, a clip fraction: ``per_update`` in
the table) that is NaN only before its first finite value (a mean over no updates yet: an
off-policy learner's loss until learning starts; weights gone NaN would keep it NaN), and a
metric that is no quantity of the table and is NaN only before its first finite value, or
between numbers (a diagnostic over no samples at some steps: a custom attention statistic,
a per-iteration episode maximum where no episode ended), are
listed as info (``undefined_nan``) when their non-finite values are all
NaN (or -inf before the first finite value: OpenAI baselines' deepq writes -inf for the
100-episode mean until an episode ends) and every other metric of the run stayed finite,
or went non-finite only after the last of them (RLlib's episode mean, NaN on the first two
rows, is no part of a loss that goes NaN 15M steps later); when something else went
non-finite while they were, or before, they are part of that cascade and stay in the
onset finding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rldk import semantics
from rldk.analyzers import _series
from rldk.analyzers.base import Analyzer, has_events
from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import Result, as_dict


#: ``overflow_skips``: the largest share of a grad norm's values that may be non-finite for
#: them to be a loss scaler's skipped steps. GradScaler halves its scale at an overflow and
#: doubles it after 2000 clean steps, so a calibrated fp16 run skips about one step in
#: 2000: one logged value in a hundred is twenty times that at a value per step. More often
#: (a TRL DPO run of the shared fixtures: 4 of 75 steps), the gradients overflow again and
#: again: a warning, as before.
OVERFLOW_SHARE = 0.01


@dataclass(frozen=True)
class Params:
    """sample: how many non-finite steps each metric lists."""

    sample: int = 10


@dataclass(frozen=True)
class Onset:
    """One metric's non-finite values: kind of the first ("NaN", "inf", "-inf"),
    first/last non-finite step, counts, the first ``sample`` steps, and whether the
    metric is still non-finite at its last logged step (``persistent``)."""

    run_id: str
    metric: str
    first_kind: str
    first_step: int
    last_bad_step: int
    nan: int
    inf: int
    rows: int
    steps: tuple[int, ...]
    persistent: bool
    leading: bool = False        # every non-finite value comes before the first finite one
    neg_inf: int = 0             # how many of the ``inf`` are -inf
    later: int = 0               # non-finite values after the first finite one


@dataclass(frozen=True)
class NanOnsetResult(Result):
    """onsets: every metric with a non-finite value, by run, then first step;
    runs: the runs scanned; scanned: metrics scanned per run (same order)."""

    onsets: tuple[Onset, ...]
    runs: tuple[str, ...]
    scanned: tuple[int, ...] = ()

    def by_run(self) -> dict[str, list[Onset]]:
        out: dict[str, list[Onset]] = {}
        for o in self.onsets:
            out.setdefault(o.run_id, []).append(o)
        return out

    def report(self) -> Report:
        groups = self.by_run()
        findings = []
        for run_id, onsets in groups.items():
            unused = [o for o in onsets if never_defined(o)]
            went = [o for o in onsets if not never_defined(o)]
            undefined = [o for o in went if undefined_by(o)]
            failed = [o for o in went if o not in undefined]
            start = min((o.first_step for o in failed), default=None)
            if start is not None:
                # another metric went non-finite: one cascade, listed whole, but for the
                # undefined values that had all ended before it began
                undefined = [o for o in undefined if o.last_bad_step < start]
            went = [o for o in went if o not in undefined]
            findings += [_finding(run_id, went, skipped=overflow_skips(went))] if went else []
            findings += [_undefined_finding(run_id, undefined, start)] if undefined else []
            findings += [_unused_finding(run_id, unused)] if unused else []
        findings = tuple(findings)
        problems = [f for f in findings if f.is_problem]
        summary = ("; ".join(f"{f.run_id}: {f.title}" for f in problems) if problems
                   else f"no NaN or inf in any metric of {len(self.runs)} run(s)" if not findings
                   else f"no metric went NaN or inf in {len(self.runs)} run(s); "
                        + "; ".join(f"{f.run_id}: {f.title}" for f in findings))
        cols = ("run", "metric", "first", "first_step", "nan", "inf", "rows", "persistent", "steps")
        rows = tuple((o.run_id, o.metric, o.first_kind, o.first_step, o.nan, o.inf, o.rows,
                      o.persistent, list(o.steps)) for o in self.onsets)
        checks = tuple(Check("non_finite", "ran", f"{n} metric(s) scanned", run_id)
                       for run_id, n in zip(self.runs, self.scanned))
        return Report(analyzer=NanOnsetAnalyzer.name, title=NanOnsetAnalyzer.title,
                      status=verdict(findings, checks), summary=summary, findings=findings,
                      tables=(ReportTable("Non-finite metrics (ordered by onset)", cols, rows),),
                      details=self.to_dict(), checks=checks)


class NanOnsetAnalyzer(Analyzer):
    """Which metric went non-finite first in each run (see the module docstring). It
    scans every metric but checks no training rule: its verdict alone does not make
    ``rldk analyze`` conclusive."""

    name = "nan_onset"
    title = "NaN/inf onset"
    consumes = ("metric",)
    Params = Params
    defines_verdict = False

    def applies(self, store) -> bool:
        return has_events(store, ("metric",))

    def run(self, store, params: Params | None = None) -> NanOnsetResult:
        """Every metric with NaN/inf values, per run, ordered by first non-finite step."""
        params = params or Params()
        onsets, scanned = [], []
        for run_id in store.run_ids:
            found, n = [], 0
            for batch in _series.iter_series(_series.Source(store, run_id)):
                n += len(batch)
                found += [o for s in batch.values() if (o := onset(run_id, s, params.sample))]
            onsets += sorted(found, key=lambda o: (o.first_step, o.metric))
            scanned.append(n)
        return NanOnsetResult(tuple(onsets), tuple(store.run_ids), tuple(scanned))


def onset(run_id: str, series, sample: int = 10) -> Onset | None:
    """The non-finite values of one series (NumPy), or None when all are finite. NaNs
    before its first value that are not yet defined there (``undefined_by``: a loss before
    the first update) are no part of a later onset: the loss went from a number to NaN
    where it went NaN after one."""
    bad = ~np.isfinite(series.values)
    if not bad.any():
        return None
    lead = int(np.argmin(bad)) if not bad.all() else 0
    if lead and bad[lead:].any():
        leading = np.arange(len(bad)) < lead
        if undefined_by(_onset(run_id, series, leading, sample)):
            bad = bad & ~leading
    return _onset(run_id, series, bad, sample)


def _onset(run_id: str, series, bad: np.ndarray, sample: int) -> Onset:
    steps, values = series.steps[bad], series.values[bad]
    nan = int(np.isnan(values).sum())
    return Onset(run_id=run_id, metric=series.name, first_kind=_kind(values[0]),
                 first_step=int(steps[0]), last_bad_step=int(steps[-1]), nan=nan,
                 inf=int(len(values) - nan), neg_inf=int(np.isneginf(values).sum()), rows=len(series),
                 steps=tuple(int(x) for x in steps[:sample]), persistent=bool(bad[-1]),
                 leading=bool(not bad[-1] and not bad[int(np.argmin(bad)):].any()),
                 later=int(bad[int(np.argmin(bad)):].sum()) if not bad.all() else 0)


def never_defined(o: Onset) -> bool:
    """Whether a non-finite metric was never finite and is no quantity of the semantics
    table: a metric of a branch the run does not use, not an onset."""
    return o.nan + o.inf == o.rows and semantics.classify(o.metric)[0] is None


def undefined_by(o: Onset) -> str:
    """Why a metric's NaNs are no numerical failure, or empty. NaNs count (0/0 and a
    mean over nothing give NaN), and a -inf only before the first finite value (the
    placeholder a logger writes for a best or mean over no episode yet: OpenAI baselines'
    deepq logs ``mean 100 episode reward`` as -inf until one ends); an overflow gives +inf
    and a -inf after a number (log 0) is a failure:

    * the semantics table says the quantity has no value there by its definition
      (explained variance where a batch's returns tie; an episode statistic where no
      episode ended: RLlib logs ``episode_reward_mean`` as NaN until the first one does);
    * a statistic of the loss computation (``Quantity.per_update``: a loss, a clip
      fraction; not the grad norm, which fp16 loss scaling makes non-finite at its first
      steps) is NaN only before its first finite value: a mean over no updates yet (an
      off-policy learner before learning starts; a hand-written logger's
      ``np.mean([])``). Nothing went from a number to NaN: weights that had gone NaN
      would keep it NaN;
    * a metric that is no quantity of the table is NaN only before its first finite value:
      not yet defined (nothing went from a number to NaN), as a never-finite one
      (``never_defined``) never was; or NaN between numbers, and finite again at its last
      value: a statistic over no samples at those steps (0/0), since weights gone NaN
      would not come back. ``report`` still counts it in a failure when another metric
      went non-finite while it was, or before."""
    if o.inf > o.neg_inf or (o.neg_inf and not o.leading):
        return ""
    q = semantics.classify(o.metric)[0]
    if q is not None and q.undefined and (o.leading or not o.neg_inf):
        return f"undefined {q.undefined}"
    if q is not None and q.per_update and o.leading and not o.neg_inf:
        return "undefined before the first update (a mean over no updates)"
    if q is not None:
        return ""
    if o.leading:
        return "not defined before its first value"
    return ("not defined at those steps (NaN between numbers: a statistic over no samples there)"
            if not o.neg_inf and not o.persistent else "")


def overflow_skips(onsets: list[Onset]) -> bool:
    """Whether the metrics that went non-finite in a run (``onsets``, the cascade) are all
    grad norms that were finite first and went non-finite rarely (on at most OVERFLOW_SHARE
    of their values), finite at their last: a loss scaler's skipped overflow steps, not a
    numerical failure."""
    return bool(onsets) and all(
        not o.persistent and o.later == o.nan + o.inf and o.later <= OVERFLOW_SHARE * o.rows
        and (q := semantics.classify(o.metric)[0]) is not None and q.name == "grad_norm"
        for o in onsets)


def _kinds(o: Onset) -> str:
    return "/".join(k for k, n in (("NaN", o.nan), ("-inf", o.neg_inf), ("inf", o.inf - o.neg_inf)) if n)


def _undefined_finding(run_id: str, onsets: list[Onset], failure: int | None = None) -> Finding:
    """Info on metrics undefined where they are NaN; ``failure``: the step where another
    metric went non-finite, after all of these values (None: none did)."""
    first = onsets[0]
    names = "; ".join(f"{o.metric} {_kinds(o)} at {o.nan + o.inf} of {o.rows} steps (first {o.first_step}): "
                      f"{undefined_by(o)}" for o in onsets)
    after = ("every other metric stayed finite: no numerical failure" if failure is None else
             f"all before step {failure}, where another metric went non-finite: no part of that failure")
    return Finding(code="undefined_nan", severity="info",
                   title=f"{names}; {after}",
                   run_id=run_id, metric=first.metric,
                   steps=(first.first_step, max(o.last_bad_step for o in onsets)),
                   evidence={"metrics": [o.metric for o in onsets], "first": as_dict(first)},
                   fix="Nothing to fix in training: those steps had nothing to measure (no episode "
                       "ended, or a batch's returns were all equal: read the return to tell a solved "
                       "task from a collapsed one).")


def _unused_finding(run_id: str, onsets: list[Onset]) -> Finding:
    names = ", ".join(f"{o.metric} ({o.rows} values)" for o in onsets[:6])
    names += f" and {len(onsets) - 6} more" if len(onsets) > 6 else ""
    return Finding(code="never_finite", severity="info",
                   title=f"never finite, at any logged value: {names}; logged but never defined (a "
                         "branch this run does not use), not an onset",
                   run_id=run_id, metric=onsets[0].metric,
                   steps=(min(o.first_step for o in onsets), max(o.last_bad_step for o in onsets)),
                   evidence={"metrics": [o.metric for o in onsets]},
                   fix="Nothing to fix in training; stop logging the metric if it never applies to this run.")


def _kind(value: float) -> str:
    return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _finding(run_id: str, onsets: list[Onset], skipped: bool = False) -> Finding:
    """The onset finding of a run's non-finite metrics (``skipped``: they are a loss
    scaler's skipped overflow steps, ``overflow_skips``: info)."""
    first = onsets[0]
    n_bad = first.nan + first.inf
    shown = ", ".join(str(s) for s in first.steps) + (", ..." if n_bad > len(first.steps) else "")
    title = (f"{first.metric} {first.first_kind} at step {first.first_step} "
             f"({n_bad} of {first.rows} values: {shown})")
    if len(onsets) > 1:
        title += ", then " + ", ".join(f"{o.metric} ({o.first_step})" for o in onsets[1:6])
        title += f" and {len(onsets) - 6} more" if len(onsets) > 6 else ""
    persistent = [o.metric for o in onsets if o.persistent]
    if skipped:
        title += (": fp16 loss-scale overflow, the scaler skipped those steps (every other metric "
                  "stayed finite, and the norm is finite again after each)")
    fix = ("Weights or optimizer state are likely non-finite from here on: restart from the last "
           "checkpoint before that step with a lower learning rate, gradient clipping or bf16, and "
           "find the operation with torch.autograd.set_detect_anomaly(True)."
           if persistent else
           "The metric recovers after each non-finite value: typical of fp16 dynamic loss scaling "
           "skipping overflowing steps (harmless if rare; frequent skips mean too high a learning "
           "rate or loss scale). Otherwise look at the first metric listed: it is nearest the cause.")
    return Finding(code="nan_onset", severity="error" if persistent else "info" if skipped else "warning",
                   title=title,
                   run_id=run_id, metric=first.metric,
                   steps=(first.first_step, max(o.last_bad_step for o in onsets)),
                   evidence={"order": [o.metric for o in onsets], "persistent": persistent,
                             "first": as_dict(first),
                             "first_steps": {o.metric: o.first_step for o in onsets},
                             "overflow_skips": skipped},
                   fix=fix)

