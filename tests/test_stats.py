"""rldk.stats: hand-worked values, invariants, and agreement with rliable / scipy / statsmodels."""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from rldk import stats


def _reference(module: str):
    """``module`` of a reference library (rliable, statsmodels) for a cross-check. When it is
    missing or does not import, the test is skipped saying so, and CI=true fails that skip."""
    try:
        return importlib.import_module(module)
    except Exception as exc:                # not installed, or its own dependencies do not import
        pytest.skip(f"{module} is not installed or does not import ({type(exc).__name__}: {exc}); "
                    "install the cross-check libraries with pip install -e '.[stats]'")


def _rliable_metrics():
    return _reference("rliable.metrics")


# ------------------------------------------------------------ point estimates
SCORES = np.array([[0.0, 10.0], [0.0, 10.0], [1.0, 10.0], [3.0, 30.0]])   # 4 runs x 2 tasks


def test_aggregates_by_hand():
    # task means 1 and 15; sorted values 0 0 1 3 10 10 10 30, trimmed 2 each side -> 1 3 10 10
    assert stats.mean(SCORES) == 8.0
    assert stats.median(SCORES) == 8.0
    assert stats.iqm(SCORES) == 6.0
    assert stats.iqm(np.arange(1, 9)) == 4.5          # 1-D input is one task


def test_aggregates_match_rliable():
    metrics = _rliable_metrics()
    x = np.random.default_rng(3).normal(size=(7, 4))
    assert stats.iqm(x) == pytest.approx(metrics.aggregate_iqm(x), abs=1e-12)
    assert stats.mean(x) == pytest.approx(metrics.aggregate_mean(x), abs=1e-12)
    assert stats.median(x) == pytest.approx(metrics.aggregate_median(x), abs=1e-12)


@pytest.mark.parametrize("x, y, expected", [
    ([1, 2, 3], [2, 2, 2], 0.5),                     # 0 + 1.5 (three ties) + 3 wins, over 9
    ([3, 4], [1, 2, 3], 5.5 / 6),                    # 2 wins + 1 tie, then 3 wins
    ([1, 1], [1, 1], 0.5),
    ([0, 0], [5, 6], 0.0),
])
def test_probability_of_improvement_by_hand(x, y, expected):
    assert stats.probability_of_improvement(x, y) == pytest.approx(expected)


def test_probability_of_improvement_matches_rliable():
    metrics = _rliable_metrics()
    rng = np.random.default_rng(0)
    x, y = rng.normal(0.3, 1, (6, 5)), rng.normal(0, 1, (9, 5))
    x[:, 0] = np.round(x[:, 0])                     # ties
    y[:, 0] = np.round(y[:, 0])
    assert stats.probability_of_improvement(x, y) == pytest.approx(
        metrics.probability_of_improvement(x, y), abs=1e-12)


def test_effect_sizes_by_hand():
    x, y = [1, 2, 3], [3, 4, 5]                     # means 2 and 4, both variances 1
    assert stats.pooled_std(x, y) == 1.0
    assert stats.cohens_d(x, y) == -2.0
    assert stats.hedges_g(x, y) == pytest.approx(-2.0 * (1 - 3 / 15))
    assert stats.cliffs_delta([3, 4], [1, 2, 3]) == pytest.approx(5 / 6)
    assert stats.cliffs_delta([3, 4], [1, 2, 3]) == pytest.approx(
        2 * stats.probability_of_improvement([3, 4], [1, 2, 3]) - 1)


def test_cohens_d_of_constant_samples():
    assert math.isnan(stats.cohens_d([1, 1], [1, 1]))
    assert stats.cohens_d([2, 2], [1, 1]) == math.inf


def test_welch_by_hand_and_against_scipy():
    from scipy.stats import ttest_ind

    t = stats.welch_t_test([1, 2, 3], [3, 4, 5])
    assert t.t == pytest.approx(-2 / math.sqrt(2 / 3))     # se^2 = 1/3 + 1/3
    assert t.df == pytest.approx(4.0)                        # (4/9) / (2 * (1/9) / 2)
    rng = np.random.default_rng(1)
    x, y = rng.normal(0, 1, 8), rng.normal(0.5, 3, 13)
    ours, ref = stats.welch_t_test(x, y), ttest_ind(x, y, equal_var=False)
    assert ours.t == pytest.approx(ref.statistic, rel=1e-12)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert ours.df == pytest.approx(ref.df, rel=1e-12)


