"""Reward health reads metrics by meaning (rldk.semantics) and never passes vacuously.

API and CLI together: exact statuses, exit codes and lines.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rldk import reward_health, semantics
from rldk.analyzers import reward_health as rh
from rldk.cli import main
from rldk.core.errors import MissingEvents
from rldk.core.report import Check
from rldk.writer import EventWriter


def write_store(root, metrics, run_id="run"):
    """One run logging ``metrics`` ({name: values, one per step})."""
    n = max(len(v) for v in metrics.values())
    with EventWriter(root, run_id, capture_env=False) as w:
        for step in range(n):
            w.log(step, {k: float(v[step]) for k, v in metrics.items()})
    return str(root)


def rising(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return 0.02 * np.arange(n) + rng.normal(0, 0.05, n)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLDK_CACHE_DIR", str(tmp_path / "cache"))


# ------------------------------------------------------- the log
def test_response_length_column_runs_length_hacking(tmp_path):
    rng = np.random.default_rng(0)
    log = write_jsonl(tmp_path / "training_logs.jsonl",
                      [{"step": s, "reward": 0.02 * s + rng.normal(0, 0.05),
                        "response_length": 100 + rng.normal(0, 5)} for s in range(40)])
    health = reward_health(log, reward_col="reward")
    check = next(c for c in health.checks if c.name == "length_hacking")
    assert check.status == "ran" and "step-to-step changes of response_length" in check.detail
    assert health.passed and health.status == "ok"


def test_length_col_names_any_metric(tmp_path):
    rng = np.random.default_rng(1)
    length = 20 + np.cumsum(rng.normal(0.5, 2, 40))
    store = write_store(tmp_path, {"reward": 0.1 * length + rng.normal(0, 0.01, 40), "my_len": length})
    assert reward_health(store).status == "inconclusive"          # my_len means nothing by itself
    health = reward_health(store, length_col="my_len")
    f = next(f for f in health.findings if f.code == "length_hacking")
    assert f.metric == "my_len" and health.status == "problems"
    out = CliRunner().invoke(main, ["reward-health", store, "--length-col", "my_len", "--format", "json"])
    assert out.exit_code == 3 and json.loads(out.output)["findings"][0]["code"] == "length_hacking"
    out = CliRunner().invoke(main, ["reward-health", store, "--length-col", "tokens"])
    assert out.exit_code == 2
    assert out.output.strip() == "Error: run 'run' has no length metric 'tokens'; metrics: my_len, reward"


# ------------------------------------------------------- inconclusive
def test_reward_only_is_inconclusive_and_says_what_to_log(tmp_path):
    store = write_store(tmp_path, {"reward": rising()})
    health = reward_health(store)
    assert health.status == "inconclusive" and not health.passed
    assert str(health) == ("Reward health: INCONCLUSIVE: No verdict: run 'run': no reward-gaming check "
                           "could run (see the checks for what to log); 1 of 10 detector checks ran.")
    skipped = [c for c in health.checks if not c.ran]
    assert [c.name for c in skipped] == ["saturation", "zero_std_groups", "length_hacking",
                                         "component_divergence", "kl_band", "overoptimization",
                                         "calibration", "drift", "leakage"]
    assert all(c.detail.startswith(("needs", "fewer")) for c in skipped)
    assert health.to_dict()["passed"] is False and health.to_dict()["status"] == "inconclusive"
    out = CliRunner().invoke(main, ["reward-health", store, "--format", "json"])
    assert out.exit_code == 4
    data = json.loads(out.output)
    assert data["status"] == "inconclusive" and len(data["checks"]) == 10


def test_one_gaming_check_makes_a_verdict(tmp_path):
    health = reward_health(write_store(tmp_path, {"reward": rising(), "kl": np.full(40, 0.1)}))
    assert health.status == "ok" and health.passed


def test_a_found_problem_is_conclusive(tmp_path):
    values = rising()
    values[5] = np.nan
    health = reward_health(write_store(tmp_path, {"reward": values}))
    assert health.status == "problems" and [f.code for f in health.findings] == ["reward_nan"]


def test_checks_are_the_core_check_type_and_reach_the_report(tmp_path):
    health = reward_health(write_store(tmp_path, {"reward": rising(), "kl": np.full(40, 0.1)}))
    assert all(type(c) is Check for c in health.checks)
    report = health.report()
    assert report.checks == health.checks and report.status == health.status
    assert "\n" not in str(health)


# ------------------------------------------------------- not rewards
@pytest.mark.parametrize("name, quantity", [("rollout/ep_rew_mean", "episode_return"),
                                            ("r", "episode_return"),
                                            ("rewards/margins", "dpo_margin")])
def test_look_alikes_are_not_rewards(tmp_path, name, quantity):
    store = write_store(tmp_path, {name: rising()})
    names = ", ".join(semantics.quantity("reward").names)     # every name the table reads as one
    assert names.startswith("reward, reward_mean, rewards/mean, env/reward_mean, objective/scores")
    message = (f"run 'run' has no reward: log a per-step reward metric (one of {names}) or samples with "
               f"rewards (writer.log_samples); metrics: {name}; {name} is an {quantity}, not a "
               f"reward-model score (pass reward_col / --reward-col {name} to analyse it anyway)")
    with pytest.raises(MissingEvents) as err:
        reward_health(store)
    assert str(err.value) == message
    assert not rh.RewardHealthAnalyzer().applies(rh.analyzer.open_input(store))
    out = CliRunner().invoke(main, ["reward-health", store])
    assert out.exit_code == 1 and out.output.strip() == f"Error: {message}"
    assert reward_health(store, reward_col=name).reward_cols == {"run": name}


def test_sb3_monitor_csv_has_no_reward(tmp_path):
    monitor = tmp_path / "monitor.csv"
    monitor.write_text('#{"t_start": 0.0, "env_id": "CartPole-v1"}\nr,l,t\n'
                       + "".join(f"{10.0 + i},{10 + i},{0.1 * i}\n" for i in range(20)), encoding="utf-8")
    # the sb3 converter names monitor.csv's r and l episode/reward and episode/length
    with pytest.raises(MissingEvents, match=r"^run 'monitor' has no reward: .*; "
                                            r"metrics: episode/length, episode/reward"):
        reward_health(str(monitor), adapter="sb3")


# ------------------------------------------------------- KL to the reference
def test_verl_ppo_kl_is_not_the_kl(tmp_path):
    store = write_store(tmp_path, {"reward": rising(), "actor/ppo_kl": np.full(40, 5.0)})
    health = reward_health(store)
    check = next(c for c in health.checks if c.name == "kl_band")
    assert check.status == "skipped" and "actor/ppo_kl is not one" in check.detail
    assert not any(f.code == "kl_band_exceeded" for f in health.findings)


def test_verl_reward_kl_penalty_is_the_kl(tmp_path):
    store = write_store(tmp_path, {"reward": rising(), "actor/ppo_kl": np.full(40, 0.001),
                                   "actor/reward_kl_penalty": np.linspace(0, 2, 40)})
    f = next(f for f in reward_health(store).findings if f.code == "kl_band_exceeded")
    assert f.metric == "actor/reward_kl_penalty" and f.severity == "warning"


# ------------------------------------------------------- statistics
def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = rng.integers(0, 5, 30).astype(float)            # many ties
        y = x + rng.integers(0, 3, 30)
        assert rh.rankdata(x).tolist() == stats.rankdata(x).tolist()
        assert rh.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        d = rh.drift(x, y)
        assert d["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


def test_spearman_by_hand():
    assert rh.rankdata([10.0, 20.0, 20.0, 5.0]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert rh.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert rh.spearman([1, 1, 1], [1, 2, 3]) is None and rh.spearman([1, 2], [1, 2]) is None
