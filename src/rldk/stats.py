"""Trusted evaluation statistics: aggregate scores with honest uncertainty.

Scores are NumPy arrays shaped ``(runs, tasks)``: ``scores[n, m]`` is the score of
run (seed) ``n`` on task ``m``, as in rliable (Agarwal et al., 2021, "Deep RL at
the Edge of the Statistical Precipice"). A 1-D array is one task. Every estimator
here follows rliable's published definitions; ``tests/test_stats.py`` checks them
on hand-worked cases and against rliable and scipy where those are installed.

Bootstrap confidence intervals are percentile intervals of a *stratified*
bootstrap: each task's runs are resampled with replacement independently, so the
task mix stays fixed (rliable's ``StratifiedBootstrap``). All resamples are drawn
at once with NumPy (no Python loop over repetitions).

With one run per task no confidence interval exists; functions that would return
one return ``lower = upper = None`` with a ``note`` that says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Elements of a resample block (reps x runs x tasks) drawn at once; bounds memory.
_BLOCK = 1 << 22


# ----------------------------------------------------------------- input
def as_scores(scores, name: str = "scores") -> np.ndarray:
    """``scores`` as a float ``(runs, tasks)`` array; a 1-D input is one task.

    Raises ValueError for empty input, more than 2 dimensions, or NaN/inf values
    (they would silently poison every aggregate).
    """
    x = np.asarray(scores, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"{name}: expected a non-empty (runs, tasks) array, got shape {x.shape}")
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:
        run, task = bad[0]
        raise ValueError(f"{name}: {len(bad)} non-finite value(s), first at run {run}, task {task} "
                         f"({x[run, task]}): drop or fix those runs")
    return x


# ------------------------------------------------------- point aggregates
def mean(scores) -> float:
    """Mean of the per-task means (rliable ``aggregate_mean``)."""
    return float(_mean(as_scores(scores)[None])[0])


def median(scores) -> float:
    """Median of the per-task means (rliable ``aggregate_median``)."""
    return float(_median(as_scores(scores)[None])[0])


def iqm(scores) -> float:
    """Interquartile mean: the 25%-trimmed mean of all runs x tasks scores
    (rliable ``aggregate_iqm``, i.e. ``scipy.stats.trim_mean(x, 0.25, axis=None)``)."""
    return float(_iqm(as_scores(scores)[None])[0])


def _mean(batch: np.ndarray) -> np.ndarray:
    return batch.mean(axis=(1, 2))


def _median(batch: np.ndarray) -> np.ndarray:
    return np.median(batch.mean(axis=1), axis=1)


def _iqm(batch: np.ndarray) -> np.ndarray:
    flat = np.sort(batch.reshape(batch.shape[0], -1), axis=1)
    cut = int(0.25 * flat.shape[1])             # scipy.stats.trim_mean's rounding
    return flat[:, cut:flat.shape[1] - cut].mean(axis=1)


#: name -> vectorized statistic over a batch of score matrices (reps, runs, tasks) -> (reps,)
AGGREGATES = {"mean": _mean, "median": _median, "iqm": _iqm}


# -------------------------------------------------------------- bootstrap
@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap confidence interval.

    statistic: which aggregate ("mean", "median", "iqm", "probability_of_improvement", ...).
    point: the estimate on the data itself. lower, upper: the interval (None when
    no interval exists, see ``note``). confidence: e.g. 0.95. reps: bootstrap
    resamples. runs, tasks: the data's shape.
    """

    statistic: str
    point: float
    lower: float | None
    upper: float | None
    confidence: float
    reps: int
    runs: int
    tasks: int
    note: str = ""

    def to_dict(self) -> dict:
        return {"statistic": self.statistic, "point": self.point, "lower": self.lower,
                "upper": self.upper, "confidence": self.confidence, "reps": self.reps,
                "runs": self.runs, "tasks": self.tasks, "note": self.note}


def stratified_indices(rng: np.random.Generator, reps: int, runs: int, tasks: int) -> np.ndarray:
    """Run indices ``(reps, runs, tasks)``: each task's runs drawn with replacement
    independently of the other tasks (rliable's stratified scheme)."""
    return rng.integers(0, runs, size=(reps, runs, tasks))


def bootstrap_distribution(scores, statistic: str = "iqm", reps: int = 2000,
                           seed: int | None = 0) -> np.ndarray:
    """``reps`` values of ``statistic`` over stratified bootstrap resamples of ``scores``."""
    x = as_scores(scores)
    func = _aggregate(statistic)
    rng = np.random.default_rng(seed)
    runs, tasks = x.shape
    cols = np.arange(tasks)
    out = np.empty(reps)
    for start, stop in _blocks(reps, runs * tasks):
        idx = stratified_indices(rng, stop - start, runs, tasks)
        out[start:stop] = func(x[idx, cols])
    return out


