"""Every real log in shared/fixtures/real converts; facts from SOURCES.md hold on the result."""
from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest

from rldk.converters import detect_format, ingest
from rldk.core.errors import UsageError

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "real"
if not REAL.is_dir():                               # a checkout beside shared/ (CI) or under /work
    REAL = Path("/work/shared/fixtures/real")
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason="shared/fixtures/real not present")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each fixture directory converted into its own store (auto-detected format)."""
    out = {}
    for d in sorted(p for p in REAL.iterdir() if p.is_dir()):
        store = ingest(d, store_dir=tmp_path_factory.mktemp(d.name))
        out[d.name] = (store.conversion, store.runs())
    return out


def _series(run, name):
    frame = run.metric(name)
    return dict(zip(frame["step"].to_list(), frame["value"].to_list()))


def test_every_fixture_is_detected_as_its_framework():
    found = {d.name: detect_format(d) for d in REAL.iterdir() if d.is_dir()}
    assert found == {"trl_dpo_nan_gradnorm": "trl", "trl_grpo_truncation": "trl", "trl_grpo_zero_std": "trl",
                     "trl_orpo_old_format": "trl", "sb3_ppo_entropy_collapse": "sb3", "sb3_ppo_healthy": "sb3",
                     "mlflow_file_store": "mlflow"}


def test_dpo_nan_grad_norm_steps(runs):
    summary, (run,) = runs["trl_dpo_nan_gradnorm"]
    assert summary["format"] == "trl" and run.id == "trl_dpo_nan_gradnorm"
    assert run.metric_names() == sorted(
        ["entropy", "epoch", "grad_norm", "learning_rate", "logits/chosen", "logits/rejected", "logps/chosen",
         "logps/rejected", "loss", "mean_token_accuracy", "num_tokens", "rewards/accuracies", "rewards/chosen",
         "rewards/margins", "rewards/rejected"])
    grad = _series(run, "grad_norm")
    assert sorted(grad) == list(range(1, 76))
    assert [s for s, v in grad.items() if math.isnan(v)] == [1, 2, 18, 74]
    assert [s for s, v in _series(run, "lr").items() if v == 0.0] == [1, 2, 3]     # canonical name
    loss = _series(run, "loss")
    assert [s for s, v in loss.items() if abs(v - math.log(2)) < 1e-4] == [1, 2, 3, 4]
    assert summary["runs"][0]["rows"] == 75 * 15 and summary["runs"][0]["skipped"] == []


def test_grpo_truncation_facts(runs):
    _, (run,) = runs["trl_grpo_truncation"]
    clipped = _series(run, "truncation_ratio")                       # completions/clipped_ratio
    assert sorted(clipped) == list(range(5, 201, 5))
    assert [s for s, v in clipped.items() if v == 1.0] == [115, 135, 140, 150, 160, 170, 175, 180, 195, 200]
    assert set(_series(run, "completions/max_length").values()) == {512.0}
    zero_std = _series(run, "frac_reward_zero_std")
    assert [s for s, v in zero_std.items() if v > 0] == [50, 55, 65, 85, 110, 130, 145, 155, 160, 165, 180,
                                                       185, 190, 195]
    assert [s for s, v in _series(run, "grad_norm").items() if v < 1e-3] == [55, 110, 145]
    means = [n for n in run.metric_names() if n.startswith("rewards/") and n.endswith("/mean")]
    assert len(means) == 5 and "entropy" not in run.metric_names()
    reward = _series(run, "reward_mean")                              # resolves to TRL's 'reward'
    total = {s: sum(_series(run, n)[s] for n in means) for s in reward}
    assert all(abs(reward[s] - total[s]) < 1e-6 for s in reward)


def test_grpo_zero_std_facts(runs):
    _, (run,) = runs["trl_grpo_zero_std"]
    zero_std = _series(run, "frac_reward_zero_std")
    assert len(zero_std) == 100 and set(zero_std.values()) == {0.75, 1.0}
    assert sum(v == 1.0 for v in zero_std.values()) == 84
    assert max(_series(run, "reward").values()) <= 0.125
    assert set(_series(run, "completions/clipped_ratio").values()) == {0.0}
    assert "step_time" in run.metric_names() and "rewards/FinancePoisonReward/mean" in run.metric_names()


def test_orpo_old_format_and_summary_row(runs):
    summary, (run,) = runs["trl_orpo_old_format"]
    loss = _series(run, "loss")
    assert sorted(loss) == list(range(10, 331, 10))
    assert loss[10] == 1.0495 and loss[330] == 0.1345
    assert {"odds_ratio_loss", "sft_loss", "rewards/margins"} <= set(run.metric_names())
    stepless = run.events("metric").filter(pl.col("step").is_null())
    assert sorted(stepless["name"]) == sorted(["epoch", "total_flos", "train_loss", "train_runtime",
                                               "train_samples_per_second", "train_steps_per_second"])
    assert json.loads(stepless["attrs"][0]) == {"summary": True, "global_step": 336}
    assert summary["runs"][0]["rows"] == 33 * 14 + 6


@pytest.mark.parametrize("name, rows, first, last, reward", [
    ("sb3_ppo_entropy_collapse", 48, 1024, 49152, (-7.5299999999999985, 7.781)),
    ("sb3_ppo_healthy", 22, 2048, 45056, (22.207, 348.3)),
])
def test_sb3_progress(runs, name, rows, first, last, reward):
    _, (run,) = runs[name]
    ep_rew = _series(run, "episode_return")                           # rollout/ep_rew_mean
    with pytest.raises(UsageError):                                   # an episode return is no reward
        run.metric("reward")
    assert len(ep_rew) == rows and min(ep_rew) == first and max(ep_rew) == last
    assert ep_rew[first] == pytest.approx(reward[0], abs=1e-3) and ep_rew[last] == pytest.approx(reward[1], abs=1e-3)
    entropy_loss = _series(run, "train/entropy_loss")
    assert first not in entropy_loss and len(entropy_loss) == rows - 1   # empty cells stay missing
    assert len(run.metric_names()) == 15


def test_mlflow_file_store(runs):
    summary, (run,) = runs["mlflow_file_store"]
    assert run.id == "0-0d8653353e3e43beb89442a8bca1a94d"
    assert {n: _series(run, n) for n in run.metric_names()} == {
        "mae": {0: 0.5627373693033669}, "r2": {0: 0.24127270524006605}, "rmse": {0: 0.7317723392279818}}
    meta = json.loads(run.events("run").filter(pl.col("name") == "import")["attrs"][0])["meta"]
    assert meta["run_name"] == "wise-roo-476" and meta["status"] == "3"
    assert meta["experiment_name"] == "Default" and meta["tags"] == {"mlflow.runName": "wise-roo-476"}


def test_ingest_runs_over_a_directory_of_outputs_is_sorted_and_cached(tmp_path, monkeypatch):
    from rldk import ingest_runs

    monkeypatch.setenv("RLDK_CACHE_DIR", str(tmp_path / "cache"))
    runs = ingest_runs(REAL, adapter="trl")
    assert [r.id for r in runs] == ["trl_dpo_nan_gradnorm", "trl_grpo_truncation", "trl_grpo_zero_std",
                                    "trl_orpo_old_format"]
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1
    again = ingest_runs(REAL, adapter="trl")                          # reused, not converted again
    assert [r.id for r in again] == [r.id for r in runs]
    assert list((tmp_path / "cache").iterdir()) == cached
    assert {Path(f).parent for f in again[0].store.files} == {cached[0]}
