"""first_divergence: the three levels of evidence on streams with known change points.

Fixtures go through the real writer. Synthetic streams use a deterministic noise
pattern (d = +-0.1, alternating) so every expected step can be checked by hand:
the warm-up band is then center 0, sigma 0.1 x 1.4826, and the up-CUSUM is zero on
every odd step before a change (the down-CUSUM on every even step), so an upward
change starting on an even step s (a downward one on an odd step) starts its
excursion exactly at s.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from rldk import first_divergence
from rldk.analyzers import _cusum as dv
from rldk.core.errors import MissingEvents, RldkError, UsageError
from rldk.core.store import open_store
from rldk.writer import EventWriter

N = 200
S = 120          # the change point of every synthetic stream (even: see module docstring)


def write_run(directory, run_id, metrics: dict, seed=None, steps=None):
    """One run through the real writer: ``metrics`` maps name -> values (one per step)."""
    with EventWriter(directory, run_id, capture_env=False, seed=seed) as w:
        names = list(metrics)
        n = len(metrics[names[0]])
        step_list = list(range(n)) if steps is None else list(steps)
        for i, step in enumerate(step_list):
            w.log(step, {name: metrics[name][i] for name in names})
    return directory


def base_curve(n=N):
    return np.sin(np.arange(n) / 15.0) + np.arange(n) * 0.01


def pattern_noise(n=N):
    return 0.1 * (-1.0) ** np.arange(n)


def store_pair(tmp_path, change, name="reward_mean", seed_a=None, seed_b=None):
    a = base_curve()
    b = a + pattern_noise() + change
    write_run(tmp_path, "a", {name: a}, seed=seed_a)
    write_run(tmp_path, "b", {name: b}, seed=seed_b)
    return open_store(tmp_path)


def shift(size, at=S):
    return np.where(np.arange(N) >= at, size, 0.0)


def ramp(slope):
    t = np.arange(N)
    return np.where(t >= S, slope * (t - S + 1), 0.0)


def burst(size, length):
    t = np.arange(N)
    return np.where((t >= S) & (t < S + length), size, 0.0)


# ------------------------------------------------------------ statistical level
# alarm: h = ln(200 / 0.01) - 1.166 = 8.74; a clipped step adds 2.5 - 0.5 = 2, so a shift
# alarms on its 5th step; the ramp adds 0.85, 0.17, 2, 1.52, 2, 2, 2 (0.1 more per step).
@pytest.mark.parametrize("change, start, alarm, direction", [
    (shift(1.0), S, S + 4, "up"),
    (shift(-1.0, S + 1), S + 1, S + 5, "down"),     # the down-CUSUM is zero on even steps
    (ramp(0.1), S, S + 6, "up"),
    (burst(2.0, 8), S, S + 4, "up"),
])
def test_change_points_found_at_their_start(tmp_path, change, start, alarm, direction):
    d = first_divergence("a", "b", "reward_mean", store=store_pair(tmp_path, change))
    assert d.mode == "statistical"              # differ from the first step: not meant identical
    assert (d.diverged, d.step, d.signal, d.level) == (True, start, "reward_mean", "statistical")
    s = d.signals[0]
    assert s.direction == direction
    assert s.alarm_step == alarm
    assert s.threshold == pytest.approx(math.log(N / 0.01) - 1.166)
    assert s.band.center == 0.0 and s.band.sigma == pytest.approx(0.1 * 1.4826)


@pytest.mark.parametrize("change", [np.zeros(N), burst(50.0, 1), burst(50.0, 2), burst(-50.0, 2)],
                         ids=["no-change", "blip-1", "blip-2", "blip-2-down"])
def test_no_change_and_short_blips_do_not_alarm(tmp_path, change):
    d = first_divergence("a", "b", "reward_mean", store=store_pair(tmp_path, change))
    assert (d.diverged, d.step, d.signal) == (False, None, None)
    assert d.signals[0].change_start is None
    assert d.verdict == ("runs a and b do not diverge: no signal leaves its noise band over 200 "
                         "common steps (1 signal(s)) (weak verdict: no replicas, so the band does "
                         "not cover seed-to-seed variation)")
    assert d.weak and str(d) == ("runs a and b do not diverge over 200 common steps (1 signal(s)); "
                                 "weak verdict: no replicas")


# ---------------------------------------------------------- NumPy reference
def reference_cusum(z_up, z_down, k, h):
    """Textbook recursion S_t = max(0, S_{t-1} + z_t - k), one step at a time."""
    up = down = 0.0
    zero_up = zero_down = -1
    for t in range(len(z_up)):
        up = max(0.0, up + z_up[t] - k)
        down = max(0.0, down + z_down[t] - k)
        zero_up = t if up == 0.0 else zero_up
        zero_down = t if down == 0.0 else zero_down
        if up > h or down > h:
            return t, (zero_up if up > h and up >= down else zero_down) + 1
    return None, None


def reference_first_divergence(a, b, k=0.5, clip=2.5, alpha=0.01):
    """Warm-up band + clipped two-sided CUSUM in plain NumPy; returns (start, alarm) indices."""
    n = len(a)
    warm = min(max(n // 10, 10), 500)
    d = b - a
    sigma = 1.4826 * np.median(np.abs(d[:warm] - np.median(d[:warm])))
    z = np.clip(d / sigma, -clip, clip)
    h = max(5.0, math.log(n / alpha) - 1.166)
    alarm, start = reference_cusum(z, -z, k, h)
    return start, alarm


@pytest.mark.parametrize("seed", range(8))
def test_store_path_agrees_with_numpy_reference(tmp_path, seed):
    rng = np.random.default_rng(seed)
    n = 400
    a = np.cumsum(rng.normal(size=n)) * 0.1
    change = rng.integers(60, 340)
    b = a + rng.normal(scale=0.5, size=n) + np.where(np.arange(n) >= change, rng.choice([-1, 1]) * 0.6, 0)
    write_run(tmp_path, "a", {"x": a})
    write_run(tmp_path, "b", {"x": b})
    d = first_divergence("a", "b", "x", store=open_store(tmp_path))
    start, alarm = reference_first_divergence(a, b)
    assert (d.step, d.signals[0].alarm_step) == (start, alarm)
    assert d.diverged and abs(d.step - change) <= 25


def test_vectorized_cusum_agrees_with_recursion_on_random_streams():
    rng = np.random.default_rng(7)
    for _ in range(200):
        z = np.clip(rng.normal(loc=rng.uniform(-0.3, 0.3), size=300), -2.5, 2.5)
        alarm = dv.cusum(z, -z, 0.5, 6.0)
        assert (alarm.alarm, alarm.start) == reference_cusum(z, -z, 0.5, 6.0)


def test_lindley_closed_form_matches_recursion():
    x = np.array([1.0, -3.0, 2.0, 0.5, -0.25, -4.0, 3.0])
    assert dv.lindley(x).tolist() == [1.0, 0.0, 2.0, 2.5, 2.25, 0.0, 3.0]


# ------------------------------------------------------------------ replicas
def replica_store(tmp_path, offset):
    rng = np.random.default_rng(3)
    t = np.arange(300)
    for side, shift_b in (("a", 0.0), ("b", offset)):
        for i in range(3):
            # noise that grows over training: a warm-up band would be too narrow later
            noise = rng.normal(scale=0.05 + 0.002 * t)
            write_run(tmp_path, f"{side}{i}",
                      {"reward_mean": np.log1p(t) + noise + np.where(t >= 200, shift_b, 0.0)})
    return open_store(tmp_path)


def test_replicas_band_finds_shift_and_replicas_do_not_alarm(tmp_path):
    # run sd 0.45 at step 200: the means of 3 runs differ by sd 0.37 and the band is
    # +-t(4 dof, alpha 0.01) = +-4.60 of those; a shift of 3.0 leaves it at once
    store = replica_store(tmp_path, 3.0)
    d = first_divergence("a0", "b0", "reward_mean", store=store, replicas_a=["a1", "a2"],
                         replicas_b=["b1", "b2"])
    band = d.signals[0].band
    assert d.mode == "statistical" and band.source == "replicas" and not d.weak
    assert (band.dof, round(band.width, 2)) == (4, 4.6)
    assert d.diverged and d.step == 200 and d.signals[0].direction == "up"
    assert "band from the replicas' seed spread, +-4.6 sigma" in d.verdict
    null = first_divergence("a0", "a1", "reward_mean", store=store, replicas_a=["a2"])
    assert not null.diverged and not null.weak


def test_shift_inside_the_seed_band_is_not_a_divergence(tmp_path):
    """A lasting shift of 1.0 (2.7 sd of the means' difference) stays inside the band:
    with 3 runs a side it cannot be told from a seed's own lasting offset."""
    store = replica_store(tmp_path, 1.0)
    d = first_divergence("a0", "b0", "reward_mean", store=store, replicas_a=["a1", "a2"],
                         replicas_b=["b1", "b2"])
    assert not d.diverged and d.signals[0].change_start is None


def test_persistent_seed_offsets_inside_the_band_do_not_alarm(tmp_path):
    """Each run sits at its own offset for the whole run (as seeds do: a different
    initialisation); a k = 0.5 CUSUM would add the offsets up step after step."""
    offsets = {"a0": 0.0, "a1": 0.9, "a2": -0.7, "b0": 1.1, "b1": 0.4, "b2": 1.6}
    t = np.arange(100)
    for run_id, offset in offsets.items():
        write_run(tmp_path, run_id, {"reward_mean": np.log1p(t) + offset + 0.01 * np.sin(t + offset)})
    store = open_store(tmp_path)
    d = first_divergence("a0", "b0", "reward_mean", store=store, replicas_a=["a1", "a2"],
                         replicas_b=["b1", "b2"])
    assert not d.diverged
    alone = first_divergence("a0", "b0", "reward_mean", store=store)
    assert alone.diverged and alone.weak and alone.step == 0   # without replicas: weak, and wrong


# ---------------------------------------------------------------- exact level
def test_identical_runs_are_reported_identical(tmp_path):
    values = base_curve()
    write_run(tmp_path, "a", {"loss": values, "kl": values * 0.1})
    write_run(tmp_path, "b", {"loss": values, "kl": values * 0.1})
    d = first_divergence("a", "b", store=open_store(tmp_path))
    assert (d.diverged, d.step, d.signal, d.mode) == (False, None, None, "exact")
    assert d.verdict == "runs a and b are identical: 2 signal(s) identical on all common steps (up to 200)"
    assert d.to_dict()["diverged"] is False


def test_exact_first_difference_names_the_earliest_signal(tmp_path):
    values = base_curve()
    loss_b, kl_b = values.copy(), values * 0.1
    loss_b[80:] += 1e-12                       # a difference far below any noise band
    kl_b[95:] += 1.0
    write_run(tmp_path, "a", {"loss": values, "kl": values * 0.1})
    write_run(tmp_path, "b", {"loss": loss_b, "kl": kl_b})
    d = first_divergence("a", "b", store=open_store(tmp_path))
    assert (d.diverged, d.step, d.signal, d.level, d.mode) == (True, 80, "loss", "exact", "exact")
    by_name = {s.signal: s for s in d.signals}
    assert by_name["kl"].exact_step == 95
    assert by_name["loss"].value_a == values[80] and by_name["loss"].value_b == loss_b[80]
    assert d.verdict == (f"runs a and b diverge at step 80: loss = {float(values[80])!r} in a vs "
                         f"{float(loss_b[80])!r} in b (identical before)")


def test_same_seed_but_different_first_values_means_statistical(tmp_path):
    store = store_pair(tmp_path, shift(1.0), seed_a=1, seed_b=1)
    assert first_divergence("a", "b", store=store).mode == "statistical"
    assert first_divergence("a", "b", store=store, mode="exact").step == 0


def test_recorded_seeds_that_differ_mean_statistical(tmp_path):
    values = base_curve()
    b = values.copy()
    b[S:] += 1.0
    write_run(tmp_path, "a", {"reward_mean": values}, seed=1)
    write_run(tmp_path, "b", {"reward_mean": b}, seed=2)
    d = first_divergence("a", "b", store=open_store(tmp_path))
    assert d.mode == "statistical" and d.step == S


# ----------------------------------------------------------------- alignment
def test_steps_align_by_number_with_other_intervals_duplicates_and_restarts(tmp_path):
    values = base_curve()
    write_run(tmp_path, "a", {"loss": values})
    with EventWriter(tmp_path, "b", capture_env=False) as w:      # every 2nd step, one duplicate
        for step in range(0, N, 2):
            w.log(step, loss=values[step])
        w.log(10, loss=99.0)                 # logged again later: the last value wins
    with EventWriter(tmp_path, "b", capture_env=False) as w:      # a restart replaying 150-199
        for step in range(150, N):
            w.log(step, loss=values[step] + (0.5 if step >= 170 else 0.0))
    d = first_divergence("a", "b", "loss", store=open_store(tmp_path), mode="exact")
    s = d.signals[0]
    assert (s.common_steps, s.only_a, s.only_b) == (125, 75, 0)      # 0,2,..,148 and 150..199
    assert (d.step, s.value_b) == (10, 99.0)
    assert s.duplicates_b == 26                                       # step 10 and 150,152,..,198


# ------------------------------------------------------------------- bitwise
def test_bitwise_names_first_tensor_and_rng_still_equal(tmp_path):
    torch = pytest.importorskip("torch")
    for run_id in ("a", "b"):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
        with EventWriter(tmp_path, run_id, capture_env=False) as w:
            for step in range(10):
                if run_id == "b" and step == 6:
                    with torch.no_grad():
                        model[1].weight[0, 0] += 1e-6
                w.log(step, loss=float(step))
                w.log_tensors(step, model)
                w.log_rng(step)
    d = first_divergence("a", "b", store=open_store(tmp_path))
    assert (d.diverged, d.step, d.signal, d.level) == (True, 6, "tensor/param/1.weight", "bitwise")
    assert d.tensors.names == ("param/1.weight",) and d.tensors.differing == 1
    assert d.rng.first_step is None and d.rng.steps == 10
    assert d.verdict == ("runs a and b diverge at step 6: tensor param/1.weight differs; "
                         "RNG streams still equal")


# ----------------------------------------------------------------- bad input
def test_signal_missing_in_one_run(tmp_path):
    write_run(tmp_path, "a", {"kl": [0.1, 0.2], "loss": [1.0, 0.9]})
    write_run(tmp_path, "b", {"loss": [1.0, 0.9]})
    with pytest.raises(UsageError, match=r"^signal 'kl' is not logged by run 'b'; its metrics: loss$"):
        first_divergence("a", "b", ["kl"], store=open_store(tmp_path))


def test_no_common_steps(tmp_path):
    write_run(tmp_path, "a", {"loss": [1.0] * 5})
    write_run(tmp_path, "b", {"loss": [1.0] * 5}, steps=range(100, 105))
    with pytest.raises(RldkError, match=r"^runs 'a' and 'b' share no step \(loss: 'a' logs steps "
                                        r"0-4, 'b' 100-104\); steps are aligned by number"):
        first_divergence("a", "b", store=open_store(tmp_path))


def test_run_without_metrics(tmp_path):
    write_run(tmp_path, "a", {"loss": [1.0] * 5})
    with EventWriter(tmp_path, "b", capture_env=False):
        pass
    with pytest.raises(MissingEvents, match=r"^run 'b' has no metric events: log scalars"):
        first_divergence("a", "b", store=open_store(tmp_path))


def test_non_numeric_signal(tmp_path):
    write_run(tmp_path, "a", {"loss": [1.0] * 5})
    with pytest.warns(Warning):
        write_run(tmp_path, "b", {"loss": ["high"] * 5})
    with pytest.raises(RldkError, match=r"^metric 'loss' of run 'b' has no numeric values "
                                        r"\(5 non-numeric, e.g. 'high' at step 0\): log numbers$"):
        first_divergence("a", "b", "loss", store=open_store(tmp_path))


def test_some_non_numeric_values_are_left_out_and_counted(tmp_path):
    write_run(tmp_path, "a", {"loss": [1.0, 2.0, 3.0, 4.0]})
    with pytest.warns(Warning):
        write_run(tmp_path, "b", {"loss": [1.0, "oops", 3.0, 5.0]})
    d = first_divergence("a", "b", "loss", store=open_store(tmp_path))
    s = d.signals[0]
    assert (s.common_steps, s.non_numeric_b, d.step, d.mode) == (3, 1, 3, "exact")


def test_single_step(tmp_path):
    write_run(tmp_path, "a", {"loss": [1.0]})
    write_run(tmp_path, "b", {"loss": [1.0]})
    write_run(tmp_path, "c", {"loss": [2.0]})
    store = open_store(tmp_path)
    assert first_divergence("a", "b", store=store).verdict == (
        "runs a and b are identical: 1 signal(s) identical on all common steps (up to 1)")
    with pytest.raises(RldkError, match=r"^runs 'a' and 'c' differ from their first common step "
                                        r"and share only 1 step\(s\): the statistical level needs "
                                        r"at least 10; compare values exactly with mode='exact'"):
        first_divergence("a", "c", store=store)
    d = first_divergence("a", "c", store=store, mode="exact")
    assert (d.diverged, d.step, d.signals[0].value_b) == (True, 0, 2.0)


def test_run_arguments_resolve(tmp_path):
    write_run(tmp_path / "x", "a", {"loss": [1.0, 2.0]})
    write_run(tmp_path / "y", "a", {"loss": [1.0, 3.0]})
    d = first_divergence(str(tmp_path / "x"), str(tmp_path / "y"))   # same id, two stores
    assert (d.step, d.run_a, d.run_b) == (1, "a", "a")
    runs = open_store(tmp_path / "x").runs()
    assert first_divergence(runs[0], str(tmp_path / "y")).step == 1
    with pytest.raises(UsageError, match=r"^no run or path 'nope': pass a path"):
        first_divergence("nope", runs[0])


def test_to_dict_is_json_ready(tmp_path):
    from rldk.core.render import to_json

    d = first_divergence("a", "b", store=store_pair(tmp_path, shift(1.0)))
    data = d.to_dict()
    assert data["step"] == S and data["signals"][0]["band"]["source"] == "warmup"
    assert len(data["curve"]["steps"]) == N and data["curve"]["signal"] == "reward_mean"
    to_json(data)


def test_multi_rank_runs_use_the_lowest_rank(tmp_path):
    values = base_curve()
    write_run(tmp_path, "a", {"loss": values})
    for rank, offset in ((1, 5.0), (0, 0.0)):
        with EventWriter(tmp_path, "b", rank=rank, capture_env=False) as w:
            for step in range(N):
                w.log(step, loss=values[step] + offset + (1.0 if step >= 90 else 0.0))
    d = first_divergence("a", "b", "loss", store=open_store(tmp_path))
    assert (d.step, d.signals[0].value_b, d.mode) == (90, values[90] + 1.0, "exact")


@pytest.mark.parametrize("chunk_rows, whole_rows", [(7, None), (1000, 1)],
                         ids=["chunked-whole-run", "batched-by-metric"])
def test_loading_paths_agree(tmp_path, monkeypatch, chunk_rows, whole_rows):
    """Reading a run in small chunks, or metric by metric, changes nothing."""
    from rldk.analyzers import _series

    values = base_curve()
    write_run(tmp_path, "a", {"loss": values, "kl": values * 0.1})
    with EventWriter(tmp_path, "b", capture_env=False) as w:
        for step in range(N):
            w.log(step, loss=values[step] + (0.5 if step >= 70 else 0.0), kl=values[step] * 0.1)
        w.log(3, loss=99.0)                                   # a late duplicate of step 3
    store = open_store(tmp_path)
    expected = first_divergence("a", "b", store=store).to_dict()
    _series.clear_cache()
    monkeypatch.setattr(_series, "CHUNK_ROWS", chunk_rows)
    if whole_rows is not None:
        monkeypatch.setattr(_series, "whole_run_rows", lambda: whole_rows)
        monkeypatch.setattr(_series, "BATCH_ROWS", N)         # one metric a batch
    got = first_divergence("a", "b", store=open_store(tmp_path)).to_dict()
    assert got == expected and (got["step"], got["signals"][1]["duplicates_b"]) == (3, 1)
    _series.clear_cache()