def bootstrap_ci(scores, statistic: str = "iqm", reps: int = 2000, confidence: float = 0.95,
                 seed: int | None = 0) -> Interval:
    """Percentile stratified-bootstrap interval of an aggregate of ``scores`` (runs, tasks)."""
    x = as_scores(scores)
    point = float(_aggregate(statistic)(x[None])[0])
    _check_confidence(confidence, reps)
    if x.shape[0] < 2:
        return _no_interval(statistic, point, confidence, reps, x.shape)
    lower, upper = percentile_interval(bootstrap_distribution(x, statistic, reps, seed), confidence)
    return Interval(statistic, point, lower, upper, confidence, reps, *x.shape)


def percentile_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of bootstrap ``values``."""
    tail = 50.0 * (1.0 - confidence)
    lower, upper = np.percentile(values, [tail, 100.0 - tail])
    return float(lower), float(upper)


def _aggregate(statistic: str):
    try:
        return AGGREGATES[statistic]
    except KeyError:
        raise ValueError(f"unknown statistic {statistic!r}: one of {', '.join(AGGREGATES)}") from None


def _check_confidence(confidence: float, reps: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    if reps < 1:
        raise ValueError(f"reps must be a positive number of bootstrap resamples, not {reps}")


def _no_interval(statistic, point, confidence, reps, shape) -> Interval:
    return Interval(statistic, point, None, None, confidence, reps, *shape,
                    note="one run per task: no confidence interval is possible; run more seeds")


def _blocks(reps: int, per_rep: int):
    step = max(1, _BLOCK // max(1, per_rep))
    for start in range(0, reps, step):
        yield start, min(reps, start + step)


# --------------------------------------------------- probability of improvement
def probability_of_improvement(x, y) -> float:
    """P(X > Y): the chance a run of X beats a run of Y on the same task, ties
    counting half, averaged over tasks (rliable; per task it is the Mann-Whitney
    U statistic divided by ``runs_x * runs_y``)."""
    a, b = _paired_tasks(x, y)
    return float(_poi(a[None], b[None])[0])


def _poi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Vectorized P(X>Y) for batches a (reps, nx, tasks), b (reps, ny, tasks) -> (reps,)."""
    diff = a[:, :, None, :] - b[:, None, :, :]
    wins = (diff > 0).mean(axis=(1, 2)) + 0.5 * (diff == 0).mean(axis=(1, 2))
    return wins.mean(axis=1)


def probability_of_improvement_ci(x, y, reps: int = 2000, confidence: float = 0.95,
                                  seed: int | None = 0) -> Interval:
    """P(X > Y) with a percentile interval from independent stratified resamples of X and Y."""
    a, b = _paired_tasks(x, y)
    _check_confidence(confidence, reps)
    point = float(_poi(a[None], b[None])[0])
    shape = (min(a.shape[0], b.shape[0]), a.shape[1])
    if shape[0] < 2:
        return _no_interval("probability_of_improvement", point, confidence, reps, shape)
    rng = np.random.default_rng(seed)
    cols = np.arange(a.shape[1])
    values = np.empty(reps)
    for start, stop in _blocks(reps, a.shape[0] * b.shape[0] * a.shape[1]):
        n = stop - start
        values[start:stop] = _poi(a[stratified_indices(rng, n, a.shape[0], a.shape[1]), cols],
                                  b[stratified_indices(rng, n, b.shape[0], b.shape[1]), cols])
    lower, upper = percentile_interval(values, confidence)
    return Interval("probability_of_improvement", point, lower, upper, confidence, reps, *shape)


def _paired_tasks(x, y) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_scores(x, "x"), as_scores(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x has {a.shape[1]} tasks but y has {b.shape[1]}: compare the same tasks")
    return a, b


# ------------------------------------------------------------ effect sizes
def _two_samples(x, y) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=float).ravel()
    b = np.asarray(y, dtype=float).ravel()
    for name, v in (("x", a), ("y", b)):
        if v.size < 2:
            raise ValueError(f"{name} has {v.size} value(s): an effect size needs at least 2 per side")
        if not np.isfinite(v).all():
            raise ValueError(f"{name} holds NaN or inf values: drop or fix those runs")
    return a, b


def pooled_std(x, y) -> float:
    """sqrt(((nx-1) sx^2 + (ny-1) sy^2) / (nx + ny - 2)), sample variances (ddof=1)."""
    a, b = _two_samples(x, y)
    return float(math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1))
                           / (a.size + b.size - 2)))


def cohens_d(x, y) -> float:
    """(mean x - mean y) / pooled std. NaN when both samples are constant and equal;
    +-inf when constant but different."""
    a, b = _two_samples(x, y)
    diff = a.mean() - b.mean()
    s = pooled_std(a, b)
    if s == 0.0:
        return math.nan if diff == 0 else math.copysign(math.inf, diff)
    return float(diff / s)


