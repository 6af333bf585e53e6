"""The reward-health analysis behind the one analyzer interface, and its front end ``reward_health``."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from rldk import semantics
from rldk.analyzers.base import Analyzer, has_events
from rldk.analyzers.reward_health.calibration import check_calibration
from rldk.analyzers.reward_health.components import check_components
from rldk.analyzers.reward_health.context import Context
from rldk.analyzers.reward_health.data import (
    REWARD,
    load_samples,
    load_series,
    metric_names,
    pick_name,
)
from rldk.analyzers.reward_health.drift import check_drift
from rldk.analyzers.reward_health.kl import check_kl
from rldk.analyzers.reward_health.leakage import check_leakage
from rldk.analyzers.reward_health.length import check_length
from rldk.analyzers.reward_health.overoptimization import check_overoptimization
from rldk.analyzers.reward_health.params import Params
from rldk.analyzers.reward_health.plots import plots
from rldk.analyzers.reward_health.result import NAME, TITLE, RewardHealth
from rldk.analyzers.reward_health.saturation import check_saturation
from rldk.analyzers.reward_health.stats import in_window, window_bounds
from rldk.analyzers.reward_health.values import check_texts, check_values
from rldk.analyzers.reward_health.zero_std import check_zero_std
from rldk.core.errors import MissingEvents, UsageError
from rldk.core.plots import MissingPlotting
from rldk.core.report import Check, Finding, write_report
from rldk.core.store import Run, Store
from rldk.data import open_input

#: Detectors that read only the run itself, in order.
DETECTORS = (check_values, check_saturation, check_zero_std, check_length, check_components,
             check_kl, check_overoptimization)
#: Params fields naming a metric, with what the metric is (for "no such metric" errors).
NAMED_METRICS = (("reward", "reward_col"), ("KL", "kl_col"), ("length", "length_col"),
                 ("gold reward", "gold_col"), ("validation reward", "val_reward_col"))
#: Quantities that look like a reward but are not a reward-model score.
NOT_REWARDS = ("episode_return", "dpo_margin")


class RewardHealthAnalyzer(Analyzer):
    """Is the reward still a signal, or is the policy gaming it? (see the package docstring)"""

    name = NAME
    title = TITLE
    consumes = ("metric", "sample")
    Params = Params
    defines_verdict = True

    def applies(self, store) -> bool:
        """True when some run logs a reward metric or samples with rewards."""
        names = sorted({n for r in store.runs() for n in metric_names(r)})
        if pick_name(names, None, REWARD) is not None:
            return True
        if not has_events(store, ("sample",)):     # the catalog knows: no query
            return False
        return bool(store.sql("SELECT count(*) AS n FROM samples WHERE value IS NOT NULL")["n"][0])

    def run(self, store, params=None, *, out_dir=None, run_ids=None) -> RewardHealth:
        """Reward health of every run in ``store`` (or of ``run_ids``), except the runs named
        as ``against`` / ``validation``. Without ``run_ids``, runs that log no reward are
        listed as skipped checks; MissingEvents only when no run has one. ``out_dir``
        receives the reliability diagrams as they are computed."""
        params = params if params is not None else Params()
        skip = {params.against, params.validation}
        runs = [store.run(r) for r in run_ids] if run_ids else [r for r in store.runs() if r.id not in skip]
        if not runs:
            raise MissingEvents("no runs to analyse in the store")
        part = self.run_part(store, params, [r.id for r in runs], out_dir=out_dir, strict=bool(run_ids))
        return self.combine([part], params, store)

    def run_part(self, store, params: Params, run_ids, *, out_dir=None, strict: bool = False):
        """Each of ``run_ids`` analysed on its own: ``(results, skipped, missing)``, a
        one-run :class:`RewardHealth` per run with a reward, and for each run without one
        a skipped check and its MissingEvents (raised at once when ``strict``). A store's
        result is :meth:`combine` of its parts over disjoint runs, in run-id order
        (``rldk.fleet`` computes the parts as separate tasks)."""
        results, skipped, missing = [], [], []
        for run_id in run_ids:
            try:
                part = analyze_run(store.run(run_id), params, store, out_dir)
            except MissingEvents as exc:
                if strict:
                    raise
                missing.append(exc)
                skipped.append(Check("all", "skipped", str(exc), run_id))
                continue
            results.append(_combine([part], [], [], params))
        return tuple(results), tuple(skipped), tuple(missing)

    def combine(self, parts, params: Params, store=None) -> RewardHealth:
        """The result of the parts (:meth:`run_part`) of ``store``: the runs without a
        reward listed first as skipped checks; MissingEvents when no run has one."""
        results = [r for done, _, _ in parts for r in done]
        if not results:
            raise next((exc for _, _, missing in parts for exc in missing),
                       MissingEvents("no runs to analyse in the store"))
        run_ids = tuple(r for res in results for r in res.run_ids)
        findings = [f for res in results for f in res.findings] + import_findings(store, set(run_ids))
        checks = [c for _, skipped, _ in parts for c in skipped] + [c for res in results for c in res.checks]
        return RewardHealth(run_ids, _joined(results, "reward_cols"), tuple(findings), tuple(checks),
                            tuple(w for res in results for w in res.windows), _joined(results, "calibration"),
                            _joined(results, "drift"), _joined(results, "leakage"), params)

    def plots(self, result, out_dir) -> dict[str, str]:
        return plots(result, out_dir)


def _joined(results, field_name: str) -> dict:
    """One run-keyed dict field of one-run results, united."""
    return {k: v for res in results for k, v in getattr(res, field_name).items()}


def analyze_run(run, params: Params, store=None, out_dir=None) -> tuple[Context, dict]:
    """Every detector on one run; returns its context and the per-run details
    (calibration, drift, leakage)."""
    names = metric_names(run)
    _check_named_metrics(run, names, params)
    reward_name = pick_name(names, params.reward_col, REWARD)
    samples = load_samples(run)
    if reward_name is None and not np.isfinite(samples.reward).any():
        raise MissingEvents(no_reward_message(run.id, names))
    ctx = Context(run, params, load_series(run, reward_name), samples, names)
    ctx.windows = _windows(ctx)
    for detector in DETECTORS:
        detector(ctx)
    check_texts(ctx)
    details = {"calibration": check_calibration(ctx, out_dir),
               "drift": check_drift(ctx, _other(store, params.against, run)),
               "leakage": check_leakage(ctx, _other(store, params.validation, run))}
    return ctx, details


def _check_named_metrics(run, names, params: Params) -> None:
    for what, field_name in NAMED_METRICS:
        wanted = getattr(params, field_name)
        if wanted is not None and semantics.resolve_name(wanted, names) is None:
            raise UsageError(f"run {run.id!r} has no {what} metric {wanted!r}; metrics: "
                             f"{', '.join(names) or 'none'}")


def no_reward_message(run_id: str, names) -> str:
    """Why a run has no reward, naming what to log and any look-alike it does log."""
    message = (f"run {run_id!r} has no reward: log a per-step reward metric (one of "
               f"{', '.join(semantics.quantity('reward').names)}) or samples with rewards "
               f"(writer.log_samples); metrics: {', '.join(names) or 'none'}")
    for name in names:
        q, _, _ = semantics.classify(name)
        if q is not None and q.name in NOT_REWARDS:
            message += (f"; {name} is an {q.name}, not a reward-model score (pass reward_col / "
                        f"--reward-col {name} to analyse it anyway)")
    return message


def _windows(ctx: Context) -> list[dict]:
    steps = ctx.reward.steps if ctx.reward is not None else ctx.samples.step[ctx.samples.step >= 0]
    out = []
    for i, (a, b) in enumerate(window_bounds(steps, ctx.params.windows, ctx.params.min_window)):
        w = {"run_id": ctx.run.id, "window": i, "first_step": a, "last_step": b, "reward_mean": None,
             "top_share": None, "group_std": None, "zero_std_share": None, "length_rho": None}
        if ctx.reward is not None:
            r = ctx.reward.values[in_window(ctx.reward.steps, (a, b))]
            w["reward_mean"] = float(np.nanmean(r)) if np.isfinite(r).any() else None
        out.append(w)
    return out


def _other(store, run_id, run):
    if run_id is None or store is None:
        return None
    if run_id == run.id:
        raise UsageError(f"against/validation run {run_id!r} is the run being analysed; name another run")
    return store.run(run_id)


def _combine(parts, skipped_runs, extra_findings, params: Params) -> RewardHealth:
    findings, checks, windows, cols = [], list(skipped_runs), [], {}
    details: dict = {"calibration": {}, "drift": {}, "leakage": {}}
    for ctx, extra in parts:
        findings += ctx.findings
        checks += ctx.checks
        windows += ctx.windows
        cols[ctx.run.id] = ctx.reward.name if ctx.reward is not None else None
        for key, value in extra.items():
            if value is not None:
                details[key][ctx.run.id] = value
    return RewardHealth(tuple(ctx.run.id for ctx, _ in parts), cols, tuple(findings + extra_findings),
                        tuple(checks), tuple(windows), details["calibration"], details["drift"],
                        details["leakage"], params)


def import_findings(store, run_ids) -> list[Finding]:
    """A warning per converted run whose import skipped lines: the analysis saw less data."""
    out = []
    for summary in (getattr(store, "conversion", None) or {}).get("runs", []):
        skipped = summary.get("skipped") or []
        if summary.get("run_id") in run_ids and skipped:
            first = skipped[0]
            out.append(Finding("import_skipped", "warning", f"{len(skipped)} record(s) of {summary['source']} "
                               f"were skipped on import; first: {first['where']}: {first['reason']}",
                               summary["run_id"], evidence={"skipped": skipped[:20], "count": len(skipped)},
                               fix="Fix or remove those records (they are not in the analysis), or "
                                   "import with `rldk import --strict` to stop at the first one."))
    return out


def reward_health(source, reward_col: str | None = None, *, out_dir=None, adapter=None,
                  **params) -> RewardHealth:
    """Reward health of a run, a store, a store path, or a JSONL/CSV training log.

    ``reward_col`` names the per-step reward metric (None: the run's ``reward``
    quantity, ``rldk.semantics``; a name that is not logged raises UsageError listing
    the metrics that are). Other keyword arguments set :class:`Params` fields
    (``length_col``, ``kl_col``, ``kl_band``...). ``out_dir`` receives the plots
    (reliability diagram). Returns a :class:`RewardHealth` with ``passed``,
    ``status``, ``findings``, ``checks`` and ``to_dict()``.
    """
    unknown = set(params) - set(Params.__dataclass_fields__)
    if unknown:
        raise UsageError(f"unknown reward_health parameter(s): {', '.join(sorted(unknown))}")
    p = replace(Params(), reward_col=reward_col, **params)
    analyzer = RewardHealthAnalyzer()
    if isinstance(source, Run):
        return analyzer.run(source.store, p, out_dir=out_dir, run_ids=[source.id])
    store = source if isinstance(source, Store) else open_input(source, adapter)
    return analyzer.run(store, p, out_dir=out_dir)


def write_card(result: RewardHealth, out_dir) -> dict:
    """Write reward_health.json/.md and, with matplotlib, the plots into ``out_dir``."""
    try:
        pngs = plots(result, out_dir)
    except MissingPlotting:          # matplotlib is optional (rldk[plots]): a card without plots
        pngs = {}
    return write_report(result.report(), out_dir, pngs)
