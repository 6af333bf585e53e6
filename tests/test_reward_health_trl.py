"""Reward health on real training: tiny TRL GRPO runs on the CPU, and real TRL logs.

Four runs of reference/tiny_trl.py's GPT-2 (seconds each, one torch thread), one
store, GRPO completions logged as sample events by rldk's TRL callback:

  length     reward = number of words; 40 steps at lr 3e-3, up to 32 tokens: the
             policy learns to write longer (the share of completions cut at 32 tokens
             rises)                                           -> length_hacking
  healthy    reward = share of "good" words (the task's own), same settings -> no alarm
  saturated  reward = 1 for any non-empty completion, 12 steps -> saturation, zero_std_groups
  kl         healthy reward, beta 0.04, lr 1e-2, 12 steps: KL reaches ~0.2 while reward
             rises -> quiet at the default band (1.0), kl_band_exceeded with kl_band=0.1
"""
from __future__ import annotations

from pathlib import Path

import pytest

from rldk import reward_health

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"   # beside the checkout
if not FIXTURES.is_dir():
    FIXTURES = Path("/work/shared/fixtures/real")
pytestmark = pytest.mark.slow


def length_reward(completions, **_):
    return [float(len(c.split())) for c in completions]


def nonempty_reward(completions, **_):
    return [1.0 if c.strip() else 0.0 for c in completions]


LONG = {"steps": 40, "learning_rate": 3e-3, "max_completion_length": 32}
RUNS = {"length": (length_reward, LONG), "healthy": (None, LONG), "saturated": (nonempty_reward, {}),
        "kl": (None, {"beta": 0.04, "learning_rate": 1e-2})}


@pytest.fixture(scope="module")
def trl_store(tmp_path_factory):
    pytest.importorskip("trl")
    import torch

    from reference.tiny_trl import run_grpo

    root = tmp_path_factory.mktemp("reward_health_trl")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # a 32-wide model: extra threads only contend (10x slower on 2 busy cores)
    try:
        for run_id, (reward_fn, extra) in RUNS.items():
            options = {"beta": 0.0, "steps": 12, "max_completion_length": 16, **extra}
            run_grpo(root / run_id, seed=0, reward_fn=reward_fn, rldk_dir=root / "store",
                     run_id=run_id, log_completions=True, **options)
    finally:
        torch.set_num_threads(threads)
    return str(root / "store")


@pytest.fixture(scope="module")
def health(trl_store):
    return reward_health(trl_store)


def problems(result, run_id):
    return sorted(f.code for f in result.findings if f.run_id == run_id and f.is_problem)


def test_length_reward_is_flagged(health):
    f = next(f for f in health.findings if f.run_id == "length" and f.code == "length_hacking")
    assert f.evidence["method"] == "within steps" and f.evidence["late_rho"] > 0.9
    assert f.evidence["length_growth"] > 1.0            # and the policy did get longer
    assert problems(health, "length") == ["length_hacking"]


def test_healthy_reward_raises_no_alarm(health):
    assert problems(health, "healthy") == []
    ran = {c.name for c in health.checks if c.run_id == "healthy" and c.status == "ran"}
    assert {"saturation", "zero_std_groups", "length_hacking"} <= ran


def test_saturated_reward(health):
    assert problems(health, "saturated") == ["reward_saturated", "zero_std_groups"]
    f = next(f for f in health.findings if f.run_id == "saturated" and f.code == "zero_std_groups")
    assert f.metric == "frac_reward_zero_std" and f.severity == "error"


def test_kl_band(health, trl_store):
    assert problems(health, "kl") == []
    tight = reward_health(trl_store, kl_band=0.1)
    f = next(f for f in tight.findings if f.run_id == "kl" and f.code == "kl_band_exceeded")
    assert f.severity == "warning" and f.evidence["max_kl"] > 0.1 and "kept rising" in f.title


def test_real_trl_log_with_zero_std_groups(tmp_path):
    from rldk.converters import ingest

    store = ingest(FIXTURES / "trl_grpo_zero_std", adapter="trl", store_dir=tmp_path / "store")
    result = reward_health(store)
    f = next(f for f in result.findings if f.code == "zero_std_groups")
    # 84 of 100 logged steps at 1.0, the other 16 at 0.75 (SOURCES.md)
    assert f.evidence["mean_share"] == pytest.approx(0.96) and f.steps == (1, 100)
    assert f.severity == "error"


def test_real_trl_log_with_five_reward_functions(tmp_path):
    from rldk.converters import ingest

    store = ingest(FIXTURES / "trl_grpo_truncation", adapter="trl", store_dir=tmp_path / "store")
    result = reward_health(store)
    check = next(c for c in result.checks if c.name == "component_divergence")
    assert check.status == "ran" and check.detail.startswith("5 components")
