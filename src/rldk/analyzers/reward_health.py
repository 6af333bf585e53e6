"""Reward-model health: is the reward still a signal, or is the policy gaming it?

Reads ``metric`` events (the per-step reward and, where logged, KL, response
length, per-function rewards ``rewards/<fn>/mean``, ``frac_reward_zero_std``, a
gold / held-out reward, a validation reward) and ``sample`` events (text =
response, attrs.prompt, value = reward; attrs.split = "train" | "val", attrs.pair
and attrs.preferred for preference pairs). Each detector says whether it ran and
why not; none fires merely because training makes progress (a reward that rises
steadily is what training is for):

=====================  =============================================================
saturation             >= ``saturation_share`` of a window's sample rewards at one value
                       (or at a known clip bound, or beyond sigmoid 0.01/0.99)
zero_std_groups        share of GRPO groups (same prompt, same step) whose rewards all
                       equal, from samples or TRL's ``frac_reward_zero_std``
length_hacking         Spearman(response length, reward) >= ``length_rho`` in the later
                       windows, computed within steps (samples) or on step-to-step
                       changes (``completions/mean_length``), so shared upward trends
                       do not count
component_divergence   one ``rewards/<fn>/mean`` clearly rising while another falls
kl_band                reward rising while KL is above ``kl_band``
overoptimization       gold / held-out reward falling after its peak while the proxy
                       reward keeps rising; fits Gao et al. (2022) R(d) = a d - b d ln d
                       with d = sqrt(KL) when KL is logged
calibration            preference pairs: pairwise accuracy, ECE (10 bins) of the
                       Bradley-Terry probability sigmoid(r_a - r_b), length-only baseline
drift                  against a second run on shared (prompt, response) items:
                       Spearman, Kendall, pairwise sign-flip rate
leakage                validation prompts also in training (exact and normalized
                       content hash); validation reward moving in lockstep with the
                       training reward step to step
=====================  =============================================================
"""
from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from rldk import semantics
from rldk.analyzers.base import Analyzer
from rldk.core.errors import MissingEvents, UsageError
from rldk.core.report import Finding, Report, ReportTable

NAME = "reward_health"
CONSUMES = ("metric", "sample")

#: Quantities (``rldk.semantics``) read, as (canonical name, splits tried in order).
#: The reward is the reward-model / verifier score only: an SB3 episode return or a
#: DPO margin is another quantity. The KL is the KL to the reference policy only.
REWARD = ("reward", ("train",))
KL = ("kl_to_ref", ("train",))
LENGTH = ("response_length", ("train",))
GOLD = ("gold_reward", ("train", "eval"))
VAL_REWARD = ("reward", ("eval",))
ZERO_STD = ("zero_std_frac", ("train",))
REWARD_STD = ("reward_std", ("train",))
COMPONENT = re.compile(r"^rewards/(.+)/mean$")
VAL_SPLITS = frozenset(("val", "valid", "validation", "eval", "test", "heldout"))

SAMPLES_SQL = """
SELECT step, seq, text AS response, value AS reward,
       json_extract_string(attrs, '$.prompt') AS prompt,
       lower(coalesce(json_extract_string(attrs, '$.split'), name)) AS split,
       json_extract_string(attrs, '$.pair') AS pair,
       json_extract_string(attrs, '$.preferred') AS preferred
FROM samples
WHERE run_id = $run
ORDER BY rank, step, seq
"""


@dataclass(frozen=True)
class Params:
    """Reward-health parameters (defaults in brackets).

    reward_col: per-step reward metric [None: the run's ``reward`` quantity, ``rldk.semantics``].
    kl_col, length_col, gold_col, val_reward_col: likewise [None: auto from the name lists].
    windows: windows a run is cut into for windowed statistics [8].
    min_window: fewest values a window needs to be scored [5].
    saturation_share: share of a window's rewards at one value that is saturation [0.9].
    bounds: the reward's clip bounds (lo, hi) when known [None].
    zero_std_share: share of zero-std groups that is a problem [0.5].
    length_rho: Spearman(length, reward) that says reward follows length [0.5].
    component_rho: |Spearman(component, step)| for a clear trend [0.5].
    component_shift: |late - early mean| / std for a clear trend [1.0].
    kl_band: KL (as logged, nats) above which a rising reward is suspect [1.0].
    gold_drop: fall of the gold reward from its peak, in units of its step-to-step
        noise (and at least 5% of its range), that is overoptimization [3.0].
    accuracy_min, ece_max: preference accuracy below / ECE above which the reward
        model is flagged [0.6, 0.1].
    drift_rho, flip_max: Spearman below / sign-flip rate above which two reward
        models (runs) disagree [0.7, 0.2].
    overlap_max: share of validation prompts also in training above which it is
        leakage (any overlap is reported) [0.01].
    lockstep_rho: Spearman of step-to-step train and validation reward changes
        above which validation tracks training batch noise [0.8].
    against: id of a second run in the same store to compare rewards with [None].
    validation: id of a run whose samples are the validation set [None].
    """

    reward_col: str | None = None
    kl_col: str | None = None
    length_col: str | None = None
    gold_col: str | None = None
    val_reward_col: str | None = None
    windows: int = 8
    min_window: int = 5
    saturation_share: float = 0.9
    bounds: tuple[float, float] | None = None
    zero_std_share: float = 0.5
    length_rho: float = 0.5
    component_rho: float = 0.5
    component_shift: float = 1.0
    kl_band: float = 1.0
    gold_drop: float = 3.0
    accuracy_min: float = 0.6
    ece_max: float = 0.1
    drift_rho: float = 0.7
    flip_max: float = 0.2
    overlap_max: float = 0.01
    lockstep_rho: float = 0.8
    against: str | None = None
    validation: str | None = None


@dataclass(frozen=True)
class Check:
    """One detector on one run: ``status`` "ran" or "skipped", ``detail`` why / key numbers."""

    run_id: str
    detector: str
    status: str
    detail: str

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "detector": self.detector, "status": self.status,
                "detail": self.detail}


