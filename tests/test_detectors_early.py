"""Onsets of failures early in a run, where its own noise sits right before them (issue #14).

``benchmarks/injection.py --at 0.15`` writes each failure into the tuning half's healthy
logs at 15% of the run: a lone noisy point in the state just before the failure, a
reward that touched its lowest value once, a centred level that rises two points before
the points do, and a KL that starts at exactly zero moved onsets early or hid the
failure. Synthetic cases with exact answers, shaped as those logs are.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rldk.detectors import ratios, rules
from rldk.detectors.onsets import state_run

REAL = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "real"


def test_a_lone_point_in_the_state_before_it_is_not_its_onset():
    bad = np.zeros(100, bool)
    bad[[5, 9]] = True            # noise: points in the state, each followed by an excursion
    bad[12:] = True
    assert state_run(bad, 0, final=True) == (12, 100)      # 9 joins the run; 12 is its onset


def test_a_zero_std_share_of_few_groups_starts_at_its_first_point_in_the_state():
    # a share over one group per step is 0 or 1; from step 31 on it is mostly 1, with
    # zeros scattered in it (more than the points rule allows): judged on its level
    v = np.zeros(200)
    v[[1, 5, 6, 9, 10, 16, 24, 27]] = 1.0
    v[30:] = 1.0
    v[[52, 70, 71, 90, 120, 121, 150, 151, 170, 185, 186, 190]] = 0.0
    event = ratios.high_ratio("zero_std_onset", "frac_reward_zero_std", np.arange(1, 201), v, 0.5, "x")
    assert event.onset == 31


def test_a_share_of_one_group_that_ends_on_a_burst_it_had_before_is_no_state():
    """A real TRL GRPO run (tuning half, healthy): one group per step, so its zero-std share
    is 0 or 1, at 1 on about a third of the steps all through the run, in runs of one to
    three. Read up to step 85 (a run stopped there, or watched live), its last five steps
    (1, 0, 1, 0, 1) were a state "at 1.00 from step 81": an error. A state at the end of
    the log shorter than a tenth of it, at a height the series reached as single rows or
    pairs three times or more before and came back from, is its noise (as a loss's last two
    spikes are: ``trend.spike_seen_before``). The same share at 1 from step 81 to a log of
    100 steps, or from a series that never had such bursts, is still a state."""
    import json

    state = json.loads((REAL / "trl_grpo_agentbench_dbbench_g4_learning" / "trainer_state.json").read_text())
    rows = [(r["step"], r["frac_reward_zero_std"]) for r in state["log_history"] if "frac_reward_zero_std" in r]
    steps, v = (np.array(x, dtype=float) for x in zip(*rows))
    cut = steps <= 85
    assert ratios.zero_std_onset("frac_reward_zero_std", steps[cut], v[cut]) is None
    stuck = np.where(steps >= 81, 1.0, v)
    event = ratios.zero_std_onset("frac_reward_zero_std", steps, stuck)
    assert event is not None and event.severity == "error" and event.onset <= 81, event
    quiet = np.where(steps >= 81, v, 0.0)
    event = ratios.zero_std_onset("frac_reward_zero_std", steps[cut], quiet[cut])
    assert event is not None and 81 <= event.onset <= 85, event


def test_a_reward_that_touched_its_floor_once_collapses_where_it_stays_there():
    rng = np.random.default_rng(3)
    v = rng.uniform(0.1, 0.8, 150)
    v[8] = 0.01                   # the lowest value, once
    v[22:] = 0.01                 # the floor from the 23rd step on
    event = rules.reward_collapse("reward", np.arange(1, 151), v)
    assert event is not None and event.onset == 23 and event.evidence["at_floor_from"] == 23


def test_a_kl_that_starts_at_exactly_zero_still_has_a_level_to_blow_up_from():
    rng = np.random.default_rng(4)
    v = np.concatenate([[0.0], 1e-5 * np.exp(rng.normal(0, 0.3, 36)), 2.0 * np.exp(rng.normal(0, 0.3, 213))])
    event = rules.kl_blowup("kl", np.arange(1, 251), v)
    assert event is not None and event.onset == 38


def test_a_healthy_kl_that_grows_from_zero_stays_quiet():
    rng = np.random.default_rng(5)
    v = np.concatenate([[0.0], np.geomspace(1e-5, 0.05, 199) * np.exp(rng.normal(0, 0.3, 199))])
    assert rules.kl_blowup("kl", np.arange(1, 201), v) is None


def test_a_clip_fraction_that_drifts_over_the_line_is_no_blowup():
    rng = np.random.default_rng(4)
    steps = np.arange(200) * 2048
    drift = np.r_[0.28 + 0.01 * rng.normal(size=120), 0.33 + 0.01 * rng.normal(size=80)]
    event = ratios.clip_ratio_blowup("train/clip_fraction", steps, drift)
    assert event.severity == "info" and event.onset == steps[120]
    jump = np.r_[0.15 + 0.01 * rng.normal(size=120), 0.6 + 0.01 * rng.normal(size=80)]
    assert ratios.clip_ratio_blowup("train/clip_fraction", steps, jump).severity == "warning"


def test_a_clip_fraction_that_drifted_over_the_line_and_then_jumped_blew_up_at_the_jump():
    """A real SB3 PPO Reacher run (tuning half, healthy): train/clip_fraction 0.18-0.25, then
    0.28-0.34 from step 407552 to the end, hovering at the 0.3 line (a drift over it: info).
    With 0.3 added from step 602112 (0.6, as injection.py's clip_blowup), the state at or
    above the line still began at the drift, and the blow-up was reported from 407552; the
    drift's level is the one the jump left: a warning from 602112."""
    from rldk.converters import ingest

    path = next((REAL / "sb3tb_ppo_reacher_learned_reward_learning").glob("events.out.tfevents.*"))
    (run,) = ingest(str(path), adapter="tensorboard").runs()
    clip = run.metric("train/clip_fraction")
    steps, values = clip["step"].to_numpy(), clip["value"].to_numpy()
    drift = ratios.clip_ratio_blowup("train/clip_fraction", steps, values)
    assert drift.severity == "info" and drift.onset == 407552, drift
    event = ratios.clip_ratio_blowup("train/clip_fraction", steps, np.where(steps >= 602112, values + 0.3, values))
    assert event.severity == "warning" and event.onset == 602112, event
    assert event.evidence["at_or_above_from"] == 407552 and 0.3 < event.evidence["before"] < 0.33, event


def test_a_clip_fraction_high_from_the_start_while_the_run_learns_is_its_update_size():
    """A PPO run whose clip fraction sits at 0.38 from its first update (10 epochs, no
    target_kl) while its return climbs -100 -> 20: the size of its updates, with which it
    learns, info. The same fraction with a flat return stays a warning; a jump from that
    level to 0.6 later (1.6x, under the midpoint to 1) is a blow-up from the jump. The real
    AirSim drone-corridor PPO run of the tuning half (healthy: 0.27-0.48 on every update,
    return -99 -> 19) is info."""
    rng = np.random.default_rng(8)
    steps = np.arange(150) * 1000
    clip = 0.38 + 0.04 * rng.normal(size=150)
    climbing = np.linspace(-100.0, 20.0, 150) + 8 * rng.normal(size=150)
    flat = -80.0 + 8 * rng.normal(size=150)
    learned = ratios.clip_ratio_blowup("train/clip_fraction", steps, clip, returns=(steps, climbing))
    assert learned.severity == "info" and "not a blow-up" in learned.title and learned.onset == 0
    assert ratios.clip_ratio_blowup("train/clip_fraction", steps, clip, returns=(steps, flat)).severity == "warning"
    assert ratios.clip_ratio_blowup("train/clip_fraction", steps, clip).severity == "warning"
    jumped = np.r_[clip[:100], 0.6 + 0.04 * rng.normal(size=50)]
    event = ratios.clip_ratio_blowup("train/clip_fraction", steps, jumped, returns=(steps, climbing))
    assert event.severity == "warning" and event.onset == steps[100]
    from rldk.converters import ingest

    path = next((REAL / "sb3tb_ppo_airsim_corridor_learning").glob("events.out.tfevents.*"))
    (run,) = ingest(str(path), adapter="tensorboard").runs()
    c, r = run.metric("train/clip_fraction"), run.metric("rollout/ep_rew_mean")
    real = ratios.clip_ratio_blowup("train/clip_fraction", c["step"].to_numpy(), c["value"].to_numpy(),
                                    returns=(r["step"].to_numpy(), r["value"].to_numpy()))
    assert real.severity == "info" and real.evidence["reward_late"] > real.evidence["reward_early"]


def test_a_clip_fraction_that_rises_as_the_clip_range_is_decayed_is_the_schedule():
    """The range halved at one update (a step schedule) and the fraction jumping there is
    the schedule's doing: info. The same jump at a fixed range is a blow-up (an error: nearly
    every sample clipped), and one early in a linear decay is a warning."""
    steps = np.arange(0, 2_000_000, 16384)
    halved = np.where(steps >= 1_200_000, 0.1, 0.2)
    fraction = np.where(steps >= 1_200_000, 0.95, 0.2)
    schedule = ratios.clip_ratio_blowup("train/clip_fraction", steps, fraction, (steps, halved))
    assert schedule is not None and schedule.severity == "info" and "a schedule" in schedule.title
    fixed = ratios.clip_ratio_blowup("train/clip_fraction", steps, fraction, (steps, np.full(len(steps), 0.2)))
    assert fixed.severity == "error" and fixed.onset == schedule.onset      # nearly every sample clipped
    clip_range = 0.4 * (1 - steps / 2_000_000)                  # rl-zoo's lin_0.4
    early = np.where(steps >= 300_000, 0.6, 0.2)               # at 85% of the range: a blow-up
    assert ratios.clip_ratio_blowup("train/clip_fraction", steps, early, (steps, clip_range)).severity == "warning"


def test_a_clip_fraction_that_jumps_late_in_a_linear_range_decay_blew_up():
    """A real rl-zoo PPO HalfCheetah run (tuning half, healthy) whose clip range is decayed
    linearly 0.398 -> 0.0002: its clip fraction drifts 0.2 -> 0.996 with it (info). Set to 0.6
    from step 1212416 (injection.py's clip_blowup: 0.29 -> 0.6 in one update) the range was
    already under half its start there, and the jump was put down to the schedule (info),
    though the range moved 0.168 -> 0.159 over it: a warning from the jump."""
    from rldk.converters import ingest
    from rldk.detectors.onsets import level_of

    path = next((REAL / "rlzoo_ppo_halfcheetah_clip_decay").glob("events.out.tfevents.*"))
    (run,) = ingest(str(path), adapter="tensorboard").runs()
    clip, rng = run.metric("train/clip_fraction"), run.metric("train/clip_range")
    steps, values = clip["step"].to_numpy(), clip["value"].to_numpy()
    partner = (rng["step"].to_numpy(), rng["value"].to_numpy())
    drift = ratios.clip_ratio_blowup("train/clip_fraction", steps, values, partner)
    assert drift.severity == "info", drift
    jumped = np.where(steps >= 1212416, np.clip(0.6 + values - level_of(values), 0, 1), values)
    event = ratios.clip_ratio_blowup("train/clip_fraction", steps, jumped, partner)
    assert event.severity == "warning" and event.onset == 1212416, event
    assert 0.15 < event.evidence["clip_range_just_before"] < 0.18, event


def test_zero_std_groups_at_the_top_of_a_learned_reward_are_solved_prompts():
    """A GRPO run whose accuracy rises 0.05 -> 0.9 and holds: from then on most groups tie
    because every completion is right (a verl GSM8K run: 84% tied at a 0.92 score). That is
    info, not a lost signal; the same ties with the reward stuck at its floor, or with a
    reward that pays every completion from the first step, stay warnings, as do ties that
    set in long after the reward reached its top (not its doing)."""
    rng = np.random.default_rng(0)
    steps = np.arange(60)
    ties = np.r_[np.full(10, 0.3), np.full(50, 0.85)] + 0.03 * rng.normal(size=60)
    learned = np.r_[np.linspace(0.05, 0.9, 15), np.full(45, 0.9)] + 0.02 * rng.normal(size=60)
    stuck = 0.02 * np.abs(rng.normal(size=60))
    paid = np.r_[0.97, np.full(59, 1.0)] - 0.01 * np.abs(rng.normal(size=60))
    rule = rules.RULES["zero_std_frac"][0]
    solved = rule("frac_reward_zero_std", steps, ties, partner=(steps, learned))
    assert solved.severity == "info" and solved.onset == 10 and "solved prompts" in solved.title
    assert solved.evidence["solved_share"] == 1.0
    for reward in (stuck, paid, None):
        event = rule("frac_reward_zero_std", steps, ties, partner=None if reward is None else (steps, reward))
        assert event.severity == "warning" and event.onset == 10
    late = np.r_[np.full(40, 0.3), np.full(20, 0.85)] + 0.03 * rng.normal(size=60)
    event = rule("frac_reward_zero_std", steps, late, partner=(steps, learned))
    assert event.severity == "warning" and event.onset == 40


def test_a_real_verl_run_that_solved_gsm8k_ties_at_the_top():
    """A verl GRPO run of Qwen3-1.7B on GSM8K (tuning half, a wandb history export): the
    score rises 0.006 -> ~0.92 and the share of zero-advantage samples climbs to ~0.84 with
    it. Its zero-std onset is info, with the reward's levels in the evidence."""
    import csv
    from pathlib import Path

    path = (Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "real"
            / "verlwb_grpo_qwen3_1p7b_gsm8k_mixed_learning" / "history.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))

    def series(column):
        kept = [(float(r["_step"]), float(r[column])) for r in rows if r.get(column) not in (None, "")]
        steps, values = zip(*sorted(kept))
        return np.array(steps), np.array(values)

    steps, ties = series("difficulty/zero_advantage_ratio/unknown")
    event = rules.RULES["zero_std_frac"][0]("ties", steps, ties, partner=series("critic/score/mean"))
    assert event.severity == "info" and event.evidence["reward_high"] > 0.9
    assert event.evidence["solved_share"] >= ratios.SOLVED_MOST


def test_ties_from_the_first_step_while_the_reward_climbs_are_info():
    """A share of tied groups over the line from the first step, with a reward that climbs
    significantly under it (against its own noise and wander): some prompts give no signal,
    the run learns from the others (info). The same ties with a flat or falling reward stay
    a warning; with nearly every group tied (TIED_NO_SIGNAL, and over NEARLY_ALL) an error."""
    rng = np.random.default_rng(4)
    steps = np.arange(1, 301)
    ties = np.clip(0.7 + 0.06 * rng.normal(size=300), 0, 1)
    climbs = 0.35 + 0.1 * steps / 300 + 0.08 * rng.normal(size=300)
    flat = 0.35 + 0.08 * rng.normal(size=300)
    rule = rules.RULES["zero_std_frac"][0]
    event = rule("ties", steps, ties, partner=(steps, climbs))
    assert event.severity == "info" and event.onset == 1 and event.evidence["reward_rise_z"] >= 3
    assert rule("ties", steps, ties, partner=(steps, flat)).severity == "warning"
    assert rule("ties", steps, ties, partner=(steps, 0.45 - (climbs - 0.35))).severity == "warning"
    nearly_all = np.clip(0.93 + 0.02 * rng.normal(size=300), 0, 1)
    assert rule("ties", steps, nearly_all, partner=(steps, climbs)).severity == "error"


def test_a_real_roll_grpo_run_with_ties_from_its_first_step_learns_through_them():
    """A ROLL GRPO run (tuning half, healthy): advantage/zero_rate 0.53-0.86 on every row from
    the first, the rubric pass rate 0.35 -> 0.45 (block medians): info."""
    import json
    from pathlib import Path

    path = (Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "real"
            / "roll_grpo_rdan_ifollow_flat" / "metrics.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def series(key):
        kept = sorted((r["system/step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)))
        return np.array([s for s, _ in kept]), np.array([v for _, v in kept], float)

    event = rules.RULES["zero_std_frac"][0]("advantage/zero_rate", *series("advantage/zero_rate"),
                                            partner=series("reward/selected_mean"))
    assert event.severity == "info" and event.onset == 1, event


def test_ties_from_the_first_row_of_a_log_that_starts_mid_run_began_before_it():
    """The same ROLL run read from a third of its steps on (a resumed run, a log kept from
    late on): its ties sit at 0.71 from the first row kept, and its pass rate, which rose
    before, is flat. The ties began before the log and the run did not get worse through
    them: info (reward health's ``zero_std_groups`` alike: test_reward_health). From step 1 the same
    ties with a flat reward are a warning (the run learned nothing through them); with a
    reward that falls through them, or nearly every group tied, the mid-run log is no
    different."""
    import json
    from pathlib import Path

    from rldk.detectors import onsets

    path = (Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "real"
            / "roll_grpo_rdan_ifollow_flat" / "metrics.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def series(key, since=150):
        kept = sorted((r["system/step"], r[key]) for r in rows
                      if isinstance(r.get(key), (int, float)) and r["system/step"] >= since)
        return np.array([s for s, _ in kept]), np.array([v for _, v in kept], float)

    rule = rules.RULES["zero_std_frac"][0]
    (t_steps, ties), (r_steps, reward) = series("advantage/zero_rate"), series("reward/selected_mean")
    assert onsets.starts_mid_run(t_steps) and not onsets.starts_mid_run(t_steps - 149)
    event = rule("advantage/zero_rate", t_steps, ties, partner=(r_steps, reward))
    assert (event.severity, event.onset, event.evidence.get("before_log")) == ("info", 150, True), event
    # from the start of a run the same rows learned nothing through the ties: a warning
    event = rule("advantage/zero_rate", t_steps - 149, ties, partner=(r_steps - 149, reward))
    assert event.severity == "warning", event
    falling = reward - 0.3 * (r_steps - r_steps[0]) / (r_steps[-1] - r_steps[0])
    assert rule("advantage/zero_rate", t_steps, ties, partner=(r_steps, falling)).severity == "warning"
    nearly_all = np.clip(ties + 0.25, 0, 1)
    assert rule("advantage/zero_rate", t_steps, nearly_all, partner=(r_steps, reward)).severity == "error"


def test_a_ratio_over_its_line_from_the_first_step_that_gets_worse_starts_at_the_step():
    """Truncated at 0.8 from the first step, at 0.95 from point 14 on: the onset is the
    step up, with the level before it. A share at 0.98 that reaches 1.0 later moved less
    than WORSE_STEP: reported from the first step, as is a share that only drifts."""
    rng = np.random.default_rng(6)
    steps = np.arange(5, 205, 5)
    worse = np.clip(np.r_[np.full(14, 0.8), np.full(26, 0.95)] + 0.025 * rng.normal(size=40), 0, 1)
    event = ratios.high_ratio("truncation_onset", "clipped", steps, worse, ratios.TRUNCATION_HIGH, "truncated")
    assert event.onset == steps[14] and event.evidence["from_first_step"]
    assert event.evidence["before"] == pytest.approx(0.8, abs=0.05)
    assert event.severity == "error"                 # nearly every response cut: no answer ends
    spent = np.clip(np.r_[np.full(14, 0.98), np.full(26, 1.0)] + 0.005 * rng.normal(size=40), 0, 1)
    assert ratios.high_ratio("t", "c", steps, spent, 0.5, "truncated").onset == steps[0]
    drift = np.linspace(0.55, 0.7, 40) + 0.02 * rng.normal(size=40)
    event = ratios.high_ratio("t", "c", steps, drift, 0.5, "truncated")
    assert (event.onset, event.severity) == (steps[0], "warning")


def test_a_reward_at_its_floor_from_the_first_step_that_never_rises_has_no_signal():
    """A from-scratch GRPO run (KardeniaPoyu/SLM-RL-Comparation, the tuning half) logs
    the format penalty -0.5 on three steps in four from the first, -0.475 (one of 40
    rollouts scoring) on the others, for 122 updates: no signal to learn from, reported
    from the first step. The same floor and rate with a run that learns out of it (the
    hit rate climbing over the run) is no such reward, nor is a 0/1 reward that sits off
    its floor as often as on it."""
    import csv
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "real" / \
        "customgrpo_qwen05b_24game_no_signal_collapse" / "grpo_metrics.csv"
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    steps = np.array([int(r["step"]) for r in rows])
    reward = np.array([float(r["mean_advantage"]) for r in rows])
    event = rules.reward_collapse("mean_advantage", steps, reward)
    assert event is not None and (event.code, event.onset, event.severity) == ("reward_flat", 0, "warning")
    assert round(event.evidence["share_at_floor"], 2) == 0.75

    rng = np.random.default_rng(3)
    n = 200
    flat = -0.5 + 0.025 * (np.arange(n) % 4 == 1)   # one step in four off the floor, all along
    assert rules.reward_collapse("r", np.arange(n), flat).code == "reward_flat"
    hit = np.linspace(0.1, 0.6, n)                   # the run learns: its hit rate climbs
    learns = -0.5 + 0.025 * (rng.random(n) < hit)
    assert rules.reward_collapse("r", np.arange(n), learns) is None
    coin = (rng.random(n) < 0.5).astype(float)       # off its floor as often as on it
    assert rules.reward_collapse("r", np.arange(n), coin) is None


def test_a_grad_norm_that_rises_as_learning_starts_and_settles_is_a_start_up_transient():
    """PyMARL IQL on SMAC 3m (the tuning half): the norm sits at 0.2-1 while epsilon
    decays and the returns are low, at ~15 for a sixth of the run as the Q values grow
    with the first rewards, then settles at ~3: 14x "anything before", but everything
    before was the untrained start (info). The same rise later in the run, or one that
    stays, is a warning."""
    rng = np.random.default_rng(5)

    def norm(rise_at: int, settle: bool):
        v = np.r_[np.full(rise_at - 5, 0.2), np.full(5, 1.1), np.full(40, 15.0),
                  np.full(200 - rise_at - 40, 3.0 if settle else 15.0)]
        return v * np.exp(0.2 * rng.standard_normal(len(v)))

    steps = np.arange(200)
    early = rules.grad_norm_explosion("grad_norm", steps, norm(10, settle=True))
    assert early is not None and early.severity == "info" and early.onset == 10
    assert "start-up transient" in early.title
    later = rules.grad_norm_explosion("grad_norm", steps, norm(80, settle=True))
    assert later is not None and later.severity == "warning" and later.onset == 80
    stays = rules.grad_norm_explosion("grad_norm", steps, norm(10, settle=False))
    assert stays is not None and stays.severity == "warning"


def test_a_grad_norm_that_settles_two_decades_over_its_start_with_flat_returns_is_an_explosion():
    """The tuning half's EPyMARL QMIX run: the norm (before clipping) at 0.005 for 16 rows,
    80 for one row, 630-790 for two, then 30-450 for a million steps: it "settles" a
    decade under its peak, but 14,000x over its start while the return stays at 0. A
    start-up transient is a norm that settles within two decades of its start, or grows
    with the returns; this one is an explosion, from the first row up there."""
    rng = np.random.default_rng(8)
    v = np.r_[np.full(16, 0.005), [80.0, 700.0, 750.0], np.full(181, 110.0)] * np.exp(0.2 * rng.standard_normal(200))
    steps = np.arange(200)
    flat = (steps, np.zeros(200))
    event = rules.grad_norm_explosion("grad_norm", steps, v, partner=flat)
    assert event is not None and event.severity == "warning" and event.onset == 16, event
    grown = (steps, np.r_[np.zeros(16), np.full(184, 20.0)])          # 0 -> 20: explained
    assert rules.grad_norm_explosion("grad_norm", steps, v, partner=grown).severity == "info"
    assert rules.grad_norm_explosion("grad_norm", steps, v).severity == "info"   # no returns: as before

    from rldk.converters import ingest

    path = next((REAL / "epymarltb_qmix_cooperative_reaching_grad_norm_explosion").glob("events.out.tfevents.*"))
    (run,) = ingest(str(path), adapter="tensorboard").runs()
    norm, ret = run.metric("grad_norm"), run.metric("test_return_mean")
    event = rules.grad_norm_explosion("grad_norm", norm["step"].to_numpy(), norm["value"].to_numpy(),
                                      partner=(ret["step"].to_numpy(), ret["value"].to_numpy()))
    assert event is not None and event.severity == "warning" and event.onset == 171690, event


def test_a_sparse_reward_at_its_floor_throughout_has_no_step_it_went_there():
    """Group means of 8 rollouts that each succeed 2% of the time, for 200 steps: the
    reward is 0 on 85% of the steps throughout, and some stretch sits at 0 on 90% of its
    steps by chance. That is no step where it went to its floor (its rate at the floor is
    no higher after that step than before it, by the two shares' standard error): flat
    from the first step. A reward that scored 30% and scores 1% from step 100 collapsed
    there."""
    rng = np.random.default_rng(0)
    codes = [getattr(rules.reward_collapse("r", np.arange(200), rng.binomial(8, 0.02, 200) / 8), "code", None)
             for _ in range(40)]
    assert codes.count("reward_flat") >= 36, codes
    onsets = []
    for _ in range(40):
        v = rng.binomial(8, np.r_[np.full(100, 0.3), np.full(100, 0.01)]) / 8
        event = rules.reward_collapse("r", np.arange(200), v)
        assert event is not None and event.code == "reward_collapse"
        onsets.append(event.onset)
    assert np.median(onsets) == 100 and np.mean(abs(np.asarray(onsets) - 100) <= 5) >= 0.9, onsets


def test_a_kl_that_grew_from_zero_and_ramps_into_a_blowup_is_found_where_the_ramp_starts():
    # per-token KL of a GRPO run: 0 at step 0 (the policy is the reference), a slow drift
    # over decades to ~4e-4, then a noisy ramp to ~2 nats that PELT cuts into short pieces
    rng = np.random.default_rng(7)
    steps = np.arange(200)
    drift = np.r_[0.0, np.geomspace(1e-8, 4e-4, 119)] * (1 + 0.3 * rng.normal(size=120))
    ramp = np.linspace(0.5, 3.0, 80) * np.exp(0.1 * rng.normal(size=80))
    event = rules.kl_blowup("kl", steps, np.r_[drift, ramp])
    assert event is not None and event.onset == 120 and event.severity == "error"
    # the same drift that ends at 0.5 nats is no blow-up: the state must reach a nat
    assert rules.kl_blowup("kl", steps, np.r_[drift, 0.5 * ramp / 3.0]) is None
