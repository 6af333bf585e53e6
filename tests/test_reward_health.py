"""Reward health: each detector fires where it must and stays quiet where it must.

Stores are written through the real EventWriter. Values are chosen so the
statistics can be checked by hand; the real-training tests are in
test_reward_health_trl.py.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from rldk import reward_health
from rldk.analyzers import reward_health as rh
from rldk.cli import main
from rldk.core.errors import MissingEvents, UsageError
from rldk.data import open_input
from rldk.writer import EventWriter


def make_store(root, run_id="run", metrics=None, samples=(), steps=None):
    """Write ``metrics`` ({name: list of values, one per step}) and ``samples``
    ((step, prompt, response, reward, extra-attrs) tuples) for one run."""
    metrics = metrics or {}
    n = steps or max((len(v) for v in metrics.values()), default=0)
    with EventWriter(root, run_id, capture_env=False) as w:
        for step in range(n):
            values = {k: v[step] for k, v in metrics.items() if step < len(v)}
            if values:
                w.log(step, values)
        for step, prompt, response, reward, extra in samples:
            w.log_samples(step, [prompt], [response], [reward], **{k: [v] for k, v in extra.items()})
    return str(root)


def codes(result, problems_only=True):
    return sorted(f.code for f in result.findings if f.is_problem or not problems_only)


def rising(n=60, slope=0.02, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    return (slope * np.arange(n) + rng.normal(0, noise, n)).tolist()


# ------------------------------------------------------------ healthy learning
def healthy_samples(steps=40, per_step=8, seed=0):
    """Reward and length both rise over training, independently within each step."""
    rng = np.random.default_rng(seed)
    out = []
    for step in range(steps):
        for i in range(per_step):
            words = int(rng.integers(5, 20)) + step // 4
            out.append((step, f"prompt {i % 2}", " ".join(["word"] * words),
                        float(0.05 * step + rng.normal(0, 0.5)), {}))
    return out


def test_steadily_rising_reward_raises_no_alarm(tmp_path):
    n = 40
    lengths = (np.linspace(10, 20, n) + np.random.default_rng(1).normal(0, 0.5, n)).tolist()
    store = make_store(tmp_path, metrics={"reward": rising(n), "kl": np.linspace(0, 0.3, n).tolist(),
                                          "completions/mean_length": lengths,
                                          "rewards/a/mean": rising(n, seed=2),
                                          "rewards/b/mean": rising(n, seed=3),
                                          "eval_reward": rising(n, seed=4)},
                       samples=healthy_samples(n))
    result = reward_health(store)
    assert result.passed, [f.title for f in result.findings]
    ran = {c.name for c in result.checks if c.status == "ran"}
    assert {"saturation", "zero_std_groups", "length_hacking", "component_divergence", "kl_band",
            "leakage"} <= ran


# ----------------------------------------------------------------- bad values
def test_nan_and_constant_rewards(tmp_path):
    values = [0.5] * 20
    values[7] = math.nan
    result = reward_health(make_store(tmp_path, metrics={"reward": values}))
    nan = next(f for f in result.findings if f.code == "reward_nan")
    assert nan.severity == "error" and nan.steps == (7, 7)
    assert nan.title == "reward is NaN/inf at 1 of 20 steps, first at step 7"
    const = next(f for f in result.findings if f.code == "reward_constant")
    assert const.evidence == {"value": 0.5, "steps": 19}


# ---------------------------------------------------------------- saturation
def _sat_samples(saturate_from):
    rng = np.random.default_rng(0)
    return [(s, "p", "a b c", 1.0 if s >= saturate_from else float(rng.uniform()), {})
            for s in range(40) for _ in range(5)]


def test_saturation_fires_when_rewards_pile_up(tmp_path):
    result = reward_health(make_store(tmp_path, samples=_sat_samples(20)))
    f = next(f for f in result.findings if f.code == "reward_saturated")
    assert f.steps == (20, 39)
    assert "100% of rewards equal 1" in f.title


def test_saturation_quiet_on_varied_rewards(tmp_path):
    assert "reward_saturated" not in codes(reward_health(make_store(tmp_path, samples=_sat_samples(99))))


def test_saturation_at_clip_bounds(tmp_path):
    samples = [(s, "p", "x", [-1.0, 1.0][i % 2], {}) for s in range(20) for i in range(12)]
    samples += [(s, "q", "x", 0.3 + 0.01 * i, {}) for s in range(20) for i in range(1)]
    quiet = reward_health(make_store(tmp_path / "a", samples=samples))
    assert "reward_saturated" not in codes(quiet)
    loud = reward_health(make_store(tmp_path / "b", samples=samples), bounds=(-1.0, 1.0))
    assert "of rewards at the clip bounds" in next(f.title for f in loud.findings
                                                   if f.code == "reward_saturated")


# ----------------------------------------------------------------- zero std
def test_zero_std_from_trl_metric(tmp_path):
    result = reward_health(make_store(tmp_path, metrics={"reward": rising(20),
                                                         "frac_reward_zero_std": [1.0] * 18 + [0.5, 0.5]}))
    f = next(f for f in result.findings if f.code == "zero_std_groups")
    assert f.severity == "error" and f.evidence["mean_share"] == pytest.approx(0.95)
    assert f.metric == "frac_reward_zero_std"


def test_zero_std_at_the_top_of_a_learned_reward_is_info(tmp_path):
    """Ties after the reward rose to its top are solved prompts (info); the same ties on a
    reward that pays everything from the first step stay a warning."""
    learned = [0.05 * i for i in range(18)] + [0.9] * 22
    ties = [0.3] * 10 + [0.9] * 30
    result = reward_health(make_store(tmp_path / "a", metrics={"reward": learned, "frac_reward_zero_std": ties}))
    f = next(f for f in result.findings if f.code == "zero_std_groups")
    assert f.severity == "info" and "solved prompts" in f.title and f.evidence["solved_share"] >= 0.75
    paid = reward_health(make_store(tmp_path / "b", metrics={"reward": [0.97] + [1.0] * 39,
                                                              "frac_reward_zero_std": ties}))
    assert next(f for f in paid.findings if f.code == "zero_std_groups").severity == "warning"


def test_ties_from_the_first_row_of_a_log_that_starts_mid_run_are_info(tmp_path):
    """Seven groups in ten tied from the first row with a flat reward: from step 0 the run
    learned nothing through them (a warning); in a log kept from step 500 on (a resumed
    run), they began before it and the reward did not fall through them (info)."""
    rng = np.random.default_rng(3)
    ties = np.clip(0.7 + 0.05 * rng.normal(size=100), 0, 1)
    reward = 0.45 + 0.05 * rng.normal(size=100)

    def finding(root, first):
        with EventWriter(root, "run", capture_env=False) as w:
            for i in range(100):
                w.log(first + i, {"reward": float(reward[i]), "frac_reward_zero_std": float(ties[i])})
        return next(f for f in reward_health(str(root)).findings if f.code == "zero_std_groups")

    assert finding(tmp_path / "a", 0).severity == "warning"
    f = finding(tmp_path / "b", 500)
    assert f.severity == "info" and f.evidence["before_log"] and "starts mid-run" in f.title, f


def test_a_window_of_ties_is_flagged_only_beyond_its_noise(tmp_path):
    """One GRPO group per step: the share is 0 or 1 on every row. A run that ties a third of
    its groups at random has windows that average 0.5 by chance (a real TRL run on AgentBench
    of the tuning half: 35% overall, 5 of 12 in one window): no finding. A stretch of
    consecutive ties is a window over the line beyond its noise: flagged."""
    rng = np.random.default_rng(1)
    chance = (rng.random(100) < 0.35).astype(float).tolist()
    reward = (0.5 + 0.1 * rng.normal(size=100)).tolist()
    quiet = reward_health(make_store(tmp_path / "a", metrics={"reward": reward, "frac_reward_zero_std": chance}))
    assert not [f for f in quiet.findings if f.code == "zero_std_groups"]
    stuck = chance[:60] + [1.0] * 20 + chance[80:]
    loud = reward_health(make_store(tmp_path / "b", metrics={"reward": reward, "frac_reward_zero_std": stuck}))
    f = next(f for f in loud.findings if f.code == "zero_std_groups")
    assert f.severity == "warning" and 60 <= f.steps[0] <= 80


def test_zero_std_from_sample_groups(tmp_path):
    # step s: prompt "a" gets 4 equal rewards, prompt "b" 4 different ones -> share 0.5 at every step
    samples = [(s, p, "x", 1.0 if p == "a" else float(i), {}) for s in range(20) for p in "ab" for i in range(4)]
    result = reward_health(make_store(tmp_path, samples=samples))
    f = next(f for f in result.findings if f.code == "zero_std_groups")
    assert f.metric == "sample groups" and f.evidence["mean_share"] == 0.5
    quiet = reward_health(make_store(tmp_path / "q", metrics={"reward": rising(20),
                                                              "frac_reward_zero_std": [0.1] * 20}))
    assert "zero_std_groups" not in codes(quiet)


# ------------------------------------------------------------ length hacking
def test_length_hacking_from_samples(tmp_path):
    rng = np.random.default_rng(0)
    samples = []
    for s in range(30):
        for i in range(6):
            words = int(rng.integers(2, 30))
            samples.append((s, "p", " ".join(["w"] * words), float(words + rng.normal(0, 2)), {}))
    f = next(f for f in reward_health(make_store(tmp_path, samples=samples)).findings
             if f.code == "length_hacking")
    assert f.evidence["method"] == "within steps" and f.evidence["late_rho"] > 0.9


def test_length_hacking_from_metrics(tmp_path):
    rng = np.random.default_rng(0)
    length = 20 + np.cumsum(rng.normal(0.5, 2, 40))            # grows, with batch noise
    reward = 0.1 * length + rng.normal(0, 0.01, 40)              # the reward is length
    result = reward_health(make_store(tmp_path, metrics={"reward": reward.tolist(),
                                                         "completions/mean_length": length.tolist()}))
    f = next(f for f in result.findings if f.code == "length_hacking")
    assert f.metric == "completions/mean_length" and f.evidence["late_rho"] > 0.8


# ------------------------------------------------------- component divergence
def test_component_divergence(tmp_path):
    n = 40
    up, down = rising(n, 0.05, 0.05, 1), (-np.array(rising(n, 0.05, 0.05, 2))).tolist()
    result = reward_health(make_store(tmp_path, metrics={"reward": rising(n), "rewards/format/mean": up,
                                                         "rewards/correct/mean": down}))
    f = next(f for f in result.findings if f.code == "component_divergence")
    assert f.title == "rewards/format/mean rising while rewards/correct/mean falling"
    assert f.evidence["trends"]["rewards/correct/mean"]["direction"] == "down"


# ------------------------------------------------------------------ KL band
def test_kl_band(tmp_path):
    n = 40
    kl = np.linspace(0, 2, n).tolist()             # crosses 1.0 between steps 19 and 20
    result = reward_health(make_store(tmp_path, metrics={"reward": rising(n), "kl": kl}))
    f = next(f for f in result.findings if f.code == "kl_band_exceeded")
    assert f.severity == "warning" and f.evidence["first_step_above"] == 21   # rolling median of 3
    flat = reward_health(make_store(tmp_path / "flat", metrics={"reward": [1.0, 1.1] * 20, "kl": kl}))
    g = next(f for f in flat.findings if f.code == "kl_band_exceeded")
    assert g.severity == "info" and flat.passed
    quiet = reward_health(make_store(tmp_path / "q", metrics={"reward": rising(n), "kl": kl}), kl_band=5.0)
    assert not [f for f in quiet.findings if f.code == "kl_band_exceeded"]


# -------------------------------------------------------- overoptimization
def test_gao_fit_recovers_exact_curve_and_flags_overoptimization(tmp_path):
    n = 50
    kl = np.linspace(0.01, 16.0, n)
    d = np.sqrt(kl)
    gold = d * (1.0 - 0.5 * np.log(d))                  # alpha 1, beta 0.5: peak at d = e
    proxy = np.linspace(0, 3, n)
    result = reward_health(make_store(tmp_path, metrics={"reward": proxy.tolist(), "kl": kl.tolist(),
                                                         "gold_reward": gold.tolist()}))
    f = next(f for f in result.findings if f.code == "overoptimization")
    fit = f.evidence["gao_fit"]
    assert fit["alpha"] == pytest.approx(1.0, abs=1e-9) and fit["beta"] == pytest.approx(0.5, abs=1e-9)
    assert fit["r0"] == pytest.approx(0.0, abs=1e-9) and fit["peak_sqrt_kl"] == pytest.approx(math.e)
    assert abs(kl[np.searchsorted(np.arange(n), f.evidence["peak_step"])] - math.e ** 2) < 0.5


def test_gold_rising_with_proxy_is_quiet(tmp_path):
    result = reward_health(make_store(tmp_path, metrics={"reward": rising(40), "gold_reward": rising(40, seed=9)}))
    assert "overoptimization" not in codes(result)
    assert any(c.name == "overoptimization" and c.status == "ran" for c in result.checks)


# -------------------------------------------------------------- calibration
def _pairs(margins, longer_preferred=True):
    out = []
    for i, m in enumerate(margins):
        short, long_ = "a b", "a b c d e f"
        pref, other = (long_, short) if longer_preferred else (short, long_)
        out.append((0, f"q{i}", pref, float(m), {"pair": i, "preferred": True}))
        out.append((0, f"q{i}", other, 0.0, {"pair": i, "preferred": False}))
    return out


def test_calibration_by_hand(tmp_path):
    ln3, m = math.log(3), math.log(0.85 / 0.15)       # sigmoid: 0.75 and 0.85, inside their bins
    good = reward_health(make_store(tmp_path / "g", samples=_pairs([ln3, ln3, ln3, -ln3], False)))
    cal = good.calibration["run"]
    assert cal["accuracy"] == 0.75 and cal["ece"] == pytest.approx(0.0, abs=1e-12)
    assert cal["length_accuracy"] == 0.0 and good.passed
    bad = reward_health(make_store(tmp_path / "b", samples=_pairs([m, m, -m, -m])))
    cal = bad.calibration["run"]
    assert cal["accuracy"] == 0.5 and cal["ece"] == pytest.approx(0.35)     # |0.5 - 0.85|, both halves
    assert codes(bad) == ["length_shortcut", "reward_model_inaccurate", "reward_model_miscalibrated"]


def test_reliability_diagram_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    result = reward_health(make_store(tmp_path / "s", samples=_pairs([1.0, 2.0, -1.0])),
                           out_dir=tmp_path / "card")
    assert (tmp_path / "card" / "reliability-run.png").read_bytes()[:4] == b"\x89PNG"
    paths = rh.write_card(result, tmp_path / "card")
    assert "reliability-run.png" in open(paths["markdown"], encoding="utf-8").read()


# -------------------------------------------------------------------- drift
def test_drift_by_hand():
    d = rh.drift(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0]))
    assert d["spearman"] == pytest.approx(0.5) and d["kendall"] == pytest.approx(1 / 3)
    assert d["sign_flip_rate"] == pytest.approx(1 / 3) and d["pairs_compared"] == 3


def test_drift_between_runs(tmp_path):
    items = [(0, f"q{i}", f"answer {i}", float(i), {}) for i in range(10)]
    make_store(tmp_path, "rm_a", samples=items)
    make_store(tmp_path, "rm_b", samples=[(s, p, r, -v, e) for s, p, r, v, e in items])
    make_store(tmp_path, "rm_c", samples=[(s, p, r, 2 * v + 1, e) for s, p, r, v, e in items])
    loud = rh.run(open_input(str(tmp_path)), rh.Params(against="rm_b"), run_ids=["rm_a"])
    f = next(f for f in loud.findings if f.code == "reward_drift")
    assert f.evidence["spearman"] == pytest.approx(-1.0) and f.evidence["sign_flip_rate"] == 1.0
    quiet = rh.run(open_input(str(tmp_path)), rh.Params(against="rm_c"), run_ids=["rm_a"])
    assert quiet.drift["rm_a"]["spearman"] == pytest.approx(1.0) and codes(quiet) == []
    assert quiet.status == "inconclusive"        # one step of samples: no reward-gaming check can run


# ------------------------------------------------------------------ leakage
def test_prompt_overlap_exact_and_normalized(tmp_path):
    samples = [(1, "What is 2+2?", "4", 1.0, {}), (1, "Name a colour.", "red", 1.0, {}),
               (1, "what is 2 + 2", "4", 1.0, {"split": "val"}),
               (1, "Name a colour.", "blue", 1.0, {"split": "val"}),
               (1, "A new question", "x", 1.0, {"split": "val"})]
    result = reward_health(make_store(tmp_path, samples=samples))
    ov = result.leakage["run"]["overlap"]
    assert (ov["val_prompts"], ov["exact"], ov["normalized"]) == (3, 1, 2)
    f = next(f for f in result.findings if f.code == "prompt_leakage")
    assert f.severity == "warning" and f.title.startswith("2 of 3 validation prompts")


def test_lockstep_rewards_fire_but_shared_progress_does_not(tmp_path):
    n = 40
    train = np.array(rising(n, 0.02, 0.1, 0))
    same_noise = (train + 0.1).tolist()                  # validation scored on the training batches
    own_noise = rising(n, 0.02, 0.1, 5)                  # improves too, with its own noise
    loud = reward_health(make_store(tmp_path / "l", metrics={"reward": train.tolist(), "eval_reward": same_noise}))
    f = next(f for f in loud.findings if f.code == "train_val_lockstep")
    assert f.evidence["noise_rho"] == pytest.approx(1.0)
    quiet = reward_health(make_store(tmp_path / "q", metrics={"reward": train.tolist(), "eval_reward": own_noise}))
    lock = quiet.leakage["run"]["lockstep"]
    assert lock["level_rho"] > 0.8 and lock["noise_rho"] < 0.5 and codes(quiet) == []


def test_one_learning_curve_shared_by_train_and_validation_is_no_lockstep(tmp_path):
    """An RL return and its evaluation both climb fast and then level off (a ManiSkill run
    cut at 70%: 11 evaluations, Spearman of step-to-step changes 0.92): the changes rank
    alike because the curve's early gains are large for both, not because they share
    noise. Each with its own noise around that curve is quiet; sharing the noise fires."""
    rng = np.random.default_rng(8)
    n = 12
    curve = 10 * (1 - np.exp(-np.arange(n) / 2.0))
    train = curve + 0.3 * rng.normal(size=n)
    own = curve + 0.3 * rng.normal(size=n)
    shared = train + 0.5
    assert np.corrcoef(np.diff(train), np.diff(own))[0, 1] > 0.8          # the old test's trap
    quiet = reward_health(make_store(tmp_path / "q", metrics={"reward": train.tolist(), "eval_reward": own.tolist()}))
    assert "train_val_lockstep" not in codes(quiet)
    loud = reward_health(make_store(tmp_path / "l", metrics={"reward": train.tolist(), "eval_reward": shared.tolist()}))
    assert "train_val_lockstep" in codes(loud)


# -------------------------------------------------------------------- texts
def test_empty_and_undecodable_texts(tmp_path):
    samples = [(0, "p", "", 0.0, {}), (0, "p", b"caf\xe9 ok", 1.0, {}), (0, "p", "fine", 1.0, {})]
    result = reward_health(make_store(tmp_path, samples=samples))
    assert codes(result, problems_only=False) == ["empty_responses", "undecodable_text"]
    assert result.status == "inconclusive"      # info only: one of three; too few samples to judge


# ---------------------------------------------------------------- bad input
def test_missing_reward_column_lists_metrics(tmp_path):
    store = make_store(tmp_path, metrics={"loss": [1.0, 0.5], "kl": [0.0, 0.1]})
    with pytest.raises(UsageError) as err:
        reward_health(store, reward_col="score")
    assert str(err.value) == "run 'run' has no reward metric 'score'; metrics: kl, loss"
    out = CliRunner().invoke(main, ["reward-health", store, "--reward-col", "score"])
    assert out.exit_code == 2
    assert out.output.strip() == "Error: run 'run' has no reward metric 'score'; metrics: kl, loss"


def test_no_reward_at_all(tmp_path):
    store = make_store(tmp_path, metrics={"loss": [1.0, 0.5]})
    with pytest.raises(MissingEvents, match="has no reward: log a per-step reward metric"):
        reward_health(store)
    out = CliRunner().invoke(main, ["reward-health", store])
    assert out.exit_code == 1 and out.output.startswith("Error: run 'run' has no reward")
    assert not rh.RewardHealthAnalyzer().applies(open_input(store))


def test_canonical_reward_name_resolves(tmp_path):
    store = make_store(tmp_path, metrics={"objective/scores": rising(20)})
    assert reward_health(store, reward_col="reward_mean").reward_cols == {"run": "objective/scores"}


def test_unknown_parameter(tmp_path):
    with pytest.raises(UsageError, match="unknown reward_health parameter"):
        reward_health(make_store(tmp_path, metrics={"reward": [1.0]}), kl_bnd=2)


def test_jsonl_training_log(tmp_path, monkeypatch):
    monkeypatch.setenv("RLDK_CACHE_DIR", str(tmp_path / "cache"))
    log = tmp_path / "training_logs.jsonl"
    rng = np.random.default_rng(0)
    log.write_text("".join(json.dumps({"step": s, "reward": 0.02 * s + rng.normal(0, 0.05),
                                       "kl": 0.001 * s}) + "\n" for s in range(30)), encoding="utf-8")
    health = reward_health(str(log), reward_col="reward")
    assert health.passed and health.reward_cols == {"training_logs": "reward"}
    assert health.to_dict()["passed"] is True


def test_jsonl_bad_bytes_are_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("RLDK_CACHE_DIR", str(tmp_path / "cache"))
    log = tmp_path / "bad.jsonl"
    log.write_bytes(b'{"step": 0, "reward": 1.0}\n{"step": 1, "reward": \xff}\n')
    health = reward_health(str(log), adapter="jsonl")
    f = next(f for f in health.findings if f.code == "import_skipped")
    assert f.severity == "warning" and f.title.startswith(f"1 record(s) of {log} were skipped on import; "
                                                          "first: line 2: invalid JSON")
    out = CliRunner().invoke(main, ["reward-health", str(log), "--adapter", "jsonl"])
    assert out.exit_code == 3 and "Traceback" not in out.output


# ---------------------------------------------------------------------- CLI
def test_cli_exit_codes_and_card(tmp_path):
    loud = make_store(tmp_path / "loud", metrics={"reward": rising(20),
                                                  "frac_reward_zero_std": [1.0] * 20})
    out = CliRunner().invoke(main, ["reward-health", loud, "--format", "json",
                                    "--out-dir", str(tmp_path / "card")])
    assert out.exit_code == 3
    data = json.loads(out.output[out.output.index("{"):])
    assert data["status"] == "problems" and data["findings"][0]["code"] == "zero_std_groups"
    assert (tmp_path / "card" / "reward_health.md").is_file()
    quiet = make_store(tmp_path / "quiet", metrics={"reward": rising(20), "kl": [0.1] * 20})
    out = CliRunner().invoke(main, ["reward-health", quiet])
    assert out.exit_code == 0 and "Reward health [ok]" in out.output


def test_analyzer_interface(tmp_path):
    from rldk.analyzers import get

    store = open_input(make_store(tmp_path, metrics={"reward": rising(20), "kl": [0.1] * 20}))
    analyzer = get("reward_health")
    assert isinstance(analyzer, rh.RewardHealthAnalyzer) and analyzer.applies(store)
    result = analyzer.run(store, analyzer.params())
    assert result.report().status == "ok" and result.to_dict()["analyzer"] == "reward_health"
    assert result.to_dict()["status"] == "ok" and result.to_dict()["passed"] is True


def test_runs_without_reward_are_skipped_not_fatal(tmp_path):
    make_store(tmp_path, "with", metrics={"reward": rising(20)})
    make_store(tmp_path, "without", metrics={"loss": [1.0, 0.5]})
    result = reward_health(str(tmp_path))
    assert result.run_ids == ("with",)
    skipped = next(c for c in result.checks if c.run_id == "without")
    assert skipped.status == "skipped" and "has no reward" in skipped.detail


def test_named_gold_metric_must_exist(tmp_path):
    store = make_store(tmp_path, metrics={"reward": rising(12), "kl": [0.1] * 12})
    out = CliRunner().invoke(main, ["reward-health", store, "--gold-col", "rewards/judge/mean"])
    assert out.exit_code == 2
    assert out.output.strip() == ("Error: run 'run' has no gold reward metric 'rewards/judge/mean'; "
                                  "metrics: kl, reward")


def test_group_std_per_window(tmp_path):
    # each step: prompt "a" rewards 0, 2 (std 1), prompt "b" rewards 1, 1 (std 0) -> mean group std 0.5
    samples = [(s, p, "x", v, {}) for s in range(10) for p, vals in (("a", (0.0, 2.0)), ("b", (1.0, 1.0)))
               for v in vals]
    result = reward_health(make_store(tmp_path, samples=samples))
    assert [w["group_std"] for w in result.windows] == [0.5, 0.5]
    assert [w["zero_std_share"] for w in result.windows] == [0.5, 0.5]
