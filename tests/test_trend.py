"""Sustained declines of noisy levels (rldk.detectors.trend) and the rules built on them:
reward degradation on levels, the value-loss blow-up judged with the return, and onsets
at the start of a fall. Synthetic cases with exact answers, seeded noise for the
false-alarm rate, and the real logs of the tuning half of benchmarks/data/real (firing
and quiet twins)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from rldk.analyzers import health
from rldk.core.store import open_store
from rldk.detectors import rules, trend
from rldk.writer import EventWriter

REAL = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "real"


def sb3(name: str, column: str, step: str = "time/total_timesteps"):
    """``(steps, values)`` of one column of a tuning-half SB3 progress.csv (rows where it is set)."""
    with open(REAL / name / "progress.csv", newline="", encoding="utf-8") as fh:
        rows = [(int(float(r[step])), float(r[column])) for r in csv.DictReader(fh)
                if r.get(column) not in (None, "")]
    steps, values = zip(*rows)
    return np.array(steps), np.array(values)


def monitor(name: str):
    """Per-episode returns of a monitor.csv at the cumulative environment step."""
    with open(next((REAL / name).glob("*.monitor.csv")), encoding="utf-8") as fh:
        next(fh)
        rows = list(csv.DictReader(fh))
    return (np.cumsum([int(r["l"]) for r in rows]), np.array([float(r["r"]) for r in rows]))


def learned_then_lost(n: int, noise, rng):
    """Rise over 30% of the run, hold, fall to the start level over 10% from 60%, hold."""
    t = np.arange(n)
    shape = np.minimum(t / (0.3 * n), 1.0) - np.clip((t - 0.6 * n) / (0.1 * n), 0, 1)
    return t, 10 * shape + noise * rng.normal(size=n)


# ------------------------------------------------------------------ synthetic
def test_a_noisy_decline_that_bounces_above_the_line_is_found_at_its_fall():
    rng = np.random.default_rng(0)
    t, v = learned_then_lost(300, 3.0, rng)
    d = trend.decline(t, v, 0.5)
    assert d is not None and d.z >= trend.SIGNIFICANCE
    assert 180 <= d.onset <= 200                  # the fall is steps 180-210
    assert (v[d.tail:] > d.line).mean() > 0.05    # points stray above the line: a point rule fails
    assert rules._points_below("r", t, v, trend.regimes(t, v)) is None


def test_a_clean_staircase_is_exact():
    v = np.r_[np.zeros(10), np.full(20, 10.0), np.full(5, 6.0), np.full(15, 1.0)]
    v = v + np.tile([0.01, -0.01], 25)
    d = trend.decline(np.arange(50), v, 0.5)
    assert (d.onset, d.tail, d.start) == (30, 35, pytest.approx(0.0, abs=0.02))
    assert d.peak == pytest.approx(10.0, abs=0.02) and d.line == pytest.approx(5.0, abs=0.02)


def test_a_fall_in_stages_starts_after_the_level_the_run_held():
    """From 8 to 10 (12 points), a step down to 8.5 held for 40 points (below the line of
    half the gain, longer than the peak: the run's level), then a collapse to -20 from
    point 60: the move into the bad state starts at 60, not at the first small step."""
    rng = np.random.default_rng(6)
    v = np.r_[np.linspace(8, 10, 8), np.full(12, 10.0), np.full(40, 8.5),
              np.linspace(0, -20, 5), np.full(35, -20.0)] + 0.1 * rng.normal(size=100)
    d = trend.decline(np.arange(100), v, 0.5)
    assert d.onset == 60 and d.peak == pytest.approx(10.0, abs=0.2)


def test_a_fall_in_stages_the_run_stops_in_starts_after_the_level_it_held():
    """The same stages, but the run is stopped while the collapse is still falling fast
    (its last 8 points, no level held at the bottom): the level it ended at is the bottom
    the stages are judged against, so the move still starts at 60 (a real SB3 DQN return
    cut 8 rows into its collapse was reported from its first small step down)."""
    rng = np.random.default_rng(6)
    v = np.r_[np.linspace(8, 10, 8), np.full(12, 10.0), np.full(40, 8.5),
              np.linspace(7, -25, 8)] + 0.1 * rng.normal(size=68)
    d = trend.decline(np.arange(68), v, 0.5)
    assert d.onset == 60 and d.peak == pytest.approx(10.0, abs=0.2)


@pytest.mark.parametrize("case", ["recovered dip", "rise and plateau", "flat noise", "ends lower by a third"])
def test_quiet_on_what_is_not_a_sustained_decline(case):
    rng = np.random.default_rng(1)
    t = np.arange(200)
    v = {"recovered dip": np.minimum(t / 60, 1) * 10 - 6 * ((t > 120) & (t < 140)),
         "rise and plateau": np.minimum(t / 60, 1) * 10,
         "flat noise": np.zeros(200),
         "ends lower by a third": np.minimum(t / 60, 1) * 10 - 3.3 * (t > 150)}[case]
    assert trend.decline(t, v + rng.normal(size=200), 0.5) is None


@pytest.mark.parametrize("kind", ["white", "ar1"])
def test_false_alarm_rate_on_flat_noise(kind):
    """Seeded flat series of 300 points: white noise, and AR(1) noise with rho 0.9 (a rolling
    mean of episodes wanders like it). Measured over 200 other seeded series each: 0 and 1 fires."""
    rng = np.random.default_rng(7)
    fired = sum(trend.decline(np.arange(300), noise(rng, 300, kind), 0.5) is not None for _ in range(40))
    assert fired <= (0 if kind == "white" else 2)


@pytest.mark.parametrize("kind", ["white", "ar1"])
def test_settled_below_stays_quiet_on_flat_noise(kind):
    """The same seeded flat noise: a series that never settles lower, nor falls far under
    what it held for a stretch and comes back (``recovered``). Measured over 200 other
    seeded series each: 0 and 0 fire, either way (a random walk: 18 of 200 settle, as
    they should)."""
    rng = np.random.default_rng(11)
    series = [noise(rng, 300, kind) for _ in range(40)]
    for recovered in (False, True):
        fired = sum(trend.settled_below(np.arange(300), v, recovered=recovered) is not None for v in series)
        assert fired == 0


#: a verl PPO run's score (critic/score/mean, 57 steps; benchmarks/data/real, batch 80):
#: 0.57 at its start, a 0.69 plateau over steps 12-35, 0.54 from 36, under 0.49 from 45
VERL_SCORE = [0.539, 0.54, 0.565, 0.57, 0.578, 0.625, 0.623, 0.52, 0.514, 0.559, 0.605, 0.685, 0.686,
              0.679, 0.718, 0.717, 0.761, 0.66, 0.629, 0.665, 0.719, 0.721, 0.748, 0.699, 0.755, 0.676,
              0.736, 0.711, 0.731, 0.675, 0.687, 0.661, 0.625, 0.603, 0.676, 0.504, 0.544, 0.522, 0.549,
              0.576, 0.556, 0.537, 0.557, 0.588, 0.478, 0.485, 0.488, 0.391, 0.328, 0.394, 0.376, 0.329,
              0.419, 0.477, 0.408, 0.452, 0.398]


def test_a_short_score_that_ends_below_all_it_held_is_a_degradation():
    """On 57 rows the wander estimate takes in the very moves under test (7x the white
    noise at lag 3), so neither the gain of the plateau nor the fall from it passes its
    significance; but the last ten rows all lie below every row before them, a new low
    held to the end: found, from step 36, where the score left its plateau. With one of
    them back at the run's lowest earlier row, no such low: nothing."""
    steps, v = np.arange(1, 58), np.array(VERL_SCORE)
    event = rules.reward_degradation("critic/score/mean", steps, v)
    assert event is not None and event.onset == 36 and event.severity == "error"
    lifted = v.copy()
    lifted[53] = 0.479                      # over 0.478, the lowest row before the last ten
    assert rules.reward_degradation("critic/score/mean", steps, lifted) is None


def test_a_new_low_held_to_the_end_is_rare_in_short_correlated_noise():
    """Seeded flat AR(1) noise (rho 0.9) of 30 and 57 points, 200 series each: a final
    stretch below every earlier point is a settled decline, so some fire; measured: 44 and
    21 (36 and 19 with the significance test alone). 300 points: none (above)."""
    rng = np.random.default_rng(11)
    for n, most in ((30, 44), (57, 21)):
        series = [noise(rng, n, "ar1") for _ in range(200)]
        assert sum(trend.settled_below(np.arange(n), v) is not None for v in series) <= most


def test_a_flat_return_still_sliding_when_the_log_ends_is_a_degradation():
    """A run stopped while its return was still falling (a TD3 drone return, flat at -82 for
    140 rows, then -86, -97, -106 ... -250 over its last 15 rows): each point of the slide
    is a regime of its own, so no held regime opens a stretch, yet every point lies far
    under all the run held. Found at the first row of the slide; the same flat series
    whose last rows dip to its worst tenth and no further stays quiet. Measured on 200
    seeded flat series of 300 points each (white, AR(1) rho 0.9): none slides."""
    rng = np.random.default_rng(4)
    flat = -82 + 1.2 * rng.normal(size=140)
    v = np.r_[flat, -82 - 12 * np.arange(1, 16) ** 1.1]
    event = rules.reward_degradation("rollout/ep_rew_mean", np.arange(len(v)), v)
    assert event is not None and event.onset == 140, event
    dip = np.r_[flat, -82 - 1.2 * np.array([1.5, 1.7, 1.4, 1.6, 1.5])]
    assert rules.reward_degradation("rollout/ep_rew_mean", np.arange(len(dip)), dip) is None


@pytest.mark.parametrize("end, severity", [(4.0, "warning"), (1.0, "error"), (-2.0, "error")])
def test_a_return_that_lost_all_it_gained_is_an_error(end, severity):
    """A return at 1 for 40 steps learns to 10 and holds it for 60, then falls to ``end`` and
    stays to the end: back at (1.0, within a tenth of the gain) or under (-2.0) its level
    before it learned, everything it learned is lost, an error (a collapse); a fall to 4.0
    (two thirds of the gain lost) is a degradation, a warning. Same onset either way."""
    rng = np.random.default_rng(11)
    v = np.r_[np.full(40, 1.0), np.linspace(1, 10, 20), np.full(60, 10.0), np.full(60, end)]
    v = v + 0.3 * rng.normal(size=len(v))
    event = rules.reward_degradation("episode_return", np.arange(len(v)), v)
    assert (event.code, event.severity, event.onset) == ("reward_degradation", severity, 120), event
    assert ("all it had gained is lost" in event.title) == (severity == "error")


def test_a_flat_reward_that_settles_lower_is_a_degradation():
    """No gain to lose: a reward that held 0.96 +- 0.15 for 135 steps sits at 0.63 from
    step 135 on. ``decline`` cannot measure a loss of gain; ``settled_below`` finds it at
    its first step, and a flat reward that only dips for a few rows stays quiet."""
    rng = np.random.default_rng(5)
    v = np.r_[np.full(135, 0.96), np.full(90, 0.63)] + 0.15 * rng.normal(size=225)
    assert trend.decline(np.arange(225), v, 0.5) is None
    event = rules.reward_degradation("reward", np.arange(225), v)
    # the change is at 135, but this draw puts v[135] at 0.904, nearer the old level than
    # the new: the best cut of the data is 136, one point later
    assert event.code == "reward_degradation" and event.onset in (135, 136)
    dip = np.r_[np.full(135, 0.96), np.full(8, 0.63), np.full(82, 0.96)] + 0.15 * rng.normal(size=225)
    assert rules.reward_degradation("reward", np.arange(225), dip) is None


def test_a_log_that_starts_late_at_its_plateau_and_settles_lower_is_a_degradation():
    """A real PPO run's 100-episode rolling return (the tuning half's xArm monitor) with
    the first tenth of its steps cut, as a resumed run's or a cut log's would be: at 11.0
    for 8% of what is left, then 6.9 to the end. Its gain is out of sight; 8% of a run is
    a level held, though under a tenth of it. Found where the fall started (the truth's
    window: 269781-272231)."""
    steps, r = monitor("a2cppo_monitor_xarm_conti_collapse")
    rolling = np.convolve(r, np.ones(100), "full")[:len(r)] / np.minimum(np.arange(1, len(r) + 1), 100)
    keep = steps >= steps[0] + 0.1 * (steps[-1] - steps[0])
    event = rules.reward_degradation("episode_return", steps[keep], rolling[keep])
    assert event is not None and 269781 <= event.onset <= 272231


def test_a_plateau_that_breaks_for_a_stretch_and_recovers_is_an_event_without_a_gain():
    """A return on its plateau from the first row kept (0.75, with lone dips to -11 and
    -2.7: a log cut from late on, as a real ML-Agents run's with its first tenth cut) that
    falls to -40 for 21 of 150 rows and comes back: no gain in sight to lose half of, yet
    far under every level it held for a seventh of the run (``trend.settled_below`` with
    ``recovered``; seeded AR(1) noise stays quiet in test_false_alarm_rate_on_flat_noise).
    Its steps start at 17 (a log kept from a later step on)."""
    rng = np.random.default_rng(9)
    plateau = 0.75 + 0.1 * rng.normal(size=100)
    plateau[[10, 35, 60, 80]] = [-2.7, -11.0, -1.35, -0.97]
    broken = np.r_[plateau, -40 + 3 * rng.normal(size=21), 0.8 + 0.1 * rng.normal(size=29)]
    event = rules.reward_degradation("episode_return", np.arange(150) + 17, broken)
    assert event is not None and event.onset == 117 and event.evidence["recovered_at"] == 138


def noise(rng, n: int, kind: str) -> np.ndarray:
    """``n`` points of unit noise: white, or AR(1) with rho 0.9 (``kind`` "ar1")."""
    e = rng.normal(size=n)
    if kind == "ar1":
        for i in range(1, n):
            e[i] = 0.9 * e[i - 1] + e[i] * np.sqrt(1 - 0.81)
    return e


def test_headless_decline_from_the_first_level():
    """A run at its best from the start and then lower by more than half: no gain to lose,
    so it must lose HEADLESS_SHARE of the peak's size."""
    rng = np.random.default_rng(2)
    v = np.r_[np.full(40, 0.46), np.full(40, 0.2)] + 0.02 * rng.normal(size=80)
    d = trend.decline(np.arange(80), v, 0.5)
    assert d.start is None and 38 <= d.onset <= 40
    assert trend.decline(np.arange(80), np.r_[np.full(40, 0.46), np.full(40, 0.36)]
                         + 0.02 * rng.normal(size=80), 0.5) is None


def test_fall_start_of_an_entropy_collapse():
    """Entropy holds 1.0, halves at every step from 20 to 29, sits at 0.001: the threshold
    (a fifth of 1.0) is crossed at 22, the fall started at 20."""
    v = np.r_[np.full(20, 1.0), 0.5 ** np.arange(1, 11), np.full(30, 0.001)]
    v = v * (1 + 0.01 * np.tile([1, -1], 30))
    event = rules.entropy_collapse("entropy", np.arange(60), v)
    assert (event.onset, event.evidence["below_from"]) == (20, 22)


def test_value_loss_blowup_needs_the_return_to_fall():
    steps = np.arange(60)
    vl = np.r_[np.full(30, 1.0), np.full(30, 30.0)] * (1 + 0.1 * np.tile([1, -1], 30))
    falling = (steps, np.r_[np.linspace(0, 10, 25), np.full(5, 10.0), np.full(30, 2.0)])
    rising = (steps, np.r_[np.linspace(0, 10, 30), np.linspace(10, 20, 30)])
    event = rules.value_loss_divergence("train/value_loss", steps, vl, partner=falling)
    assert (event.code, event.onset, event.severity) == ("loss_divergence", 30, "error")
    assert event.evidence["return_fall_step"] == 30
    assert rules.value_loss_divergence("train/value_loss", steps, vl, partner=rising) is None
    assert rules.value_loss_divergence("train/value_loss", steps, vl) is None     # 30x < 100x


def test_value_loss_jump_the_return_does_not_explain():
    """A critic's loss that jumps 1000x while the return holds has diverged; the same jump
    with the return 40x larger (a squared error: 1600x) is the loss following the task."""
    steps = np.arange(60)
    vl = np.r_[np.full(30, 1.0), np.full(30, 1000.0)] * (1 + 0.1 * np.tile([1, -1], 30))
    flat = (steps, 10 + 0.1 * np.tile([1, -1], 30))
    event = rules.value_loss_divergence("train/value_loss", steps, vl, partner=flat)
    assert (event.code, event.onset, event.severity) == ("loss_divergence", 30, "error")
    assert event.evidence["return_growth"] == pytest.approx(1.0, abs=0.02)
    grown = (steps, np.r_[np.full(30, 10.0), np.full(30, 400.0)])
    assert rules.value_loss_divergence("train/value_loss", steps, vl, partner=grown) is None


def test_a_value_loss_that_climbs_far_past_its_returns_has_diverged():
    """A DDPG critic whose TD error climbs 20 -> 1e6 over the run, a few x per stretch and
    never in one 100x jump, while the return stays at 1-5: its Q estimates diverged (the
    real SB3 DDPG UAV-coverage run of the tuning half, 22 -> 1.3e6, was missed). The same
    climb with a return that grew 1000x (a squared error: 1e6x) follows the task."""
    rng = np.random.default_rng(9)
    steps = np.arange(100) * 1000
    climb = np.geomspace(20, 1e6, 100) * np.exp(0.3 * rng.normal(size=100))
    flat = (steps, 3 + rng.normal(size=100))
    event = rules.value_loss_divergence("train/critic_loss", steps, climb, partner=flat)
    assert (event.code, event.severity) == ("loss_divergence", "error")
    assert event.onset <= event.evidence["above_from"] < steps[50]
    assert "return's size changed" in event.title
    grown = (steps, np.geomspace(1, 1000, 100))
    assert rules.value_loss_divergence("train/critic_loss", steps, climb, partner=grown) is None


def test_a_td_loss_logged_as_loss_that_grows_with_its_returns_has_not_diverged():
    """SB3's DQN and PyMARL log their TD loss as ``loss``. A PyMARL QMIX run on Overcooked
    (tuning half, healthy) climbs 0.09 -> 15 (155x) as its Q values grow with a return that
    started at 0: a squared error of larger returns (here 1500x). The same loss jumping
    1000x at its plateau, and a climb while the return stays flat, have diverged."""
    rng = np.random.default_rng(3)
    steps = np.arange(120) * 1000
    climb = np.r_[np.geomspace(0.01, 15, 60), np.full(60, 15.0)] * np.exp(0.2 * rng.normal(size=120))
    learned = (steps, np.r_[np.zeros(40), np.linspace(0, 600, 40), np.full(40, 650.0)])
    flat = (steps, 3 + rng.normal(size=120))
    assert rules.loss_divergence("loss", steps, climb, partner=learned) is None
    event = rules.loss_divergence("loss", steps, climb, partner=flat)
    assert (event.code, event.severity) == ("loss_divergence", "error")
    jumped = climb * np.r_[np.ones(90), np.full(30, 1000.0)]
    event = rules.loss_divergence("loss", steps, jumped, partner=learned)
    assert (event.code, event.severity, event.onset) == ("loss_divergence", "error", steps[90])
    assert "return's size changed" in event.title
    assert rules.loss_divergence("loss", steps, climb) is not None          # no return: 100x


def test_the_real_ddpg_critic_divergence_is_found_at_its_window():
    from test_detectors_onset import tensorboard

    (ls, lv), (rs, rv) = tensorboard("sb3tb_ddpg_uavcoverage_critic_divergence", "train/critic_loss",
                                     "rollout/ep_rew_mean")
    event = rules.value_loss_divergence("train/critic_loss", ls, lv, partner=(rs, rv))
    assert event.severity == "error" and 40000 <= event.onset <= 50000     # the protocol's window


def test_a_critic_back_at_its_untrained_loss_has_diverged():
    """A value loss starts high (the critic is untrained: 100 for 10 rows), is fitted down
    to 0.01, and later jumps to 10 (1000x) while the return falls: still under its start.
    Measured against its untrained start it had "not risen"; against the levels held since
    it was fitted it diverged (the real SB3 PPO Reacher run of the tuning half, 3.92 ->
    0.005 -> ~1 while its return slid, was missed that way). With the return unchanged the
    jump is judged as before, against every level held (``_unexplained_jump``): counting
    from the lowest there too found 4 more x1000 jumps injected into healthy tune logs but
    raised two false alarms on real problem logs (a value loss of 1e-22 rising to 3e-7; a
    260x jump in a log's last 4 rows, decaying, during a transient return dip)."""
    rng = np.random.default_rng(5)
    steps = np.arange(90)
    fitted = np.r_[np.full(10, 100.0), np.geomspace(100, 0.01, 15), np.full(65, 0.01)] * np.exp(0.05 * rng.normal(size=90))
    vl = np.where(steps >= 60, 1000 * fitted, fitted)
    falling = (steps, np.r_[np.linspace(0, 10, 30), np.full(30, 10.0), np.full(30, 3.0)] + 0.1 * rng.normal(size=90))
    event = rules.value_loss_divergence("train/value_loss", steps, vl, partner=falling)
    assert (event.code, event.onset, event.severity) == ("loss_divergence", 60, "error")
    assert event.evidence["return_fall_step"] == 60
    assert rules.value_loss_divergence("train/value_loss", steps, fitted, partner=falling) is None


def test_a_loss_without_a_low_level_diverges_by_its_size():
    """A signed policy loss (+-0.01) and a GRPO loss that holds exact zeros before its KL
    term grows: neither has a low level to rise 100x from; x1000 from row 60 is found at
    row 60 by the size of the loss, and the healthy series stay quiet."""
    rng = np.random.default_rng(4)
    steps = np.arange(100)
    signed = 0.01 * rng.normal(size=100)
    zeros = np.r_[np.zeros(40), 0.001 * rng.random(60)]
    for healthy in (signed, zeros):
        assert rules.loss_divergence("loss", steps, healthy) is None
        event = rules.loss_divergence("loss", steps, np.where(steps >= 60, 1000 * healthy, healthy))
        assert (event.code, event.onset, event.severity) == ("loss_divergence", 60, "error")


def test_real_grpo_loss_times_1000_is_found_at_its_step():
    """unsloth GSM8K GRPO (tuning half, healthy): loss 0 for 47 steps, then 1e-4..5e-3."""
    log = json.loads((REAL / "trl_grpo_unsloth_gsm8k" / "trainer_state.json").read_text())["log_history"]
    steps, loss = map(np.array, zip(*[(r["step"], r["loss"]) for r in log if "loss" in r]))
    assert rules.loss_divergence("loss", steps, loss) is None
    event = rules.loss_divergence("loss", steps, np.where(steps >= steps[150], 1000 * loss, loss))
    assert event is not None and event.onset == steps[150]


def test_noisy_lengths_are_judged_on_their_level_from_a_level_held():
    """Mean lengths of a few completions jump by +-50% row to row: x5 from row 60 is found
    at row 60 though single rows dip back under 3x; a low first row (17 before rows around
    60) is no level held, so the series itself is no explosion."""
    rng = np.random.default_rng(8)
    steps = np.arange(100)
    length = 60 * np.exp(0.45 * rng.normal(size=100))
    event = rules.length_change("completions/mean_length", steps, np.where(steps >= 60, 5 * length, length))
    assert (event.code, event.onset) == ("length_explosion", 60)
    assert rules.length_change("completions/mean_length", steps, np.r_[17.0, length[1:]]) is None


def test_real_value_loss_times_1000_is_found_at_its_step():
    """racer (tuning half, healthy): its value loss x1000 from row 300 on, the return as logged."""
    steps, vl = sb3("sb3_ppo_racer", "train/value_loss")
    partner = sb3("sb3_ppo_racer", "rollout/ep_rew_mean")
    vl = np.where(np.arange(len(vl)) >= 300, 1000 * vl, vl)
    event = rules.value_loss_divergence("train/value_loss", steps, vl, partner=partner)
    assert event is not None and event.onset == steps[300]


def write(directory, metrics: dict):
    with EventWriter(directory, "r", capture_env=False) as w:
        for step in range(max(len(v) for v in metrics.values())):
            w.log(step, {k: v[step] for k, v in metrics.items() if step < len(v)})
    return open_store(directory)


def test_health_reads_eval_returns_and_pairs_the_value_loss(tmp_path):
    rng = np.random.default_rng(3)
    _, ret = learned_then_lost(100, 1.0, rng)
    vl = np.r_[np.full(60, 1.0), np.full(40, 40.0)]
    store = write(tmp_path, {"eval/mean_reward": ret.tolist(), "rollout/ep_rew_mean": ret.tolist(),
                             "train/value_loss": vl.tolist()})
    found = {(f.code, f.metric): f for f in health.HealthAnalyzer().run(store).findings}
    assert found[("reward_degradation", "eval/mean_reward")].steps[0] == \
        found[("reward_degradation", "rollout/ep_rew_mean")].steps[0]
    assert found[("loss_divergence", "train/value_loss")].steps[0] == 60


# ------------------------------------------------------------------ real logs (tuning half)
@pytest.mark.parametrize("name, onset, below", [
    ("sb3_dqn_reward_collapse_model2", 27987, 33248),     # peak 109 at 25174, falls to 0
    ("sb3_dqn_cartpole_loss_divergence", 63322, 63436),   # 63 -> the 9.4 floor of CartPole
])
def test_real_return_declines_are_found_at_the_fall(name, onset, below):
    d = trend.decline(*sb3(name, "rollout/ep_rew_mean"), 0.5)
    assert (int(d.r.steps[d.onset]), int(d.r.steps[d.tail])) == (onset, below)


@pytest.mark.parametrize("name", ["sb3_ppo_grid_treasure", "sb3_ppo_parking", "sb3_ppo_racer",
                                  "sb3_ppo_mujoco_kl_clip_early",
                                  "sb3_ppo_biosearch", "sb3_ppo_meal_planner", "sb3_ppo_mujoco_solved"])
def test_real_healthy_returns_stay_quiet(name):
    """Recovered dips (grid treasure 4013 -> 1503 -> 3510; mujoco 1491 -> 956 -> 1623), noisy
    rises with dips (parking), rises to a ceiling. (Flappy's return, listed here until
    session 20, is not a healthy one: after its entropy collapse it sits at 39 with bursts
    to 175, and from 1.1M holds ~140 but for dips back to 39; the one of 80 rows at 39 from
    1.36M, under a quarter of its gain for 10% of the run, is now a recovered decline. The
    truth lists that part of the log as bursts, benign, so the benchmark scores no false
    alarm.)"""
    assert rules.reward_degradation("r", *sb3(name, "rollout/ep_rew_mean")) is None
    for column in ("eval/mean_reward",):
        try:
            steps, values = sb3(name, column)
        except (KeyError, ValueError):
            continue
        if len(values) >= 6:
            assert rules.eval_degradation("r", steps, values) is None


def test_real_per_episode_returns_stay_quiet():
    """18254 single-episode returns of a parking task: -1029 at first, 230-360 for most."""
    assert trend.decline(*monitor("sb3_monitor_ppo_parking"), 0.5) is None


@pytest.mark.parametrize("name", ["sb3_ppo_biosearch", "sb3_a2c_flappy_entropy_collapse",
                                  "sb3_ppo_grid_treasure", "sb3_ppo_racer"])
def test_real_value_losses_that_follow_the_return_stay_quiet(name):
    """biosearch's value loss grows 0.5 -> 37 with the return; flappy's bursts to 4894 with
    the return's bursts; grid treasure and racer are spiky."""
    steps, vl = sb3(name, "train/value_loss")
    partner = sb3(name, "rollout/ep_rew_mean")
    assert rules.value_loss_divergence("train/value_loss", steps, vl, partner=partner) is None


def test_real_entropy_collapse_onset_is_the_start_of_the_fall():
    """jobshop: entropy 1.376 -> 0.11 nats; its last row inside the band of the held level
    (1.361 +- 3 sigma of its row-to-row noise) is 8192, so the fall starts at 10240 (the
    onset protocol's window start); a fifth of the held level is crossed at 28672."""
    steps, loss = sb3("sb3_ppo_jobshop_entropy", "train/entropy_loss")
    event = rules.entropy_collapse("entropy", steps, -loss)
    assert (event.onset, event.evidence["below_from"]) == (10240, 28672)


def crash_relearn_crash(noise, rng):
    """200 points: up to 10 by 10, held to 50, crash to 0 held to 70, relearn along a
    ramp to 20 by 90, held to 160, crash to 0 for good."""
    t = np.arange(200)
    shape = np.interp(t, [0, 10, 50, 51, 70, 90, 160, 161, 199], [0, 10, 10, 0, 0, 20, 20, 0, 0])
    return t, shape + noise * rng.normal(size=len(t))


def test_a_degradation_then_a_collapse_from_the_level_it_held_are_two_events():
    """A real MARLlib VDPPO return (4-agent Ant, tuning half): ~540, falls from 1522821 to a
    noisy level near 213 (single rows 22-518) held for ~70 iterations, then drops below its
    first value from 3873935 and stays. Two events: the degradation, and the second fall
    from the level it held, at the row of the drop (the noisy level's own low rows before
    it, 21.8 and 70.7, are not the drop: they lie above its midpoint, and a level that noisy
    has no lowest tenth to read). The same fall in one slide is one event
    (``test_one_decline_is_one_event``)."""
    folder = REAL / "marllib_vdppo_4agentant_degradation_then_collapse"
    with open(next(folder.glob("*.csv")), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    steps = np.array([int(float(r["step"])) for r in rows])
    values = np.array([float(r["reward"]) for r in rows])
    first, second = rules.reward_declines("r", steps, values)
    assert first.onset == 1522821 and second.onset == 3873935
    assert second.evidence["after_fall_from_step"] == 1522821 and second.evidence["now"] < values[0]


def test_a_later_stage_that_falls_a_slight_share_of_the_reward_is_no_second_event():
    """A reward that learned 0 -> 10 and fell to 5 for good, then drifts to 4.85 (3% of its
    size) with a noise of 0.01: the drift passes its significance test many times over, and
    was "all it had gained is lost", an error after the fall; a second fall to 3.5 is one.
    A later stage is a decline like any other: a fall SLIGHT of the reward's size is the
    wander of the level it held (a ManiSkill PushCube reward read from a fifth of its run
    on, 0.353 -> 0.346 in its last rows)."""
    rng = np.random.default_rng(5)
    t = np.arange(300)
    shape = [0, 10, 10, 5, 5]
    drift = np.interp(t, [0, 50, 150, 155, 250, 252, 299], [*shape, 4.85, 4.85]) + 0.01 * rng.normal(size=300)
    assert [e.onset for e in rules.reward_declines("r", t, drift)] == [151]
    fall = np.interp(t, [0, 50, 150, 155, 250, 252, 299], [*shape, 3.5, 3.5]) + 0.01 * rng.normal(size=300)
    assert [(e.onset, e.severity) for e in rules.reward_declines("r", t, fall)] == [(151, "warning"), (251, "error")]


def test_a_decline_past_its_midpoint_only_at_its_last_row_starts_where_it_fell():
    """A PPO BipedalWalker per-episode reward (tuning half, healthy: solved, 290 on an
    episode that finishes, ~150 or less on one that falls), read over the middle 60% of its
    steps: its last ten rows mix the two and end on 190, so the move from its level was
    past the midpoint for good only at the last row, and the decline was reported "from
    step 2396800" with a state of that one row. A move that passed its midpoint for good
    only at the state's last point showed no state there: the onset is where the fall
    started, and the state keeps its rows."""
    rows = list(csv.DictReader((REAL / "ppopytorch_gae_bipedalwalker_solved" / "PPO_BipedalWalker-v3_log_0.csv")
                               .open(encoding="utf-8")))
    steps = np.array([int(float(r["timestep"])) for r in rows])
    values = np.array([float(r["reward"]) for r in rows])
    lo, hi = steps.min(), steps.max()
    keep = (steps >= lo + 0.2 * (hi - lo)) & (steps <= lo + 0.8 * (hi - lo))
    (event,) = rules.reward_declines("reward", steps[keep], values[keep])
    assert event.onset < event.last == steps[keep][-1] and event.onset <= event.evidence["below_line_from"]


def test_a_burst_before_a_collapse_is_no_first_stage_of_it():
    """A PyMARL QMIX test return (CAMAS grid-small, tuning half; 32 test episodes a row)
    at 10-20, three rows at 85 (2328425-2348576), 20-40 for 1.3M steps with single rows up
    to 72, then -9 in one logged step (3672592) to the end. The fall from the three rows at
    85 was read as a first stage ("fell from 85.57 from step 2358780") and the real
    collapse as a second one after it, so the collapse's onset was scored 1.3M steps early.
    The first stage is the burst coming back to the level the run held before it: one
    decline, at the step to -9, from the level held there."""
    steps, values = tensorboard_tag("pymarltb_qmix_camas_grid_small_reward_collapse", "test_return_mean")
    found = rules.reward_declines("test_return_mean", steps, values)
    assert [(e.onset, e.severity) for e in found] == [(3672592, "error")]
    assert "after_fall_from_step" not in found[0].evidence and 10 < found[0].evidence["peak"] < 20


def test_a_run_that_crashes_relearns_and_crashes_again_has_two_declines():
    t, v = crash_relearn_crash(0.3, np.random.default_rng(1))
    events = rules.reward_declines("return", t, v)
    assert [e.onset for e in events] == [51, 161]
    assert events[0].evidence["recovered_at"] is not None and events[1].evidence["recovered_at"] is None


def test_a_smooth_recovery_closes_the_low_stretch():
    """The relearning ramp is cut into regimes of a point or two: the low stretch still
    ends where the run is back above the line (5 of 10, crossed at point 75), not at the
    next long regime."""
    t, v = crash_relearn_crash(0.05, np.random.default_rng(2))
    first = trend.recovered_declines(t, v, rules.DEGRADATION_SHARE)[0]
    assert first.onset == 51 and 74 <= first.end <= 78


def test_one_decline_is_one_event():
    t, v = learned_then_lost(300, 0.5, np.random.default_rng(3))
    assert len(rules.reward_declines("return", t, v)) == 1



def slide_and_slow_climb(bottom: float, seed: int):
    """400 points: learns 1 -> 10 over 80, holds 10 to 200, slides to ``bottom`` over 10
    points and climbs back along a 90-point ramp, then holds 10 (noise 0.3)."""
    rng = np.random.default_rng(seed)
    v = np.r_[np.linspace(1, 10, 80), np.full(120, 10.0), np.linspace(10, bottom, 11)[1:],
              np.linspace(bottom, 10, 90), np.full(100, 10.0)]
    return np.arange(len(v)), v + 0.3 * rng.normal(size=len(v))


def test_a_slide_past_half_the_gain_and_a_slow_climb_back_is_one_recovered_decline():
    """A 100-episode rolling mean that slides from its plateau past half of its gain (to
    4.5 of 1 -> 10) and climbs back slowly is under that line for ~4% of the run, but under
    a quarter of the gain for ~13%: the stretch a real SAC return (a grasping task, 1009 ->
    453 and back over 3.5M steps) spent broken. Found from the slide in every seed; the
    old rule (the stretch measured under half the gain only) found none of the 10."""
    onsets = [getattr(rules.reward_degradation("r", *slide_and_slow_climb(4.5, seed)), "onset", None)
              for seed in range(10)]
    assert all(o is not None and 200 <= o <= 202 for o in onsets), onsets


def test_a_slide_that_stops_short_of_half_the_gain_is_not_a_decline():
    """The same slide to 6 (under a quarter of the gain lost for as long, never past half
    of it): a sag, not a decline."""
    for seed in range(10):
        assert rules.reward_degradation("r", *slide_and_slow_climb(6.0, seed)) is None


def test_a_dip_inside_a_noisy_plateau_does_not_stretch_a_later_collapse(tmp_path, monkeypatch):
    """A real QMIX test return (tuning half) with its first tenth cut away, as a resumed
    run's log is: a noisy plateau (12.6-18.6) with a three-evaluation dip to 13.7 at step
    115765, back at 16.5 for five evaluations, then the labelled collapse to ~7 from step
    155945. With so little of the rise left, a quarter of the gain lies inside the
    plateau's noise; a stretch measured under it must not run from the dip through the
    level back at the plateau into the collapse (it did: reported from 115765)."""
    from rldk.converters import ingest

    monkeypatch.setenv("RLDK_CACHE_DIR", str(tmp_path / "cache"))
    name = "epymarltb_qmix_smaller_corridor_s71115036_collapse_recovery"
    source = next((REAL / name).glob("events.out.tfevents.*"))
    store = ingest(str(source), adapter="tensorboard")
    series = store.run(store.run_ids[0]).metric("test_summed_return_mean")
    steps, values = series["step"].to_numpy(), series["value"].to_numpy()
    keep = steps >= steps[0] + 0.1 * (steps[-1] - steps[0])
    events = rules.reward_declines("r", steps[keep], values[keep])
    assert [e.onset for e in events] == [155945]



def test_the_points_rule_stays_quiet_on_wandering_flat_noise():
    """Flat AR(1) noise of rho 0.9 (a 100-episode rolling mean that wanders, never gains):
    the point test judged its gain against the step-to-step noise only and fired on 106 of
    200 seeded series of 300 points; judged against the noise and wander of two levels
    (``level_se``) it fires on 9 of 200. Here: 40 other seeded series."""
    rng = np.random.default_rng(17)
    fired = sum(rules.reward_degradation("r", np.arange(300), noise(rng, 300, "ar1")) is not None
                for _ in range(40))
    assert fired <= 2


def test_the_wander_of_a_level_does_not_shrink_with_the_distance():
    """The wander between two levels far apart is at least that between two levels
    closer together (for an AR(1) the variance of a difference grows with the lag; for a
    random walk, in proportion): measured at MIN_REFERENCE and doubling lags up to the
    distance, the largest counts. Measured at the distance alone, the robust estimate
    came out near zero on some flat AR(1) series of rho 0.5 (one of them: 2.63 at lag 3,
    0.98 at lag 12 against 1.05 that white noise gives). On 200 seeded flat series of 120
    points each (three seeds) the rule fired on 24, 33 and 34 measured at the distance,
    on 19, 28 and 25 with the largest: still about one in eight, mildly correlated noise
    that passes for white (``level_se``) being the rest."""
    rng = np.random.default_rng(31)
    fired = 0
    for _ in range(200):
        e = rng.normal(size=120)
        for i in range(1, 120):
            e[i] = 0.5 * e[i - 1] + e[i] * np.sqrt(1 - 0.25)
        fired += trend.decline(np.arange(120), e, 0.5) is not None
    assert fired <= 28, fired


def test_a_steady_learning_trend_is_not_wander():
    """Real SB3 A2C CartPole (tuning half, TensorBoard): rollout/ep_rew_mean climbs about 5 a
    row from 20 to 194 (500-22500), holds, collapses to 11 by 27500 and relearns. The
    climb's differences over 10 rows (~45) are its trend: taken for wander they made the
    collapse "not significant", and only the run's second collapse (82000) was found. The
    two-sample variance sees no wander in a steady climb."""
    from rldk.converters import ingest

    store = ingest(REAL / "sb3tb_a2c_cartpole_double_collapse", "tensorboard")
    steps, values = next(
        (s.steps, s.values) for s in [__import__("rldk.analyzers._series", fromlist=["x"]).load_series(
            __import__("rldk.analyzers._series", fromlist=["x"]).Source(store, store.run_ids[0]),
            ["rollout/ep_rew_mean"])["rollout/ep_rew_mean"]])
    ramp = values[steps <= 22500]
    y = ramp - ramp.mean()
    assert trend._allan_var(y, 10) < 0.05 * trend._lag_var(y, 10)
    onsets = [e.onset for e in rules.reward_declines("r", steps, values)]
    assert 26000 in onsets and any(o >= 82000 for o in onsets)


def test_a_crash_at_the_end_far_below_an_earlier_sag_is_a_decline_though_shorter():
    """A DDPG return (a real Spinning Up Ant run of the tuning half) learns to ~600, sags
    to ~-250 for 120 epochs and relearns, holds ~650, then crashes to ~-1100 for the last
    40 epochs of the log. The final stretch is shorter than the sag the run came back
    from, but it never was that deep before: a decline, from where the crash started. The
    same log ending in a sag no deeper than the first stays quiet: the run has been there
    and came back."""
    rng = np.random.default_rng(2)
    learn, sag, back = np.linspace(-100, 600, 60), np.full(120, -250.0), np.linspace(-250, 650, 40)
    plateau = np.full(300, 650.0)
    crash = np.r_[learn, sag, back, plateau, np.full(40, -1100.0)]
    v = crash + 150 * rng.normal(size=len(crash))
    events = rules.reward_declines("episode_return", np.arange(len(v)), v)
    assert any(e.onset >= 515 and e.last == len(v) - 1 for e in events)
    again = np.r_[learn, sag, back, plateau, np.full(40, -250.0)] + 150 * rng.normal(size=len(crash))
    assert not any(e.onset >= 515 for e in rules.reward_declines("episode_return", np.arange(len(again)), again))


def test_a_flat_return_that_slides_away_is_reported_where_the_slide_left_its_level():
    """A TD3 drone (a real wandb run of the tuning half): the random policy's return holds
    -81.5 +- 0.5 for 140 rows, then, once training starts, slides -86, -97, -106, ... to
    about -250 and stays. No gain to lose (``settled_below``); the slide's points are
    regimes of a point or two, so the stretch opens at its bottom and the line (the lowest
    level held before it) is the slide's own: the onset is the first point off the level,
    not the first held regime down there."""
    rng = np.random.default_rng(4)
    v = np.r_[np.full(140, -81.5) + 0.5 * rng.normal(size=140), -81.5 - 10.0 * np.arange(1, 15),
              np.full(60, -250.0) + 8.0 * rng.normal(size=60)]
    event = rules.reward_degradation("episode_return", np.arange(len(v)), v)
    assert event is not None and event.onset == 140


def test_a_real_ddpg_crash_is_found_from_the_row_after_its_last_at_the_plateau():
    """Spinning Up DDPG on Ant (tuning half): a 101-epoch plateau at ~690, two single rows
    just under its band (-58, -125), one more back at it (658 at 1091999), then -1242 and
    the crash to the end of the log, 40 epochs, deeper than anything the run came back
    from. The onset is the row after the last one at the plateau (the onset protocol's
    step event), though PELT cuts the wobble before it as a regime of its own."""
    with open(REAL / "spinup_ddpg_ant_collapse_critic_divergence" / "progress.txt", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    steps = np.array([int(r["TotalEnvInteracts"]) for r in rows])
    v = np.array([float(r["AverageEpRet"]) for r in rows])
    events = rules.reward_declines("episode_return", steps, v)
    assert any(e.onset == 1093999 and e.last == steps[-1] for e in events)


def tensorboard_return(name: str):
    """``(steps, values)`` of the episode return of a tuning-half TensorBoard log, as
    ``rldk import`` reads it (the built-in names: no metric map)."""
    from rldk.converters import ingest

    (run,) = ingest(str(next((REAL / name).glob("events.out.tfevents.*"))), adapter="tensorboard").runs()
    series = run.metric("episode_return")
    return series["step"].to_numpy(), series["value"].to_numpy()


def test_a_return_that_slides_from_its_plateau_through_a_stage_starts_at_the_plateau():
    """rl_games PPO, Crazyflie navigation (a real run of the tuning half): its return held
    ~68k (52.4M-57.5M frames) under an earlier high of 78.6k, slid on every row from
    57.6M to a stage of 36-40k it never came back from, and fell on to 12k at the end.
    The return wanders so much that only the final fall is significantly off the peak;
    the fall started where the slide left the plateau, not at the second stage
    (62.2M, where the series crossed half its gain)."""
    steps, v = tensorboard_return("rlgamestb_ppo_crazyflie_nav_late_reward_degradation")
    first = rules.reward_declines("episode_return", steps, v)[0]     # then the stage's own fall
    assert 57_000_000 < first.onset < 58_261_504 and first.last == steps[-1], first


def test_a_noise_dip_just_before_a_jump_is_not_the_start_of_the_fall():
    """A plateau with one low point just before the step down: the fall starts at the
    step (a dip under the band is noise there, not a slide)."""
    rng = np.random.default_rng(3)
    v = np.r_[np.linspace(0, 110, 30), np.full(20, 110.0), np.full(100, 100.0), np.full(50, 10.0)]
    v = v + rng.normal(size=len(v))
    v[149] = 95.0
    (event,) = rules.reward_declines("episode_return", np.arange(len(v)), v)
    assert event.onset == 150


@pytest.mark.xfail(strict=True, reason="session 54: with the wander of a rolling mean no longer grown with "
                   "the square of the lag (level_se), the plateau's regime at 357 (30 rows) is off the "
                   "early high of 498 by its significance and the fall is placed from 607197, 2.7% of the "
                   "run before the protocol window; the plateau (236-430, median 316) is not yet read as "
                   "one level held")
def test_a_wandering_plateau_under_an_earlier_high_is_no_part_of_the_fall():
    """A2C on Ant (a real rl-zoo monitor of the tuning half): the 100-episode rolling
    return learns to 503, wanders over 236-430 for 360k steps, then falls from 623745. The
    levels the plateau held under its early high are not a slide: the fall starts in the
    truth's window (623745-643058), not where the plateau first dipped under that high."""
    from rldk.converters import ingest

    (run,) = ingest(str(REAL / "rlzoo_monitor_a2c_ant_collapse"), adapter="sb3").runs()
    series = run.metric("episode_return")
    events = rules.reward_declines("episode_return", series["step"].to_numpy(), series["value"].to_numpy())
    assert any(623745 <= e.onset <= 643058 for e in events), events


def tensorboard_tag(name: str, tag: str):
    """``(steps, values)`` of one TensorBoard tag of a tuning-half log, as imported."""
    from rldk.converters import ingest

    (run,) = ingest(str(next((REAL / name).glob("events.out.tfevents.*"))), adapter="tensorboard").runs()
    series = run.metric(tag)
    return series["step"].to_numpy(), series["value"].to_numpy()


@pytest.mark.parametrize("name, window", [
    # return 202 at its peak, a plateau of 184, falling in stages to 32 and ending at 63
    ("sb3tb_recurrentppo_ld_lunarlander_late_reward_degradation", (226944, 252032)),
    # a plateau of 668 falling to a median of 449 over the last fifth of the run
    ("sb3tb_ppo_racetrack_late_reward_degradation", (351616, 370944)),
])
def test_real_returns_that_lose_a_quarter_of_their_gain_to_the_end(name, window):
    """Two real SB3 runs of the tuning half whose return gave back 28-33% of its gain
    (measured from the lowest level held before the peak) and ended there: a degradation
    (MODERATE_SHARE), found inside the truth's window."""
    steps, v = tensorboard_return(name)
    event = rules.reward_degradation("episode_return", steps, v)
    assert event is not None and window[0] <= event.onset <= window[1], event
    assert event.evidence["share"] == rules.MODERATE_SHARE


def test_a_negative_return_at_its_best_from_the_start_that_ends_far_below_zero():
    """A penalty-shaped return at its best on its first rows (-1.05) that slides and ends
    at a median of -25, its noise growing tenfold as it falls (a real ML-Agents maze run
    of the tuning half: no level of the fall lies below every level held before it, and
    there is no gain to lose): a decline once it sits twice as far below zero. A
    negative return that only wanders around its level stays quiet."""
    t, v = tensorboard_tag("mlagentstb_ppo_maze_gail_curiosity_extrinsic_reward_collapse",
                           "Environment/Cumulative Reward")
    event = rules.reward_degradation("episode_return", t, v)
    assert event is not None and 160000 <= event.onset <= 215000 and event.evidence["now"] < -20, event
    assert trend.decline(t, v, rules.DEGRADATION_SHARE) is None      # only when asked below_zero
    rng = np.random.default_rng(4)
    flat = -1.05 + 0.1 * rng.standard_normal(len(t))
    assert rules.reward_degradation("episode_return", t, flat) is None


def test_short_return_that_loses_most_of_its_gain_over_its_last_rows():
    """A test return of 17 evaluations (a real Tianshou PPO run of the tuning half) that
    climbs -868 -> -90 and gives back 70% of the gain over its last four: under half the
    gain at only two rows, under a quarter at three: a moderate decline on points, from
    the first row of the fall. One row down at the end is not yet a state."""
    steps, v = tensorboard_tag("tianshoutb_ppo_crypto_valid_late_degradation", "test/reward")
    event = rules.reward_degradation("episode_return", steps, v)
    assert event is not None and 1304576 <= event.onset <= 1404928, event
    assert event.evidence["share"] == rules.MODERATE_SHARE
    assert rules.reward_degradation("episode_return", steps[:-2], np.r_[v[:-3], v[-1]]) is None


def test_a_long_flat_integer_score_has_no_moderate_decline_on_points():
    """A flat per-episode game score (integers -21..-15 around -20.2, as a Pong agent that
    never learns logs it) over thousands of episodes: its highest 5-episode median is an
    extreme many windows reach by chance, and returning from it to the series' own level
    "loses a quarter of the gain". Judged on points at a quarter only up to
    MODERATE_POINTS_ROWS (1000) rows: on 20 seeded series of 7600 rows it fired on 11
    before, on none now (2000 rows: 4 -> 0)."""
    for n in (2000, 7600):
        for seed in range(20):
            v = -21 + np.random.default_rng(seed).binomial(6, 0.13, size=n).astype(float)
            assert rules.reward_degradation("reward", np.arange(n) * 1000, v) is None, (n, seed)


def test_short_recovered_declines_need_twice_the_evidence():
    """A return at its ceiling that falls to under half its gain for 5-10% of the run and
    comes back: an event when the drop is far outside the noise (a REINFORCE evaluation at
    the CartPole cap, 500 -> 141-321 for 6 of 100 evaluations; an rl_games FrankaCabinet
    return 9400 -> 900 for 35 of 500 epochs), not when it is barely significant (the
    grid-treasure dip of test_real_healthy_returns_stay_quiet, z 3.5); shorter than 5%, down
    to 2.5% (CRASH_STRETCH), only a crash past CRASH_SHARE of all it had gained, in a log
    that starts with the run (a Spinning Up DDPG Ant return, 612 -> -339 for 20 of 586
    epochs, under its untrained -122: ``test_a_crash_past_all_it_gained_is_an_event``);
    shorter, never."""
    steps, v = tensorboard_tag("reinforce_cartpole_eval_dip_recovery", "step_rewards_CartPole-v1")
    (d,) = trend.recovered_declines(steps, v, rules.DEGRADATION_SHARE)
    assert (int(steps[d.onset]), int(steps[d.end])) == (13999, 18999) and d.z >= 2 * trend.SIGNIFICANCE
    steps, v = tensorboard_tag("rlgamestb_ppo_frankacabinet_double_collapse", "rewards/step")
    assert any(753664000 <= int(steps[d.onset]) <= 757760000
               for d in trend.recovered_declines(steps, v, rules.DEGRADATION_SHARE))
    rng = np.random.default_rng(5)
    t = np.arange(400)
    rise = np.minimum(t / 100, 1) * 10
    # 7%, 4% (a crash to the untrained level; one that keeps 40% of the gain) and 2% of the run
    for length, depth, found in ((28, 8.0, True), (16, 9.0, True), (16, 6.0, False), (8, 9.5, False)):
        dip = rise - depth * ((t >= 250) & (t < 250 + length)) + 0.6 * rng.normal(size=400)
        assert bool(trend.recovered_declines(t, dip, 0.5)) == found, (length, depth)
    # an untrained policy's early level of 1 that dips to 0.2 for 7% of the run, before the
    # run learns to 10: short, and small beside what the run learned (a real SB3 CarRacing
    # return's early wiggle, -1104 -> -1205, once the injection benchmark cut its later
    # trend), so no event; nor is a long one (12%: under LEARNED_SHARE of the gain the run
    # held); the same dip when the early level is 10 is, and so is a long dip of a level of 4
    early = np.where(t < 20, 0.0, 1.0) - 0.8 * ((t >= 40) & (t < 68)) + np.clip((t - 100) / 100, 0, 1) * 9
    assert trend.recovered_declines(t, early + 0.05 * rng.normal(size=400), 0.5) == []
    assert trend.recovered_declines(t, np.where(t < 100, 10 * early, 10.0) + 0.05 * rng.normal(size=400), 0.5)
    longer = early - 0.8 * ((t >= 68) & (t < 90))
    assert trend.recovered_declines(t, longer + 0.05 * rng.normal(size=400), 0.5) == []
    deeper = np.where(t < 20, 0.0, 4.0) - 3.5 * ((t >= 40) & (t < 90)) + np.clip((t - 100) / 100, 0, 1) * 6
    assert trend.recovered_declines(t, deeper + 0.05 * rng.normal(size=400), 0.5)


def test_a_crash_past_all_it_gained_is_an_event():
    """A Spinning Up DDPG Ant return (tuning half) at a plateau of ~612 that crashes to a
    median of -339 for 20 of its 586 epochs (3.4% of the run, under the untrained -122) and
    comes back: the labelled event at its first epoch, 499999. Read from 35% of its steps on
    (a log that starts mid-run), the gain is not in view, so no crash is measured against
    it: a DQN highway return's 2.5% dip under the first level of such a log is its noise."""
    path = REAL / "spinup_ddpg_ant_collapse_critic_divergence" / "progress.txt"
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [(int(float(r["TotalEnvInteracts"])), float(r["AverageEpRet"]))
                for r in csv.DictReader(fh, delimiter="\t")]
    steps, v = (np.array(x) for x in zip(*rows))
    found = trend.recovered_declines(steps, v, rules.DEGRADATION_SHARE)
    assert any(int(steps[d.onset]) == 499999 and int(steps[d.end]) == 547999 for d in found)
    t = np.arange(400)
    crash = np.minimum(t / 100, 1) * 10 - 9.0 * ((t >= 250) & (t < 266))
    crash = crash + 0.6 * np.random.default_rng(5).normal(size=400)
    assert trend.recovered_declines(t, crash, 0.5)
    late = t >= 60                     # read from a step the run had passed: 6 of its gain of 10 before it
    assert trend.recovered_declines(t[late] + 1000, crash[late], 0.5) == []


def test_a_return_at_one_level_over_its_whole_run_has_none_to_lose():
    """A pixel SAC return (tuning half, a wandb run file) flat at 4.2 over 642 episodes,
    0.9-9.6 each, that never learned: the change points read one level from its first row
    to its last (``rules.ONE_LEVEL_ROWS``), so the 5-episode median's peak of 7.1 near the
    end is its noise's extreme, not a level it lost a quarter of. A 30-row GAIL return,
    too short to cut, is still judged on points."""
    from rldk.converters import ingest

    (run,) = ingest(str(REAL / "maniskillwb_sac_curl_pushcube_plateau" / "run-50h5nas7.wandb"),
                    adapter="wandb").runs()
    series = run.metric("charts/episodic_return")
    steps, v = series["step"].to_numpy(), series["value"].to_numpy()
    assert len(trend.regimes(steps, v, "signed").parts) == 1 and len(v) == 642
    assert rules.reward_degradation("charts/episodic_return", steps, v) is None
    with open(REAL / "gail_ppo_discriminator_collapse" / "progress.csv", newline="", encoding="utf-8") as fh:
        short = [float(r["mean 100 episode reward"]) for r in csv.DictReader(fh)]
    assert rules.reward_degradation("r", np.arange(len(short)), np.array(short)) is not None


def test_a_fall_is_reported_once_not_again_as_its_own_later_stage():
    """A PyMARL DCG test return (tuning half) that fell for good from step 1124116: the
    stretch after the fall's line, judged again for a second drop (``_later_stage``), began
    with the same fall, so the run got two errors from the same step, the second "after
    the fall from 13.61 from step 1124116"."""
    from rldk import semantics
    from rldk.analyzers.suite import analyze
    from rldk.converters import ingest

    name = "pymarltb_dcg_3s5z_s412023115_reward_collapse"
    try:
        semantics.use_metric_map({"episode_return": ["test_return_mean"]})
        store = ingest(str(next((REAL / name).glob("events.out.tfevents.*"))), adapter="tensorboard")
        found = [f for r in analyze(store.files, plots=False).reports for f in r.findings
                 if f.code == "reward_degradation" and f.metric == "test_return_mean"]
    finally:
        semantics.use_metric_map(None)
    assert sorted((f.steps[0], f.severity) for f in found) == [(270730, "warning"), (1124116, "error")]


def test_a_quantised_rolling_mean_is_judged_with_its_wander():
    """A Pong agent that never learns (tuning half, healthy): ``reward_100``, the mean of the
    last 100 episodes logged after each, moves by one rounding step a row, so the median of
    its differences is that step over one row and over three alike, and the old test read
    the series as white. Looked at from a tenth of its steps on (a log started late), its
    wander between -20.3 and -20.0 was then a "gain" lost at 102 standard errors. Measured
    by the spread of its differences, it is correlated and its wander counts: no decline."""
    from rldk.detectors.regimes import regimes

    steps, values = tensorboard_tag("lapantb_pg_pong_no_learning_flat", "reward_100")
    keep = steps >= steps[0] + 0.1 * (steps[-1] - steps[0])
    s, v = steps[keep], values[keep]
    y = regimes(s, v, "signed").y
    assert trend._lag_var(y, 3, 0.5) <= trend.CORRELATED * trend._lag_var(y, 1, 0.5)   # the stuck median
    assert trend._lag_spread(y, 3) ** 2 > trend.CORRELATED * trend._lag_spread(y, 1) ** 2
    assert trend.recovered_decline(s, v, 0.5) is None
    assert rules.reward_declines("reward_100", s, v) == []


def test_a_batch_mean_with_no_short_lag_wander_is_judged_by_its_noise(tmp_path, monkeypatch):
    """A verl DAPO run (tuning half): its score, a batch mean per step with no wander at
    three steps, learned -1.0 -> -0.66 (median over 45-74), fell back to the all-wrong
    floor (-0.98 over 84-153) and climbed to -0.7 by the end. Over windows of 20 steps the
    series changes almost everywhere, and the "wander" read there (0.13 per level) hid a
    fall of 0.3 at 60x its row noise. Grown from the lag before no faster than any noise
    grows, the wander lets the fall through, from the steps the run broke (labelled
    window 82-84) and back when it climbed past the line."""
    from rldk.converters import ingest
    from rldk.detectors.regimes import regimes

    monkeypatch.setenv("RLDK_CACHE_DIR", str(tmp_path / "cache"))
    name = "verl_dapo_qwen25math7b_dapomath_instability_length_collapse"
    (run,) = ingest(str(REAL / name / "train.out"), adapter="verl").runs()
    score = run.metric("critic/score/mean")
    s, v = score["step"].to_numpy(), score["value"].to_numpy()
    r = regimes(s, v, "signed")
    y, s2 = r.y, r.sigma ** 2
    assert trend._lag_var(y, 3) - 2 * s2 <= 0 and trend._allan_var(y, 3) - 3 * s2 <= 0
    raw = min(trend._lag_var(y, 20) - 2 * s2, trend._allan_var(y, 20) - 3 * s2)   # as read before
    assert np.sqrt(raw) > 0.1 and trend.level_se(r)(30, 30, 20) < 0.06
    d = trend.recovered_decline(s, v, 0.5)
    assert d is not None and 73 <= int(s[d.onset]) <= 84 and 141 <= int(s[d.end]) <= 175, d
    # a rolling mean of 100 episodes (SB3's ep_rew_mean of a healthy DDPG run, tuning half)
    # wanders at the shortest lag already, and faster with the lag than WANDER_GROWTH
    # allows: from session 54 its wander too grows from the shortest lag's no faster than
    # that (before, it was read uncapped at each lag: the learning curve's growth with the
    # square of the lag hid falls of thinned SB3 returns; the cost, this run's drop over its
    # last 4% of steps, which its labeller left open, is now a warning)
    r = regimes(*tensorboard_return("sb3tb_ddpg_nubots_soccer_conservative_learning"), "signed")
    y, s2 = r.y, r.sigma ** 2
    lags = trend._lags(int(trend.WANDER_LAG * len(y)))
    at = [max(0.0, min(trend._lag_var(y, l) - 2 * s2, trend._allan_var(y, l) - 3 * s2)) for l in lags]
    assert at[0] > 0 and at[1] > at[0] * 2 ** trend.WANDER_GROWTH
    w = top = at[0]
    for prev, lag, measured in zip(lags, lags[1:], at[1:]):
        w = min(measured, max(w, s2) * (lag / prev) ** trend.WANDER_GROWTH)
        top = max(top, w)
    assert top < max(at)
    assert trend.level_se(r)(50, 50, lags[-1]) == pytest.approx(np.sqrt(s2 * (2 / 50) + top))


def test_a_decline_from_the_median_of_a_few_points_claims_no_lost_gain():
    """An SB3 stock-trading PPO run's evaluation (tuning half): 57, 159, 159, 150, 73, then
    10.88 on all 45 later evaluations. No regime held before the fall, so it is measured
    from the median of the five points before (149.9) by ``settled_below``; the "lowest
    level held before", the median of the four points before the onset (154.4), lay above
    it, and the finding called an error: "back to the lowest level it held before (154.4):
    all it had gained is lost". A decline with no gain below its peak lost none."""
    steps, values = tensorboard_tag("sb3tb_ppo_stocktrading_reward_degradation", "eval/mean_reward")
    event = rules.reward_degradation("eval/mean_reward", steps, values, points=False)
    assert event is not None and event.onset == 50000 and event.evidence["now"] < 11
    assert event.severity == "warning" and "gained is lost" not in event.title, event.title


def _bursty_plateau(rng, n: int = 320):
    """A return that learns 400 -> 1400 over 60 rows and holds it (row noise 150), with a
    dozen single rows 1300 over it scattered through the plateau and five in a row at 250:
    epochs with a few long episodes, as Spinning Up PPO on Hopper logs them."""
    t = np.arange(n)
    v = np.minimum(t / 60, 1.0) * 1000 + 400 + 150 * rng.standard_normal(n)
    v[rng.choice(np.r_[80:250, 262:n], 12, replace=False)] += 1300
    v[250:255] += 1400
    return t * 2000, v


def test_a_burst_of_rows_over_a_plateau_is_no_peak_the_run_lost():
    """Five rows at 2750 over a plateau of 1400 that the run's single rows reach all along:
    the rows after them are the plateau again, no decline to the end (the decline search
    took the burst for a held peak: "fell from 2749 to 1394"). The same run falling to 600
    after the burst lost what it held: an error, from the burst's end."""
    steps, v = _bursty_plateau(np.random.default_rng(5))
    assert trend.decline(steps, v, 0.5) is None and trend.decline(steps, v, 0.25) is None
    fallen = v.copy()
    fallen[262:] -= 800
    (event,) = rules.reward_declines("AverageEpRet", steps, fallen)
    assert (event.severity, event.onset) == ("error", 255 * 2000), event


def test_bursty_returns_hold_fewer_false_peaks():
    """Returns that learn and then hold a plateau, with one row in ten 600-1600 over it
    (row noise 150), 300 rows, 60 seeds: a decline to the end (by half or a quarter of the
    gain) from a peak held by a chance run of bursts in 20 of them, in 4 once a burst that
    the plateau's rows reach anyway, back at the plateau, is no peak. (Dips the run comes
    back from are judged as before: a burst there is the rarer case, and a run that
    collapsed, relearned to a brief peak and collapsed again looks the same to this test.)"""
    fired = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        t = np.arange(300)
        base = 1000 * np.minimum(t / 120, 1.0) + 400
        v = base + 150 * rng.standard_normal(300) + (rng.random(300) < 0.1) * rng.uniform(600, 1600, 300)
        fired += trend.decline(t * 2000, v, 0.5) is not None or trend.decline(t * 2000, v, 0.25) is not None
    assert fired <= 6


def test_real_bursty_hopper_returns_stay_quiet_and_a_real_brief_peak_still_falls():
    """Spinning Up PPO on Hopper (tuning half, healthy): AverageEpRet 1100-2000 with single
    epochs at 2500-3300 and five in a row at 2185-3150 near the end, then 1627 (its plateau,
    1438 before the burst): no degradation. An SB3 DQN CartPole return (tuning half) at 0.7
    for 112 rows, climbing to 109 over 14 and back to 0, whose rows never reach its peak
    outside that climb: still a decline from 27987."""
    with open(REAL / "spinup_ppo_hopper_learning" / "progress.txt", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    steps = np.array([int(float(r["TotalEnvInteracts"])) for r in rows])
    values = np.array([float(r["AverageEpRet"]) for r in rows])
    assert np.sum(values[len(values) // 2:] > 2500) >= 5          # the bursts
    assert rules.reward_declines("AverageEpRet", steps, values) == []
    d = trend.decline(*sb3("sb3_dqn_reward_collapse_model2", "rollout/ep_rew_mean"), 0.5)
    assert d is not None and int(d.r.steps[d.onset]) == 27987


def test_a_decline_to_the_end_from_a_burst_is_no_decline_by_either_search():
    """A flat, very noisy GRPO reward (the tuning half's Tinker Cree ledger: 1200 steps of
    4 completions each, healthy) logged every second step: a few rows near 0.24 at step
    370 read as a held peak, the rows after are the reward's level again (0.176, above the
    0.159 it started from). ``decline`` calls it a burst the run's own rows reach; the
    search for declines the run recovered from, which ends with the first decline that
    lasts to the end, asked nothing and reported "fell from 0.2365 to 0.1762". Both
    searches now ask the same question of a decline to the end."""
    name = "tinker_rl_cree_qwen35_4b_dictionary_flat"
    path = next((REAL / name).glob("*.csv"))
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    steps = np.array([int(r["step"]) for r in rows])[::2]
    values = np.array([float(r["reward_scalar"]) for r in rows])[::2]
    assert trend.decline(steps, values, 0.5) is None
    assert trend.recovered_decline(steps, values, 0.5) is None
    assert rules.reward_degradation("reward_scalar", steps, values) is None


def test_a_heavy_tailed_loss_ending_on_its_spikes_has_not_risen():
    """A DQN's TD loss with a tenth of its rows ten to a thousand times over its median,
    each back at once: a log cut where two spikes fall on its last three rows ends "above"
    100x its lowest level, but the series reached that height as single rows dozens of
    times and came back. The tuning half's CS285 DQN Ms. Pac-Man run (healthy) cut at
    step 680000 read "critic_loss climbed from 3.114 to 626.4 (201x)". The same loss that
    then stays at a height it never visited, or stays for a tenth of the run, rose."""
    steps, values = tensorboard_tag("cs285_dqn_mspacman_doubleq_learning", "critic_loss")
    cut = steps <= 680000
    s, v = steps[cut], values[cut]
    assert v[-1] > 10 * np.median(v) and v[-3] > 10 * np.median(v)           # the spikes at the end
    assert rules.loss_divergence("critic_loss", s, v) is None
    assert rules._rise("loss_divergence", "critic_loss", s, v, rules.LOSS_JUMP, "climbed",
                       since_trough=True) is None
    rng = np.random.default_rng(4)
    t = np.arange(600)
    loss = np.exp(rng.normal(0, 0.3, 600)) * np.minimum(1 + t / 100, 5.0)
    loss[rng.choice(np.arange(50, 590), 50, replace=False)] *= rng.uniform(50, 1000, 50)
    loss[-3:] = [300.0, 40.0, 500.0]
    assert rules.loss_divergence("loss", t, loss) is None
    higher = loss.copy()
    higher[-3:] = 1e5 * np.array([3.0, 4.0, 5.0])       # a height no row reached before
    assert rules.loss_divergence("loss", t, higher) is not None
    held = loss.copy()
    held[-70:] = 400.0 * np.exp(rng.normal(0, 0.3, 70))  # at the spikes' height for over a tenth
    assert rules.loss_divergence("loss", t, held) is not None


def test_a_dip_just_before_a_burst_is_no_climb_to_it():
    """The evaluation return of a Procgen FruitBot run (tuning half, healthy: unseen levels,
    flat at -1..-3 with single rows from -6.7 to 5.5) logged every third update: seven rows
    at -3.7, three at 2.4, then the level of the run again (-1.9). The burst test read the
    dip before the burst as a climb to it ("no one level held") and the rows after it as a
    fall: "fell from 2.38 to -1.94". A dip is the last stretch before the burst; a climb or
    stages end higher than they begin. The same run that falls 3 below its level after the
    burst lost what it held: an error, and its fall starts after the peak it fell from (the
    onset search had walked back to a level held long before the peak, "fell from 2.38 (step
    20709376) from step 19628032")."""
    path = REAL / "baselines_ppo2_procgen_fruitbot_1level_learning" / "progress.csv"
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    steps = np.array([int(float(r["misc/total_timesteps"])) for r in rows])[::3]
    values = np.array([float(r["eval_eprewmean"]) for r in rows])[::3]
    burst = (steps >= 20709376) & (steps <= 20807680)
    assert np.median(values[burst]) > 2 and np.median(values[(steps > 20807680) & (steps < 22e6)]) < -1
    assert trend.decline(steps, values, 0.5) is None
    assert rules.reward_degradation("eval_eprewmean", steps, values) is None
    fallen = values.copy()
    fallen[steps > 20807680] -= 3
    event = rules.reward_degradation("eval_eprewmean", steps, fallen)
    assert event is not None and event.severity == "error"
    assert event.onset == 20856832 and event.onset >= event.evidence["peak_step"], event


def test_a_rise_over_more_decades_than_the_log_scale_keeps_starts_where_it_crossed():
    """A Spinning Up SAC critic loss (HopperBullet with a gradient penalty, tuning half) at
    3-9 that blows up from step 91999 (92.7, 1160, 7550 ...) to 1e8-1e11: the log scale's
    floor, a thousandth of the series' high, sits at 6e7, and every level before the
    divergence is flat under it. Logged every second epoch, a one-step jump from 7.5e7 to
    9e8 at step 523999, inside the state, read as the move: "blew up ... from step 523999".
    On the series' own log scale that step is a seventh of the rise from 3.5 to 2.3e8: the
    rise starts where it crossed, as on the full log. (A loss that drifts 100x and then
    jumps 1000x in one row still diverged at the jump: test_detectors_onset.)"""
    path = REAL / "spinup_sac_hopperbullet_gradpen_s6_critic_divergence_collapse" / "progress.txt"
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    steps = np.array([int(float(r["TotalEnvInteracts"])) for r in rows])
    values = np.array([float(r["LossQ"]) for r in rows])
    for k in (1, 2):
        event = rules._rise("loss_divergence", "LossQ", steps[::k], values[::k], rules.VALUE_JUMP, "blew up",
                            since_trough=True)
        assert event is not None and event.onset == 91999, (k, event)
        assert event.evidence["now"] > 1e8 and event.evidence["held"] < 10


def _slid(v: np.ndarray, k: int) -> np.ndarray:
    """``v`` slid from row ``k`` in a straight line over a tenth of its rows to its early
    level (median of its first tenth) minus half its range, its own row-to-row jitter kept
    (as benchmarks/injection.py's return_slide writes it)."""
    from rldk.detectors.onsets import level_of

    low = np.median(v[:len(v) // 10]) - 0.5 * np.ptp(v) + (v - level_of(v))
    w = np.minimum(1.0, np.arange(1, len(v) - k + 1) / max(2, len(v) // 10))
    return np.r_[v[:k], (1 - w) * v[k:] + w * low[k:]]


def test_a_noisy_reward_that_slides_below_every_level_it_held_started_where_it_crossed():
    """A real TRL GRPO run (tuning half, healthy): a reward of penalties, -1.4..-6.3 row to
    row around -2.7 with no gain in sight. Slid from step 121 over 20 steps to -6.8: the
    row-to-row noise (3 sigma 5 against a move of 4) hides where the slide began, and the
    rows back above the midpoint inside it made the onset the start of the level at the
    bottom (134). The onset protocol's window for such a series ends where it is past the
    midpoint for good (131): the onset is there at the latest."""
    rows = [x for x in json.loads((REAL / "trl_grpo_unlearning_run6" / "trainer_state.json").read_text())[
        "log_history"] if "reward" in x]
    steps = np.array([x["step"] for x in rows])
    values = np.array([x["reward"] for x in rows], float)
    k = int(0.6 * len(values))
    assert rules.reward_degradation("reward", steps, values) is None
    event = rules.reward_degradation("reward", steps, _slid(values, k))
    assert event is not None and steps[k] == 121 and 121 <= event.onset <= 131, event


def test_a_return_that_slides_while_it_still_climbs_fell_from_its_climb():
    """A real SB3 PPO run (tuning half, healthy): a rolling-mean return that climbs from
    -0.03 to 10.3 for the whole run, held no level after its first 13 rows. Slid from step
    61440 (5.6, still climbing) over 4 rows to -5.2: the only level held near the fall was
    the untrained one, and the last row of the slide, half of the move from that level, was
    taken for a jump (67584, past the window). A jump from a level held under the peak
    must carry half of the fall from the peak."""
    from rldk.converters import ingest

    path = next((REAL / "sb3tb_ppo_zaiftrade_lr5e4_value_loss_growth_learning").glob("events.out.tfevents.*"))
    (run,) = ingest(str(path), adapter="tensorboard").runs()
    ret = run.metric("rollout/ep_rew_mean")
    steps, values = ret["step"].to_numpy(), ret["value"].to_numpy().astype(float)
    k = int(0.6 * len(values))
    assert rules.reward_degradation("r", steps, values) is None
    event = rules.reward_degradation("r", steps, _slid(values, k))
    assert event is not None and steps[k] == 61440 and 61440 <= event.onset <= 65536, event



def test_a_critic_loss_that_climbs_while_the_returns_grow_under_it_is_no_divergence():
    """An ML-Agents Walker PPO (tuning half, healthy), read over the first half of its
    steps: the return climbs -0.99 -> 34 and the critic's loss with it, 0.001 -> 1.04. The
    climb was an error, "663x while the episode return's size changed 1.6x": the return's
    size was measured over the whole climb, whose middle crosses zero. The loss's state is
    measured over the rows past its line; the returns it fits there are the ones to
    compare (there they are 10-34, not 0.8)."""
    steps, loss = tensorboard_tag("mlagentstb_ppo_walker_running_learning", "Losses/Value Loss")
    r_steps, returns = tensorboard_tag("mlagentstb_ppo_walker_running_learning", "Environment/Cumulative Reward")
    half = steps[0] + (steps[-1] - steps[0]) / 2
    assert rules.value_loss_divergence("Losses/Value Loss", steps[steps <= half], loss[steps <= half],
                                       (r_steps[r_steps <= half], returns[r_steps <= half])) is None


def test_a_critic_loss_climbing_a_thousandfold_late_is_not_hidden_by_its_untrained_start():
    """A Cassie PPO (tuning half, healthy): the critic's loss decays from 4.7 to 0.01 over
    its first ten updates of 1200 and stays at 0.002-0.1 while the return climbs -5 -> 31.
    Written x1000 over a tenth of the run from its 720th update on, the climb is a
    divergence: the level the loss held before it (0.0075) is its measure, and the
    untrained start is no level it held (a tenth of the run at least), so reaching 3.6 is
    no return to it."""
    steps, loss = tensorboard_tag("lgtb_ppo_cassie_baseline_learning", "Loss/value_function")
    r_steps, returns = tensorboard_tag("lgtb_ppo_cassie_baseline_learning", "Train/mean_reward")
    k, n = 720, len(loss) // 10
    climbed = loss.astype(float).copy()
    climbed[k:] *= 10 ** (3 * np.minimum(np.arange(len(loss) - k) / n, 1.0))
    event = rules.value_loss_divergence("Loss/value_function", steps, climbed, (r_steps, returns))
    assert event is not None and event.severity == "error" and steps[k] <= event.onset <= steps[k + n]


@pytest.mark.parametrize("name, share", [
    # a DQN highway return read from 35% of its run on: 36.1 -> 38.7 -> 37.1
    ("sb3tb_dqn_highway_2lane_learning", 0.35),
    # a PPO CubeBot return read from 20% on: 4181 -> 4472 -> 4275, back above 4399 later
    ("sb3tb_ppo_cubebot_targetangle_learning", 0.2),
])
def test_a_fall_of_a_twentieth_of_the_reward_after_a_small_gain_is_its_wander(name, share):
    """Healthy SB3 returns (tuning half) read from late in their runs: the gain in sight is
    6-7% of the return's size and the fall that gives back half of it 4%. A fall under a
    twentieth of the reward's size is the wander of the level it held, whatever the gain
    before it (as for a later stage of a decline); the smallest labelled real degradation
    of the corpus, a validation accuracy 0.6475 -> 0.6061, falls 6.4% of its size."""
    steps, values = tensorboard_tag(name, "rollout/ep_rew_mean")
    keep = steps >= steps.min() + share * (steps.max() - steps.min())
    assert rules.reward_declines("rollout/ep_rew_mean", steps[keep], values[keep]) == []


def test_an_entropy_collapse_at_a_ceiling_held_from_the_first_row_of_a_late_log_is_a_solved_task():
    """A MAPPO SMAC 3m run (tuning half, healthy: the evaluation return is 20, its maximum,
    on 96-100% of the rows once it learned), read from a fifth of its run on: its entropy
    falls 0.36 -> 0.04 while the return sits at 20 from the log's first row. The ceiling
    had to be risen to inside the log, so the collapse was a warning; a log whose first
    step lies hundreds of its step spacings past 0 starts mid-run, and the rise lies before
    it. From the run's first step, a reward at its ceiling from the start still shows no
    rise (the same rows, renumbered from step 0)."""
    from rldk.converters import ingest

    (run,) = ingest(str(REAL / "mappowb_rmappo_smac3m_solved_entropy_decline" / "run-1ot8et32.wandb"),
                    adapter="wandb").runs()
    entropy, reward = run.metric("dist_entropy"), run.metric("eval_average_episode_rewards")
    steps, values = entropy["step"].to_numpy(), entropy["value"].to_numpy()
    r_steps, r_values = reward["step"].to_numpy(), reward["value"].to_numpy()
    cut = steps.min() + 0.2 * (steps.max() - steps.min())
    keep, r_keep = steps >= cut, r_steps >= cut
    event = rules.entropy_collapse("dist_entropy", steps[keep], values[keep], (r_steps[r_keep], r_values[r_keep]))
    assert event.severity == "info" and event.evidence.get("before_log") is True
    first = r_steps[r_keep][0]
    assert rules.reward_ceiling(r_steps[r_keep] - first, r_values[r_keep], int(event.evidence["below_from"] - first)) \
        is None


def test_a_reward_at_its_ceiling_from_step_zero_learned_nothing_even_logged_twice_a_step():
    """A reward at its ceiling from the first row of a log that starts at step 0 shows no
    rise, so no solved task, however its rows are spaced: logged twice at every step (two
    ranks), the median gap between rows is 0, which makes no spacing for "starts mid-run"."""
    steps = np.repeat(np.arange(0, 200), 2)
    values = np.where(np.arange(400) % 7 == 3, 0.5, 1.0)
    assert rules.reward_ceiling(steps, values, 100) is None
    assert rules.reward_ceiling(steps + 5000, values, 5100)["before_log"] is True


@pytest.mark.parametrize("every", [1, 2])
def test_a_smoothed_return_is_judged_at_either_cadence_alike(every):
    """SB3 RecurrentPPO on LunarLander (a real run of the tuning half): the 100-episode
    rolling return learns -300 -> 200 and falls to ~45 over the last fifth of the run
    (protocol window 226944-252032). Logged at every rollout, half of its rows repeat the
    last value (no episode ended); thinned to every 2nd row, they do not, and its wander
    measured at long lags grew with the square of the lag (4578 at 96 rows against
    3.6 at 3): the learning curve and the fall themselves, which hid the fall (``level_se``
    lets a wander grow no faster than WANDER_GROWTH from one lag to the next). The decline
    is found in its window at both cadences."""
    steps, v = tensorboard_return("sb3tb_recurrentppo_ld_lunarlander_late_reward_degradation")
    (event,) = rules.reward_declines("episode_return", steps[::every], v[::every])
    assert 226944 <= event.onset <= 252032, event


def test_a_return_read_from_its_plateau_that_dips_slightly_and_recovers_is_no_decline():
    """SB3 PPO CubeBot (a real healthy run of the tuning half) read from a third of its run
    on: the log starts on its plateau (no gain in sight) and the return dips 4399 -> 4234
    for a tenth of the rows and comes back. A fall under SLIGHT of the return's size is the
    wander of its level, also for a decline with no start in sight (``rules._sized`` sizes
    it by its peak and its level after the fall)."""
    steps, v = tensorboard_return("sb3tb_ppo_cubebot_targetangle_learning")
    kept = steps >= steps[0] + 0.35 * (steps[-1] - steps[0])
    assert rules.reward_declines("episode_return", steps[kept], v[kept]) == []
