"""Training-health analyzers: NaN onset, spikes and the health rules, on synthetic
runs written through the real writer (exact expected steps) and on real logs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rldk.analyzers import health, nan_onset, spikes
from rldk.analyzers._series import Series
from rldk.core.store import open_store
from rldk.writer import EventWriter

HEALTH, SPIKES, NAN_ONSET = health.HealthAnalyzer(), spikes.SpikesAnalyzer(), nan_onset.NanOnsetAnalyzer()


def write(directory, run_id, metrics: dict, config=None):
    """``metrics``: name -> list of values, one per step from 0 (None: not logged)."""
    n = max(len(v) for v in metrics.values())
    with EventWriter(directory, run_id, capture_env=False, config=config) as w:
        for step in range(n):
            row = {k: v[step] for k, v in metrics.items() if step < len(v) and v[step] is not None}
            w.log(step, row)
    return open_store(directory)


def findings(result, code=None):
    return [f for f in result.report().findings if code is None or f.code == code]


# ------------------------------------------------------------------ NaN onset
def test_nan_onset_orders_metrics_and_tells_persistent_from_intermittent(tmp_path):
    nan, inf = math.nan, math.inf
    store = write(tmp_path, "r", {
        "reward": [1.0] * 20,
        "old_log_prob": [0.0] * 12 + [nan, nan] + [0.0] * 6,        # recovers
        "kl_loss": [0.1] * 12 + [inf] * 8,                           # stays non-finite
        "grad_norm": [1.0] * 14 + [nan] * 6,
    })
    result = NAN_ONSET.run(store, nan_onset.Params())
    assert [(o.metric, o.first_step, o.first_kind, o.nan, o.inf, o.persistent) for o in result.onsets] == [
        ("kl_loss", 12, "inf", 0, 8, True), ("old_log_prob", 12, "NaN", 2, 0, False),
        ("grad_norm", 14, "NaN", 6, 0, True)]
    (f,) = findings(result)
    assert f.severity == "error" and f.steps == (12, 19)
    assert f.title == ("kl_loss inf at step 12 (8 of 20 values: 12, 13, 14, 15, 16, 17, 18, 19), "
                       "then old_log_prob (12), grad_norm (14)")
    assert f.evidence["order"] == ["kl_loss", "old_log_prob", "grad_norm"]
    assert f.evidence["first_steps"] == {"kl_loss": 12, "old_log_prob": 12, "grad_norm": 14}


def test_nan_onset_intermittent_is_a_warning_and_clean_runs_pass(tmp_path):
    store = write(tmp_path / "x", "r", {"grad_norm": [1.0, math.nan, 1.0, 1.0]})
    (f,) = findings(NAN_ONSET.run(store))
    assert (f.severity, f.title) == ("warning", "grad_norm NaN at step 1 (1 of 4 values: 1)")
    assert "loss scaling" in f.fix
    clean = NAN_ONSET.run(write(tmp_path / "y", "r", {"loss": [1.0, 2.0]})).report()
    assert (clean.status, clean.summary) == ("ok", "no NaN or inf in any metric of 1 run(s)")


def test_a_grad_norm_non_finite_now_and_then_is_a_loss_scalers_skipped_steps(tmp_path):
    """fp16 dynamic loss scaling: an overflowing step's gradients are inf, the scaler skips
    it and lowers its scale, and the run goes on. A grad norm non-finite on 2 of 200
    values, while the loss stays finite, is info, and the run is ok; with the loss NaN at
    one of those steps, with the norm non-finite again and again (a sixth of its values),
    or from its first value (the shared fixtures' TRL DPO run: NaN at steps 1, 2, 18 and
    74 of 75, a labelled event, and under every second step only its first), it is a
    warning as before."""
    nan, inf = math.nan, math.inf
    norm = [1.0 + 0.01 * (s % 7) for s in range(200)]
    norm[40], norm[120] = nan, inf
    loss = [2.0 - 0.005 * s for s in range(200)]
    result = NAN_ONSET.run(write(tmp_path / "a", "r", {"grad_norm": norm, "loss": loss})).report()
    (f,) = result.findings
    assert (f.code, f.severity, result.status) == ("nan_onset", "info", "ok"), f
    assert "the scaler skipped those steps" in f.title and f.evidence["overflow_skips"] is True
    broken = list(loss)
    broken[120] = nan
    (f,) = findings(NAN_ONSET.run(write(tmp_path / "b", "r", {"grad_norm": norm, "loss": broken})))
    assert (f.severity, f.evidence["overflow_skips"]) == ("warning", False)
    often = [inf if s % 6 == 0 else v for s, v in enumerate(norm)]
    (f,) = findings(NAN_ONSET.run(write(tmp_path / "c", "r", {"grad_norm": often, "loss": loss})))
    assert f.severity == "warning"
    dpo = [nan if s in (1, 2, 18, 74) else 15.0 for s in range(1, 76)]
    (f,) = findings(NAN_ONSET.run(write(tmp_path / "d", "r", {"grad_norm": dpo, "loss": [0.69] * 75})))
    assert (f.severity, f.steps) == ("warning", (0, 73))
    (f,) = findings(NAN_ONSET.run(write(tmp_path / "e", "r", {"grad_norm": dpo[::2], "loss": [0.69] * 38})))
    assert (f.severity, f.steps) == ("warning", (0, 0))


def test_a_metric_never_finite_is_no_onset_unless_it_is_a_training_quantity(tmp_path):
    """ML-Agents SAC with continuous actions logs ``Policy/Discrete Entropy Coeff`` as NaN
    on every row (a real run's 1182 of 1182 values): no metric went NaN, the branch is
    unused (info). A loss that is NaN from its first value stays an error."""
    nan = math.nan
    unused = NAN_ONSET.run(write(tmp_path / "a", "r", {"Policy/Discrete Entropy Coeff": [nan] * 10,
                                                       "reward": [1.0] * 10})).report()
    (f,) = unused.findings
    assert (f.code, f.severity, unused.status) == ("never_finite", "info", "ok")
    assert f.title.startswith("never finite, at any logged value: Policy/Discrete Entropy Coeff (10 values)")
    broken = NAN_ONSET.run(write(tmp_path / "b", "r", {"loss": [nan] * 10, "Policy/Discrete Entropy Coeff": [nan] * 10}))
    codes = {f.code: f.severity for f in findings(broken)}
    assert codes == {"nan_onset": "error", "never_finite": "info"}


def test_explained_variance_nan_where_returns_tie_is_undefined_not_a_failure(tmp_path):
    """SB3 logs ``train/explained_variance`` as NaN where a batch's returns are all equal
    (its ``explained_variance`` returns NaN when Var(returns) is 0): the real SB3 A2C
    CartPole runs of the benchmark have 4-31 such rows. With every other metric finite it
    is info; with a loss that went NaN too it stays part of that onset, and an inf (an
    overflow, not 0/0) is no undefined value."""
    nan = math.nan
    ev = [0.5, nan, 0.7, nan, nan, 0.9, 0.8, nan]
    tied = NAN_ONSET.run(write(tmp_path / "a", "r", {"train/explained_variance": ev,
                                                     "train/value_loss": [1.0] * 8})).report()
    (f,) = tied.findings
    assert (f.code, f.severity, tied.status, f.steps) == ("undefined_nan", "info", "ok", (1, 7))
    assert f.title.startswith("train/explained_variance NaN at 4 of 8 steps (first 1): undefined where "
                              "the batch's returns have no variance")
    cascade = NAN_ONSET.run(write(tmp_path / "b", "r", {"train/explained_variance": ev,
                                                        "train/value_loss": [1.0] * 6 + [nan] * 2}))
    (f,) = findings(cascade)
    assert (f.code, f.severity, f.evidence["order"]) == (
        "nan_onset", "error", ["train/explained_variance", "train/value_loss"])
    overflow = NAN_ONSET.run(write(tmp_path / "c", "r", {"train/explained_variance": [0.5, -math.inf, 0.7]}))
    assert [(f.code, f.severity) for f in findings(overflow)] == [("nan_onset", "warning")]


def test_episode_statistics_before_the_first_episode_ends_are_not_yet_defined(tmp_path):
    """RLlib's progress.csv has ``nan`` in every episode column until an episode ends (the
    real Qbert run of the benchmark: its first two iterations). Nothing went from a number
    to NaN: info. A metric that goes NaN after values stays an onset."""
    nan = math.nan
    ep = [nan, nan, 0.0, 50.0, 120.0, 150.0]
    early = NAN_ONSET.run(write(tmp_path / "a", "r", {"episode_reward_mean": ep, "episode_reward_max": ep,
                                                      "loss": [1.0] * 6})).report()
    (f,) = early.findings
    assert (f.code, f.severity, early.status) == ("undefined_nan", "info", "ok")
    assert "episode_reward_max NaN at 2 of 6 steps (first 0): not defined before its first value" in f.title
    later = NAN_ONSET.run(write(tmp_path / "c", "r", {"episode_reward_max": [1.0, nan, nan, nan]}))
    assert [(f.code, f.severity) for f in findings(later)] == [("nan_onset", "error")]


def test_a_diagnostic_nan_between_numbers_while_training_stays_finite_is_undefined(tmp_path):
    """A metric the semantics table does not know that is NaN between numbers (0/0, a mean
    over no samples: a custom attention diagnostic of a TRL GRPO run is NaN at some steps,
    RLlib's per-iteration episode maximum where no episode ended), while every other metric
    stays finite, is undefined there: the weights did not go NaN. It stays
    an onset when it stays NaN to the end, when it is an inf (an overflow), when it is a
    table quantity (the reward), and when a loss goes NaN with it."""
    nan, inf = math.nan, math.inf
    diag = [0.3, nan, 0.4, nan, nan, 0.5, 0.6, nan, 0.2, 0.4]
    quiet = NAN_ONSET.run(write(tmp_path / "a", "r", {"attention/early/mdi": diag, "loss": [1.0] * 10,
                                                      "reward": [0.5] * 10})).report()
    (f,) = quiet.findings
    assert (f.code, f.severity, quiet.status, f.steps) == ("undefined_nan", "info", "ok", (1, 7))
    assert f.title.startswith("attention/early/mdi NaN at 4 of 10 steps (first 1): not defined at those steps")
    for name, values in (("attention/early/mdi", [0.3, nan, 0.4, nan, nan]),
                         ("attention/early/mdi", [0.3, inf, 0.4, 0.5, 0.5]),
                         ("reward", [0.3, nan, 0.4, 0.5, 0.5])):
        run = NAN_ONSET.run(write(tmp_path / f"{name}{values}".replace("/", "_"), "r",
                                  {name: values, "loss": [1.0] * 5}))
        assert [g.code for g in findings(run)] == ["nan_onset"], (name, values)
    cascade = NAN_ONSET.run(write(tmp_path / "b", "r", {"attention/early/mdi": diag,
                                                        "loss": [1.0] * 7 + [nan, 1.0, 1.0]}))
    (f,) = findings(cascade)
    assert (f.code, f.evidence["order"]) == ("nan_onset", ["attention/early/mdi", "loss"])


def test_a_loss_before_the_first_update_is_not_yet_defined(tmp_path):
    """A hand-written DQN logger writes the mean of the episode's TD losses, NaN
    (``np.mean([])``) for the games played before learning starts: the loss and the value
    loss are NaN only before their first value (two real Pong runs: the first 10-11 of
    204-400 rows). Nothing went from a number to NaN: info. A loss that goes NaN after a
    value, an inf before the first value (an overflow, not a mean over nothing), a grad
    norm NaN at the first steps (fp16 loss scaling's overflowing first steps: the shared
    TRL DPO fixture's steps 1 and 2) and the reward stay onsets."""
    nan, inf = math.nan, math.inf
    warmup = NAN_ONSET.run(write(tmp_path / "a", "r", {"loss": [nan] * 4 + [0.5, 0.4, 0.6, 0.5],
                                                       "value_loss": [nan] * 4 + [1.0] * 4,
                                                       "reward": [1.0] * 8})).report()
    (f,) = warmup.findings
    assert (f.code, f.severity, warmup.status, f.steps) == ("undefined_nan", "info", "ok", (0, 3))
    assert "loss NaN at 4 of 8 steps (first 0): undefined before the first update" in f.title
    for name, values in (("loss", [nan, nan, 1.0, nan, 1.0]), ("loss", [inf, 1.0, 1.0]),
                         ("grad_norm", [nan, nan, 1.0, 1.0]), ("reward", [nan, 1.0, 1.0])):
        run = NAN_ONSET.run(write(tmp_path / f"{name}{values}", "r", {name: values}))
        assert [g.code for g in findings(run)] == ["nan_onset"], (name, values)
    # such a loss that goes NaN later went from a number to NaN there, not at its first row
    broke = NAN_ONSET.run(write(tmp_path / "b", "r", {"loss": [nan] * 3 + [0.5] * 4 + [nan] * 3,
                                                      "mean_reward": [nan] + [1.0] * 9})).report()
    failure, info = broke.findings
    assert (failure.code, failure.severity, failure.metric, failure.steps) == ("nan_onset", "error", "loss", (7, 9))
    assert (info.code, info.metric, info.steps) == ("undefined_nan", "mean_reward", (0, 0))
    fp16 = NAN_ONSET.run(write(tmp_path / "c", "r", {"grad_norm": [nan, nan, 1.0, 1.0, nan, 1.0]}))
    (f,) = findings(fp16)
    assert (f.code, f.severity, f.steps) == ("nan_onset", "warning", (0, 4))


def test_undefined_values_that_ended_before_a_failure_are_no_part_of_it(tmp_path):
    """RLlib's episode mean is NaN on a run's first two rows; a loss that goes NaN much
    later is the failure, and its finding starts there, not at the episode mean's first
    row. Undefined values still going on when the loss fails stay in its cascade."""
    nan = math.nan
    ep = [nan, nan] + [10.0 * i for i in range(2, 20)]
    later = NAN_ONSET.run(write(tmp_path / "a", "r", {"episode_reward_mean": ep,
                                                      "policy_loss": [1.0] * 15 + [nan] * 5}))
    failure, info = findings(later)
    assert (failure.code, failure.severity, failure.metric, failure.steps) == ("nan_onset", "error", "policy_loss", (15, 19))
    assert failure.evidence["order"] == ["policy_loss"]
    assert (info.code, info.severity, info.steps) == ("undefined_nan", "info", (0, 1))
    assert info.title.endswith("all before step 15, where another metric went non-finite: no part of that failure")
    together = NAN_ONSET.run(write(tmp_path / "b", "r", {"episode_reward_mean": ep[:2] + [nan] * 18,
                                                         "policy_loss": [1.0] * 2 + [nan] * 18}))
    (f,) = findings(together)
    assert (f.code, f.evidence["order"]) == ("nan_onset", ["episode_reward_mean", "policy_loss"])


def test_a_minus_inf_placeholder_before_the_first_episode_is_not_yet_defined(tmp_path):
    """OpenAI baselines' deepq logs ``mean 100 episode reward`` (and its per-step twin) as
    -inf until an episode ends (a real highway-env run of the benchmark: its first two rows).
    A leading -inf is that placeholder: info. +inf (an overflow), a -inf after a number
    (log 0) and a leading -inf in a loss stay onsets."""
    inf = math.inf
    placeholder = NAN_ONSET.run(write(tmp_path / "a", "r", {
        "episode_reward_mean": [-inf, -inf, -679.4, -241.4, -102.7],
        "mean 100 episode reward per step": [-inf, -inf, -4.0, -1.7, -0.9],
        "loss": [1.0] * 5})).report()
    (f,) = placeholder.findings
    assert (f.code, f.severity, placeholder.status) == ("undefined_nan", "info", "ok")
    assert "episode_reward_mean -inf at 2 of 5 steps (first 0)" in f.title
    for name, values in (("episode_reward_mean", [inf, 1.0, 2.0]), ("episode_reward_mean", [1.0, -inf, 2.0]),
                         ("loss", [-inf, 1.0, 1.0]), ("custom", [1.0, -inf, -inf])):
        run = NAN_ONSET.run(write(tmp_path / f"{name}{values}", "r", {name: values}))
        assert [(g.code, g.severity) for g in findings(run)] in ([("nan_onset", "warning")], [("nan_onset", "error")]), (name, values)


# --------------------------------------------------------------------- spikes
def prior_median_reference(values, window=25, min_history=10, q=0.5):
    """The quantile of the up-to-``window`` finite values before each position (NumPy)."""
    finite = values[np.isfinite(values)]
    out_finite = np.full(len(finite), np.nan)
    for i in range(len(finite)):
        history = finite[max(0, i - window):i]
        if len(history) >= min_history:
            out_finite[i] = np.quantile(history, q)
    out = np.full(len(values), np.nan)
    out[np.isfinite(values)] = out_finite
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("q", [0.5, 0.9])
def test_rolling_prior_agrees_with_numpy_reference(seed, q):
    rng = np.random.default_rng(seed)
    values = np.abs(rng.normal(1.0, 0.3, size=300))
    values[rng.integers(0, 300, size=5)] = np.nan
    got = spikes.rolling_prior(values, 25, 10, q)
    want = prior_median_reference(values, 25, 10, q)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-12)


def test_spikes_found_at_their_steps(tmp_path):
    grad = [1.0 + 0.01 * (i % 3) for i in range(100)]
    grad[40], grad[41], grad[70] = 10.0, 8.0, 6.0
    loss = [0.01 * (-1) ** i for i in range(100)]          # crosses zero: no level to spike from
    loss[50] = 1.0
    store = write(tmp_path, "r", {"grad_norm": grad, "loss": loss, "reward": [1.0] * 100})
    result = SPIKES.run(store)
    (s,) = result.spikes
    assert (s.metric, s.steps, s.count, s.episodes, s.worst_step) == ("grad_norm", (40, 41, 70), 3, 2, 40)
    assert s.worst_ratio == pytest.approx(10.0 / 1.01)
    assert result.watched == (("r", "grad_norm"), ("r", "loss"))
    (f,) = findings(result)                       # isolated and recovered: transient, info
    assert (f.code, f.severity, f.steps) == ("spike_transient", "info", (40, 70))


def test_only_a_severe_spike_is_a_warning(tmp_path):
    grad = [1.0 + 0.01 * (i % 3) for i in range(100)]
    grad[60] = 500.0                                    # 500x its level, and back at once: transient
    (f,) = findings(SPIKES.run(write(tmp_path / "a", "r", {"grad_norm": grad})))
    assert (f.code, f.severity, f.steps) == ("spike_transient", "info", (60, 60))
    grad = [1.0 + 0.01 * (i % 3) for i in range(100)]
    grad[98] = 500.0                                    # 500x with nothing after to show it came back
    (f,) = findings(SPIKES.run(write(tmp_path / "c", "r", {"grad_norm": grad})))
    assert (f.code, f.severity, f.steps) == ("spike", "warning", (98, 98))
    grad = [1.0 + 0.01 * (i % 3) for i in range(100)]
    grad[99] = 9.0                                      # the last value: nothing to judge it by yet
    (f,) = findings(SPIKES.run(write(tmp_path / "b", "r", {"grad_norm": grad})))
    assert (f.code, f.severity, f.steps) == ("spike_transient", "info", (99, 99))
    assert f.title.endswith("(at the end of the log)")


def test_trends_and_value_loss_jumps_are_not_spikes(tmp_path):
    rising = list(np.geomspace(0.01, 10.0, 100))                 # smooth: never above its future
    value_loss = [1.0] * 100
    value_loss[50] = 30.0                                        # returns jumped: info only
    result = SPIKES.run(write(tmp_path, "r", {"grad_norm": rising, "value_loss": value_loss}))
    assert [(f.code, f.severity, f.metric) for f in findings(result)] == [
        ("spike_transient", "info", "value_loss")]


def test_spikes_at_the_only_steps_with_reward_variance_are_explained(tmp_path):
    """Most steps tie every group (no signal): a KL that jumps only at the steps with a
    signal is explained by them (info); the grad norm, whose tied steps hold only the KL
    term's share (0.001), is judged on the steps with a signal, where 0.08 is its level,
    not a spike."""
    zero_std = [1.0] * 60
    grad = [0.001] * 60
    kl = [0.2 + 0.01 * (i % 3) for i in range(60)]
    for step in (30, 45):
        zero_std[step], grad[step], kl[step] = 0.75, 0.08, 30.0
    store = write(tmp_path, "r", {"grad_norm": grad, "kl": kl, "frac_reward_zero_std": zero_std})
    (f,) = findings(SPIKES.run(store))
    assert (f.code, f.severity, f.metric, f.steps) == ("spike_explained", "info", "kl", (30, 45))


def test_a_grad_norm_logged_only_at_steps_without_reward_variance_is_not_judged(tmp_path):
    """A verl GRPO ALFWorld run (tuning half, batch 60) tied every group at reward 0 on all
    its steps: the grad norms of steps without reward variance are left out of the
    grad-norm rules, so none was left, and the rule raised on an empty array (every third
    row kept, the robustness benchmark). It now says why it judged nothing."""
    n = 20
    store = write(tmp_path, "r", {"grad_norm": [0.0] * n, "frac_reward_zero_std": [1.0] * n})
    found, result = rule_findings(store, "grad_norm_explosion")
    assert found == []
    assert any(code == "grad_norm_explosion" and "0 step(s) with reward variance" in why
               for _, code, why in result.not_applicable), result.not_applicable


def test_spikes_skipped_without_watched_metrics(tmp_path):
    from rldk.core.errors import MissingEvents

    with pytest.raises(MissingEvents, match="^no loss, grad-norm or KL metric"):
        SPIKES.run(write(tmp_path, "r", {"reward": [1.0, 2.0]}))


# --------------------------------------------------------------- health rules
def rule_findings(store, code, params=None):
    result = HEALTH.run(store, params or health.Params())
    return [f for f in result.findings if f.code == code], result


def test_negative_kl(tmp_path):
    kl = [0.01] * 10
    kl[3], kl[4] = -0.01, -0.02
    (f,), _ = rule_findings(write(tmp_path, "r", {"kl": kl}), "negative_kl")
    assert (f.severity, f.steps, f.evidence["count"], f.evidence["min"]) == ("error", (3, 4), 2, -0.02)
    assert f.title == "mean KL negative at 2 of 10 steps (first 3, min -0.02)"


def test_kl_above_target_needs_a_target(tmp_path):
    kl = [0.05] * 20 + [0.2] * 10
    (f,), _ = rule_findings(write(tmp_path / "a", "r", {"kl": kl}, config={"target_kl": 0.1}),
                            "kl_above_target")
    assert f.evidence["late_median"] == 0.2 and f.evidence["limit"] == pytest.approx(0.12)
    assert f.steps == (20, 29)
    none, result = rule_findings(write(tmp_path / "b", "r", {"kl": kl}), "kl_above_target")
    assert not none and ("r", "kl_above_target", "no KL target: pass kl_target or record "
                         "target_kl in the run's config") in result.not_applicable


@pytest.mark.parametrize("name, sign", [("entropy", 1.0), ("train/entropy_loss", -1.0)])
def test_entropy_collapse_at_its_onset(tmp_path, name, sign):
    """Entropy 2.0 for 20 steps, then 0.05: a collapse from step 20 (error: below 4%)."""
    wiggle = [0.01 * ((i * 7) % 5 - 2) for i in range(40)]
    entropy = [2.0 + w if i < 20 else 0.05 * (1 + w) for i, w in enumerate(wiggle)]
    (f,), _ = rule_findings(write(tmp_path / "a", "r", {name: [sign * e for e in entropy]}),
                            "entropy_collapse")
    assert (f.steps, f.severity, f.metric) == ((20, 39), "error", name)
    assert f.evidence["held"] == pytest.approx(2.0, abs=0.02) and f.evidence["held_step"] < 20
    healthy = np.linspace(2.0, 1.0, 50).tolist()                 # a steady 50% decline: learning
    assert not rule_findings(write(tmp_path / "b", "r", {name: [sign * e for e in healthy]}),
                             "entropy_collapse")[0]


def test_a_gaussian_policys_entropy_has_no_collapse_to_zero(tmp_path):
    """SB3 PPO on a continuous task logs minus the summed entropy of its Gaussian policy
    (train/entropy_loss) and the actions' standard deviation (train/std): 1.35 nats falling
    to 0.24 is the std shrinking ~2x a dimension as the policy sharpens, a differential
    entropy with no floor at zero, not a collapse (a real MuJoCo run, healthy). Without the
    std the same series reads as a discrete policy's, and collapses."""
    entropy = np.r_[np.full(20, 1.35), np.linspace(1.35, 0.24, 20), np.full(20, 0.24)]
    std = np.exp((entropy - 1.35) / 2)
    run = {"train/entropy_loss": (-entropy).tolist(), "train/std": std.tolist()}
    found, result = rule_findings(write(tmp_path / "a", "r", run), "entropy_collapse")
    assert not found
    assert any(code == "entropy_collapse" and "Gaussian" in why for _, code, why in result.not_applicable)
    assert rule_findings(write(tmp_path / "b", "r", {"train/entropy_loss": (-entropy).tolist()}),
                         "entropy_collapse")[0]


def test_collapse_inside_the_first_tenth_is_found(tmp_path):
    """No part of the run is assumed healthy: a collapse at step 3 of 60 is at step 3."""
    entropy = [0.21, 0.22, 0.2] + [0.004 * (1 + 0.05 * (i % 3)) for i in range(57)]
    (f,), _ = rule_findings(write(tmp_path, "r", {"entropy": entropy}), "entropy_collapse")
    assert f.steps[0] == 3


def test_length_collapse_and_truncation_onsets(tmp_path):
    length = [100.0, 101.0] * 5 + [20.0, 21.0] * 5
    clipped = [0.0] * 10 + [0.5] * 8 + [1.0] * 2
    store = write(tmp_path, "r", {"completions/mean_length": length,
                                  "completions/clipped_ratio": clipped})
    (lc,), _ = rule_findings(store, "length_collapse")
    assert (lc.steps, lc.evidence["held"], lc.evidence["now"]) == ((10, 19), 101.0, 20.5)
    (tr,), _ = rule_findings(store, "truncation_onset")
    assert tr.steps == (10, 19) and tr.evidence["before"] == 0.0
    assert tr.title.startswith("share of truncated responses at ")


def test_zero_std_from_the_first_step(tmp_path):
    frac = [1.0, 0.75] * 2 + [1.0] * 6
    (f,), _ = rule_findings(write(tmp_path, "r", {"frac_reward_zero_std": frac}), "zero_std_onset")
    assert f.steps == (0, 9) and f.title.endswith("(from the first step)")


def test_reward_collapse_and_degradation(tmp_path):
    reward = [0.5, 0.6, 0.55, 0.58, 0.52] + [0.0] * 15
    (f,), _ = rule_findings(write(tmp_path / "a", "r", {"reward": reward}), "reward_collapse")
    assert (f.steps, f.severity, f.evidence["floor"]) == ((5, 19), "error", 0.0)
    ret = [float(i) for i in range(20)] + [19.0 - 0.8 * i for i in range(20)]   # learned, then lost
    (g,), _ = rule_findings(write(tmp_path / "b", "r", {"rollout/ep_rew_mean": ret}),
                            "reward_degradation")
    assert g.metric == "rollout/ep_rew_mean" and g.steps[0] > 15


def test_kl_controller_stuck(tmp_path):
    coef = [0.2 - 0.01 * i for i in range(10)] + [0.11] * 30      # adapts, then frozen
    kl = [1.0] * 10 + [1.0 + 0.2 * i for i in range(30)]          # while KL runs away
    (f,), _ = rule_findings(write(tmp_path / "a", "r", {"objective/kl_coef": coef, "kl": kl}),
                            "kl_controller_stuck")
    assert f.steps == (10, 39) and f.title.startswith("adaptive KL coefficient frozen at 0.11 for the last 30 rows")
    fixed, result = rule_findings(write(tmp_path / "b", "r", {"kl_coef": [0.1] * 20, "kl": kl[:20]}),
                                  "kl_controller_stuck")
    assert not fixed and ("r", "kl_controller_stuck",
                          "the KL coefficient never changes: fixed, not adaptive") in result.not_applicable


def test_rules_without_their_metrics_are_listed_not_passed(tmp_path):
    result = HEALTH.run(write(tmp_path, "r", {"reward": [1.0, 2.0]}))
    assert result.checked == ()
    assert ("r", "entropy_collapse", "not logged: entropy (log it as entropy, objective/entropy "
            "or policy/entropy_avg)") in result.not_applicable
    report = result.report()
    assert report.summary == f"0 rule check(s) passed, {len(health.RULES)} not applicable"
    assert report.status == "inconclusive" and not any(c.ran for c in report.checks)
    assert [(c.name, c.status, c.run_id) for c in report.checks][:2] == [
        ("negative_kl", "skipped", "r"), ("kl_above_target", "skipped", "r")]


def test_onset_of_a_series_matches_numpy():
    s = Series("x", np.arange(6), np.array([1.0, np.nan, 2.0, -np.inf, np.inf, np.nan]))
    o = nan_onset.onset("r", s)
    assert (o.first_step, o.last_bad_step, o.nan, o.inf, o.steps, o.persistent) == (1, 5, 2, 2, (1, 3, 4, 5), True)


# ------------------------------------------------------- names through rldk.semantics
def test_trl_tensorboard_train_prefix_tags_get_the_grpo_rules(tmp_path):
    n = 30
    store = write(tmp_path, "tb", {
        "train/frac_reward_zero_std": [1.0] * n,
        "train/completions/clipped_ratio": [0.0] * 10 + [0.5] * 20,
        "train/completions/mean_length": [200.0] * 10 + [20.0] * 20,
    })
    result = HEALTH.run(store)
    assert {code for _, code in result.checked} == {"zero_std_onset", "truncation_onset",
                                                    "length_collapse_or_explosion"}
    got = {f.code: f.metric for f in result.findings}
    assert got == {"zero_std_onset": "train/frac_reward_zero_std",
                   "truncation_onset": "train/completions/clipped_ratio",
                   "length_collapse": "train/completions/mean_length"}
    assert result.report().status == "problems"


def test_verl_ppo_kl_is_not_the_kl_to_the_reference(tmp_path):
    ppo_kl = [0.001, -0.002, 0.0005, -0.003, 0.001] * 4          # old-to-new policy estimate: any sign
    quiet = HEALTH.run(write(tmp_path / "a", "verl", {"actor/ppo_kl": ppo_kl}))
    assert not [f for f in quiet.findings if f.code == "negative_kl"]
    assert ("verl", "negative_kl") not in quiet.checked
    penalty = [0.01] * 20
    penalty[5] = -0.05
    (f,), result = rule_findings(write(tmp_path / "b", "verl", {"actor/ppo_kl": ppo_kl,
                                                                "actor/reward_kl_penalty": penalty}),
                                 "negative_kl")
    assert (f.severity, f.metric, f.steps) == ("error", "actor/reward_kl_penalty", (5, 5))