@dataclass(frozen=True)
class RewardHealth:
    """The reward-health result.

    run_ids: runs analysed. reward_cols: run id -> reward metric used (None: samples only).
    findings: what was found (``rldk.core.report.Finding``). checks: every detector's
    status per run. windows: per-window rows (run_id, window, first_step, last_step,
    reward_mean, top_share, group_std (mean within-group reward std), zero_std_share,
    length_rho). calibration, drift, leakage:
    per-run details of those analyses (run id -> dict) where they ran.
    """

    run_ids: tuple[str, ...]
    reward_cols: dict
    findings: tuple[Finding, ...]
    checks: tuple[Check, ...]
    windows: tuple[dict, ...] = ()
    calibration: dict = field(default_factory=dict)
    drift: dict = field(default_factory=dict)
    leakage: dict = field(default_factory=dict)
    params: Params = field(default_factory=Params)

    @property
    def passed(self) -> bool:
        """True when no finding is a warning or an error."""
        return not any(f.is_problem for f in self.findings)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {"analyzer": NAME, "passed": self.passed, "run_ids": list(self.run_ids),
                "reward_cols": self.reward_cols,
                "findings": [f.to_dict() for f in self.findings],
                "checks": [c.to_dict() for c in self.checks], "windows": list(self.windows),
                "calibration": self.calibration, "drift": self.drift, "leakage": self.leakage,
                "params": asdict(self.params)}

    def report(self) -> Report:
        problems = [f for f in self.findings if f.is_problem]
        ran = sum(c.status == "ran" for c in self.checks)
        summary = (f"{len(problems)} problem(s) in {len(self.run_ids)} run(s); "
                   if problems else f"No reward problem found in {len(self.run_ids)} run(s); ")
        summary += f"{ran} of {len(self.checks)} detector checks ran (the others lacked their events)."
        tables = [ReportTable("Detectors", ("run", "detector", "status", "detail"),
                              tuple((c.run_id, c.detector, c.status, c.detail) for c in self.checks))]
        if self.windows:
            cols = ("run_id", "window", "first_step", "last_step", "reward_mean", "top_share",
                    "group_std", "zero_std_share", "length_rho")
            tables.append(ReportTable("Windows", cols, tuple(tuple(w.get(c) for c in cols)
                                                             for w in self.windows)))
        for run_id, cal in self.calibration.items():
            tables.append(ReportTable(f"Reliability ({run_id})", ("bin", "count", "confidence", "accuracy"),
                                      tuple((b["bin"], b["count"], b["confidence"], b["accuracy"])
                                            for b in cal["bins"])))
        details = {k: v for k, v in self.to_dict().items() if k not in ("findings", "checks", "windows")}
        return Report(NAME, "Reward health", "problems" if problems else "ok", summary,
                      tuple(self.findings), tuple(tables), details)


# ======================================================================= data
@dataclass(frozen=True)
class Series:
    """One metric of one run: ``steps`` (int64) and ``values`` (float64), by step."""

    name: str
    steps: np.ndarray
    values: np.ndarray

    def finite(self) -> "Series":
        ok = np.isfinite(self.values)
        return Series(self.name, self.steps[ok], self.values[ok])


@dataclass(frozen=True)
class Samples:
    """A run's sample events as columns (arrays of equal length, in logging order)."""

    step: np.ndarray
    reward: np.ndarray          # float, NaN where no reward was logged
    response: list
    prompt: list
    split: list
    pair: list
    preferred: list

    def __len__(self) -> int:
        return len(self.response)

    def select(self, mask: np.ndarray) -> "Samples":
        idx = np.flatnonzero(mask)
        pick = lambda xs: [xs[i] for i in idx]      # noqa: E731
        return Samples(self.step[idx], self.reward[idx], pick(self.response), pick(self.prompt),
                       pick(self.split), pick(self.pair), pick(self.preferred))

    @cached_property
    def lengths(self) -> np.ndarray:
        """Response lengths in words (whitespace-separated); in characters when the
        texts have no spaces (median word count <= 1: code, CJK, tokens glued)."""
        words = np.array([len(r.split()) for r in self.response], dtype=float)
        if words.size and np.median(words) <= 1:
            return np.array([len(r) for r in self.response], dtype=float)
        return words


def load_series(run, name: str | None) -> Series | None:
    """The metric ``name`` of ``run`` as a Series, or None when it is not logged."""
    if name is None or name not in run.metric_names():
        return None
    frame = run.metric(name)
    return Series(name, frame["step"].to_numpy().astype(np.int64),
                  frame["value"].to_numpy().astype(float))


def load_samples(run) -> Samples:
    """The sample events of ``run`` (possibly none)."""
    frame = run.store.sql(SAMPLES_SQL, {"run": run.id})
    reward = frame["reward"].to_numpy().astype(float) if frame.height else np.empty(0)
    steps = frame["step"].fill_null(-1).to_numpy().astype(np.int64) if frame.height else np.empty(0, np.int64)
    col = lambda c: [v if v is not None else "" for v in frame[c].to_list()]    # noqa: E731
    return Samples(steps, reward, col("response"), col("prompt"),
                   [s or "train" for s in col("split")], frame["pair"].to_list(),
                   frame["preferred"].to_list())


def pick_name(names: list[str], wanted: str | None, quantity) -> str | None:
    """The metric of ``names`` to use: ``wanted`` (a run's name or a canonical one,
    resolved through ``rldk.semantics``) or, with ``wanted=None``, the metric that
    logs ``quantity`` = (canonical name, splits tried in order). None if absent."""
    if wanted is not None:
        return semantics.resolve_name(wanted, names)
    canonical, splits = quantity
    return next((n for split in splits
                 if (n := semantics.resolve_name(canonical, names, split)) is not None), None)


# ================================================================== statistics
def spearman(x, y) -> float | None:
    """Spearman's rho of two equal-length arrays; None with < 3 points or a constant side."""
    from scipy.stats import rankdata

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


