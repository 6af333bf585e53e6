"""KL spikes: early growth from zero is not a spike; a jump past the floor is."""
from __future__ import annotations

import math

from rldk.analyzers import spikes
from rldk.core.store import open_store
from rldk.writer import EventWriter


def kl_store(tmp_path, values):
    with EventWriter(tmp_path, "r", capture_env=False) as w:
        for step, v in enumerate(values):
            w.log(step, kl=v, loss=1.0)
    return open_store(tmp_path)


def test_early_kl_growth_from_zero_is_not_a_spike(tmp_path):
    # the shape of a healthy run's KL: ~0 while the policy equals its reference, then a few
    # hundredths of a nat (a 7.9x jump over the median, as a real tiny GRPO run showed)
    values = [0.004 + 0.001 * math.sin(s) for s in range(12)] + [0.0395] + [0.03] * 20
    assert spikes.SpikesAnalyzer().run(kl_store(tmp_path, values)).spikes == ()


def test_a_kl_jump_above_the_floor_is_a_spike(tmp_path):
    values = [0.02 + 0.002 * math.sin(s) for s in range(30)] + [0.9] + [0.02] * 10
    (found,) = spikes.SpikesAnalyzer().run(kl_store(tmp_path, values)).spikes
    assert (found.metric, found.steps) == ("kl", (30,))


def test_a_kl_spike_that_came_back_is_transient_however_large(tmp_path):
    """A KL of one batch jumps when a few tokens are improbable under the reference: 500x
    its level and back at once is info; the same jump in the last rows of the log (not yet
    back) and a gradient norm's 500x spike stay warnings."""
    from rldk.analyzers.spikes import _finding

    base = [0.01 + 0.001 * math.sin(s) for s in range(40)]
    (found,) = spikes.SpikesAnalyzer().run(kl_store(tmp_path / "a", base[:30] + [5.0] + base[:10])).spikes
    assert found.worst_ratio > 100 and found.recovered
    assert (_finding(found).code, _finding(found).severity) == ("spike_transient", "info")
    (found,) = spikes.SpikesAnalyzer().run(kl_store(tmp_path / "b", base[:38] + [5.0])).spikes
    assert not found.recovered
    assert (_finding(found).code, _finding(found).severity) == ("spike", "warning")


def test_rolling_prior_is_polars_rolling_quantile_to_the_bit():
    """The NumPy rolling quantile (no Polars import) gives Polars' linear interpolation
    exactly: ties, non-finite values, series shorter than the window."""
    import numpy as np
    import polars as pl

    from rldk.analyzers.spikes import rolling_prior

    rng = np.random.default_rng(3)
    for trial in range(300):
        values = rng.normal(size=int(rng.integers(0, 80))) * 10.0 ** rng.uniform(-6, 6)
        if trial % 3 == 0:
            values = np.round(values)
        values[rng.integers(0, max(len(values), 1), size=len(values) // 6)] = np.nan
        finite = np.isfinite(values)
        for quantile, window, least in ((0.5, 25, 10), (0.9, 25, 10), (0.5, 25, 3), (0.5, 4, 4)):
            expected = np.full(len(values), np.nan)
            expected[finite] = (pl.Series(values[finite])
                                .rolling_quantile(quantile, "linear", window_size=window, min_samples=least)
                                .shift(1).fill_null(np.nan).to_numpy())
            np.testing.assert_array_equal(rolling_prior(values, window, least, quantile), expected)