def hedges_g(x, y) -> float:
    """Cohen's d times the small-sample correction J = 1 - 3 / (4 (nx + ny) - 9)."""
    a, b = _two_samples(x, y)
    return cohens_d(a, b) * (1.0 - 3.0 / (4.0 * (a.size + b.size) - 9.0))


def cliffs_delta(x, y) -> float:
    """(#{x_i > y_j} - #{x_i < y_j}) / (nx ny), in [-1, 1]; equals 2 P(X>Y) - 1."""
    a = np.asarray(x, dtype=float).ravel()
    b = np.asarray(y, dtype=float).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("Cliff's delta needs at least one value on each side")
    diff = a[:, None] - b[None, :]
    return float(((diff > 0).sum() - (diff < 0).sum()) / diff.size)


@dataclass(frozen=True)
class TTest:
    """Welch's unequal-variance t-test of mean x != mean y (two-sided).

    t: statistic; df: Welch-Satterthwaite degrees of freedom; p_value: two-sided.
    """

    t: float
    df: float
    p_value: float

    def to_dict(self) -> dict:
        return {"t": self.t, "df": self.df, "p_value": self.p_value}


def welch_t_test(x, y) -> TTest:
    """Welch's t-test: t = (mx - my) / sqrt(vx/nx + vy/ny), Welch-Satterthwaite df."""
    from scipy import stats as sps

    a, b = _two_samples(x, y)
    vx, vy = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se2 = vx + vy
    if se2 == 0.0:
        same = a.mean() == b.mean()
        return TTest(math.nan if same else math.copysign(math.inf, a.mean() - b.mean()),
                     math.nan, 1.0 if same else 0.0)
    t = (a.mean() - b.mean()) / math.sqrt(se2)
    df = se2 ** 2 / (vx ** 2 / (a.size - 1) + vy ** 2 / (b.size - 1))
    return TTest(float(t), float(df), float(2.0 * sps.t.sf(abs(t), df)))


# ------------------------------------------------------------ proportions
def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion ``successes / trials``.

    ``(centre +- half) / (1 + z^2/n)`` with centre ``p + z^2/2n`` and half
    ``z sqrt(p(1-p)/n + z^2/4n^2)``; stays inside [0, 1] and is sensible at 0 and n
    successes (unlike the normal interval). None when ``trials`` is 0.
    """
    from scipy.stats import norm

    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must lie in 0..{trials}, not {successes}")
    z = float(norm.ppf(0.5 + confidence / 2.0))
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    lower = 0.0 if successes == 0 else max(0.0, float(centre - half))
    upper = 1.0 if successes == trials else min(1.0, float(centre + half))
    return lower, upper


# ------------------------------------------------------------------ power
def power(effect_size: float, n: int, alpha: float = 0.05) -> float:
    """Power of a two-sided two-sample t-test with ``n`` runs per side to detect a
    standardized effect ``effect_size`` (Cohen's d), from the noncentral t law."""
    from scipy import stats as sps

    if n < 2:
        return 0.0
    df = 2 * n - 2
    crit = sps.t.ppf(1.0 - alpha / 2.0, df)
    nc = abs(effect_size) * math.sqrt(n / 2.0)
    return float(sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc))


def seeds_needed(effect_size: float, alpha: float = 0.05, target_power: float = 0.8,
                 max_seeds: int = 100_000) -> int | None:
    """Smallest number of runs (seeds) per side for which a two-sided Welch/Student
    t-test at ``alpha`` reaches ``target_power`` against effect ``effect_size``
    (Cohen's d). None when the effect is 0 or more than ``max_seeds`` are needed."""
    if not 0 < alpha < 1 or not 0 < target_power < 1:
        raise ValueError("alpha and target_power must lie between 0 and 1")
    if effect_size == 0 or not math.isfinite(effect_size):
        return None if effect_size == 0 else 2
    lo, hi = 2, 2
    while power(effect_size, hi, alpha) < target_power:
        if hi >= max_seeds:
            return None
        lo, hi = hi, min(hi * 2, max_seeds)
    while lo < hi:                               # power rises with n: bisect
        mid = (lo + hi) // 2
        if power(effect_size, mid, alpha) >= target_power:
            hi = mid
        else:
            lo = mid + 1
    return hi


# ------------------------------------------------------ performance profiles
def performance_profile(scores, taus) -> np.ndarray:
    """Score distribution: for each threshold tau, the fraction of all runs x tasks
    scores strictly above tau (rliable ``score_distributions``). Non-increasing in tau."""
    x = as_scores(scores).ravel()
    t = np.asarray(taus, dtype=float)
    return (x[None, :] > t[:, None]).mean(axis=1)