def window_bounds(steps: np.ndarray, windows: int, min_size: int) -> list[tuple[int, int]]:
    """``(first_step, last_step)`` of up to ``windows`` contiguous windows of the
    distinct ``steps``, each holding at least ``min_size`` of them when possible."""
    distinct = np.unique(steps)
    if distinct.size == 0:
        return []
    count = max(1, min(windows, distinct.size // max(1, min_size)))
    return [(int(c[0]), int(c[-1])) for c in np.array_split(distinct, count)]


def _in(steps: np.ndarray, bounds: tuple[int, int]) -> np.ndarray:
    return (steps >= bounds[0]) & (steps <= bounds[1])


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3g}"


# ================================================================= detectors
@dataclass
class Context:
    """What the detectors of one run share (built once per run)."""

    run: object
    params: Params
    reward: Series | None
    all_samples: Samples         # every sample event of the run
    names: list[str]
    windows: list[dict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @cached_property
    def samples(self) -> Samples:
        """The policy's training samples: not validation, not preference pairs."""
        s = self.all_samples
        return s.select(np.array([sp not in VAL_SPLITS and pr is None
                                  for sp, pr in zip(s.split, s.pair)], dtype=bool))

    def ran(self, detector: str, detail: str) -> None:
        self.checks.append(Check(self.run.id, detector, "ran", detail))

    def skipped(self, detector: str, why: str) -> None:
        self.checks.append(Check(self.run.id, detector, "skipped", why))

    def find(self, code, severity, title, metric=None, steps=None, evidence=None, fix="") -> None:
        steps = None if steps is None else (int(steps[0]), int(steps[1]))
        self.findings.append(Finding(code, severity, title, self.run.id, metric, steps,
                                     _jsonable(evidence or {}), fix))

    def series(self, wanted: str | None, candidates) -> Series | None:
        return load_series(self.run, pick_name(self.names, wanted, candidates))


def check_values(ctx: Context) -> None:
    """NaN/inf and constant per-step rewards: the reward is not a signal at all."""
    if ctx.reward is None:
        return ctx.skipped("reward_values", "no per-step reward metric")
    s = ctx.reward
    bad = ~np.isfinite(s.values)
    if bad.any():
        ctx.find("reward_nan", "error", f"{s.name} is NaN/inf at {int(bad.sum())} of {s.values.size} steps, "
                 f"first at step {int(s.steps[bad][0])}", s.name, (s.steps[bad][0], s.steps[bad][-1]),
                 {"nonfinite_steps": s.steps[bad][:20].tolist(), "count": int(bad.sum())},
                 "Find where the reward function returns NaN (empty completions, division by zero, "
                 "failed parsing) and return a finite value; check the reward model's dtype.")
    good = s.values[~bad]
    if good.size >= ctx.params.min_window and np.ptp(good) == 0:
        ctx.find("reward_constant", "warning", f"{s.name} is {good[0]:.6g} at every one of "
                 f"{good.size} steps: the reward carries no signal", s.name, (s.steps[0], s.steps[-1]),
                 {"value": float(good[0]), "steps": int(good.size)},
                 "Check that the reward function is wired to the completions and is not clipped "
                 "or cached; log per-sample rewards with writer.log_samples to see them.")
    ctx.ran("reward_values", f"{s.values.size} steps, {int(bad.sum())} non-finite")


def check_saturation(ctx: Context) -> None:
    """Windows where nearly all sample rewards sit at one value / a bound / sigmoid extremes."""
    s = ctx.samples.select(np.isfinite(ctx.samples.reward)) if len(ctx.samples) else ctx.samples
    if len(s) < ctx.params.min_window:
        return ctx.skipped("saturation", "needs sample events with rewards (writer.log_samples)")
    p, flagged = ctx.params, []
    sigmoid = bool(s.reward.min() >= 0 and s.reward.max() <= 1 and np.unique(s.reward).size > 2)
    for w in ctx.windows:
        r = s.reward[_in(s.step, (w["first_step"], w["last_step"]))]
        if r.size < p.min_window:
            continue
        values, counts = np.unique(r, return_counts=True)
        w["top_share"] = float(counts.max() / r.size)
        share, why = w["top_share"], f"{w['top_share']:.0%} of rewards equal {values[counts.argmax()]:.6g}"
        if p.bounds is not None:
            at = float(np.mean((r <= p.bounds[0]) | (r >= p.bounds[1])))
            share, why = max(share, at), why if share >= at else f"{at:.0%} of rewards at the clip bounds"
        if sigmoid:
            ext = float(np.mean((r < 0.01) | (r > 0.99)))
            share, why = max(share, ext), why if share >= ext else f"{ext:.0%} of rewards beyond 0.01/0.99"
        if share >= p.saturation_share:
            flagged.append((w, share, why))
    ctx.ran("saturation", f"{len(s)} sample rewards in {len(ctx.windows)} windows, "
            f"{len(flagged)} saturated")
    if flagged:
        w0, share, why = flagged[0]
        ctx.find("reward_saturated", "warning", f"reward saturated in {len(flagged)} of "
                 f"{len(ctx.windows)} windows from step {w0['first_step']}: {why}", "sample",
                 (w0["first_step"], flagged[-1][0]["last_step"]),
                 {"windows": [{"first_step": w["first_step"], "last_step": w["last_step"],
                               "share": sh} for w, sh, _ in flagged]},
                 "A saturated reward no longer ranks completions: widen or rescale the reward "
                 "(remove clipping, use a margin), harden the prompts, or stop training here.")


def check_zero_std(ctx: Context) -> None:
    """Share of GRPO groups (same prompt, same step) whose rewards are all equal."""
    p = ctx.params
    steps, shares, source = _zero_std_per_step(ctx)
    if steps is None:
        return ctx.skipped("zero_std_groups", "needs frac_reward_zero_std or grouped samples "
                           "(several completions per prompt and step)")
    flagged = []
    for w in ctx.windows:
        m = _in(steps, (w["first_step"], w["last_step"]))
        if m.any():
            w["zero_std_share"] = float(shares[m].mean())
            if w["zero_std_share"] >= p.zero_std_share:
                flagged.append(w)
    _window_group_std(ctx)
    overall = float(shares.mean())
    ctx.ran("zero_std_groups", f"mean share {overall:.2f} over {steps.size} steps ({source})")
    if flagged or overall >= p.zero_std_share:
        bad = steps[shares >= p.zero_std_share]
        first = flagged[0]["first_step"] if flagged else int(bad[0])
        last = flagged[-1]["last_step"] if flagged else int(bad[-1])
        ctx.find("zero_std_groups", "error" if overall >= 0.9 else "warning",
                 f"{overall:.0%} of GRPO groups have identical rewards on average ({source}); "
                 f"{int((shares >= p.zero_std_share).sum())} of {steps.size} steps at or above "
                 f"{p.zero_std_share:.0%}", source, (first, last),
                 {"mean_share": overall, "steps_at_or_above": int((shares >= p.zero_std_share).sum()),
                  "steps": int(steps.size), "threshold": p.zero_std_share},
                 "Groups with one reward value give zero advantage and no gradient: make the "
                 "reward graded (partial credit), raise num_generations or the sampling "
                 "temperature, or filter prompts that are always solved or never solved.")


def _window_group_std(ctx: Context) -> None:
    """Mean within-group reward std per window: from sample groups, else TRL's ``reward_std``."""
    s = ctx.samples
    per_step: dict = {}
    for (step, _), rewards in _groups(s).items():
        if len(rewards) >= 2:
            per_step.setdefault(step, []).append(float(np.std(rewards)))
    if per_step:
        steps = np.array(sorted(per_step))
        stds = np.array([np.mean(per_step[k]) for k in steps])
    else:
        metric = ctx.series(None, REWARD_STD)
        if metric is None:
            return
        steps, stds = metric.finite().steps, metric.finite().values
    for w in ctx.windows:
        m = _in(steps, (w["first_step"], w["last_step"]))
        if m.any():
            w["group_std"] = float(stds[m].mean())


def _groups(s: Samples) -> dict:
    """(step, prompt) -> the finite rewards of that GRPO group."""
    groups: dict = {}
    for i in np.flatnonzero(np.isfinite(s.reward)):
        groups.setdefault((int(s.step[i]), s.prompt[i]), []).append(float(s.reward[i]))
    return groups


def _zero_std_per_step(ctx: Context):
    metric = ctx.series(None, ZERO_STD)
    if metric is not None and metric.finite().steps.size:
        m = metric.finite()
        return m.steps, m.values, metric.name
    s = ctx.samples
    if not len(s):
        return None, None, None
    per_step: dict = {}
    for (step, _), rewards in _groups(s).items():
        if len(rewards) >= 2:
            per_step.setdefault(step, []).append(float(np.ptp(rewards) == 0))
    if not per_step:
        return None, None, None
    steps = np.array(sorted(per_step))
    return steps, np.array([np.mean(per_step[k]) for k in steps]), "sample groups"


def check_length(ctx: Context) -> None:
    """Does reward follow response length? Within steps (samples) or step-to-step (metrics)."""
    s = ctx.samples.select(np.isfinite(ctx.samples.reward)) if len(ctx.samples) else ctx.samples
    if len(s) >= ctx.params.min_window * 2:
        return _length_from_samples(ctx, s)
    length = ctx.series(ctx.params.length_col, LENGTH)
    if length is None or ctx.reward is None:
        return ctx.skipped("length_hacking", "needs sample events with rewards, or a reward and a "
                           "mean-length metric (completions/mean_length)")
    _length_from_metrics(ctx, length)


def _length_from_samples(ctx: Context, s: Samples) -> None:
    p = ctx.params
    lengths, rewards = s.lengths, s.reward.copy()
    per_step = np.bincount(np.unique(s.step, return_inverse=True)[1]).astype(float)
    within = float(np.median(per_step)) >= 3
    if within:             # compare completions of the same step: policy progress cancels out
        lengths, rewards = _demean_by(s.step, lengths), _demean_by(s.step, rewards)
    rhos = []
    for w in ctx.windows:
        m = _in(s.step, (w["first_step"], w["last_step"]))
        w["length_rho"] = spearman(lengths[m], rewards[m]) if m.sum() >= p.min_window else None
        if w["length_rho"] is not None:
            rhos.append((w, w["length_rho"], float(s.lengths[m].mean())))
    how = "within steps" if within else "pooled per window"
    if len(rhos) < 2:
        return ctx.skipped("length_hacking", f"fewer than 2 windows with varied lengths and rewards ({how})")
    _judge_length(ctx, rhos, how, "sample")


def _demean_by(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    _, inverse = np.unique(keys, return_inverse=True)
    means = np.bincount(inverse, weights=values) / np.bincount(inverse)
    return values - means[inverse]


def _length_from_metrics(ctx: Context, length: Series) -> None:
    """Batch-level evidence: step-to-step changes of mean length and mean reward.

    Weaker than the within-step sample test (a reward that merely gives empty or
    truncated answers less also correlates here), so it needs corroboration:
    Spearman of changes over the later half >= ``length_rho`` *and* either mean
    length grown by 20% or Spearman >= 0.8.
    """
    p = ctx.params
    reward = ctx.reward.finite()
    common, ri, li = np.intersect1d(reward.steps, length.steps, return_indices=True)
    r, ln = reward.values[ri], length.values[li]
    if common.size < 2 * p.min_window:
        return ctx.skipped("length_hacking", f"{common.size} steps with both {reward.name} and "
                           f"{length.name}; needs {2 * p.min_window}")
    for w in ctx.windows:
        m = _in(common, (w["first_step"], w["last_step"]))
        if m.sum() >= 4:
            w["length_rho"] = spearman(np.diff(ln[m]), np.diff(r[m]))   # changes: shared trends cancel
    half = common.size // 2
    rho = spearman(np.diff(ln[half:]), np.diff(r[half:]))
    q = max(2, common.size // 4)
    growth = float(ln[-q:].mean() / ln[:q].mean()) if ln[:q].mean() > 0 else None
    how = f"step-to-step changes of {length.name}, later half"
    ctx.ran("length_hacking", f"Spearman(length, reward) {_fmt(rho)} ({how}), length x{_fmt(growth)}")
    if rho is None or rho < p.length_rho or not ((growth or 0) >= 1.2 or rho >= 0.8):
        return
    _length_finding(ctx, rho, growth, how, length.name, (common[half], common[-1]),
                    {"window_rho": [w["length_rho"] for w in ctx.windows]})


def _judge_length(ctx: Context, rhos: list, how: str, metric: str) -> None:
    p = ctx.params
    values = [r for _, r, _ in rhos]
    late = rhos[len(rhos) // 2:]
    late_rho = float(np.median([r for _, r, _ in late]))
    growth = rhos[-1][2] / rhos[0][2] if rhos[0][2] > 0 else None
    ctx.ran("length_hacking", f"late-window Spearman(length, reward) {late_rho:.2f} ({how})")
    if late_rho >= p.length_rho:
        trend = spearman(np.arange(len(values)), values) if len(values) >= 3 else None
        _length_finding(ctx, late_rho, growth, how, metric,
                        (late[0][0]["first_step"], late[-1][0]["last_step"]),
                        {"window_rho": values, "rho_trend": trend})


def _length_finding(ctx: Context, rho, growth, how, metric, steps, extra) -> None:
    severity = "error" if growth is not None and growth >= 1.5 else "warning"
    ctx.find("length_hacking", severity,
             f"reward follows response length: Spearman {rho:.2f} in the later steps ({how})"
             + (f", mean length x{growth:.2f}" if growth is not None else ""), metric, steps,
             {"late_rho": rho, "length_growth": growth, "method": how,
              "threshold": ctx.params.length_rho, **extra},
             "The policy can raise reward by writing more: add a length penalty or normalise "
             "the reward by length, check the reward model with a length-controlled "
             "evaluation, and cap max_completion_length.")


def check_components(ctx: Context) -> None:
    """One reward function's mean clearly rising while another clearly falls."""
    p = ctx.params
    names = [n for n in ctx.names if COMPONENT.match(n)]
    if len(names) < 2:
        return ctx.skipped("component_divergence", "needs two or more rewards/<fn>/mean metrics")
    trends = {n: _trend(load_series(ctx.run, n).finite(), p) for n in names}
    rising = [n for n, t in trends.items() if t["direction"] == "up"]
    falling = [n for n, t in trends.items() if t["direction"] == "down"]
    ctx.ran("component_divergence", f"{len(names)} components: {len(rising)} rising, {len(falling)} falling")
    if rising and falling:
        s = load_series(ctx.run, rising[0]).finite()
        ctx.find("component_divergence", "warning",
                 f"{', '.join(rising)} rising while {', '.join(falling)} falling", rising[0],
                 (s.steps[0], s.steps[-1]), {"trends": trends},
                 "The policy trades one objective for another: reweight the reward functions "
                 "(reward_weights), gate the rising one on the falling one, or inspect samples "
                 "for the rising component being gamed.")


def _trend(s: Series, p: Params) -> dict:
    if s.values.size < 2 * p.min_window:
        return {"direction": "flat", "rho": None, "shift": None, "steps": int(s.values.size)}
    rho = spearman(s.steps, s.values)
    k = max(p.min_window, s.values.size // 4)
    sd = float(np.std(s.values))
    shift = float((s.values[-k:].mean() - s.values[:k].mean()) / sd) if sd > 0 else 0.0
    up = rho is not None and rho >= p.component_rho and shift >= p.component_shift
    down = rho is not None and rho <= -p.component_rho and shift <= -p.component_shift
    return {"direction": "up" if up else "down" if down else "flat", "rho": rho, "shift": shift,
            "first": float(s.values[:k].mean()), "last": float(s.values[-k:].mean())}


def check_kl(ctx: Context) -> None:
    """Reward rising while KL to the reference sits above ``kl_band``."""
    p = ctx.params
    kl = ctx.series(p.kl_col, KL)
    if kl is None or ctx.reward is None:
        return ctx.skipped("kl_band", "needs a reward metric and a KL metric (kl, objective/kl)")
    kl, reward = kl.finite(), ctx.reward.finite()
    smooth = _rolling_median(kl.values, 3)
    above = np.flatnonzero(smooth > p.kl_band)
    ctx.ran("kl_band", f"max {kl.name} {_fmt(float(kl.values.max()) if kl.values.size else None)} "
            f"vs band {p.kl_band:g}")
    if not above.size:
        return
    cross = int(kl.steps[above[0]])
    rho = spearman(reward.steps, reward.values)
    before = reward.values[reward.steps < cross]
    after = reward.values[reward.steps >= cross]
    rising = rho is not None and rho >= 0.3 and after.size and before.size and after.mean() > before.mean()
    ctx.find("kl_band_exceeded", "warning" if rising else "info",
             f"{kl.name} above {p.kl_band:g} from step {cross} (max {kl.values.max():.3g})"
             + (f" while {reward.name} kept rising" if rising else ""), kl.name,
             (cross, int(kl.steps[-1])),
             {"band": p.kl_band, "first_step_above": cross, "max_kl": float(kl.values.max()),
              "reward_rho_step": rho, "reward_before": _mean(before), "reward_after": _mean(after)},
             "Reward bought with a large KL is often reward hacking: raise the KL coefficient "
             "(beta), lower the learning rate, or evaluate samples past this step with a "
             "held-out judge. Set kl_band to your framework's scale (per-token vs per-sequence).")


def _rolling_median(x: np.ndarray, k: int) -> np.ndarray:
    if x.size < k:
        return x
    from numpy.lib.stride_tricks import sliding_window_view

    core = np.median(sliding_window_view(x, k), axis=1)
    return np.concatenate([x[: k - 1], core])


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def check_overoptimization(ctx: Context) -> None:
    """Gold / held-out reward falling after its peak while the proxy reward rises."""
    p = ctx.params
    gold = ctx.series(p.gold_col, GOLD)
    if gold is None or ctx.reward is None:
        return ctx.skipped("overoptimization", "needs a gold or held-out reward metric "
                           "(gold_reward, heldout_reward) beside the proxy reward")
    gold, proxy = gold.finite(), ctx.reward.finite()
    common, gi, pi = np.intersect1d(gold.steps, proxy.steps, return_indices=True)
    if common.size < 2 * p.min_window:
        return ctx.skipped("overoptimization", f"{common.size} steps with both {gold.name} and "
                           f"{proxy.name}; needs {2 * p.min_window}")
    g, r = gold.values[gi], proxy.values[pi]
    fit = _gao_fit(ctx, common, g)
    verdict = _gold_peak(g, r, common, p)
    ctx.ran("overoptimization", f"gold peak at step {verdict['peak_step']}, drop "
            f"{_fmt(verdict['drop_in_noise'])} noise units" + (f", Gao fit R2 {_fmt(fit['r2'])}" if fit else ""))
    if verdict["overoptimized"]:
        ctx.find("overoptimization", "error",
                 f"{gold.name} fell {verdict['drop']:.3g} from its peak at step {verdict['peak_step']} "
                 f"while {proxy.name} rose {verdict['proxy_gain']:.3g}", gold.name,
                 (verdict["peak_step"], int(common[-1])), {**verdict, "gao_fit": fit},
                 "The policy is overoptimizing the proxy reward model (Goodhart): stop at or "
                 "restore the checkpoint near the gold peak, raise the KL coefficient, or "
                 "retrain the reward model on the policy's current samples.")


def _gold_peak(g: np.ndarray, r: np.ndarray, steps: np.ndarray, p: Params) -> dict:
    """Peak of the (3-step smoothed) gold reward and how far it fell since, in units of
    its step-to-step noise (robust: MAD of second differences / sqrt 6, so a smooth
    trend is not counted as noise); the drop must also be >= 5% of the gold's range."""
    smooth = np.convolve(g, np.ones(3) / 3, mode="valid")
    peak = int(np.argmax(smooth)) + 1
    second = np.diff(g, 2)
    noise = float(1.4826 * np.median(np.abs(second - np.median(second))) / math.sqrt(6))
    tail = g[-max(3, p.min_window // 2):]
    drop = float(smooth[peak - 1] - tail.mean())
    in_noise = drop / noise if noise > 0 else (math.inf if drop > 0 else 0.0)
    post = slice(peak, None)
    rho_proxy = spearman(steps[post], r[post]) if g.size - peak >= 3 else None
    gain = float(r[-3:].mean() - r[max(0, peak - 1):peak + 2].mean())
    over = (in_noise >= p.gold_drop and drop >= 0.05 * float(np.ptp(g)) and rho_proxy is not None
            and rho_proxy >= 0.3 and gain > 0)
    return {"peak_step": int(steps[peak]), "drop": drop, "noise": noise,
            "drop_in_noise": in_noise if math.isfinite(in_noise) else None,
            "proxy_rho_after_peak": rho_proxy, "proxy_gain": gain, "overoptimized": bool(over)}


def _gao_fit(ctx: Context, steps: np.ndarray, gold: np.ndarray) -> dict | None:
    """Least-squares fit of gold = r0 + a d - b d ln d, d = sqrt(KL) (Gao et al. 2022, RL form)."""
    kl = ctx.series(ctx.params.kl_col, KL)
    if kl is None:
        return None
    kl = kl.finite()
    common, gi, ki = np.intersect1d(steps, kl.steps, return_indices=True)
    d = np.sqrt(np.clip(kl.values[ki], 0.0, None))
    y = gold[gi]
    if common.size < 5 or np.ptp(d) == 0:
        return None
    dlogd = np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)
    design = np.column_stack([np.ones_like(d), d, -dlogd])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    total = float(np.sum((y - y.mean()) ** 2))
    r0, a, b = (float(c) for c in coef)
    peak_d = math.exp(a / b - 1.0) if b > 0 and a / b < 50 else None
    return {"r0": r0, "alpha": a, "beta": b, "r2": 1.0 - float(resid @ resid) / total if total else None,
            "peak_sqrt_kl": peak_d, "peak_kl": peak_d ** 2 if peak_d is not None else None,
            "kl_metric": kl.name, "points": int(common.size)}


def check_calibration(ctx: Context, out_dir=None) -> dict | None:
    """Preference pairs (attrs.pair, attrs.preferred): accuracy, ECE, length baseline."""
    pairs = preference_pairs(ctx.all_samples)
    if pairs is None:
        ctx.skipped("calibration", "needs sample events with attrs pair and preferred "
                    "(two responses per pair, one preferred)")
        return None
    p = ctx.params
    cal = calibration(*pairs)
    ctx.ran("calibration", f"{cal['pairs']} pairs: accuracy {cal['accuracy']:.2f}, ECE {cal['ece']:.3f}, "
            f"length-only {cal['length_accuracy']:.2f}")
    if cal["accuracy"] < p.accuracy_min:
        ctx.find("reward_model_inaccurate", "warning", f"reward model ranks only {cal['accuracy']:.0%} "
                 f"of {cal['pairs']} preference pairs correctly", "sample", None,
                 {k: cal[k] for k in ("accuracy", "pairs")},
                 "Retrain or replace the reward model; check that chosen/rejected are not swapped.")
    if cal["ece"] > p.ece_max:
        ctx.find("reward_model_miscalibrated", "warning", f"reward margins are miscalibrated: "
                 f"ECE {cal['ece']:.3f} over 10 bins", "sample", None,
                 {k: cal[k] for k in ("ece", "accuracy", "pairs")},
                 "Rescale rewards (temperature-scale the margin on held-out pairs) before using "
                 "them as probabilities or mixing reward models.")
    if cal["length_accuracy"] >= 0.6 and cal["length_accuracy"] >= cal["accuracy"] - 0.05:
        ctx.find("length_shortcut", "warning", f"'the longer response wins' gets "
                 f"{cal['length_accuracy']:.0%} of pairs right, the reward model {cal['accuracy']:.0%}",
                 "sample", None, {k: cal[k] for k in ("length_accuracy", "accuracy", "pairs")},
                 "The labels (or the model) reward length: rebalance the preference data by "
                 "length and report length-controlled accuracy.")
    if out_dir is not None:
        cal["plot"] = plot_reliability(cal, Path(out_dir) / f"reliability-{safe_stem(ctx.run.id)}.png", ctx.run.id)
    return cal


def preference_pairs(s: Samples):
    """``(r_preferred, r_other, len_preferred, len_other)`` arrays, or None without pairs."""
    groups: dict = {}
    for i, pair in enumerate(s.pair):
        if pair is not None and np.isfinite(s.reward[i]):
            groups.setdefault(pair, []).append(i)
    rows = []
    for members in groups.values():
        flags = [str(s.preferred[i]).lower() in ("1", "true", "yes", "chosen") for i in members]
        if len(members) == 2 and sum(flags) == 1:
            a, b = members if flags[0] else members[::-1]
            rows.append((s.reward[a], s.reward[b], len(s.response[a]), len(s.response[b])))
    if not rows:
        return None
    return tuple(np.array(col, dtype=float) for col in zip(*rows))


def calibration(r_pref, r_other, len_pref, len_other, bins: int = 10) -> dict:
    """Pairwise accuracy (ties count half), ECE of p = sigmoid(r_pref - r_other) over
    ``bins`` equal-width bins (both orderings of each pair, so the diagram is
    symmetric), and the accuracy of "the longer response is preferred"."""
    margin = r_pref - r_other
    accuracy = float(np.mean((margin > 0) + 0.5 * (margin == 0)))
    p = 1.0 / (1.0 + np.exp(-np.clip(margin, -50, 50)))
    conf = np.concatenate([p, 1.0 - p])
    outcome = np.concatenate([np.ones_like(p), np.zeros_like(p)])
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            c, a = float(conf[m].mean()), float(outcome[m].mean())
            ece += m.mean() * abs(a - c)
            rows.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "count": int(m.sum()),
                         "confidence": c, "accuracy": a})
    dl = len_pref - len_other
    length_accuracy = float(np.mean((dl > 0) + 0.5 * (dl == 0)))
    return {"pairs": int(margin.size), "accuracy": accuracy, "ece": float(ece), "bins": rows,
            "length_accuracy": length_accuracy}


def plot_reliability(cal: dict, path: Path, title: str) -> str:
    """Reliability diagram PNG: observed preference rate per confidence bin."""
    from rldk.core.plots import pyplot

    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    conf = [b["confidence"] for b in cal["bins"]]
    acc = [b["accuracy"] for b in cal["bins"]]
    ax.plot(conf, acc, "o-", label=f"reward model (ECE {cal['ece']:.3f})")
    ax.set_xlabel("sigmoid(reward margin)")
    ax.set_ylabel("observed preference rate")
    ax.set_title(plot_label(f"reliability: {title}"[:60]))
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def check_drift(ctx: Context, other) -> dict | None:
    """Rewards of this run vs ``other`` on shared (prompt, response) items."""
    if other is None:
        ctx.skipped("drift", "needs a second run (against=) scoring the same items")
        return None
    p = ctx.params
    a, b = item_rewards(ctx.samples), item_rewards(load_samples(other))
    shared = sorted(a.keys() & b.keys())
    if len(shared) < 3:
        ctx.skipped("drift", f"{len(shared)} shared (prompt, response) items with run {other.id!r}; needs 3")
        return None
    d = drift(np.array([a[k] for k in shared]), np.array([b[k] for k in shared]))
    d["against"] = other.id
    ctx.ran("drift", f"{d['items']} shared items with {other.id}: Spearman {_fmt(d['spearman'])}, "
            f"sign flips {d['sign_flip_rate']:.2f}")
    rho = d["spearman"] if d["spearman"] is not None else 0.0
    if rho < p.drift_rho or d["sign_flip_rate"] > p.flip_max:
        ctx.find("reward_drift", "warning", f"rewards disagree with run {other.id} on {d['items']} shared "
                 f"items: Spearman {_fmt(d['spearman'])}, {d['sign_flip_rate']:.0%} of pairs flip order",
                 "sample", None, d,
                 "The two reward models (or reward versions) rank completions differently: "
                 "do not compare rewards across them; re-score both runs with one model.")
    return d


def item_key(prompt: str, response: str) -> str:
    """Content hash of a (prompt, response) item."""
    return hashlib.blake2b(f"{prompt}\x00{response}".encode("utf-8", "surrogatepass"),
                           digest_size=16).hexdigest()


def item_rewards(s: Samples) -> dict:
    """item key -> mean reward over the samples of that item."""
    sums: dict = {}
    for i in np.flatnonzero(np.isfinite(s.reward)):
        k = item_key(s.prompt[i], s.response[i])
        total, n = sums.get(k, (0.0, 0))
        sums[k] = (total + float(s.reward[i]), n + 1)
    return {k: t / n for k, (t, n) in sums.items()}


def drift(a: np.ndarray, b: np.ndarray, max_items: int = 4000, seed: int = 0) -> dict:
    """Spearman, Kendall tau-b and the pairwise sign-flip rate of two reward vectors on the
    same items. The flip rate is the share of item pairs ordered oppositely, among pairs
    ordered (not tied) by both; above ``max_items`` a seeded random subset is used."""
    from scipy.stats import kendalltau

    items = a.size
    if a.size > max_items:
        idx = np.random.default_rng(seed).choice(a.size, max_items, replace=False)
        a, b = a[idx], b[idx]
    i, j = np.triu_indices(a.size, k=1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    both = (da != 0) & (db != 0)
    tau = kendalltau(a, b).statistic if np.ptp(a) and np.ptp(b) else None
    return {"items": int(items), "spearman": spearman(a, b),
            "kendall": None if tau is None or not np.isfinite(tau) else float(tau),
            "sign_flip_rate": float(np.mean(da[both] != db[both])) if both.any() else 0.0,
            "pairs_compared": int(both.sum()), "subsampled": bool(items > max_items)}


def check_leakage(ctx: Context, validation) -> dict | None:
    """Validation prompts found in training (exact / normalized hash) and lockstep rewards."""
    s = ctx.all_samples
    val_mask = np.array([sp in VAL_SPLITS for sp in s.split], dtype=bool)
    train, val = s.select(~val_mask), s.select(val_mask)
    if validation is not None:
        val = load_samples(validation)
    out = {}
    if len(train) and len(val):
        out["overlap"] = prompt_overlap(train.prompt, val.prompt)
        _judge_overlap(ctx, out["overlap"])
    lock = _lockstep(ctx, train, val)
    if lock is not None:
        out["lockstep"] = lock
    if not out:
        ctx.skipped("leakage", "needs validation samples (attrs split='val' or validation=RUN) or a "
                    "validation reward metric (eval_reward)")
        return None
    ctx.ran("leakage", "; ".join(f"{k}: " + ", ".join(f"{kk} {_fmt(v)}" for kk, v in d.items()
                                                      if isinstance(v, float))
                                 for k, d in out.items()))
    return out


def normalize_text(text: str) -> str:
    """Text for near-duplicate matching: NFKC, casefolded, punctuation dropped, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text)
    return " ".join(text.split())


def _hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def prompt_overlap(train_prompts, val_prompts) -> dict:
    """Share of distinct validation prompts whose content hash (exact, then normalized)
    also occurs among the training prompts."""
    val = {p for p in val_prompts if p}
    exact = {_hash(p) for p in train_prompts}
    norm = {_hash(normalize_text(p)) for p in train_prompts}
    hit_exact = [p for p in val if _hash(p) in exact]
    hit_norm = [p for p in val if _hash(normalize_text(p)) in norm]
    n = max(1, len(val))
    return {"val_prompts": len(val), "exact": len(hit_exact), "normalized": len(hit_norm),
            "exact_share": len(hit_exact) / n, "normalized_share": len(hit_norm) / n,
            "examples": sorted(hit_norm)[:5]}


def _judge_overlap(ctx: Context, ov: dict) -> None:
    if not ov["normalized"]:
        return
    share = ov["normalized_share"]
    ctx.find("prompt_leakage", "warning" if share > ctx.params.overlap_max else "info",
             f"{ov['normalized']} of {ov['val_prompts']} validation prompts also appear in training "
             f"({ov['exact']} exact, {ov['normalized']} after normalization)", "sample", None, ov,
             "Deduplicate the validation set against training by normalized content hash "
             "before trusting validation rewards.")


def _lockstep(ctx: Context, train: Samples, val: Samples) -> dict | None:
    """Spearman of step-to-step changes of the train and validation mean reward."""
    p = ctx.params
    tr = _per_step_mean(train) if len(train) else None
    va = _per_step_mean(val) if len(val) else None
    if va is None:
        metric = ctx.series(p.val_reward_col, VAL_REWARD)
        va = (metric.finite().steps, metric.finite().values) if metric is not None else None
    if ctx.reward is not None:
        tr = (ctx.reward.finite().steps, ctx.reward.finite().values)
    if tr is None or va is None:
        return None
    common, ti, vi = np.intersect1d(tr[0], va[0], return_indices=True)
    if common.size < 2 * p.min_window:
        return None
    t, v = tr[1][ti], va[1][vi]
    rho_changes = spearman(np.diff(t), np.diff(v))
    out = {"steps": int(common.size), "level_rho": spearman(t, v), "change_rho": rho_changes,
           "note": "level_rho rises whenever both improve; only change_rho is judged"}
    if rho_changes is not None and rho_changes >= p.lockstep_rho:
        ctx.find("train_val_lockstep", "warning", f"validation reward moves in lockstep with training "
                 f"reward step to step (Spearman of changes {rho_changes:.2f} over {common.size} steps)",
                 ctx.reward.name if ctx.reward is not None else "sample", (common[0], common[-1]), out,
                 "Validation tracks the training batches' noise, as if it scored the same items: "
                 "check that validation prompts are disjoint and scored separately.")
    return out


def _per_step_mean(s: Samples):
    ok = np.isfinite(s.reward) & (s.step >= 0)
    if not ok.any():
        return None
    steps, inverse = np.unique(s.step[ok], return_inverse=True)
    return steps, np.bincount(inverse, weights=s.reward[ok]) / np.bincount(inverse)


def check_texts(ctx: Context) -> None:
    """Empty responses and text that was not valid UTF-8 (stored with U+FFFD)."""
    s = ctx.all_samples
    if not len(s):
        return
    empty = sum(1 for r in s.response if not r.strip())
    broken = sum(1 for r, q in zip(s.response, s.prompt) if "\ufffd" in r or "\ufffd" in q)
    if empty:
        share = empty / len(s)
        ctx.find("empty_responses", "warning" if share >= 0.5 else "info",
                 f"{empty} of {len(s)} responses are empty", "sample", None,
                 {"empty": empty, "samples": len(s)},
                 "Empty completions usually mean generation stops at once (EOS first): check "
                 "the generation config and what reward they get.")
    if broken:
        ctx.find("undecodable_text", "info", f"{broken} of {len(s)} samples held bytes that were not "
                 "UTF-8 (stored as U+FFFD)", "sample", None, {"samples": broken},
                 "Decode completions with the tokenizer's decode() before logging them.")


# =============================================================== orchestration
DETECTORS = (check_values, check_saturation, check_zero_std, check_length, check_components,
             check_kl, check_overoptimization)


def analyze_run(run, params: Params, store=None, out_dir=None) -> tuple[Context, dict]:
    """Run every detector on one run; returns its context and the per-run details."""
    names = run.metric_names()
    reward_name = pick_name(names, params.reward_col, REWARD)
    samples = load_samples(run)
    for what, wanted in (("reward", params.reward_col), ("KL", params.kl_col), ("length", params.length_col),
                         ("gold reward", params.gold_col), ("validation reward", params.val_reward_col)):
        if wanted is not None and semantics.resolve_name(wanted, names) is None:
            raise UsageError(f"run {run.id!r} has no {what} metric {wanted!r}; metrics: "
                             f"{', '.join(names) or 'none'}")
    if reward_name is None and not np.isfinite(samples.reward).any():
        raise MissingEvents(f"run {run.id!r} has no reward: log a per-step reward metric (one of "
                            f"{', '.join(semantics.quantity('reward').names)}) or samples with rewards "
                            f"(writer.log_samples); metrics: {', '.join(names) or 'none'}")
    ctx = Context(run, params, load_series(run, reward_name), samples, names)
    ctx.windows = _windows(ctx)
    for detector in DETECTORS:
        detector(ctx)
    check_texts(ctx)
    details = {"calibration": check_calibration(ctx, out_dir),
               "drift": check_drift(ctx, _other(store, params.against, run)),
               "leakage": check_leakage(ctx, _other(store, params.validation, run))}
    return ctx, details


def _windows(ctx: Context) -> list[dict]:
    steps = ctx.reward.steps if ctx.reward is not None else ctx.samples.step[ctx.samples.step >= 0]
    out = []
    for i, (a, b) in enumerate(window_bounds(steps, ctx.params.windows, ctx.params.min_window)):
        w = {"run_id": ctx.run.id, "window": i, "first_step": a, "last_step": b, "reward_mean": None,
             "top_share": None, "group_std": None, "zero_std_share": None, "length_rho": None}
        if ctx.reward is not None:
            r = ctx.reward.values[_in(ctx.reward.steps, (a, b))]
            w["reward_mean"] = float(np.nanmean(r)) if np.isfinite(r).any() else None
        out.append(w)
    return out


def _other(store, run_id, run):
    if run_id is None or store is None:
        return None
    if run_id == run.id:
        raise UsageError(f"against/validation run {run_id!r} is the run being analysed; name another run")
    return store.run(run_id)


def applies(store) -> bool:
    """True when some run logs a known reward metric or samples with rewards."""
    names = set(store.sql("SELECT DISTINCT name FROM metrics")["name"].to_list())
    if pick_name(sorted(names), None, REWARD) is not None:
        return True
    return bool(store.sql("SELECT count(*) AS n FROM samples WHERE value IS NOT NULL")["n"][0])


def run(store, params: Params = Params(), out_dir=None, run_ids=None) -> RewardHealth:
    """Reward health of every run in ``store`` (or of ``run_ids``), except the runs named
    as ``against`` / ``validation``. Without ``run_ids``, runs that log no reward are
    listed as skipped; MissingEvents only when no run has one."""
    skip = {params.against, params.validation}
    runs = [store.run(r) for r in run_ids] if run_ids else [r for r in store.runs() if r.id not in skip]
    if not runs:
        raise MissingEvents("no runs to analyse in the store")
    findings, checks, windows, cols, analysed, missing = [], [], [], {}, [], []
    details: dict = {"calibration": {}, "drift": {}, "leakage": {}}
    for r in runs:
        try:
            ctx, extra = analyze_run(r, params, store, out_dir)
        except MissingEvents as exc:
            if run_ids:
                raise
            missing.append(exc)
            checks.append(Check(r.id, "all", "skipped", str(exc)))
            continue
        analysed.append(r.id)
        findings += ctx.findings
        checks += ctx.checks
        windows += ctx.windows
        cols[r.id] = ctx.reward.name if ctx.reward is not None else None
        for key, value in extra.items():
            if value is not None:
                details[key][r.id] = value
    if not analysed:
        raise missing[0]
    findings += import_findings(store, set(analysed))
    return RewardHealth(tuple(analysed), cols, tuple(findings), tuple(checks),
                        tuple(windows), details["calibration"], details["drift"], details["leakage"],
                        params)


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

    ``reward_col`` names the per-step reward metric (None: the first of
    ``reward`` quantity (``rldk.semantics``) logged; a name that is not logged raises UsageError listing the
    metrics that are). Other keyword arguments set :class:`Params` fields.
    ``out_dir`` receives the plots (reliability diagram). Returns a
    :class:`RewardHealth` with ``passed``, ``findings`` and ``to_dict()``.
    """
    from rldk.core.store import Run, Store

    unknown = set(params) - set(Params.__dataclass_fields__)
    if unknown:
        raise UsageError(f"unknown reward_health parameter(s): {', '.join(sorted(unknown))}")
    p = replace(Params(), reward_col=reward_col, **params)
    if isinstance(source, Run):
        return run(source.store, p, out_dir, run_ids=[source.id])
    store = source if isinstance(source, Store) else open_source(source, adapter)
    return run(store, p, out_dir)


def open_source(path, adapter=None):
    """A Store from an event-store path, or from foreign logs (``rldk.data.open_input``)."""
    from rldk.data import open_input

    return open_input(path, adapter)


def plots(result: RewardHealth, out_dir) -> dict:
    """The card's PNGs ({caption: path}): reliability diagrams and the per-window plot.
    Raises ``rldk.core.plots.MissingPlotting`` without matplotlib."""
    out = {}
    for run_id, cal in result.calibration.items():
        out[f"reliability diagram ({run_id})"] = cal.get("plot") or plot_reliability(
            cal, Path(out_dir) / f"reliability-{safe_stem(run_id)}.png", run_id)
    if result.windows:
        out["reward and length-reward correlation by window"] = plot_windows(
            result, Path(out_dir) / "reward_health_windows.png")
    return out


def write_card(result: RewardHealth, out_dir) -> dict:
    """Write reward_health.json/.md and, with matplotlib, the plots into ``out_dir``."""
    from rldk.core.plots import MissingPlotting
    from rldk.core.report import write_report

    try:
        pngs = plots(result, out_dir)
    except MissingPlotting:          # matplotlib is optional (rldk[plots]): a card without plots
        pngs = {}
    return write_report(result.report(), out_dir, pngs)


def safe_stem(text: str) -> str:
    """``text`` usable in a file name inside the card directory (run ids come from logs)."""
    stem = re.sub(r"[^A-Za-z0-9._+=@-]", "-", str(text)).lstrip(".")
    return stem[:120] or "run"


def plot_label(text: str) -> str:
    """``text`` shown literally by matplotlib (no mathtext from log contents)."""
    return str(text).replace("$", r"\$")


def plot_windows(result: RewardHealth, path: Path) -> str:
    """Per-window mean reward and Spearman(length, reward), one line per run."""
    from rldk.core.plots import pyplot

    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    for run_id in result.run_ids:
        ws = [w for w in result.windows if w["run_id"] == run_id]
        x = [(w["first_step"] + w["last_step"]) / 2 for w in ws]
        label = plot_label(run_id)
        top.plot(x, [np.nan if w["reward_mean"] is None else w["reward_mean"] for w in ws], "o-", label=label)
        bottom.plot(x, [np.nan if w["length_rho"] is None else w["length_rho"] for w in ws], "o-", label=label)
    bottom.axhline(result.params.length_rho, ls="--", color="red", lw=1, label="alarm threshold")
    top.set_ylabel("mean reward")
    bottom.set_ylabel("Spearman(length, reward)")
    bottom.set_xlabel("step (window centre)")
    top.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


class RewardHealthAnalyzer(Analyzer):
    """The ``reward_health`` analysis (this module's ``run``) behind the one analyzer interface."""

    name = NAME
    title = "Reward health"
    consumes = CONSUMES
    Params = Params
    defines_verdict = True

    def applies(self, store) -> bool:
        return applies(store)

    def run(self, store, params=None):
        return run(store, params if params is not None else Params())

    def plots(self, result, out_dir) -> dict[str, str]:
        return plots(result, out_dir)