def test_effect_sizes_need_two_values_a_side():
    with pytest.raises(ValueError, match="x has 1 value"):
        stats.cohens_d([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        stats.welch_t_test([1.0, float("nan")], [1.0, 2.0])


# ---------------------------------------------------------------------- power
@pytest.mark.parametrize("d, n", [(0.5, 64), (0.8, 26), (1.0, 17), (2.0, 6)])
def test_seeds_needed_matches_cohens_tables(d, n):
    assert stats.seeds_needed(d) == n
    assert stats.power(d, n) >= 0.8 > stats.power(d, n - 1)


def test_seeds_needed_matches_statsmodels():
    TTestIndPower = _reference("statsmodels.stats.power").TTestIndPower
    for d in (0.3, 0.7, 1.3):
        assert stats.seeds_needed(d) == math.ceil(TTestIndPower().solve_power(d, alpha=0.05, power=0.8))
        assert stats.power(d, 20) == pytest.approx(TTestIndPower().power(d, 20, 0.05), rel=1e-9)


def test_seeds_needed_for_no_effect():
    assert stats.seeds_needed(0.0) is None
    assert stats.seeds_needed(0.001, max_seeds=1000) is None


# ------------------------------------------------------------------ bootstrap
def test_bootstrap_two_runs_by_hand():
    # resample means of (0, 1): 0 w.p. 1/4, 0.5 w.p. 1/2, 1 w.p. 1/4 -> 95% interval [0, 1]
    values = stats.bootstrap_distribution([0.0, 1.0], "mean", reps=4000, seed=0)
    assert set(np.unique(values)) == {0.0, 0.5, 1.0}
    assert abs(np.mean(values == 0.5) - 0.5) < 4 * math.sqrt(0.25 / 4000)
    ci = stats.bootstrap_ci([0.0, 1.0], "mean", reps=4000)
    assert (ci.lower, ci.point, ci.upper) == (0.0, 0.5, 1.0)


def test_bootstrap_is_stratified():
    # task 0 always 0, task 1 always 1: any per-task resample keeps the mean at exactly 0.5
    scores = np.array([[0.0, 1.0]] * 5)
    assert set(stats.bootstrap_distribution(scores, "mean", reps=500)) == {0.5}


@pytest.mark.parametrize("statistic", ["mean", "median", "iqm"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interval_contains_point(statistic, seed):
    scores = np.random.default_rng(seed).gamma(2.0, size=(6, 3))
    ci = stats.bootstrap_ci(scores, statistic, reps=500, seed=seed)
    assert ci.lower <= ci.point <= ci.upper


def test_interval_narrows_with_more_seeds():
    rng = np.random.default_rng(7)
    population = rng.normal(1.0, 1.0, size=(400, 2))
    widths = [stats.bootstrap_ci(population[:n], "iqm", reps=1000).upper
              - stats.bootstrap_ci(population[:n], "iqm", reps=1000).lower for n in (5, 20, 80)]
    assert widths[0] > widths[1] > widths[2]


def test_one_seed_gives_no_interval():
    ci = stats.bootstrap_ci([[1.0, 2.0]], "mean")
    assert ci.point == 1.5 and ci.lower is None and ci.upper is None
    assert "one run per task: no confidence interval is possible" in ci.note
    poi = stats.probability_of_improvement_ci([[1.0]], [[0.0], [2.0]])
    assert poi.point == 0.5 and poi.lower is None


def test_bootstrap_agrees_with_scipy_on_one_task():
    from scipy.stats import bootstrap

    x = np.random.default_rng(5).normal(size=12)
    ours = stats.bootstrap_ci(x, "mean", reps=20000, seed=1)
    ref = bootstrap((x,), np.mean, n_resamples=20000, method="percentile", rng=np.random.default_rng(2))
    assert ours.lower == pytest.approx(ref.confidence_interval.low, abs=0.03)
    assert ours.upper == pytest.approx(ref.confidence_interval.high, abs=0.03)


def test_bootstrap_agrees_with_rliable():
    library, metrics = _reference("rliable.library"), _rliable_metrics()
    x = np.random.default_rng(4).normal(size=(10, 5))
    _, cis = library.get_interval_estimates({"x": x}, lambda s: np.array([metrics.aggregate_iqm(s)]),
                                            reps=20000, random_state=np.random.RandomState(0))
    ours = stats.bootstrap_ci(x, "iqm", reps=20000)
    assert ours.lower == pytest.approx(cis["x"][0, 0], abs=0.02)
    assert ours.upper == pytest.approx(cis["x"][1, 0], abs=0.02)


def test_poi_interval_contains_point():
    rng = np.random.default_rng(0)
    ci = stats.probability_of_improvement_ci(rng.normal(0.5, 1, (8, 3)), rng.normal(0, 1, (8, 3)), reps=1000)
    assert 0.0 <= ci.lower <= ci.point <= ci.upper <= 1.0


def test_bad_scores_name_the_cell():
    with pytest.raises(ValueError, match=r"first at run 1, task 0 \(nan\)"):
        stats.bootstrap_ci([[1.0], [float("nan")]])
    with pytest.raises(ValueError, match="unknown statistic 'mode'"):
        stats.bootstrap_ci([1.0, 2.0], "mode")
    with pytest.raises(ValueError, match="non-empty"):
        stats.iqm([])


# --------------------------------------------------------------- proportions
def test_wilson_by_hand():
    assert stats.wilson_interval(0, 10) == (0.0, pytest.approx(0.2775328, abs=1e-7))
    lo, hi = stats.wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.2365931, abs=1e-7), pytest.approx(0.7634069, abs=1e-7))
    assert stats.wilson_interval(3, 0) is None


def test_wilson_agrees_with_statsmodels():
    proportion_confint = _reference("statsmodels.stats.proportion").proportion_confint
    for k, n in [(3, 17), (40, 41), (1, 1000)]:
        assert stats.wilson_interval(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"))


# ------------------------------------------------------ profiles and bands
def test_performance_profile_is_monotone():
    x = np.random.default_rng(0).normal(size=(10, 5))
    taus = np.linspace(-2, 2, 41)
    prof = stats.performance_profile(x, taus)
    assert np.all(np.diff(prof) <= 0)
    assert stats.performance_profile([[0.0, 1.0], [2.0, 3.0]], [0.5, 2.0]).tolist() == [0.75, 0.25]


def test_performance_profile_agrees_with_rliable():
    x = np.random.default_rng(0).normal(size=(10, 5))
    taus = np.linspace(-2, 2, 41)
    expected = _reference("rliable.library").score_distributions(x, taus)
    assert np.array_equal(stats.performance_profile(x, taus), expected)


def test_performance_profile_band_brackets_profile():
    x = np.random.default_rng(1).normal(size=(8, 3))
    taus = np.linspace(-1, 1, 11)
    prof, lower, upper = stats.performance_profile_band(x, taus, reps=300)
    assert np.all(lower <= prof + 1e-12) and np.all(prof <= upper + 1e-12)


def test_curve_band():
    curves = np.array([[0.0, 1.0, 2.0, np.nan], [0.0, 1.0, 4.0, 5.0], [0.0, 1.0, 3.0, np.nan]])
    band = stats.curve_band(curves, steps=[10, 20, 30, 40], reps=500)
    assert band.mean.tolist() == [0.0, 1.0, 3.0, 5.0]
    assert band.seeds.tolist() == [3, 3, 3, 1]
    assert (band.lower[0], band.upper[0]) == (0.0, 0.0)       # identical seeds: no spread
    assert band.lower[2] <= 3.0 <= band.upper[2] and band.lower[2] >= 2.0 and band.upper[2] <= 4.0
    assert math.isnan(band.lower[3])                          # one seed: no band
    assert band.to_dict()["steps"] == [10, 20, 30, 40]


def test_runs_curves_align_steps(tmp_path):
    from rldk.core.store import open_store
    from rldk.writer import EventWriter

    for run_id, steps in (("a", range(0, 5)), ("b", range(2, 7))):
        with EventWriter(tmp_path, run_id, capture_env=False) as w:
            for s in steps:
                w.log(s, reward=float(s))
    steps, curves = stats.runs_curves(open_store(tmp_path).runs(), "reward")
    assert steps.tolist() == list(range(7))
    assert np.isnan(curves[0, 5]) and curves[1, 2] == 2.0 and np.isnan(curves[1, 0])


def test_profile_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    path = stats.plot_performance_profiles({"A": rng.normal(1, 1, (5, 2)), "B": rng.normal(0, 1, (5, 2))},
                                           tmp_path / "p.png", reps=200)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.endswith("p.png")