def performance_profile_band(scores, taus, reps: int = 2000, confidence: float = 0.95,
                             seed: int | None = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The profile and its pointwise percentile band from stratified resamples:
    ``(profile, lower, upper)``, each shaped like ``taus``; the band equals the
    profile when there is one run per task."""
    x = as_scores(scores)
    t = np.asarray(taus, dtype=float)
    profile = performance_profile(x, t)
    if x.shape[0] < 2:
        return profile, profile.copy(), profile.copy()
    rng = np.random.default_rng(seed)
    cols = np.arange(x.shape[1])
    above = np.empty((reps, t.size))
    for start, stop in _blocks(reps, x.size * t.size):
        boot = x[stratified_indices(rng, stop - start, *x.shape), cols].reshape(stop - start, -1)
        above[start:stop] = (boot[:, :, None] > t[None, None, :]).mean(axis=1)
    lower, upper = np.percentile(above, [50.0 * (1.0 - confidence), 50.0 * (1.0 + confidence)], axis=0)
    return profile, lower, upper


def plot_performance_profiles(score_dict: dict, path, taus=None, reps: int = 2000,
                              confidence: float = 0.95, xlabel: str = "score tau") -> str:
    """Write a PNG of the performance profiles of ``{label: scores}`` with their bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrays = {k: as_scores(v, k) for k, v in score_dict.items()}
    if taus is None:
        lo = min(a.min() for a in arrays.values())
        hi = max(a.max() for a in arrays.values())
        taus = np.linspace(lo, hi, 101)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, arr in arrays.items():
        prof, lower, upper = performance_profile_band(arr, taus, reps, confidence)
        ax.plot(taus, prof, label=f"{label} ({arr.shape[0]} runs)")
        ax.fill_between(taus, lower, upper, alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


# ----------------------------------------------------- curves across seeds
@dataclass(frozen=True)
class CurveBand:
    """A training curve's mean across seeds with a per-step bootstrap band.

    steps: (steps,) int. mean: (steps,) mean over the seeds logged at each step.
    lower, upper: (steps,) percentile band of that mean over resampled seeds
    (NaN where fewer than 2 seeds logged the step). seeds: (steps,) how many seeds
    logged each step.
    """

    steps: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    seeds: np.ndarray
    confidence: float = 0.95
    reps: int = 2000
    labels: tuple = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"steps": self.steps.tolist(), "mean": self.mean.tolist(),
                "lower": self.lower.tolist(), "upper": self.upper.tolist(),
                "seeds": self.seeds.tolist(), "confidence": self.confidence, "reps": self.reps,
                "labels": list(self.labels)}


def curve_band(curves, steps=None, reps: int = 2000, confidence: float = 0.95,
               seed: int | None = 0, labels=()) -> CurveBand:
    """Per-step bootstrap band of the mean curve over seeds.

    ``curves`` is ``(seeds, steps)``, NaN where a seed did not log a step. Whole
    seeds are resampled (the same resample at every step, so a band keeps each
    seed's curve intact); each resample's mean at a step is over the seeds in it
    that logged the step. Computed as one matrix product of resample counts.
    """
    c = np.asarray(curves, dtype=float)
    if c.ndim != 2 or c.size == 0:
        raise ValueError(f"curves: expected a non-empty (seeds, steps) array, got shape {c.shape}")
    present = np.isfinite(c)
    values = np.where(present, c, 0.0)
    seeds = present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_curve = values.sum(axis=0) / seeds
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(c.shape[0], np.full(c.shape[0], 1.0 / c.shape[0]), size=reps)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (counts @ values) / (counts @ present)
    tail = 50.0 * (1.0 - confidence)
    lower, upper = np.full(c.shape[1], np.nan), np.full(c.shape[1], np.nan)
    ok = seeds >= 2
    if ok.any():
        lower[ok], upper[ok] = np.nanpercentile(boot[:, ok], [tail, 100.0 - tail], axis=0)
    x = np.arange(c.shape[1]) if steps is None else np.asarray(steps)
    return CurveBand(x, mean_curve, lower, upper, seeds, confidence, reps, tuple(labels))


def runs_curves(runs, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, curves)`` of ``metric`` over ``runs`` (rldk ``Run`` objects), aligned
    on the union of their steps: curves is ``(len(runs), len(steps))``, NaN where a
    run did not log the step."""
    frames = [r.metric(metric) for r in runs]
    steps = np.unique(np.concatenate([f["step"].to_numpy() for f in frames]))
    curves = np.full((len(frames), steps.size), np.nan)
    for i, f in enumerate(frames):
        curves[i, np.searchsorted(steps, f["step"].to_numpy())] = f["value"].to_numpy()
    return steps, curves
