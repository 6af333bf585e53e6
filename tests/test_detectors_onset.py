"""Collapses that recover, and where a staged fall starts (issue #14).

A return that collapses for a stretch of the run and comes back is still an event
(``rldk.detectors.trend.recovered_decline``); a dip is not. An entropy that slides to a
lower level and collapses started to go at its first slide, unless it held that level
for a tenth of the run: then the collapse is the fall from it. Synthetic cases
with exact answers, seeded noise for the false-alarm rate, and the real logs of the
tuning half of benchmarks/data/real (firing and quiet)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from test_trend import noise, sb3  # seeded noise; the tuning-half SB3 reader

from rldk.detectors import rules, trend

REAL = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "real"


def crash(n: int, length: int, depth: float, rng, noise: float = 1.0):
    """Rise 0 -> 10 over 30% of the run, hold, lose ``depth`` of it at 50% for ``length``
    points, back to 10 to the end."""
    t = np.arange(n)
    v = np.minimum(t / (0.3 * n), 1.0) * 10
    v[n // 2:n // 2 + length] -= 10 * depth
    return t, v + noise * rng.normal(size=n)


# ------------------------------------------------------------------ synthetic
def test_a_collapse_that_recovers_is_found_from_its_first_step():
    t, v = crash(200, 40, 1.0, np.random.default_rng(0))
    d = trend.recovered_decline(t, v, 0.5)
    assert (d.onset, d.end) == (100, 140)
    event = rules.reward_degradation("r", t, v)
    assert (event.onset, event.last, event.evidence["recovered_at"]) == (100, 139, 140)


@pytest.mark.parametrize("length, depth", [
    (4, 1.0),      # all of the gain lost, for 2% of the run: shorter than CRASH_STRETCH, a dip
    (9, 0.6),      # 60% of the gain lost for 4.5%: shorter than SHORT_STRETCH and no crash (CRASH_SHARE)
    (60, 0.3),     # 30% of the gain lost for 30% of the run: not half of it
])
def test_dips_stay_quiet(length, depth):
    t, v = crash(200, length, depth, np.random.default_rng(1))
    assert trend.recovered_decline(t, v, 0.5) is None
    assert rules.reward_degradation("r", t, v) is None


@pytest.mark.parametrize("kind, most", [("white", 0), ("rise", 0), ("ar1", 3)])
def test_false_alarm_rate_on_noise(kind, most):
    """Seeded series of 100 points: flat white noise, a rise to a plateau, AR(1) noise with
    rho 0.9. Measured over 200 other seeded series each: 0, 0 and 7 fire (AR(1) at 300
    points: 2 of 200); these 40 AR(1) series: 3. A wandering flat series of 100 points has
    stretches a wander cannot be told from (``trend.SIGNIFICANCE``)."""
    rng = np.random.default_rng(7)
    fired = 0
    for _ in range(40):
        e = noise(rng, 100, kind)
        if kind == "rise":
            e = e + np.minimum(np.arange(100) / 30, 1) * 5
        fired += trend.recovered_decline(np.arange(100), e, 0.5) is not None
    assert fired <= most


def test_a_staged_entropy_collapse_starts_where_it_left_the_level_it_held():
    """Entropy 1.0, slides 0.85 -> 0.6 over steps 20-29, holds 0.6 to 89 (40% of the run),
    falls to 1e-5: the collapse is crossed at 90, and the fall into it started there, from
    the level the run sat at (the onset protocol's prior regime is the level just before
    the move; a real verl DAPO entropy 0.82 -> 0.25, flat for 44 steps, then 0.07 was
    labelled at its second fall). Held for less than a tenth of the run, the 0.6 is part of
    one fall from step 20; a slide that never holds a level starts where it left the peak
    (on a log scale the slide is a tenth of a fall of 11 decades, and would not count as
    leaving the level: the start is read on the linear scale)."""
    rng = np.random.default_rng(4)
    held = np.r_[np.full(20, 1.0), np.linspace(0.85, 0.6, 10), np.full(60, 0.6), np.full(60, 1e-5)]
    event = rules.entropy_collapse("entropy", np.arange(len(held)), held * np.exp(0.02 * rng.normal(size=len(held))))
    assert (event.onset, event.evidence["below_from"]) == (90, 90)
    assert event.evidence["stage_steps"] == [29, 89] and "after it held 0.59" in event.title
    brief = np.r_[np.full(20, 1.0), np.linspace(0.85, 0.6, 10), np.full(12, 0.6), np.full(108, 1e-5)]
    event = rules.entropy_collapse("entropy", np.arange(len(brief)), brief * np.exp(0.02 * rng.normal(size=len(brief))))
    assert (event.onset, event.evidence["below_from"]) == (20, 42) and "stage" not in event.evidence
    slide = np.r_[np.full(20, 1.0), np.linspace(0.95, 0.3, 70), np.full(60, 1e-5)]
    event = rules.entropy_collapse("entropy", np.arange(len(slide)), slide * np.exp(0.02 * rng.normal(size=len(slide))))
    assert event.onset < 30 and event.evidence["below_from"] == 90 and "stage" not in event.evidence


def test_a_short_run_held_a_level_for_a_quarter_of_it_before_its_entropy_collapsed(tmp_path, monkeypatch):
    """An SB3 AirSim quadcopter PPO run (tuning half, batch 60) stopped after 15 updates:
    its entropy 1.90 at the first, 1.26-1.41 over the next five (a third of the run), then
    0.57 in one update and 0.001-0.007 to the end (labelled a step at 14500). Five updates
    are fewer than PRIOR_POINTS, so the fall was read from the first value, as one move
    from step 4500; a level held for a quarter of a short run is the level it fell from."""
    from rldk.converters import ingest

    monkeypatch.setenv("RLDK_CACHE_DIR", str(tmp_path / "cache"))
    name = "sb3tb_ppo_airsim_quadnav_short_entropy_collapse"
    (run,) = ingest(str(next((REAL / name).glob("events.out.tfevents.*"))), adapter="tensorboard").runs()
    series = run.metric("train/entropy_loss")
    steps, values = series["step"].to_numpy(), -series["value"].to_numpy()
    assert len(values) == 15
    event = rules.entropy_collapse("train/entropy_loss", steps, values)
    assert event is not None and event.onset == 14500 and event.evidence["stage_steps"] == [4500, 12500], event


# ------------------------------------------------------------------ real logs (tuning half)
def test_a_real_entropy_that_held_a_lower_level_collapsed_at_its_second_fall(tmp_path, monkeypatch):
    """A real verl DAPO run (tuning half, batch 52): actor/entropy 0.82 -> 0.25 over its first
    30 steps, flat at 0.24-0.27 for 44 steps, then to 0.05-0.1 from step 77 as the run broke
    (labelled window 73-77). The fall from the start was reported from step 7 before the
    level held was taken as the start of the move."""
    from rldk.converters import ingest

    monkeypatch.setenv("RLDK_CACHE_DIR", str(tmp_path / "cache"))
    name = "verl_dapo_qwen25math7b_dapomath_instability_length_collapse"
    (run,) = ingest(str(REAL / name / "train.out"), adapter="verl").runs()
    entropy = run.metric("actor/entropy")
    event = rules.entropy_collapse("actor/entropy", entropy["step"].to_numpy(), entropy["value"].to_numpy())
    assert event is not None and 73 <= event.onset <= 77 and event.evidence["held"] > 0.8, event


def test_a_length_that_wandered_on_a_level_for_160_steps_fell_from_it():
    """A real verl GRPO run (tuning half, healthy): response_length/mean 6100-6500 tokens
    over its first steps, 1500-1800 by step 18 as the model sheds its base's rambling while
    the score rises, then 2200-2900 from step 23 to the end. Its change points cut that
    level into pieces of 3-35 steps that wander, none a tenth of the run and higher than
    every later one. With the length cut to a tenth from step 181 (injection.py's
    length_collapse), the fall into it was read from the 6394 of the first rows, from step
    7, and as that first fall came with the rising score it was "shorter and better"
    (info): the collapse was missed. The run held 2200-2900 for 158 steps: the collapse
    left that level, at step 181. The log itself has no length finding."""
    name = "verl_grpo_r1distill15b_dapomath_sigfrac_lr_controller_learning"
    path = next((REAL / name).glob("*.jsonl"))
    rows = [json.loads(line)["data"] | {"step": json.loads(line)["step"]}
            for line in path.read_text(encoding="utf-8").splitlines()]
    length = np.array([(r["step"], r["response_length/mean"]) for r in rows if "response_length/mean" in r])
    score = np.array([(r["step"], r["critic/score/mean"]) for r in rows if "critic/score/mean" in r])
    steps, values, partner = length[:, 0], length[:, 1], (score[:, 0], score[:, 1])
    assert rules.length_change("response_length/mean", steps, values, partner) is None
    cut = np.where(steps >= 181, values / 10, values)
    event = rules.length_change("response_length/mean", steps, cut, partner)
    assert event is not None and event.severity == "error" and event.onset == 181, event
    assert event.evidence["stage_steps"] == [23, 180], event


def test_a_length_held_through_lone_rows_under_the_line_fell_from_its_level(tmp_path):
    """A real TRL GRPO run (Qwen2.5-Omni on AVQA, tuning half, healthy): completion length
    31 tokens at step 0, 9-10 from step 5 to the end (+-0.3). Cut to a tenth from step 75
    (injection.py's length_collapse at 15% of the run), the rows after it are ten times
    quieter than the level before, and the change points cut that level into rows and
    pairs; three of them (8.4-8.7) lie under the collapse's line (a third of the first
    rows' 26), which ended the level held there, and the fall was read from step 2. The
    rows under the line lie within the level's own band: the collapse left 9.1, at 75."""
    from rldk.converters import ingest

    path = REAL / "wandb_grpo_qwen25omni_avqa_learning" / "run-asc2sncx.wandb"
    (run,) = ingest(str(path), adapter="wandb", store_dir=tmp_path).runs()
    length, reward = run.metric("train/completion_length"), run.metric("train/reward")
    steps, values = length["step"].to_numpy(), length["value"].to_numpy()
    partner = (reward["step"].to_numpy(), reward["value"].to_numpy())
    assert rules.length_change("train/completion_length", steps, values, partner) is None
    cut = np.where(steps >= 75, values / 10, values)
    event = rules.length_change("train/completion_length", steps, cut, partner)
    assert event is not None and event.severity == "error" and event.onset == 75, event
    assert event.evidence["stage_steps"][1] == 74 and 9 < event.evidence["stage"] < 9.3, event


def test_an_entropy_held_around_its_collapse_line_fell_from_that_level():
    """A real ML-Agents PPO PushBlock run (tuning half, healthy): Policy/Entropy 2.71 at its
    first summaries, 0.7 by step 320000 as the policy learns, then 0.32-0.71 from 360000
    to the end: a level around its own collapse line (a fifth of 2.71: 0.54). Cut to 2% from
    step 1210000 (injection.py's entropy_collapse), the walk back from the crossing stopped
    at the first piece of that level under the line, a stretch too short to be a level,
    and the collapse was read from the first fall, from step 140000. The pieces under the
    line lie within the level's band: the collapse left 0.48, at 1210000."""
    from rldk.converters import ingest

    path = next((REAL / "mlagentstb_ppo_pushblock_custom_learning").glob("events.out.tfevents.*"))
    (run,) = ingest(str(path), adapter="tensorboard").runs()
    entropy = run.metric("Policy/Entropy")
    steps, values = entropy["step"].to_numpy(), entropy["value"].to_numpy()
    assert rules.entropy_collapse("Policy/Entropy", steps, values) is None
    event = rules.entropy_collapse("Policy/Entropy", steps, np.where(steps >= 1210000, values * 0.02, values))
    assert event is not None and event.severity == "error" and event.onset == 1210000, event
    assert event.evidence["stage_steps"] == [360000, 1200000], event


def test_a_level_held_in_the_tail_of_a_fall_is_not_where_the_collapse_began():
    """A real SB3 PPO run (tuning half, healthy): entropy 2.48 -> 0.41 in a smooth decline
    while the return rises and plateaus, 0.36-0.48 over 144384-182272, 0.30-0.33 on its
    last rows. Read from step 22528 on (a log that starts late), the collapse line (a fifth
    of 1.79) lies at 0.36 and the state under it begins at 183296; the level held just
    before (0.41) was taken for the one the collapse left, and the last 0.1 nats were a
    collapse "from step 183296" with the return flat there (a warning). That level lies
    under the midpoint between 1.79 and 0.31: the fall past the midpoint came before it,
    with the rising return (info)."""
    from rldk.converters import ingest

    path = next((REAL / "sb3tb_ppo_plateau").glob("events.out.tfevents.*"))
    (run,) = ingest(str(path), adapter="tensorboard").runs()
    entropy, ret = run.metric("train/entropy_loss"), run.metric("rollout/ep_rew_mean")
    steps, values = entropy["step"].to_numpy(), -entropy["value"].to_numpy()
    r_steps, r_values = ret["step"].to_numpy(), ret["value"].to_numpy()
    late, r_late = steps >= 22528, r_steps >= 22528
    event = rules.entropy_collapse("train/entropy_loss", steps[late], values[late], (r_steps[r_late], r_values[r_late]))
    assert event is not None and event.severity == "info" and event.onset < 100000, event
    assert "stage" not in event.evidence, event


def test_a_value_loss_back_under_the_first_row_it_left_at_once_has_not_diverged():
    """A real SB3 PPO racetrack run (tuning half): train/value_loss 0.18 and 0.29 at its
    first updates, 1e-3 -> 2e-13 over the next nine while no episode has ended (the critic
    fits zero returns), 0.1-1 once rewards arrive. Read at every other update the rows are
    0.18, 9.6e-4, 5e-7, ..., 2e-13, 0.41: the rolling level of the first rows is already the
    dip, and the loss "diverged from 0.0005 to 0.0475 from step 1792" (an error). It left its
    first row at once by more than the factor and never rose back over it: no divergence."""
    from rldk.converters import ingest

    path = next((REAL / "sb3tb_ppo_racetrack_late_reward_degradation").glob("events.out.tfevents.*"))
    (run,) = ingest(str(path), adapter="tensorboard").runs()
    loss, ret = run.metric("train/value_loss"), run.metric("rollout/ep_rew_mean")
    steps, values = loss["step"].to_numpy()[::2], loss["value"].to_numpy()[::2]
    partner = (ret["step"].to_numpy(), ret["value"].to_numpy())
    assert values[0] > 0.1 and values[1] < values[0] / 100
    assert rules.value_loss_divergence("train/value_loss", steps, values, partner) is None
    assert rules.loss_divergence("train/value_loss", steps, values) is None
    # the same first rows under a loss that then climbs past the first row did diverge
    climbed = np.where(steps >= 250000, values * 1000, values)
    event = rules.loss_divergence("train/value_loss", steps, climbed)
    assert event is not None and event.onset == 250112, event


def _critic_climb(name: str, loss_name: str, return_name: str, at: float):
    """A tuning-half TensorBoard log's critic loss and return, and the loss with x1000
    written into it log-linearly over a tenth of its rows from ``at`` of them on:
    ``(steps, values, partner, climbed, k, span)``."""
    from rldk.converters import ingest

    path = next((REAL / name).glob("events.out.tfevents.*"))
    (run,) = ingest(str(path), adapter="tensorboard").runs()
    loss, ret = run.metric(loss_name), run.metric(return_name)
    steps, values = loss["step"].to_numpy(), loss["value"].to_numpy().astype(float)
    partner = (ret["step"].to_numpy(), ret["value"].to_numpy())
    k, span = int(at * len(values)), int(0.1 * len(values))
    climbed = values.copy()
    climbed[k:] *= 10 ** (3 * np.minimum(1.0, np.arange(1, len(values) - k + 1) / span))
    return steps, values, partner, climbed, k, span


def test_a_critic_loss_that_climbs_long_after_the_run_learned_diverged():
    """A real SAC HalfCheetah run (cs285, tuning half, healthy): critic_loss 0.56 at its
    start, 3-15 once the return grows from ~0 to ~4000. Written into it from 60% of its rows
    on: a climb of three decades over a tenth of the run (3.5 -> 4000) while the return
    holds. Measured from the untrained critic's 0.56, with the return's growth since then
    (53x), any climb under 28000x was "explained" and the divergence went unreported; over
    the climb itself the return did not grow, and the loss rose 1000x to 280x every level
    it held before. The same log unchanged stays quiet."""
    steps, values, partner, climbed, k, span = _critic_climb(
        "cs285_sac_halfcheetah_reparam_learning", "critic_loss", "train_return", 0.6)
    assert rules.value_loss_divergence("critic_loss", steps, values, partner) is None
    event = rules.value_loss_divergence("critic_loss", steps, climbed, partner)
    assert event is not None and event.severity == "error", event
    assert int(steps[k]) <= event.onset <= int(steps[k + span // 2]), (event, steps[k])
    assert event.evidence["return_growth"] < 2, event
    # a return that held one value over the rows before the climb and varies from it on,
    # at the same size, gives the critic new errors to fit: its loss may climb with them
    r_steps, r_values = partner
    k_r = int(np.searchsorted(r_steps, event.onset))
    held = r_values.copy()
    held[k_r - 20:k_r] = np.median(r_values[k_r - 20:k_r])
    assert rules.value_loss_divergence("critic_loss", steps, climbed, (r_steps, held)) is None


def _spinup(name: str, column: str):
    """``(steps, values)`` of one column of a tuning-half Spinning Up progress.txt."""
    with open(REAL / name / "progress.txt", newline="", encoding="utf-8") as fh:
        rows = [(int(r["TotalEnvInteracts"]), float(r[column])) for r in csv.DictReader(fh, delimiter="\t")]
    steps, values = zip(*rows)
    return np.array(steps), np.array(values)


def test_a_critic_loss_that_drifts_to_a_plateau_before_it_blows_up_diverged_where_it_left_the_plateau():
    """A real Spinning Up DDPG Ant run (tuning half): LossQ settles to 4.5-5 by step 670000,
    drifts up to 9-11 and holds there for 200000 steps (883999-1077999) while the return
    holds, then climbs to 100-260 as the return collapses (protocol window 1079999-1113999).
    The climb was placed where the loss left its lowest level (673999): the drift to the
    plateau is no part of the blow-up; the move began where it left the level it held
    just before (``moves.prior_exit``, read upwards on the loss's own log scale). A slow
    climb's stairs are no such level: x1000 over 150 rows out of the end of a fall still
    rose from the trough (``test_a_loss_that_climbs_straight_out_of_the_end_of_its_fall_rose_from_there``)."""
    steps, loss = _spinup("spinup_ddpg_ant_collapse_critic_divergence", "LossQ")
    partner = _spinup("spinup_ddpg_ant_collapse_critic_divergence", "AverageEpRet")
    event = rules.value_loss_divergence("LossQ", steps, loss, partner)
    assert event is not None and event.severity == "error", event
    assert 1071999 <= event.onset <= 1113999, event


def _tb_metrics(name: str, *metrics: str):
    """``(steps, values)`` of each of ``metrics`` of a tuning-half TensorBoard log."""
    from rldk.converters import ingest

    (run,) = ingest(str(next((REAL / name).glob("events.out.tfevents.*"))), adapter="tensorboard").runs()
    return [(run.metric(m)["step"].to_numpy(), run.metric(m)["value"].to_numpy()) for m in metrics]


def test_a_critic_divergence_the_run_recovered_from_is_found_from_its_first_step(tmp_path, monkeypatch):
    """A real SB3 SAC parking run (tuning half): train/critic_loss 0.016-0.088 over its first
    7 rows, 1.48 at step 5410 (labelled the step), 2057 at 13295, ~100 for 100000 steps and
    then decaying to 0.02-0.05 from ~430000 to the end. Every loss rule asks that the loss
    stay diverged to the end of the log, so it went unreported; the same rules on the log up
    to where the loss came back under 10x (what a run stopped there shows) find it at 5410,
    a warning. A healthy SB3 DQN highway loss at 0.001-0.1 with stretches at 1.7 all through
    its run stays quiet: the level it rose to is no higher than levels it held later."""
    monkeypatch.setenv("RLDK_CACHE_DIR", str(tmp_path / "cache"))
    loss, returns = _tb_metrics("sb3tb_sac_parking_lidar_critic_divergence", "train/critic_loss",
                                "rollout/ep_rew_mean")
    assert rules.value_loss_divergence("train/critic_loss", *loss, returns) is None
    event = rules.value_loss_divergences("train/critic_loss", *loss, returns)
    assert event is not None and event.severity == "warning" and event.onset == 5410, event
    assert 400000 <= event.evidence["recovered_at"] <= 430000, event
    assert event.last < event.evidence["recovered_at"] and event.last > 400000, event   # the whole stretch
    loss, returns = _tb_metrics("sb3tb_dqn_highway_2lane_learning", "train/loss", "rollout/ep_rew_mean")
    assert rules.loss_divergences("train/loss", *loss, returns) is None


def test_a_plateau_that_wanders_a_percent_is_no_degradation(tmp_path, monkeypatch):
    """A real SB3 PPO run (tuning half, healthy) read from 35% of its steps on, as a resumed
    run's log starts: rollout/ep_rew_mean 165.9 -> 171.5 -> 166.9 over a plateau, a gain and
    a fall of 3% of the return's size that its long, smooth log measures at 3.3 standard
    errors. It was "a degradation"; gains and falls under ``rules.SLIGHT`` of the reward's
    size are a plateau's wander. The same shape on a synthetic plateau at 100 with a gain
    of 1.5 is quiet; with a gain of 15 (the fall 9% of its size) it is a degradation."""
    monkeypatch.setenv("RLDK_CACHE_DIR", str(tmp_path / "cache"))
    ((steps, values),) = _tb_metrics("sb3tb_ppo_plateau", "rollout/ep_rew_mean")
    late = steps >= steps[0] + 0.35 * (steps[-1] - steps[0])
    assert rules.reward_degradation("rollout/ep_rew_mean", steps[late], values[late]) is None
    rng = np.random.default_rng(3)
    t = np.arange(300)
    shape = np.r_[np.zeros(100), np.linspace(0, 1, 50), np.ones(60), np.linspace(1, 0.3, 20), np.full(70, 0.3)]
    wobble = 0.1 * rng.normal(size=300)
    assert rules.reward_degradation("r", t, 100 + 1.5 * shape + wobble) is None
    event = rules.reward_degradation("r", t, 100 + 15 * shape + wobble)
    assert event is not None and 200 <= event.onset <= 215 and event.severity == "warning", event


def test_a_noisy_td_loss_climb_read_late_is_still_measured_from_before_the_climb():
    """A real CleanRL DQN Breakout run (tuning half, healthy): losses/td_loss noisy over
    decades (0.003-2). Written into it from 85% of its rows on: x1000 reached log-linearly
    over a tenth of them. The climb's first half lies inside the noise band of the level it
    left, so its onset is read near where it is past the midpoint; the climb itself is still
    measured from the rows before its earliest start, where it left its trough's band
    (``_over_the_rise``): from the rows before the late onset, it was the climb measured
    against its own middle (x30) and went unreported. The log unchanged stays quiet."""
    steps, values, partner, climbed, k, span = _critic_climb(
        "cleanrltb_dqn_breakout_learning", "losses/td_loss", "charts/episodic_return", 0.85)
    assert rules.value_loss_divergence("losses/td_loss", steps, values, partner) is None
    event = rules.value_loss_divergence("losses/td_loss", steps, climbed, partner)
    assert event is not None and event.severity == "error", event
    assert int(steps[k]) <= event.onset <= int(steps[k + span]), (event, steps[k])
    assert event.evidence["left_trough"] <= event.onset, event


def test_a_value_loss_that_climbs_in_rows_too_short_to_be_levels_diverged_where_it_left_its_level():
    """A real ML-Agents PPO run (Padel, tuning half, healthy): Losses/Value Loss at 8.5-10.6
    for the middle of the run. Written into it from 60% of its rows (step 3575000) on: x1000
    reached log-linearly over 23 rows (a tenth of them). The change points cut the climb
    into single rows, none a level, so the first level after the one held was the climb's
    17th row (x150, step 3975000), and the loss "jumped" there: past the midpoint, late. One
    logged step there covers a sixth of the move: the climb started where the loss left its
    level."""
    from rldk.converters import ingest

    path = next((REAL / "mlagentstb_ppo_padel_learning").glob("events.out.tfevents.*"))
    (run,) = ingest(str(path), adapter="tensorboard").runs()
    loss, ret = run.metric("Losses/Value Loss"), run.metric("Environment/Cumulative Reward")
    steps, values = loss["step"].to_numpy(), loss["value"].to_numpy().astype(float)
    partner = (ret["step"].to_numpy(), ret["value"].to_numpy())
    k, span = int(0.6 * len(values)), int(0.1 * len(values))
    climbed = values.copy()
    climbed[k:] *= 10 ** (3 * np.minimum(1.0, np.arange(1, len(values) - k + 1) / span))
    event = rules.value_loss_divergence("Losses/Value Loss", steps, climbed, partner)
    assert event is not None and event.severity == "error", event
    assert event.onset == int(steps[k]) == 3575000, event
    # a jump of the same size in one logged step is reported at that step, as before
    jumped = np.where(steps >= steps[k], values * 1000, values)
    event = rules.value_loss_divergence("Losses/Value Loss", steps, jumped, partner)
    assert event is not None and event.onset == 3575000, event


def test_a_value_loss_that_climbs_from_a_level_far_over_its_lowest_diverged():
    """A real SB3 PPO run (racer, tuning half, healthy): train/value_loss in the hundreds
    with early rows in the thousands. Written into it from 60% of its rows (step 602112): a
    climb of three decades over a tenth of the rows while the return holds. Over its lowest
    level it rose 10x and stayed, but not 100x (a level held high early), and no single
    step carries it: no rule reported it. Over the climb itself it rose 1000x, to 10x every
    level it held, with the return flat: it diverged, by the protocol's window end."""
    steps, values = sb3("sb3_ppo_racer", "train/value_loss")
    r_steps, r_values = sb3("sb3_ppo_racer", "rollout/ep_rew_mean")
    k, span = int(0.6 * len(values)), int(0.1 * len(values))
    climbed = values.copy()
    climbed[k:] *= 10 ** (3 * np.minimum(1.0, np.arange(1, len(values) - k + 1) / span))
    assert rules.value_loss_divergence("v", steps, values, (r_steps, r_values)) is None
    event = rules.value_loss_divergence("v", steps, climbed, (r_steps, r_values))
    assert event is not None and event.severity == "error", event
    assert int(steps[k]) == 602112 and 602112 <= event.onset <= 628736, event


def test_a_return_that_falls_far_below_zero_explains_no_loss_climb():
    """A TD loss read against the episode return (``loss_divergence``: a Q-learner's, whose
    squared error grows with the square of the returns' size) that climbs 10000x is
    explained when the returns grew 100x in size as the run learned (-20 -> 2000); when
    they grew 100x in size by falling (-20 -> -2000: a simulation that blew up), the
    larger error is the run failing, not the critic fitting more: a divergence. A grad
    norm's allowance (``_return_growth``) reads the returns the same way."""
    rng = np.random.default_rng(7)
    n = 300
    steps = np.arange(n) * 1000
    ramp = np.clip((np.arange(n) - 150) / 100, 0, 1)
    base = -20 + rng.standard_normal(n)
    loss = np.exp(0.2 * rng.standard_normal(n)) * (1 + 100 * ramp) ** 2     # the squared size
    learned = (steps, base + 2020 * ramp)
    blew_up = (steps, base - 1980 * ramp)
    assert rules.loss_divergence("loss", steps, loss, learned) is None
    event = rules.loss_divergence("loss", steps, loss, blew_up)
    assert event is not None and event.severity == "error", event
    assert 150000 <= event.onset <= 200000, event
    assert rules._return_growth(learned, (0, 150000), 200000, 299000)[2] > 50
    assert rules._return_growth(blew_up, (0, 150000), 200000, 299000)[2] == 1.0


def test_a_noisy_value_loss_back_at_levels_it_held_has_not_diverged():
    """A real SB3 PPO run (tuning half, healthy): train/value_loss 24 at its start, 5-70
    while episodes end, 0.03-0.1 over the rows where none does, then 1-149 again as the
    returns swing. Over the climb from that quiet stretch it rose 450x while the return's
    size halved, but the loss held 20-70 before: back at its levels, not diverged."""
    from rldk.converters import ingest

    path = next((REAL / "sb3tb_ppo_pokemon_emerald_learning").glob("events.out.tfevents.*"))
    (run,) = ingest(str(path), adapter="tensorboard").runs()
    loss, ret = run.metric("train/value_loss"), run.metric("rollout/ep_rew_mean")
    partner = (ret["step"].to_numpy(), ret["value"].to_numpy())
    assert rules.value_loss_divergence("train/value_loss", loss["step"].to_numpy(),
                                       loss["value"].to_numpy(), partner) is None


@pytest.mark.parametrize("name, window, back", [
    ("sb3_a2c_cartpole_crash_recovery", (26000, 26500), 38500),    # 180 -> 10, back by 39500
    ("sb3_dqn_model1_collapse_recovery", (337070, 337070), 430369),  # 34 -> 0.5-5, back at 430369
])
def test_real_collapses_that_recover_are_found(name, window, back):
    event = rules.reward_degradation("r", *sb3(name, "rollout/ep_rew_mean"))
    assert window[0] <= event.onset <= window[1]
    assert event.evidence["recovered_at"] == back


@pytest.mark.parametrize("name", ["sb3_ppo_grid_treasure", "sb3_ppo_parking", "sb3_ppo_racer",
                                  "sb3_ppo_biosearch", "sb3_ppo_meal_planner", "sb3_ppo_mujoco_solved",
                                  "sb3_sac_ceia_healthy", "sb3_dqn_breakout_slow",
                                  "sb3_dqn_breakout_noisy", "sb3_ppo_mujoco_kl_clip_early"])
def test_real_recovered_dips_stay_quiet(name):
    """Every healthy tuning-half SB3 return, and one whose return is benign: grid treasure
    4013 -> 1503 -> 3510 for 6% of the run, breakout dips 44.6 -> 27.9 -> 50, parking's
    noisy dips, mujoco 1491 -> 956 -> 1623. (Flappy's return, listed here until session
    20, holds ~140 from 1.1M but for dips to 39; the one of 80 rows from 1.36M, past half
    its gain and under a quarter of it for a tenth of the run, is now a recovered decline:
    see tests/test_trend.py::test_real_healthy_returns_stay_quiet.)"""
    assert trend.recovered_decline(*sb3(name, "rollout/ep_rew_mean"), 0.5) is None


@pytest.mark.parametrize("name, window", [
    ("sb3_a2c_eval_entropy_collapse", (1000, 11500)),   # 1.59 -> 0.7 by 11500, ~0 from 259500
    ("sb3_a2c_flappy_entropy_collapse", (4000, 6000)),  # 0.67 -> 0.33 at 6000, ~0 from 94000
    ("sb3_ppo_jobshop_entropy", (10240, 18432)),
])
def test_real_staged_entropy_collapses_start_at_the_first_slide(name, window):
    steps, loss = sb3(name, "train/entropy_loss")
    event = rules.entropy_collapse("entropy", steps, -loss)
    assert window[0] <= event.onset <= window[1]


def test_grad_norm_explosion_needs_a_level_the_run_held():
    """10x a level held for a while is an explosion, found at its first step; 10x the
    first two logged values (GRPO's near-zero norms at steps without reward variance, as
    a log thinned to every 3rd step shows them) is not a level the run held."""
    rng = np.random.default_rng(3)
    held = np.abs(0.4 + 0.1 * rng.standard_normal(120))
    exploded = held.copy()
    exploded[80:] *= 30
    event = rules.grad_norm_explosion("grad_norm", np.arange(120), exploded)
    assert event is not None and event.onset == 80
    assert rules.grad_norm_explosion("grad_norm", np.arange(120), held) is None
    start = np.concatenate([[0.0, 0.001], held[:80]])
    assert rules.grad_norm_explosion("grad_norm", np.arange(82), start) is None


def test_a_grad_norm_that_explodes_in_stages_is_judged_against_the_level_it_held():
    """A norm held at 0.07 for 90 rows that climbs over five rows to 0.5 and then sits at
    2 (each stage under 10x the one before, 30x the level held): an explosion, against
    the held level; the same stages each held for a third of the run (a norm that grows
    with learning) are not. The tuning half's verl soft-GRPO run: 0.07 over steps 1-92,
    0.15-0.5 over 93-97, then 1-8 for the rest of its 626 steps."""
    from rldk.converters import ingest

    rng = np.random.default_rng(7)
    climb = np.r_[0.07 * np.ones(90), [0.15, 0.23, 0.38, 0.33, 0.5], 2.0 * np.ones(300)]
    climb *= np.exp(0.15 * rng.standard_normal(len(climb)))
    event = rules.grad_norm_explosion("grad_norm", np.arange(len(climb)), climb)
    assert event is not None and 90 <= event.onset <= 95 and event.evidence["before_max"] < 0.1, event
    grown = np.repeat([0.1, 0.5, 2.5], 100) * np.exp(0.15 * rng.standard_normal(300))
    assert rules.grad_norm_explosion("grad_norm", np.arange(300), grown) is None

    name = "verltb_softgrpo_r1distill15b_dirichlet_gradnorm_explosion_length_collapse"
    (run,) = ingest(str(next((REAL / name).glob("events.out.tfevents.*"))), adapter="tensorboard").runs()
    norm = run.metric("actor/grad_norm")
    event = rules.grad_norm_explosion("grad_norm", norm["step"].to_numpy(), norm["value"].to_numpy())
    assert event is not None and event.onset == 93 and event.evidence["before_max"] < 0.1, event


def test_a_grad_norm_explosion_starts_where_the_norm_left_its_level_for_good():
    """The soft-GRPO shape: 0.07 for 90 rows, a climb over five (0.15-0.5), one row at
    10, a dozen at 0.8-8, seventeen at 0.35, then 1.5 to the end. The regime found 10x
    over the level held is the last; the norm never came back from 3x over that level
    after the climb, so the explosion began with it: between the first row of the move
    (90) and the first past the geometric midpoint for good (92), the onset protocol's
    window; the burst at 95, where it was once reported, lies after it."""
    rng = np.random.default_rng(7)
    shape = np.r_[0.07 * np.ones(90), [0.15, 0.23, 0.38, 0.33, 0.5],
                  [10.0, 1.7, 0.8, 0.8, 1.0, 8.0, 6.0, 1.6, 2.0, 2.2], 0.35 * np.ones(17), 1.5 * np.ones(300)]
    norm = shape * np.exp(0.15 * rng.standard_normal(len(shape)))
    event = rules.grad_norm_explosion("grad_norm", np.arange(len(norm)), norm)
    assert event is not None and 90 <= event.onset <= 92, event
    # a norm that came back to its level between the burst and the rise: the rise alone
    back = norm.copy()
    back[105:122] = 0.07 * np.exp(0.15 * rng.standard_normal(17))
    event = rules.grad_norm_explosion("grad_norm", np.arange(len(back)), back)
    assert event is not None and event.onset == 122, event


def test_a_grad_norm_leap_that_returns_at_once_is_a_spike_not_an_explosion():
    """A norm at ~0.9 that leaps for three rows and is back at ~1 on the next (as a real
    GRPO log's does at 170-172 of 430 rows): a spike, left to the spikes analyzer. The
    same leap in the last rows of a log that never left its level before: an explosion
    the run was stopped at."""
    rng = np.random.default_rng(11)
    norm = np.abs(0.9 + 0.15 * rng.standard_normal(430))
    norm[170:173] = [27.06, 19.2, 23.8]
    assert rules.grad_norm_explosion("grad_norm", np.arange(430), norm) is None
    stopped = norm[:173]
    event = rules.grad_norm_explosion("grad_norm", np.arange(173), stopped)
    assert event is not None and event.onset == 170


def test_a_burst_of_ppo_approx_kl_past_ten_nats_is_a_blowup_however_short():
    """PPO's approx KL at 0.01 with three updates at 12, 5e6 and 3 nats: the policy broke
    (a blow-up, a warning, from the first row of the burst); one row there is a spike,
    and a run whose KL sits at 0.27 with two rows at 7 (a healthy LLM PPO run of the
    corpus) is no burst. The tuning half's Procgen Jumper run: 5.19e6 nats at 5931008."""
    rng = np.random.default_rng(4)
    kl = 0.01 * np.exp(0.3 * rng.standard_normal(120))
    burst = kl.copy()
    burst[60:63] = [12.0, 5e6, 3.0]
    event = rules.approx_kl_blowup("approxkl", np.arange(120), burst)
    assert (event.code, event.severity, event.onset, event.last) == ("kl_blowup", "warning", 60, 61), event
    one = kl.copy()
    one[60] = 50.0
    assert rules.approx_kl_blowup("approxkl", np.arange(120), one) is None
    llm = 0.27 * np.exp(0.3 * rng.standard_normal(25))
    llm[10:12] = 7.0
    assert rules._burst("approxkl", np.arange(25), llm) is None

    name = "baselines_ppo2_procgen_jumper_kl_blowup_double_collapse"
    rows = list(csv.DictReader((REAL / name / "progress.csv").open()))
    steps = np.array([float(r["misc/total_timesteps"]) for r in rows])
    kl = np.array([float(r["loss/approxkl"]) if r["loss/approxkl"] else np.nan for r in rows])
    event = rules.approx_kl_blowup("loss/approxkl", steps, kl)
    assert event is not None and event.onset == 5931008, event
    # a burst the KL climbed into starts where the climb passed the midpoint (log scale):
    # an OmniSafe ALMPG KL at 1e-4 that climbs 0.02 -> 7 -> 58 over 25 epochs of 400
    climb = np.r_[1e-4 * np.ones(60), np.geomspace(0.02, 7.0, 25), [26.0, 58.0, 17.0], 0.001 * np.ones(312)]
    event = rules.approx_kl_blowup("Train/KL", np.arange(len(climb)), climb)
    assert event is not None and event.evidence["burst"] and event.evidence["over_line_from"] == 85, event
    assert 60 <= event.onset <= 66, event


def test_a_kl_burst_of_a_few_nats_from_the_level_it_held_is_a_blowup():
    """The tuning half's Procgen Jumper run: loss/approxkl at 0.008-0.086 (median 0.015) for
    80 updates, then 1.95 and 6.5 nats (4538368-4554752), back to 0.005: in the same two
    updates its entropy falls 1.66 -> 0.29 and its return starts to collapse. Under the
    run-wide burst line (10 nats) it went unreported; it is 130x the level the KL held just
    before (``approx_kl_bursts``). The later 5e6-nat burst is still reported, once. A
    healthy CleanRL PPO's 1.57 nats, 12x the 0.13 it held before, is no burst; nor are
    the first updates of a run, with no level held before them."""
    name = "baselines_ppo2_procgen_jumper_kl_blowup_double_collapse"
    rows = list(csv.DictReader((REAL / name / "progress.csv").open()))
    steps = np.array([float(r["misc/total_timesteps"]) for r in rows])
    kl = np.array([float(r["loss/approxkl"]) if r["loss/approxkl"] else np.nan for r in rows])
    keep = np.isfinite(kl)
    bursts = rules.approx_kl_bursts("loss/approxkl", steps[keep], kl[keep])
    assert [e.onset for e in bursts] == [4538368], bursts
    assert bursts[0].severity == "warning" and bursts[0].evidence["low"] < 0.03, bursts
    rng = np.random.default_rng(6)
    healthy = np.r_[np.full(40, 0.13), 0.2, 0.3, 1.4, 1.2, 1.57, 0.6, np.full(40, 0.13)]
    healthy = healthy * np.exp(0.1 * rng.standard_normal(len(healthy)))
    assert rules.approx_kl_bursts("losses/approx_kl", np.arange(len(healthy)), healthy) == []
    start = np.r_[1.5, 1.7, 1.2, 0.5, np.full(80, 0.005)]
    assert rules.approx_kl_bursts("losses/approx_kl", np.arange(len(start)), start) == []


def test_a_one_row_kl_jump_is_a_spike_not_a_blowup():
    """KL at ~0.45 with one row at 13.9 (a real GRPO log's): a spike; two rows or more
    above KL_HIGH and 10x the level before: a blow-up, from its first row."""
    rng = np.random.default_rng(5)
    kl = 0.45 + 0.05 * rng.random(60)
    kl[30] = 13.9
    assert rules.kl_blowup("kl", np.arange(60), kl) is None
    kl[40:] = 8.0 + rng.random(20)
    event = rules.kl_blowup("kl", np.arange(60), kl)
    assert event is not None and event.onset == 40


def test_a_kl_that_climbs_in_stages_is_a_blowup_from_the_first_stage():
    """KL at 0.8 that climbs 1.3, 2, 2.5, 4.4, 7.8, 13 to ~17 and stays (a real verl run's
    reward KL penalty): no stage is 10x the one before it, the whole climb is 20x the level
    it held; the move starts at its first row. A climb that stays under 1 nat is no blow-up."""
    rng = np.random.default_rng(7)
    kl = np.r_[0.83, 0.85, 1.32, 2.0, 2.52, 4.38, 7.84, 13.0, 15.7, 16.9 + 0.2 * rng.standard_normal(60)]
    event = rules.kl_blowup("actor/reward_kl_penalty", np.arange(1, len(kl) + 1), kl)
    assert event is not None and event.code == "kl_blowup" and event.severity == "error"
    assert 3 <= event.onset <= 6                      # the protocol's window: rows 3..6
    assert rules.kl_blowup("kl", np.arange(len(kl)), kl / 40) is None



def test_a_kl_that_drifts_up_under_a_nat_and_then_jumps_blew_up_at_the_jump():
    """A real verl GRPO ALFWorld run (tuning half, healthy): actor/kl_loss grows from 0.017
    (step 3) to 0.18-0.22 over steps 61-90 and 0.3 by 150, never near a nat. Multiplied by
    9 from step 91 (just under KL_JUMP over the level before, as injection.py's kl_blowup
    comes out on this log), it sits at 2.5 nats: a blow-up. The climb over 10x its lowest
    level was read from step 9, the healthy drift included; the run held 0.18 for 22 steps
    (PRIOR_POINTS), ten times under the state, and left it at the jump, step 91."""
    path = REAL / "verlcsv_grpo_qwen25_7b_alfworld_vanilla_seed1_learning" / "run_b_telemetry.csv"
    with open(path, encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["actor/kl_loss"]]
    steps = np.array([int(r["step"]) for r in rows])
    kl = np.array([float(r["actor/kl_loss"]) for r in rows])
    assert rules.kl_blowup("actor/kl_loss", steps, kl) is None
    event = rules.kl_blowup("actor/kl_loss", steps, np.where(steps >= 91, 9 * kl, kl))
    assert event is not None and event.severity == "error" and event.onset == 91, event

def test_a_reward_collapse_starts_where_the_slide_to_the_floor_began():
    """A reward that slides from its level to exactly -1 over ten rows collapsed when it
    left its level (the floor is reached later, kept in the evidence); a noisy flat reward
    that drops straight to its floor collapsed at the drop, not at an earlier wobble."""
    rng = np.random.default_rng(8)
    level = -0.3 + 0.02 * rng.standard_normal(30)
    slide = np.linspace(-0.35, -0.99, 10)
    v = np.r_[level, slide, np.full(60, -1.0)]
    event = rules.reward_collapse("reward", np.arange(len(v)), v)
    assert event is not None and event.onset == 30 and event.evidence["at_floor_from"] == 40
    noisy = rng.random(200) * 0.5
    noisy[150:] = noisy.min()
    event = rules.reward_collapse("reward", np.arange(200), noisy)
    assert event is not None and event.onset == 150


def test_a_noisy_group_reward_collapses_where_it_stays_at_the_floor():
    """GRPO with one problem of 8 rollouts a step: the mean reward is 0 on about a quarter
    of the healthy steps. It collapsed where it went to 0 to stay (a real run of the
    tuning half: 0 at 56, 0.125 at 57, 0 from 58 to 500), not at the first 0 from which 80%
    of the rest are 0 (step 9 there): the split of at-the-floor rates, then back to the
    first 0 joined to it by values past the midpoint."""
    rng = np.random.default_rng(3)
    solvable = rng.random(55) < 0.7                    # a third of the problems: all 8 fail
    healthy = rng.binomial(8, np.where(solvable, 0.7, 0.0)) / 8
    healthy[-1] = 0.5                                   # as the real run's step 55
    v = np.r_[healthy, 0.0, 0.125, np.zeros(443)]
    assert (healthy == 0).sum() >= 10 and np.median(healthy) >= 0.5
    event = rules.reward_collapse("reward_avg", np.arange(1, len(v) + 1), v)
    assert event is not None and event.onset == 56 and event.evidence["at_floor_from"] == 58


def test_a_length_judged_from_the_lowest_whole_window():
    """Response lengths of one problem a step swing 10x row to row; the rolling median of
    the first 3 rows (38, 384, 23) is no level the run held, and 3x it is no explosion: the
    lowest level over a whole window is (a real GRPO run of the tuning half: 38 at step 1,
    ~400 from step 20 on, was "an explosion from step 5"). The same series x5 from row 300
    is still an explosion (its onset on a series this noisy is placed early: a known gap)."""
    rng = np.random.default_rng(4)
    v = np.exp(rng.normal(np.log(350), 0.6, size=500))
    v[:3] = [38.0, 384.0, 23.0]
    steps = np.arange(1, 501)
    assert rules.length_change("avg_response_len", steps, v) is None
    grown = np.where(steps >= 300, 5 * v, v)
    event = rules.length_change("avg_response_len", steps, grown)
    assert event is not None and event.code == "length_explosion" and event.evidence["above_from"] == 300


@pytest.mark.parametrize("every", [1, 2, 3])
def test_a_collapse_from_the_first_row_starts_at_the_first_row_that_left_it(every):
    """A reward that slides from its very first row to its floor has that row as its only
    level: the onset is the first row of the slide that left it by more than a quarter of
    the move (not the floor, nor a row picked from a window that is the slide itself),
    whichever rows of it were logged."""
    slide = np.array([-0.676, -0.717, -0.844, -0.911, -0.918, -0.944, -0.966, -0.973, -0.998])
    v = np.r_[slide, np.full(100, -1.0)][::every]
    steps = np.arange(1, 110)[::every]
    event = rules.reward_collapse("reward", steps, v)
    # past the midpoint (-0.838) for good from row 3; row 2 (-0.717) is a wobble of row 1
    assert event is not None and event.onset == {1: 3, 2: 3, 3: 4}[every]


def test_a_jump_after_a_slow_drift_starts_at_the_jump():
    """A length that drifts 1000 -> 1800 over 30 rows (healthy growth, under the rule's 3x)
    and then jumps 5x in one row exploded at the jump, not where the drift began; a noisy
    length (35-105 row to row) that drops to a tenth in one row collapsed at the drop."""
    rng = np.random.default_rng(11)
    drift = np.r_[np.full(10, 1000.0), np.linspace(1000, 1800, 30)] * np.exp(0.04 * rng.standard_normal(40))
    v = np.r_[drift, 5 * 1800 * np.exp(0.04 * rng.standard_normal(20))]
    event = rules.length_change("response_length", np.arange(len(v)), v)
    assert event is not None and event.code == "length_explosion" and event.onset == 40
    noisy = 70 + 35 * rng.uniform(-1, 1, 150)
    noisy[100:] *= 0.1
    event = rules.length_change("response_length", np.arange(150), noisy)
    assert event is not None and event.code == "length_collapse" and event.onset == 100


def test_an_entropy_that_collapsed_recovered_and_collapsed_again_has_two_events():
    """A policy whose entropy falls from 2 nats to 0.1 for a sixth of the run, comes back to
    2 and collapses to 0.02 for good has two collapses; one that wobbles from 0.1 up to 0.4
    after its collapse (back by less than a collapse falls) and down to 0.02 has one."""
    rng = np.random.default_rng(3)
    t = np.arange(300)
    twice = np.interp(t, [0, 100, 104, 150, 154, 200, 204, 299], [2, 2, 0.1, 0.1, 2, 2, 0.02, 0.02])
    found = rules.entropy_collapses("entropy", t, twice * np.exp(0.05 * rng.normal(size=300)))
    assert [(e.onset, e.severity) for e in found] == [(101, "warning"), (201, "error")]
    wobble = np.interp(t, [0, 100, 104, 150, 154, 200, 204, 299], [2, 2, 0.1, 0.1, 0.4, 0.4, 0.02, 0.02])
    found = rules.entropy_collapses("entropy", t, wobble * np.exp(0.05 * rng.normal(size=300)))
    assert [e.onset for e in found] == [101]


def test_a_real_entropy_that_collapsed_twice_read_from_a_fifth_of_its_run_has_both():
    """A Procgen Jumper run (OpenAI baselines ppo2, tuning half): policy entropy 1.76 ->
    0.15 at 4554752 for about 50 updates, back at 1.9, then 0.03 from 5931008 to the end.
    Read from a fifth of its steps on (a resumed run), the first collapse lasts a tenth of
    what is left and was the only one reported; the second, which the full log reports,
    was lost behind it."""
    name = "baselines_ppo2_procgen_jumper_kl_blowup_double_collapse"
    rows = list(csv.DictReader((REAL / name / "progress.csv").open()))
    steps = np.array([int(float(r["misc/total_timesteps"])) for r in rows])
    values = np.array([float(r["loss/policy_entropy"]) for r in rows])
    keep = steps >= steps[0] + 0.2 * (steps[-1] - steps[0])
    found = rules.entropy_collapses("loss/policy_entropy", steps[keep], values[keep])
    assert [e.onset for e in found] == [4554752, 5931008]
    assert [e.onset for e in rules.entropy_collapses("loss/policy_entropy", steps, values)] == [5931008]


def test_an_entropy_that_collapses_at_its_second_row_is_found_there():
    """Entropy 0.73 at the first logged row, 1e-3..1e-6 from the second on (a real A2C run
    logged every third update): the first row is the only level the run held, and the
    collapse starts at the second row; a first row that the second does not leave for
    good is no level (a lone outlier)."""
    rng = np.random.default_rng(12)
    v = np.r_[0.73, 10 ** rng.uniform(-6, -3, 80)]
    event = rules.entropy_collapse("entropy", np.arange(81), v)
    assert event is not None and event.onset == 1
    healthy = np.r_[0.73, 0.05, 0.5 + 0.05 * rng.standard_normal(79)]
    assert rules.entropy_collapse("entropy", np.arange(81), healthy) is None


def test_an_entropy_a_rounding_error_under_zero_is_a_collapse_to_zero():
    """A discrete policy made deterministic by one update (a real ML-Agents run of the
    tuning half: 1.19-1.30 nats over ten rows, then -2.3e-07..-3.6e-07 to the end) reads
    a hair under zero in float32: that is zero, a collapse from the first step under it.
    A differential entropy that is negative by tenths of a nat (a Gaussian policy) stays
    out of the rule, and so does the analyzer's entropy check."""
    rng = np.random.default_rng(3)
    v = np.r_[1.21 + 0.04 * rng.standard_normal(10), -3e-7 + 5e-8 * rng.standard_normal(10)]
    steps = 5000 * np.arange(1, 21)
    event = rules.entropy_collapse("entropy", steps, v)
    assert event is not None and event.onset == 55000 and event.severity == "error", event
    assert not rules.differential_entropy(v)
    gaussian = np.r_[1.2 - 0.1 * np.arange(20)]
    assert rules.differential_entropy(gaussian) and rules.entropy_collapse("entropy", steps, gaussian) is None


def test_an_entropy_collapse_with_bursts_is_found_in_a_run_stopped_soon_after_it():
    """Entropy 0.67 that falls to ~0.04 and bursts back above a fifth of its level on 7%
    of the rows, one row at a time (a real A2C run, stopped 100 rows in): most of the
    state lies deep under the line, so its bursts are bursts, not a level it came back
    to. An entropy that hovers just under the line, as often above it, is no state."""
    rng = np.random.default_rng(21)
    v = np.r_[0.67, 0.6, 0.33, 0.29, 0.25, 0.04 * np.exp(0.8 * rng.standard_normal(95))]
    v[np.arange(12, 100, 14)] = 0.2                 # isolated bursts: 7% of the rows
    event = rules.entropy_collapse("entropy", np.arange(100), v)
    assert event is not None and event.onset <= 5
    hovering = np.r_[0.67, 0.6, 0.5, 0.4, 0.3, 0.11 * np.exp(0.1 * rng.standard_normal(95))]
    hovering[np.arange(12, 100, 14)] = 0.2
    assert rules.entropy_collapse("entropy", np.arange(100), hovering) is None


def test_an_entropy_that_collapses_at_its_second_row_holds_its_first_row_as_level():
    """The same A2C run logged every third update: 0.73, then 1e-3 twice and ~1e-6 with
    bursts to 0.05 on 4% of the rows. The rolling median of the first rows is the
    fallen level already; the first row is the level the run held, and the collapse
    starts at the second row, not where 1e-3 fell on to 1e-6."""
    rng = np.random.default_rng(4)
    v = np.r_[0.73, 1e-3, 1e-3, 10 ** rng.uniform(-7, -5, 70)]
    v[np.arange(10, 73, 24)] = 0.05
    event = rules.entropy_collapse("entropy", np.arange(73), v)
    assert event is not None and event.onset == 1 and event.evidence["held"] == 0.73


def test_a_loss_that_jumps_after_its_drift_crossed_the_line_diverged_at_the_jump():
    """A TD loss that grows 100x from its lowest level as the returns grow (1e-4 -> 1e-2,
    crossing the rule's line with dips back under it) and then jumps 1000x in one row
    diverged at the jump, not where its healthy drift first crossed the line."""
    rng = np.random.default_rng(13)
    v = np.r_[np.full(40, 1e-4), np.geomspace(1e-4, 1.5e-2, 60), np.full(40, 1.5e-2)]
    v = v * np.exp(0.5 * rng.standard_normal(len(v)))
    v[100:] *= 1000
    event = rules.loss_divergence("train/loss", np.arange(len(v)), v)
    assert event is not None and event.onset == 100


def _dipped_value_loss(rng):
    """A value loss at ~0.04 that logs near-zeros for a few rows (SB3 PPO on a highway
    racetrack, its log cut to its last 90%: 1e-7 and two 0s between 0.03 and 0.97), and a
    return that degrades from row 250."""
    v = 0.04 * np.exp(0.8 * rng.standard_normal(400))
    v[150:158] = [5e-4, 1.5e-4, 8e-6, 3e-6, 2.5e-7, 1e-7, 0.0, 0.0]
    steps = np.arange(len(v))
    ret = np.r_[np.linspace(0, 700, 100), np.full(150, 700.0), np.full(150, 450.0)]
    return steps, v, (steps, ret + 10 * rng.standard_normal(len(v)))


def test_a_loss_back_at_its_level_after_a_dip_to_zero_has_not_risen():
    """No point-state of the dipped value loss passes 10x the level it held (0.04); only
    its rolling level passes 10x the dip's. Back at the level it held before the dip, it
    did not blow up: the finding once read "blew up from 0.04219 to 0.04218"."""
    steps, v, partner = _dipped_value_loss(np.random.default_rng(7))
    assert rules.value_loss_divergence("train/value_loss", steps, v, partner) is None
    assert rules.loss_divergence("train/value_loss", steps, v) is None


def test_a_rise_after_a_dip_starts_where_it_left_the_level_held():
    """The dipped value loss, then 50x its level from row 250 (with the return's fall):
    it rose from the level it held, not from the dip, and it started at the jump, not
    where it climbed out of the dip (row 158). Row 250 logged 0.148, still under the
    midpoint of 0.035 and 2 on the log scale (0.26): the new level is reached at 251."""
    steps, v, partner = _dipped_value_loss(np.random.default_rng(7))
    v[250:] *= 50
    event = rules.value_loss_divergence("train/value_loss", steps, v, partner)
    assert event is not None and event.onset == 251, event
    assert 0.03 < event.evidence["held"] < 0.04 and event.evidence["now"] > 1.5, event.title


def test_a_loss_that_rises_from_zero_to_a_negligible_error_has_not_diverged():
    """A real A2C critic on Breakout (tuning half) whose policy no longer moves: returns
    at 3.7, value loss 0 to 1e-14 and then 4e-7 (a root of 6e-4 against returns of 3.7).
    The rise is ten million times and no prediction notices it: no divergence. The
    same shape at the size of the returns' square, or of 1 with normalised returns
    (a loss at 0.3 while the returns are -600), still is one."""
    steps, v = sb3("sb3_a2c_breakout_entropy_collapse", "train/value_loss")
    partner = sb3("sb3_a2c_breakout_entropy_collapse", "rollout/ep_rew_mean")
    assert 1e-7 < np.median(v[len(v) // 2:len(v) // 2 + 40]) < 1e-6    # the case: losses of 4e-7
    assert rules.value_loss_divergence("train/value_loss", steps, v, partner) is None
    assert rules.loss_divergence("loss", steps, v, partner) is None
    rng = np.random.default_rng(3)
    n = 300
    t = np.arange(n)
    loss = np.r_[1e-12 * np.exp(rng.standard_normal(150)), 0.5 * np.exp(0.3 * rng.standard_normal(150))]
    for ret in (np.full(n, 3.7), np.full(n, -600.0)):
        event = rules.value_loss_divergence("train/value_loss", t, loss, (t, ret + 0.01 * rng.standard_normal(n)))
        assert event is not None and event.onset == 150, (ret[0], event)
    assert rules.loss_divergence("loss", t, loss, (t, np.full(n, 3.7))) is not None


def test_a_loss_that_climbs_straight_out_of_the_end_of_its_fall_rose_from_there():
    """A loss that falls 10 -> 0.01 from an untrained start and at once climbs to 100: the
    median before its lowest level (0.3) is no level it held just before it, so the rise
    starts where the climb left the lowest level, not where it passed 0.3 (row ~175)."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        v = np.r_[np.geomspace(10, 0.01, 100), np.geomspace(0.01, 100, 150), np.full(150, 100.0)]
        v = v * np.exp(0.3 * rng.standard_normal(len(v)))
        event = rules.loss_divergence("loss", np.arange(len(v)), v)
        assert event is not None and event.onset <= 150, (seed, event)


def test_a_return_that_falls_in_stages_with_bounces_fell_where_it_left_its_plateau():
    """A return shaped like an rl_games CartpoleCmd run of the tuning half: a wandering
    plateau (AR(1), rho 0.95), a smooth last stretch at 380, a fall to 75 from row 330, a
    recovery in short steps to a stage at ~240 (with a 5-row bump to 330), then a fall to
    50 at row 450 that lasts to the end. It never came back to its plateau: the decline
    started at the first fall (row 331, the first row off 380), not at the second, where
    the half-gain line is crossed for good (the plateau's wander makes the first stage no
    significant level of its own)."""
    for seed in range(6):
        rng = np.random.default_rng(seed)
        wander = np.zeros(200)
        for i in range(1, 200):
            wander[i] = 0.95 * wander[i - 1] + rng.standard_normal()
        v = np.r_[np.linspace(0, 320, 100), 320 + 12 * wander, np.full(30, 380.0), np.linspace(380, 75, 10),
                  np.linspace(75, 240, 30), np.full(5, 330.0), np.full(75, 240.0), np.linspace(240, 50, 8),
                  np.full(72, 50.0)]
        v = v + 2.0 * rng.standard_normal(len(v))
        event = rules.reward_degradation("rewards/step", 8192 * np.arange(len(v)), v)
        assert event is not None and event.onset == 8192 * 331, (seed, event)


def test_a_return_whose_points_stay_below_the_line_fell_from_where_it_left_its_level():
    """A smooth return that slides from its first row (-334, -413, -506, -542, ... -623:
    a real A2C run logged every third update) has lost half its gain at row 3; its fall
    began at row 1, the first row that left the only level it held."""
    v = np.r_[-334.0, -413.3, -505.9, -541.9, -559.7, -571.5, -578.5, -613.3,
              -623 + 0.5 * np.sin(np.arange(64))]
    steps = 1500 + 4500 * np.arange(len(v))
    event = rules.reward_degradation("rollout/ep_rew_mean", steps, v)
    assert event is not None and event.onset == 6000 and event.evidence["below_from"] == 15000


def test_a_collapse_that_recovers_is_found_at_a_coarse_cadence():
    """The cartpole crash (182 -> 10 -> back above 120 in 14 rows) logged every third row:
    its low stretch is a smooth recovery ramp that PELT cuts into one- and two-point
    regimes; it is the low values, three in a row below the line, that open it."""
    steps, values = sb3("sb3_a2c_cartpole_crash_recovery", "rollout/ep_rew_mean")
    event = rules.reward_degradation("r", steps[::3], values[::3])
    assert event is not None and 26000 <= event.onset <= 27500
    assert event.evidence["recovered_at"] is not None


def test_a_noisy_length_that_grows_five_fold_is_an_explosion():
    """A real GRPO run's noisy mean length (9-122 tokens row to row, tuning half) grown 5x
    from row 120 on: the rolling levels whose windows already hold grown values are not
    a level the run held before the rise, which is therefore no return to one."""
    import json
    state = json.loads((REAL / "trl_grpo_unlearning_run6" / "trainer_state.json").read_text())
    rows = [(r["step"], r["completions/mean_length"]) for r in state["log_history"]
            if "completions/mean_length" in r]
    steps, v = (np.array(x, dtype=float) for x in zip(*rows))
    v[120:] *= 5
    event = rules.length_change("completions/mean_length", steps, v)
    assert event is not None and event.code == "length_explosion"
    assert steps[120] <= event.onset <= steps[125]


@pytest.mark.parametrize("every, window", [(1, (3, 6)), (2, (3, 5)), (3, (4, 4))])
def test_a_kl_that_climbs_from_its_first_row_is_a_blowup_at_any_cadence(every, window):
    """The staged KL climb (0.83 -> ~17) logged every second or third row: its first row
    is the only level it held before the climb (the LEVEL_WINDOW points around it are the
    climb itself), and the climb is 20x that row, from the first logged row of the move."""
    rng = np.random.default_rng(7)
    kl = np.r_[0.83, 0.85, 1.32, 2.0, 2.52, 4.38, 7.84, 13.0, 15.7, 16.9 + 0.2 * rng.standard_normal(60)]
    steps = np.arange(1, len(kl) + 1)
    event = rules.kl_blowup("actor/reward_kl_penalty", steps[::every], kl[::every])
    assert event is not None and window[0] <= event.onset <= window[1]


def test_an_entropy_that_stays_above_the_floor_is_a_sharper_policy_not_a_collapse():
    """A multi-discrete policy's entropy 7.1 -> 1.2 nats (a sixth: 3.3 effective choices
    left) is info; the same run falling on to 0.01 nats later is a collapse, from that fall."""
    rng = np.random.default_rng(5)
    v = np.r_[np.linspace(7.1, 1.2, 60), np.full(60, 1.2)] * np.exp(0.02 * rng.normal(size=120))
    event = rules.entropy_collapse("entropy", np.arange(120), v)
    assert event.severity == "info" and event.evidence["now"] > rules.ENTROPY_FLOOR
    w = np.r_[v, 0.01 * np.exp(0.02 * rng.normal(size=60))]
    later = rules.entropy_collapse("entropy", np.arange(180), w)
    assert later.severity == "error" and later.onset == 120


def test_a_fall_starts_where_the_series_leaves_the_level_it_held_just_before():
    """A return that rises to 11.2, settles a little under it (10.6) for a stretch, then
    drops to 7 in one logged step: the drop is the onset, not the wobble before it (the onset
    protocol's prior level is the one held just before the move)."""
    rng = np.random.default_rng(6)
    v = np.r_[np.linspace(9.0, 11.2, 40), np.full(60, 11.2), np.full(60, 10.6), np.full(80, 7.0)]
    v = v + 0.03 * rng.normal(size=len(v))
    event = rules.reward_degradation("return", np.arange(len(v)), v)
    assert event is not None and event.onset == 160


def test_a_fall_after_a_short_burst_over_the_plateau_starts_where_it_left_the_plateau():
    """An evaluation return at ~240 for 30 rows, a 9-row burst to ~350, back to ~240 for 5,
    two rows dipping under the plateau's band that come back into it, then a fall to ~15:
    the onset protocol's prior level is the plateau (the burst is no level it held for
    long), and the fall starts one row after the last row at it (a real SB3 PPO drone run
    of the tuning half was reported at its first dip, four rows early)."""
    rng = np.random.default_rng(8)
    v = np.r_[np.linspace(60.0, 240.0, 30), 240.0 + 15.0 * rng.normal(size=30), 350.0 + 30.0 * rng.normal(size=9),
              240.0 + 15.0 * rng.normal(size=5), 150.0, 215.0, 165.0, 232.0, 180.0, 15.0 + 5.0 * rng.normal(size=50)]
    steps = np.arange(len(v)) * 1000
    event = rules.reward_degradation("eval/mean_reward", steps, v)
    assert event is not None and event.onset == steps[78], event


def test_a_noisy_length_pinned_at_its_cap_rose_where_it_left_its_level():
    """One problem a step: the mean length swings 2x row to row around ~330 tokens, climbs
    from row 58 and is pinned at the 1024-token cap from row 72 to the end (a real GRPO
    collapse of the tuning half, whose length was "an explosion from step 9"). Neither
    the flat noiseless stretch at the cap (which sets the whole series' scale near 0) nor
    the cap's weight in "past the midpoint for good" may pull the onset into the noise
    before the climb: over eight seeds the median onset is at most a few rows before it."""
    onsets = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        steps = np.arange(1, 501)
        v = np.exp(rng.normal(np.log(330), 0.6, size=500))
        v[57:71] = np.exp(np.linspace(np.log(500), np.log(1024), 14) + rng.normal(0, 0.15, 14))
        v = np.minimum(v, 1024.0)
        v[71:] = np.where(rng.random(429) < 0.05, 960.0, 1024.0)
        event = rules.length_change("avg_response_len", steps, v)
        assert event is not None and event.code == "length_explosion"
        onsets.append(event.onset)
    assert np.median(onsets) >= 52, onsets


def test_a_gain_from_the_untrained_first_evaluation_can_be_lost():
    """A test return whose first evaluation is the untrained policy's (0.56) and which sits
    at its ceiling (20, a tenth of the evaluations lower) from the second on has gained
    19.4, though no window of three evaluations holds the first: after a transient dip
    (7 evaluations at ~7, recovered), a slide to ~5 for a third of the run, recovered at
    the end, lost 75% of it (a real EPyMARL QMIX run of the tuning half). Without the first
    row the gain in sight is the ceiling's noise, and the earlier dip is as low as the
    slide: found on 11 of these 20 seeded runs before, all 20 now."""
    for seed in range(20):
        rng = np.random.default_rng(seed)
        n = 250
        v = 20.0 + rng.normal(0, 0.05, n)
        dips = rng.random(n) < 0.1
        v[dips] = rng.uniform(15, 19.5, dips.sum())
        v[0] = 0.56
        v[90:97] = 7.0 + rng.normal(0, 1.5, 7)
        v[120:200] = 5.0 + rng.normal(0, 1.5, 80)
        steps = np.arange(n) * 10_000 + 37
        events = rules.reward_declines("test_return_mean", steps, v)
        assert [e.code for e in events] == ["reward_degradation"], seed
        assert events[0].evidence["recovered_at"] is not None, seed


# ------------------------------------------------------- entropy at a reward's ceiling
def tensorboard(name: str, *tags: str):
    """``(steps, values)`` of each tag of a tuning-half TensorBoard event file, read
    through rldk's own importer."""
    from rldk.analyzers import _series
    from rldk.converters import ingest

    store = ingest(str(next((REAL / name).glob("events.out.tfevents.*"))), adapter="tensorboard")
    loaded = _series.load_series(_series.Source(store, store.run_ids[0]), list(tags))
    return [(loaded[t].steps, loaded[t].values) for t in tags]


def test_an_entropy_that_collapses_as_the_reward_reaches_its_ceiling_is_a_solved_task():
    """An accuracy that rises 0.1 -> exactly 1.0 (every answer right; hit again and again,
    between rows just under it) while the entropy falls 1.0 -> 0.002: a deterministic
    policy on a solved task, info. The same entropy fall long before the reward rose is
    premature convergence, and a reward that pays 1.0 from its first step learned
    nothing: both stay errors, as does a return that levels off at a value it never
    repeats (no ceiling the log can show)."""
    rng = np.random.default_rng(3)
    n = 100
    t = np.arange(n)
    entropy = np.r_[np.full(10, 1.0), np.geomspace(1.0, 0.002, 20), np.full(70, 0.002)] * (
        1 + 0.05 * rng.normal(size=n))
    accuracy = np.minimum(1.0, np.r_[np.linspace(0.1, 1.0, 30), np.ones(70)]
                          + np.where(rng.random(n) < 0.5, -0.01 * rng.random(n), 0.0))
    solved = rules.entropy_collapse("entropy", t, entropy, partner=(t, accuracy))
    assert solved.severity == "info" and "solved task" in solved.title
    assert solved.evidence["ceiling"] == 1.0 and solved.evidence["visits"] >= rules.CEILING_VISITS
    late = np.r_[np.full(60, 0.1), np.linspace(0.1, 1.0, 10), np.ones(30)]
    late = np.minimum(1.0, late + np.where(rng.random(n) < 0.5, -0.01 * rng.random(n), 0.0))
    paid = np.r_[0.99, np.ones(n - 1)] - np.where(rng.random(n) < 0.3, 0.01, 0.0)
    levelled = np.r_[np.linspace(0.1, 1.0, 30), np.full(70, 1.0)] + 0.01 * rng.normal(size=n)
    # a noisy plateau logged with one decimal hits its top rounded value again and again,
    # but no more often than the values under it: no bound
    rounded = np.round(np.r_[np.linspace(2.0, 3.6, 30), rng.choice([3.7, 3.8, 3.9], 70, p=[0.25, 0.5, 0.25])], 1)
    assert np.sum(rounded == rounded.max()) >= 10
    for reward in (late, paid, levelled, rounded, None):
        event = rules.entropy_collapse("entropy", t, entropy, partner=None if reward is None else (t, reward))
        assert event.severity == "error", reward


def test_an_entropy_that_falls_gradually_as_the_reward_rises_is_a_policy_that_learned():
    """An entropy that glides 1.4 -> 0.15 nats (a 97/3 choice) over 40 updates while the
    return rises 10 -> 60 and holds: info, a policy that grew confident as it learned. It
    stays a warning when the return did not rise with it, when it fell the same way to
    0.02 nats (a policy that stopped exploring, whatever it learned), when the whole fall
    came in one update, and when, after converging, the entropy falls again to 0.003 for
    the rest of the log (a dead third of the state: not info, from the first fall)."""
    rng = np.random.default_rng(11)
    n = 120
    t = np.arange(n) * 1000
    def entropy(low, at_once=False):
        fall = np.full(40, low) if at_once else np.geomspace(1.4, low, 40)
        return np.r_[np.full(20, 1.4), fall, np.full(60, low)] * np.exp(0.03 * rng.normal(size=n))
    rising = np.r_[np.full(20, 10.0), np.linspace(10.0, 60.0, 40), np.full(60, 60.0)] + rng.normal(0, 2.0, n)
    flat = 10.0 + rng.normal(0, 2.0, n)
    learned = rules.entropy_collapse("entropy", t, entropy(0.15), partner=(t, rising))
    assert learned.severity == "info" and "grew confident" in learned.title
    assert learned.evidence["reward_after"] > learned.evidence["reward_before"] + 40
    assert rules.entropy_collapse("entropy", t, entropy(0.15), partner=(t, flat)).severity == "warning"
    assert rules.entropy_collapse("entropy", t, entropy(0.15), partner=None).severity == "warning"
    assert rules.entropy_collapse("entropy", t, entropy(0.02), partner=(t, rising)).severity == "error"
    assert rules.entropy_collapse("entropy", t, entropy(0.15, at_once=True),
                                  partner=(t, rising)).severity != "info"
    t2 = np.arange(n + 60) * 1000
    later = np.r_[entropy(0.15), 0.003 * np.exp(0.03 * rng.normal(size=60))]
    reward = np.r_[rising, 60.0 + rng.normal(0, 2.0, 60)]
    assert rules.entropy_collapse("entropy", t2, later, partner=(t2, reward)).severity != "info"


def test_a_near_deterministic_policy_whose_reward_keeps_improving_has_not_collapsed():
    """An entropy that falls to 0.02 nats (under ENTROPY_DEAD) while the return rises 10 ->
    40, and the return then keeps climbing to 60 over the rest of the log: a policy that
    grew confident and kept learning, info. The same fall with the return holding at 40,
    or moving by a sliver of its range (a mean that repeats itself, significant against
    its own tiny noise), is a policy that stopped exploring: an error. The real SB2
    MountainCar PPO (tuning half, healthy: 0.02-0.06 nats while its return climbs from
    -145 to the solved -109) is info; the real SB3 A2C Breakout collapse, thinned to every
    second row (its return creeps 3.6 -> 3.86 after its entropy died), stays an error."""
    rng = np.random.default_rng(5)
    t = np.arange(160) * 1000
    entropy = np.r_[np.full(20, 1.1), np.geomspace(1.1, 0.02, 30), np.full(110, 0.02)] * np.exp(0.05 * rng.normal(size=160))
    climbing = np.r_[np.full(20, 10.0), np.linspace(10.0, 40.0, 30), np.linspace(40.0, 60.0, 110)] + rng.normal(0, 1.5, 160)
    held = np.r_[np.full(20, 10.0), np.linspace(10.0, 40.0, 30), np.full(110, 40.0)] + rng.normal(0, 1.5, 160)
    sliver = np.r_[np.full(20, 10.0), np.linspace(10.0, 40.0, 30), np.full(80, 40.0), np.full(30, 41.0)] \
        + rng.normal(0, 0.05, 160)
    kept = rules.entropy_collapse("entropy", t, entropy, partner=(t, climbing))
    assert kept.severity == "info" and "kept improving" in kept.title
    assert kept.evidence["reward_late"] > kept.evidence["reward_then"] + 10
    for reward in (held, sliver):
        assert rules.entropy_collapse("entropy", t, entropy, partner=(t, reward)).severity == "error"
    steps, entropy = sb3("sb2_ppo2_mountaincar_learning", "policy_entropy", "total_timesteps")
    returns = sb3("sb2_ppo2_mountaincar_learning", "ep_reward_mean", "total_timesteps")
    car = rules.entropy_collapse("entropy", steps, entropy, partner=returns)
    assert car.severity == "info" and "kept improving" in car.title
    steps, loss = sb3("sb3_a2c_breakout_entropy_collapse", "train/entropy_loss")
    r_steps, returns = sb3("sb3_a2c_breakout_entropy_collapse", "rollout/ep_rew_mean")
    assert rules.entropy_collapse("entropy", steps[::2], -loss[::2],
                                  partner=(r_steps[::2], returns[::2])).severity == "error"


def test_real_policies_that_converged_as_they_learned_and_a_labelled_collapse():
    """Tuning half: an ML-Agents PPO snake whose entropy glides 1.38 -> 0.21 nats as its
    return rises -1.87 -> -1.40 and a MiniGrid key corridor (1.94 -> 0.19 as the success
    return goes 0.04 -> 0.95) are info (the truth lists both runs as healthy). The shared
    Flappy Bird fixture, a two-action policy that spends a quarter of its collapse under
    0.086 nats as its return rises, stays a collapse (its truth label), as does CleanRL's
    r170 run, whose entropy sat at ~0.013 nats for 1.15M steps before re-rising to 0.3
    (a median of the state above the line hides it)."""
    for name, tags in (("mlagentstb_ppo_snake_1m_learning", ("Policy/Entropy", "Environment/Cumulative Reward")),
                       ("rndtb_ppo_minigrid_keycorridor_simhash_tv_solved",
                        ("train/entropy", "data/extrinsic_return"))):
        (es, ev), (rs, rv) = tensorboard(name, *tags)
        event = rules.entropy_collapse("entropy", es, ev, partner=(rs, rv))
        assert event.severity == "info" and "grew confident" in event.title, name
    (es, ev), (rs, rv) = tensorboard("cleanrltb_ppo_gpusched_4m_r170_entropy_collapse_stall_relearn",
                                     "losses/entropy", "charts/episodic_return")
    assert rules.entropy_collapse("entropy", es, ev, partner=(rs, rv)).severity == "warning"
    shared = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"
    shared = shared if shared.is_dir() else Path("/work/shared/fixtures/real")
    with open(shared / "sb3_ppo_entropy_collapse" / "progress.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["train/entropy_loss"]]
    t = np.array([int(r["time/total_timesteps"]) for r in rows])
    event = rules.entropy_collapse("entropy", t, -np.array([float(r["train/entropy_loss"]) for r in rows]),
                                   partner=(t, np.array([float(r["rollout/ep_rew_mean"]) for r in rows])))
    assert event.severity == "warning" and event.onset == 5120


def test_real_solved_tasks_at_their_ceiling_and_real_collapses_that_are_not():
    """Tuning half. ML-Agents PPO on a one-decision bandit (return hits its +2 ceiling on 16
    rows) and a Tinker arithmetic RL run (reward exactly 1.0 on 59 of 100 steps): entropy
    to ~0 there is a solved task (the truth lists it as benign). The labelled collapses
    stay errors: a CleanRL PPO run whose return rose -957 -> -223 and froze (never the
    same value twice) and an SB3 A2C Breakout run whose ``ep_rew_mean`` repeats its maximum
    in one stale stretch at the end, long after the entropy fell."""
    (es, ev), (rs, rv) = tensorboard("mlagents_ppo_bandit_solved_entropy_zero", "Policy/Entropy",
                                     "Environment/Cumulative Reward")
    bandit = rules.entropy_collapse("entropy", es, ev, partner=(rs, rv))
    assert bandit.severity == "info" and bandit.evidence["ceiling"] == 2.0
    rows = [json.loads(line) for line in (REAL / "tinker_rl_arithmetic_solved" / "arithmetic_metrics.jsonl")
            .read_text(encoding="utf-8").splitlines() if line.strip()]
    t = np.array([r["step"] for r in rows])
    tinker = rules.entropy_collapse("entropy", t, np.array([r["optim/entropy"] for r in rows]),
                                    partner=(t, np.array([r["env/all/reward/total"] for r in rows])))
    assert tinker.severity == "info" and tinker.evidence["ceiling"] == 1.0
    (es, ev), (rs, rv) = tensorboard("cleanrltb_ppo_gpusched_4m_r120_entropy_collapse_frozen",
                                     "losses/entropy", "charts/episodic_return")
    assert rules.entropy_collapse("entropy", es, ev, partner=(rs, rv)).severity == "error"
    steps, loss = sb3("sb3_a2c_breakout_entropy_collapse", "train/entropy_loss")
    returns = sb3("sb3_a2c_breakout_entropy_collapse", "rollout/ep_rew_mean")
    assert rules.entropy_collapse("entropy", steps, -loss, partner=returns).severity == "error"


def _textcraft():
    """The real healthy TextCraft agent run (tuning half): step, reward, mean length."""
    import csv
    path = REAL / "verlcsv_prefixgrpo_qwen3_1p7b_textcraft_learning" / "training_metrics_main-clip-gp1.csv"
    with path.open(newline="") as f:
        rows = [(float(r["step"]), float(r["critic_score_mean"]), float(r["response_length_mean"]))
                for r in csv.DictReader(f)]
    return (np.array(x) for x in zip(*rows))


def test_a_length_that_falls_as_the_reward_rises_is_shorter_and_better():
    """The real agent run shortens its trajectories ~2100 -> ~600 tokens as its success rises
    0.63 -> 0.9: the fall is found, as info. The same fall with a flat reward, with a reward
    that rose and fell back, or down to a handful of tokens stays an error."""
    steps, reward, length = _textcraft()
    event = rules.length_change("response_length_mean", steps, length, partner=(steps, reward))
    assert (event.code, event.severity) == ("length_collapse", "info")
    assert event.evidence["reward_after"] > event.evidence["reward_before"]
    assert rules.length_change("response_length_mean", steps, length).severity == "error"
    rng = np.random.default_rng(3)
    flat = 0.7 + 0.1 * rng.standard_normal(len(steps))
    assert rules.length_change("l", steps, length, partner=(steps, flat)).severity == "error"
    back = reward.copy()
    back[-len(back) // 5:] = 0.6 + 0.1 * rng.standard_normal(len(back) // 5)
    assert rules.length_change("l", steps, length, partner=(steps, back)).severity == "error"
    tiny = np.where(steps > 40, 5.0 + rng.random(len(steps)), length)
    assert rules.length_change("l", steps, tiny, partner=(steps, reward)).severity == "error"
    drift = 0.7 + 0.05 * rng.standard_normal(len(steps)) + np.linspace(0, 0.08, len(steps))
    assert rules.length_change("l", steps, length, partner=(steps, drift)).severity == "error"


def test_a_collapse_after_a_fall_that_was_shorter_and_better_is_still_a_collapse():
    """The real agent run, its length cut to a tenth from row 985 on (the injection
    benchmark's collapse): its first fall is info, the second, from the level the run
    then held and with a flat reward, is the collapse, at its own step."""
    steps, reward, length = _textcraft()
    cut = length.copy()
    cut[984:] *= 0.1
    event = rules.length_change("response_length_mean", steps, cut, partner=(steps, reward))
    assert (event.code, event.severity, event.onset) == ("length_collapse", "error", steps[984])


def test_a_length_that_halves_while_the_reward_falls_is_a_collapse():
    """Alone, a length that halves is what healthy reasoning runs do (with a reward that
    rises or holds: quiet); with a reward that falls over the same stretch it is a
    collapse (a warning). The tuning half's verl DAPO run: 5300 -> 2800 tokens from step
    72 as the score fell -0.29 -> -0.83."""
    from rldk.converters import ingest

    rng = np.random.default_rng(5)
    t = np.arange(200)
    length = np.where(t < 100, 5000.0, 2200.0) * np.exp(0.05 * rng.standard_normal(200))
    rising = np.minimum(t / 60, 1.0) * 0.5 + 0.03 * rng.standard_normal(200)
    assert rules.length_change("response_length", t, length, partner=(t, rising)) is None
    assert rules.length_change("response_length", t, length) is None
    falling = np.where(t < 95, 0.5, -0.3) + 0.03 * rng.standard_normal(200)
    event = rules.length_change("response_length", t, length, partner=(t, falling))
    assert (event.code, event.severity) == ("length_collapse", "warning") and 95 <= event.onset <= 100, event

    name = "verl_grpo_r1distill15b_dapomath_clip0103_reward_length_collapse"
    (run,) = ingest(str(next((REAL / name).glob("*.jsonl"))), adapter="verl").runs()
    length, score = run.metric("response_length/mean"), run.metric("critic/score/mean")
    event = rules.length_change("response_length", length["step"].to_numpy(), length["value"].to_numpy(),
                                partner=(score["step"].to_numpy(), score["value"].to_numpy()))
    assert event is not None and event.code == "length_collapse" and 72 <= event.onset <= 75, event


def test_a_moderate_loss_that_lasts_to_the_end_is_a_degradation():
    """A run that gained 10 and lost 35% of it for the last third of the log: under half
    the gain, but kept to the end (the judgement of independent labellers on real runs);
    the same loss that comes back is a sag and stays quiet, as does a loss of 15%."""
    rng = np.random.default_rng(2)
    t = np.arange(300)
    rise = np.minimum(t / 90, 1) * 10
    kept = rise - 3.5 * (t >= 200) + 0.5 * rng.normal(size=300)
    event = rules.reward_degradation("r", t, kept)
    assert event is not None and 195 <= event.onset <= 200 and event.evidence["share"] == rules.MODERATE_SHARE
    back = rise - 3.5 * ((t >= 200) & (t < 250)) + 0.5 * rng.normal(size=300)
    assert rules.reward_degradation("r", t, back) is None
    small = rise - 1.5 * (t >= 200) + 0.5 * rng.normal(size=300)
    assert rules.reward_degradation("r", t, small) is None


def test_a_real_sac_return_that_slid_a_third_of_its_gain_to_the_end(tmp_path, monkeypatch):
    """A real ML-Agents SAC run (tuning half): the return rose -11.9 -> about -5.1, then slid
    to about -7.6 and ended there (a third of the gain lost): found inside its window."""
    from rldk.converters import ingest

    monkeypatch.setenv("RLDK_CACHE_DIR", str(tmp_path / "cache"))
    name = "mlagentstb_sac_carcatching_reward_degradation"
    store = ingest(str(next((REAL / name).glob("events.out.tfevents.*"))), adapter="tensorboard")
    series = store.run(store.run_ids[0]).metric("Environment/Cumulative Reward")
    event = rules.reward_degradation("r", series["step"].to_numpy(), series["value"].to_numpy())
    assert event is not None and 301000 <= event.onset <= 446000


def test_midpoint_onset_starts_a_state_where_the_climb_passed_halfway():
    from rldk.detectors.onsets import midpoint_onset

    # a jump in one row: halfway and the line are crossed at once
    jump = np.r_[np.full(20, 0.002), np.full(30, 1.5)]
    assert midpoint_onset(jump, 20, 50) == (20, 0.002)
    # a climb from 1e-3 crosses 0.1 after it is nearer 3 than 1e-3 on the log scale
    climb = np.r_[np.full(10, 1e-3), np.geomspace(1e-3, 3.0, 20), np.full(30, 3.0)]
    crossed = int(np.argmax(climb >= 0.1))
    k, low = midpoint_onset(climb, crossed, len(climb))
    assert low == 1e-3 and k < crossed and climb[k] >= np.sqrt(1e-3 * 3.0) > climb[k - 1]
    # one that starts at 0.08 crosses 0.1 before it is halfway to 1.3
    early = np.r_[0.07, 0.08, np.geomspace(0.11, 1.3, 8), np.full(40, 1.3)]
    k, low = midpoint_onset(early, 2, len(early))
    assert low == 0.07 and k > 2 and early[k] >= np.sqrt(0.07 * 1.3) > early[k - 1]
    # a state from the first point has nothing before it
    assert midpoint_onset(np.full(10, 2.0), 0, 10) == (0, None)


def test_a_fall_judged_on_points_starts_where_it_left_the_level_held_before_it():
    """A return whose level peaks in a burst of two rows at its start (190-200, the random
    warm-up's luck), holds ~65 for 40 rows and then falls to ~-480: on points
    (``_points_below``), the line of half the gain from the burst (142.5) lies above the
    level held, so the first row under it is the first row of that level. The fall starts
    where the series left that level (``prior_exit``, as the level test places it), into
    the state past the midpoint of the whole move: a real SB3 DDPG soccer run of the
    tuning half was "a fall from step 3841" for a collapse from step ~46000."""
    from rldk.detectors.regimes import regimes

    rng = np.random.default_rng(5)
    v = np.r_[[70.0, 190.0, 200.0], 65 + 10 * rng.normal(size=40), np.linspace(40, -400, 6),
              -480 + 40 * rng.normal(size=100)]
    steps = np.arange(len(v)) * 1000
    event = rules._points_below("r", steps, v, regimes(steps, v, "signed"))
    # the linear fall's first row (40) is still inside the band of the level (65 +- 3 sigma)
    assert event.onset == steps[44] and event.evidence["below_from"] == steps[3]


def test_the_real_soccer_ddpg_collapse_starts_after_its_warm_up_level():
    from rldk import semantics
    from rldk.analyzers.suite import analyze
    from rldk.converters import ingest

    name = "sb3tb_ddpg_nubots_soccer_aggressive_critic_divergence_reward_collapse"
    store = ingest(str(next((REAL / name).glob("events.out.tfevents.*"))), adapter="tensorboard")
    semantics.use_metric_map(None)
    (fall,) = [f for r in analyze(store.files, plots=False).reports for f in r.findings
               if f.code == "reward_degradation"]
    assert 46311 <= fall.steps[0] <= 63410, fall        # the labelled window


def test_a_truncated_share_that_rises_from_none_to_one_in_ten_is_an_onset():
    """A share of truncated responses over 512 per step (steps of 1/512): at 0-0.004 for
    45 steps, then rising to 0.1-0.15 and staying: one answer in seven now runs into the
    cap, under the 0.5 line. Found from the first step of the rise (the row after the last
    one at the level, within three binomial standard deviations of it); a share that
    rises to 0.05, or falls back, or sat at 0.05 before, is not it. The tuning half's
    verl rubric DAPO run: labelled window 51-55."""
    from rldk.converters import ingest

    rng = np.random.default_rng(4)
    quiet = rng.choice([0.0, 0.0, 0.0, 1 / 512, 2 / 512], 45)
    rise = np.r_[[6, 9, 12, 15, 24, 36, 45], np.full(16, 64)] / 512
    share = np.r_[quiet, rise + rng.choice([-1, 0, 1], len(rise)) / 512]
    steps = np.arange(1, len(share) + 1)
    event = rules.truncation_onset("response_length/clip_ratio", steps, share)
    assert event is not None and event.severity == "warning" and event.onset == 46, event
    assert rules.truncation_onset("r", steps, np.r_[quiet, rise * 0.4]) is None         # to 0.05
    assert rules.truncation_onset("r", steps, np.r_[quiet, rise[:12], np.full(11, 1 / 512)]) is None
    assert rules.truncation_onset("r", steps, np.r_[quiet + 0.05, rise]) is None        # not from none
    name = "verltb_dapo_qwen25_7b_rubric_medical_overlong_length_explosion_truncation"
    (run,) = ingest(str(next((REAL / name).glob("events.out.tfevents.*"))), adapter="tensorboard").runs()
    clip = run.metric("response_length/clip_ratio")
    event = rules.truncation_onset("response_length/clip_ratio", clip["step"].to_numpy(), clip["value"].to_numpy())
    assert event is not None and 51 <= event.onset <= 55, event


def test_a_collapse_that_jumps_out_of_a_drifted_level_starts_at_the_jump():
    """An entropy narrows 2.7 -> 1.8 as its policy learns, comes back to 2.15 for a while,
    drifts down to 1.9 over 15 updates, then falls to ~0.05 in one update and stays: the
    drift is the level the policy sat at (the onset protocol's prior regime is the rows
    just before the move), and the one step that carries the series past the midpoint of
    the whole move is the onset, not the start of the drift from the level near the
    peak. The tuning half's Procgen Jumper run (its second collapse, a step event at
    5931008) was reported from 5783552, nine updates early."""
    rng = np.random.default_rng(3)
    v = np.r_[np.full(10, 2.7), np.linspace(2.6, 1.8, 30), np.full(210, 1.8), np.full(15, 2.15),
              np.linspace(2.1, 1.9, 15), np.full(80, 0.05)]
    v = np.abs(v + 0.03 * rng.normal(size=len(v)))
    event = rules.entropy_collapse("entropy", np.arange(len(v)), v)
    assert event is not None and event.onset == 280, event

    name = "baselines_ppo2_procgen_jumper_kl_blowup_double_collapse"
    rows = list(csv.DictReader((REAL / name / "progress.csv").open()))
    steps = np.array([float(r["misc/total_timesteps"]) for r in rows])
    entropy = np.array([float(r["loss/policy_entropy"]) for r in rows])
    event = rules.entropy_collapse("loss/policy_entropy", steps, entropy)
    assert event is not None and event.onset == 5931008, event


def test_a_level_cut_by_single_outliers_is_still_a_stage_the_fall_started_from():
    """A return held at ~4.7, stepped down to ~3.8 and held that for a sixth of the run
    with a single low row every twenty or so (PELT cuts the level at each one, into
    pieces shorter than a tenth of the run), then fell to 0 in one step and stayed: the
    3.8 level is a stage the run sat at, and the collapse starts at the fall from it. A
    real MARLlib TRPO SMAC run of the tuning half (labelled window 10754637-10790628) was
    reported from the step to the 3.8 level, 3M steps early. A slide cut into steps is
    no such level."""
    rng = np.random.default_rng(2)
    stage = 3.8 + 0.07 * rng.normal(size=90)
    stage[[8, 25, 57, 62]] = [3.2, 2.9, 2.2, 3.3]
    v = np.r_[3.7 + 0.07 * rng.normal(size=40), np.linspace(4.0, 6.0, 10), [6.1, 6.1, 6.1],
              4.7 + 0.07 * rng.normal(size=120), stage, np.zeros(250)]
    event = rules.reward_degradation("reward", np.arange(len(v)), v)
    assert event is not None and event.onset == 263, event
    slide = np.r_[3.7 + 0.07 * rng.normal(size=40), np.linspace(4.0, 6.0, 10), [6.1, 6.1, 6.1],
                  np.linspace(5.9, 1.0, 210) + 0.07 * rng.normal(size=210), np.zeros(250)]
    event = rules.reward_degradation("reward", np.arange(len(slide)), slide)
    assert event is not None and event.onset < 80, event


def test_a_plateau_cut_in_two_is_one_level_the_fall_left():
    """A real OfflineRL-Kit COMBO evaluation return (tuning half): 102.5-108.7 over
    12000-23000, 103.8-117.9 over 24000-34000, 105.6 at 35000, then 86.6, 61.6 and ~44 to
    the end (protocol window 36000-37000). The change points cut the plateau into a level
    at 106.8 and one at 112.5; read against the later one alone, the row at 105.6 was off
    its level and the fall "started" at 35000, a row early. Both halves are the level the
    run held (``moves._held_floor``): the fall starts at 36000."""
    with open(REAL / "offlinerlkit_combo_pointmaze_s3_reward_degradation_critic_rise"
              / "policy_training_progress.csv", newline="", encoding="utf-8") as fh:
        rows = [(int(r["timestep"]), float(r["eval/episode_reward"])) for r in csv.DictReader(fh)]
    steps, values = (np.array(c) for c in zip(*rows))
    event = rules.reward_degradation("eval/episode_reward", steps, values)
    assert event is not None and event.onset == 36000, event
