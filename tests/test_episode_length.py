"""Episodes that end sooner as the return collapses: how a policy fails (issue #14).

An environment's episode length has no good direction: a reach task ends sooner at
success, a penalty per step rewards ending early, a locomotion task ends when the body
falls. A length that falls to a third of a level it held is a finding only while the
episode return collapses over the same stretch (``rules.episode_length_collapse``): the
policy now fails within a few steps. Real logs of the tuning half, and synthetic twins
with exact answers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rldk import semantics
from rldk.detectors import rules

REAL = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "real"


def csv_series(name: str, file: str, mapping: dict, quantity: str):
    """``(steps, values)`` of one quantity of a CSV log of the corpus, as imported."""
    from rldk.converters import ingest

    semantics.use_metric_map(mapping)
    try:
        (run,) = ingest(str(REAL / name / file), adapter="csv").runs()
        series = run.metric(quantity)
    finally:
        semantics.use_metric_map(None)
    return series["step"].to_numpy(), series["value"].to_numpy()


def test_episodes_that_end_at_once_as_the_return_collapses():
    """rl-zoo3 PPO on InvertedDoublePendulum (per-episode CSV, tuning half): the pendulum
    stayed up for 700-1000 steps an episode, then falls within 4 as the return goes
    6600 -> 26. Found inside the truth's window (rows 4880-5209), a warning."""
    name, file = "rlzoocsv_ppo_invdoublependulum_reward_length_collapse", "run_5_episodes.csv"
    mapping = {"episode_return": ["r"], "episode_length": ["l"]}
    returns = csv_series(name, file, mapping, "episode_return")
    steps, lengths = csv_series(name, file, mapping, "episode_length")
    event = rules.episode_length_collapse("l", steps, lengths, partner=returns)
    assert event is not None and event.severity == "warning", event
    assert 4880 <= event.onset <= 5209, event
    assert event.evidence["now"] < 10 and "fails early" in event.title
    # the same fall with no return to judge it by says nothing
    assert rules.episode_length_collapse("l", steps, lengths) is None


def test_episodes_that_shorten_while_the_return_rises_are_no_finding():
    """Spinning Up DDPG on a process-control task (tuning half): every step costs reward,
    so episodes shrink 66 -> 1.5 steps while the return rises -95 -> -4. No return
    collapse goes with it: nothing to say about the length."""
    name, file = "spinup_ddpg_liveline_rmse_length_collapse", "progress.txt"
    mapping = {"episode_return": ["AverageEpRet"], "episode_length": ["EpLen"]}
    returns = csv_series(name, file, mapping, "episode_return")
    steps, lengths = csv_series(name, file, mapping, "episode_length")
    assert lengths[-1] < lengths[0] / 10 and returns[1][-1] > returns[1][0]
    assert rules.episode_length_collapse("EpLen", steps, lengths, partner=returns) is None


def test_a_length_fall_needs_a_return_that_lost_everything_it_gained():
    """Synthetic: a length 500 -> 20 from step 120 of 200. With a return that collapses to
    its start level over the same steps: a warning from the fall. With a return that only
    gives back half its gain (a degradation, not a collapse: a shaped return of a task
    whose episodes end at success loses dense reward as it gets faster), or one that
    collapses long after the length's state ended, or one whose task's success rate held
    through the fall: nothing."""
    rng = np.random.default_rng(3)
    t = np.arange(200)
    length = np.where(t < 120, 500.0, 20.0) + rng.normal(0, 5, size=200)
    learned = np.interp(t, [0, 40, 200], [0.0, 100.0, 100.0])
    collapsed = np.where(t < 120, learned, 2.0) + rng.normal(0, 2, size=200)
    event = rules.episode_length_collapse("len", t, length, partner=(t, collapsed))
    assert event is not None and event.onset == 120 and event.severity == "warning", event
    # the same return with a success rate that held through its fall: episodes that end at
    # success, a shaped return that pays less for them
    success = np.interp(t, [0, 40, 200], [0.0, 0.9, 1.0])
    assert rules.episode_length_collapse("len", t, length, partner=(t, collapsed), success=(t, success)) is None
    failed = np.where(t < 120, success, 0.05)
    assert rules.episode_length_collapse("len", t, length, partner=(t, collapsed), success=(t, failed)) is not None
    halved = np.where(t < 120, learned, 50.0) + rng.normal(0, 2, size=200)
    assert rules.episode_length_collapse("len", t, length, partner=(t, halved)) is None
    short = np.where((t >= 120) & (t < 150), 20.0, 500.0) + rng.normal(0, 5, size=200)
    late = np.where(t < 185, learned, 2.0) + rng.normal(0, 2, size=200)
    assert rules.episode_length_collapse("len", t, short, partner=(t, late)) is None
