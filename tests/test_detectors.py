"""The onset-aware detector core: exact PELT, robust noise, regimes."""
from __future__ import annotations

import numpy as np
import pytest

from rldk.detectors.changepoint import best_split, segment
from rldk.detectors.regimes import regimes
from rldk.detectors.scale import noise_sigma, transform


def optimal(y, penalty, min_size):
    """Reference: the optimal segmentation by plain dynamic programming, O(n^2)."""
    n = len(y)
    cost = lambda a, b: float(((y[a:b] - y[a:b].mean()) ** 2).sum())   # noqa: E731
    best = [0.0] + [np.inf] * n
    last = [0] * (n + 1)
    best[0] = -penalty
    for t in range(1, n + 1):
        for s in range(0, t - min_size + 1):
            if np.isfinite(best[s]):
                c = best[s] + cost(s, t) + penalty
                if c < best[t]:
                    best[t], last[t] = c, s
    starts, t = [], n
    while t > 0:
        t = last[t]
        starts.append(t)
    return sorted(set(starts)), best[n]


def total_cost(y, starts, penalty):
    bounds = list(starts) + [len(y)]
    return sum(((y[a:b] - y[a:b].mean()) ** 2).sum() for a, b in zip(bounds, bounds[1:])) \
        + penalty * (len(starts) - 1)


@pytest.mark.parametrize("seed", range(12))
def test_pelt_equals_the_exhaustive_optimum(seed):
    rng = np.random.default_rng(seed)
    y = np.concatenate([rng.normal(m, 1, k) for m, k in zip(rng.normal(0, 3, 4), rng.integers(3, 25, 4))])
    penalty, min_size = 4 * np.log(len(y)), int(rng.integers(1, 4))
    starts = segment(y, penalty, min_size)
    ref, ref_cost = optimal(y, penalty, min_size)
    assert total_cost(y, starts, penalty) == pytest.approx(ref_cost, rel=1e-9)
    assert starts == ref


def test_a_clean_step_is_cut_at_its_first_index():
    y = np.r_[np.zeros(30), np.ones(20) * 5] + np.tile([0.1, -0.1], 25)
    assert segment(y, 10.0) == [0, 30]
    assert segment(np.ones(50), 1.0) == [0]


def test_long_series_are_cut_exactly_after_bucketing():
    rng = np.random.default_rng(3)
    y = rng.normal(0, 1, 50_000)
    y[31_337:] += 4.0
    assert segment(y, 4 * np.log(len(y))) == [0, 31_337]


def test_best_split_matches_brute_force():
    rng = np.random.default_rng(5)
    y = np.r_[rng.normal(0, 1, 17), rng.normal(2, 1, 13)]
    brute = min(range(1, 30), key=lambda k: ((y[:k] - y[:k].mean()) ** 2).sum()
                + ((y[k:] - y[k:].mean()) ** 2).sum())
    assert best_split(y, 1, 30, 0, 30) == brute


def test_noise_sigma_is_robust_to_level_shifts_and_repeats():
    rng = np.random.default_rng(0)
    y = rng.normal(0, 2.0, 5000)
    assert noise_sigma(y) == pytest.approx(2.0, rel=0.05)
    shifted = y + np.where(np.arange(5000) > 2500, 100.0, 0.0)        # one huge shift
    assert noise_sigma(shifted) == pytest.approx(2.0, rel=0.05)
    step = np.r_[np.zeros(80), np.ones(20)]              # one jump is a change point, not noise
    assert noise_sigma(step) == 0.0 and noise_sigma(np.ones(10)) == 0.0
    periodic = np.tile([1.0, 1.05, 1.1], 30)              # repeated differences: the MAD is ~0
    assert noise_sigma(periodic) > 0.02                    # the trimmed mean still sees it


def test_transform_by_kind():
    assert np.allclose(transform(np.array([1.0, np.e]), "logscale"), [0.0, 1.0])
    assert np.allclose(transform(np.array([0.0, 0.5, 1.0]), "ratio"), [0.0, np.pi / 4, np.pi / 2])
    assert np.allclose(transform(np.array([-1.0, 2.0]), "signed"), [-1.0, 2.0])
    low = transform(np.array([1.0, 1.0, 0.0]), "nonneg")                # zero: clipped, finite
    assert np.isfinite(low).all() and low[2] == pytest.approx(np.log(1e-3))   # 1e-3 x its q95


def test_pure_noise_stays_one_regime():
    rng = np.random.default_rng(11)
    splits = sum(len(regimes(np.arange(300), rng.normal(0, 1, 300)).parts) > 1 for _ in range(300))
    assert splits <= 1            # documented: about 1 in 1,000 at PENALTY = 4


def test_collapse_inside_the_first_tenth_is_found_at_its_step():
    """No warm-up is assumed healthy: entropy 0.21 -> 0.0046 at step 12 of 200."""
    rng = np.random.default_rng(2)
    values = np.r_[0.21 + rng.normal(0, 0.005, 11), 0.0046 * np.exp(rng.normal(0, 0.1, 189))]
    r = regimes(np.arange(1, 201), values, "nonneg")
    assert [p.first for p in r.parts] == [1, 12]
    collapsed = r.first_staying(lambda p: p.raw < 0.2 * r.parts[0].raw)
    assert collapsed.first == 12


def test_non_finite_values_are_left_out():
    values = np.r_[np.ones(10), np.nan, np.ones(10) * 5]
    r = regimes(np.arange(21), values)
    assert [(p.first, p.last) for p in r.parts] == [(0, 9), (11, 20)]


def test_agrees_with_ruptures_when_installed():
    rpt = pytest.importorskip("ruptures")
    rng = np.random.default_rng(7)
    y = np.r_[rng.normal(0, 1, 60), rng.normal(4, 1, 40), rng.normal(-2, 1, 50)]
    penalty = 4 * np.log(len(y))
    theirs = rpt.Pelt(model="l2", min_size=2, jump=1).fit(y).predict(pen=penalty)
    assert segment(y, penalty) == [0] + theirs[:-1]
