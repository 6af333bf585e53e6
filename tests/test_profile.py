"""Compute profile: phase shares, step-time change points, throughput/MFU, real runs, CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rldk.analyzers import profile as prof
from rldk.cli import main
from rldk.core.errors import MissingEvents
from rldk.core.store import open_store
from rldk.writer import EventWriter

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"   # beside the checkout
if not FIXTURES.is_dir():
    FIXTURES = Path("/work/shared/fixtures/real")


def spans_store(tmp_path, steps=range(120), step_time=lambda s: 1.0, checkpoints=(), config=None,
                **phases):
    """A run whose ``step`` span and phase spans (name -> seconds or f(step)) are logged exactly."""
    with EventWriter(tmp_path, "r", capture_env=False, config=config) as w:
        for step in steps:
            w.log_event("span", "step", step, value=step_time(step))
            for name, secs in phases.items():
                w.log_event("span", name, step, value=secs(step) if callable(secs) else secs)
            if step in checkpoints:
                w.log_event("checkpoint", "save", step, text=f"ckpt-{step}")
            w.log(step, loss=1.0)
    return open_store(tmp_path)


# --------------------------------------------------------------- breakdown
def test_phase_shares_and_unaccounted_time(tmp_path):
    store = spans_store(tmp_path, rollout=0.6, reward=0.1, train=0.2)
    (p,) = prof.ProfileAnalyzer().run(store).profiles
    assert p.step_source == "span:step"
    assert p.steps == 120 and p.step_seconds == pytest.approx(120.0) and p.median_step == 1.0
    shares = {ph.name: (ph.phase, round(ph.share, 9)) for ph in p.phases}
    assert shares == {"rollout": ("rollout", 0.6), "reward": ("reward", 0.1), "train": ("train", 0.2)}
    assert p.by_phase == {"rollout": 0.6, "reward": 0.1, "reference": 0.0, "train": 0.2, "other": 0.0,
                          "unaccounted": 0.1}
    assert p.bottleneck == "rollout dominates: 60% of step time (0.6 s of 1 s per step)"
    assert p.change_points == ()


def test_shares_agree_with_numpy_on_seeded_random_spans(tmp_path):
    rng = np.random.default_rng(5)
    rollout, train, extra = rng.uniform(0.1, 0.5, (3, 80))
    step = rollout + train + extra + rng.uniform(0, 0.2, 80)
    store = spans_store(tmp_path, steps=range(80), step_time=lambda s: step[s],
                        rollout=lambda s: rollout[s], train=lambda s: train[s], tokenize=lambda s: extra[s])
    (p,) = prof.ProfileAnalyzer().run(store).profiles
    total = step.sum()
    assert p.step_seconds == pytest.approx(total)
    assert p.by_phase["rollout"] == pytest.approx(rollout.sum() / total, abs=1e-6)
    assert p.by_phase["train"] == pytest.approx(train.sum() / total, abs=1e-6)
    assert p.by_phase["other"] == pytest.approx(extra.sum() / total, abs=1e-6)
    assert p.by_phase["unaccounted"] == pytest.approx(1 - (rollout + train + extra).sum() / total, abs=1e-6)
    assert p.median_step == pytest.approx(np.median(step))


@pytest.mark.parametrize("name,phase", [
    ("timing_s/gen", "rollout"), ("timing_s/ref", "reference"), ("timing_s/old_log_prob", "reference"),
    ("timing_s/update_actor", "train"), ("timing_s/reward", "reward"), ("timing_s/step", "step"),
    ("step_time", "step"), ("tokenize", "other"), ("Rollout", "rollout"),
])
def test_phase_table(name, phase):
    assert prof.phase_of(name) == phase


def test_verl_timing_metrics_without_spans(tmp_path):
    with EventWriter(tmp_path, "verl", capture_env=False) as w:
        for step in range(1, 31):
            w.log(step, {"timing_s/gen": 6.0, "timing_s/ref": 1.0, "timing_s/update_actor": 2.0,
                         "timing_s/step": 10.0, "perf/total_num_tokens": 40_000.0, "perf/throughput": 4000.0})
    (p,) = prof.ProfileAnalyzer().run(open_store(tmp_path), prof.Params(model_params=1e9, peak_flops=1e15)).profiles
    assert p.step_source == "metric:timing_s/step"
    assert p.by_phase["rollout"] == 0.6 and p.by_phase["reference"] == 0.1 and p.by_phase["train"] == 0.2
    assert p.tokens_per_second == 4000.0
    assert p.mfu == pytest.approx(6 * 1e9 * 4000 / 1e15)                 # 2.4%
    assert p.logged == {"perf/throughput": 4000.0}


def test_nested_timing_metrics_are_not_summed_as_phases(tmp_path):
    """verl's agent loop logs statistics of its generation under timing_s/agent_loop/...
    (and a prompt length there): parts of timing_s/gen, not more step time."""
    with EventWriter(tmp_path, "verl", capture_env=False) as w:
        for step in range(1, 31):
            w.log(step, {"timing_s/gen": 6.0, "timing_s/update_actor": 2.0, "timing_s/step": 10.0,
                         "timing_s/agent_loop/generate_sequences/max": 5.9,
                         "timing_s/agent_loop/generate_sequences/mean": 4.0,
                         "timing_s/agent_loop/slowest/prompt_length": 300.0})
    (p,) = prof.ProfileAnalyzer().run(open_store(tmp_path)).profiles
    assert p.by_phase["rollout"] == 0.6 and p.by_phase["train"] == 0.2 and p.by_phase["other"] == 0.0
    assert p.bottleneck == "rollout dominates: 60% of step time (6 s of 10 s per step)"


def test_a_step_counter_under_a_step_time_name_is_not_a_step_time(tmp_path):
    """ManiSkill's PPO logs the global step as ``time/step`` (12800, 25600, ...): a name the
    semantics table lists for seconds per step. Read as one, it "rose 5.37x" three times
    on a real wandb run, and, once the counter's test asked only for tenfold growth, "rose
    1.46x" on the same run read from 20% of its steps on. A series that only counts up is no step time (nor a phase of one):
    the profile says why it has none; the same name holding seconds that jitter is read as
    before."""
    with EventWriter(tmp_path / "a", "counter", capture_env=False) as w:
        for step in range(1, 41):
            w.log(step * 12800, {"time/step": float(step * 12800), "time/total_rollout_time": 1.04 * step})
    with pytest.raises(MissingEvents, match=r"time/step only counts up: a step counter"):
        prof.ProfileAnalyzer().run(open_store(tmp_path / "a"))
    assert prof.breakdown.counts_up([12800.0 * k for k in range(1, 13)])       # 12x: a counter
    assert not prof.breakdown.counts_up([1.0, 2.0, 3.0, 2.9, 20.0])       # steps back: a time
    # read from a later step on (a resumed run, a window of one), the counter grows 2x, not
    # 10x, and is still the step
    late = [12800.0 * k for k in range(20, 41)]
    assert not prof.breakdown.counts_up(late) and prof.breakdown.counts_up(late, late)
    with EventWriter(tmp_path / "c", "resumed", capture_env=False) as w:
        for step in range(20, 41):
            w.log(step * 12800, {"time/step": float(step * 12800), "time/total_rollout_time": 1.04 * step})
    with pytest.raises(MissingEvents, match=r"time/step only counts up: a step counter"):
        prof.ProfileAnalyzer().run(open_store(tmp_path / "c"))
    jitter = [1.0, 1.02, 0.98, 1.01, 0.99]
    with EventWriter(tmp_path / "b", "seconds", capture_env=False) as w:
        for step in range(1, 41):
            w.log(step, {"time/step": jitter[step % 5]})
    (p,) = prof.ProfileAnalyzer().run(open_store(tmp_path / "b")).profiles
    assert p.step_source == "metric:time/step" and p.change_points == ()


# ------------------------------------------------------------ change points
def test_step_time_regression_found_at_the_step(tmp_path):
    jitter = [1.0, 1.02, 0.98, 1.01, 0.99]
    store = spans_store(tmp_path, step_time=lambda s: jitter[s % 5] * (2.0 if s >= 60 else 1.0))
    (p,) = prof.ProfileAnalyzer().run(store).profiles
    (c,) = p.change_points
    assert (c.step, c.before, c.after, c.ratio) == (60, 1.0, 2.0, 2.0)
    assert c.regression and c.p_value < 1e-10
    finding = [f for f in prof.ProfileAnalyzer().run(store).report().findings if f.code == "step_time_regression"][0]
    assert finding.title == "step time rose 2.00x at step 60 (1 s -> 2 s median)"
    assert finding.steps == (60, 60) and finding.severity == "warning"


@pytest.mark.parametrize("work", ["perf/total_num_tokens", "response_length/mean"])
def test_a_slowdown_the_work_explains_is_not_a_regression(tmp_path, work):
    """Longer generations make slower steps: step time 2x with 2x the tokens (or the
    response length) is the same time per token (info); 2x with 3.5x the work is a
    cheaper token (info: a real verl DAPO run, 177 s -> 442 s per step as its answers
    grew 3.7x, was once called a regression); 2x with 1.1x the work is a regression."""
    jitter = [1.0, 1.02, 0.98, 1.01, 0.99]
    for name, growth in (("same", 2.0), ("cheaper", 3.5), ("slower", 1.1)):
        with EventWriter(tmp_path / name, "r", capture_env=False) as w:
            for step in range(100):
                late = step >= 60
                w.log(step, {"timing_s/step": jitter[step % 5] * (2.0 if late else 1.0),
                             work: 1000.0 * jitter[(step + 2) % 5] * (growth if late else 1.0)})
        report = prof.ProfileAnalyzer().run(open_store(tmp_path / name)).report()
        (f,) = [f for f in report.findings if f.code != "bottleneck"]
        if name == "same":
            assert (f.code, f.severity, f.steps) == ("step_time_with_work", "info", (60, 60))
            assert f.title.endswith(f"with {work} 2.00x: the time per unit of work held")
            assert report.status == "ok"
        elif name == "cheaper":
            assert (f.code, f.severity, f.steps) == ("step_time_with_work", "info", (60, 60))
            assert f.title.endswith(f"with {work} 3.50x: the time per unit of work fell 1.75x")
            assert report.status == "ok"
        else:
            assert (f.code, f.severity) == ("step_time_regression", "warning")
            assert f.evidence["work_ratio"] == pytest.approx(1.1)


def test_checkpoint_and_eval_steps_are_left_out(tmp_path):
    slow = {30, 60, 90}          # checkpoint saves and an eval: 10x slower steps
    store = spans_store(tmp_path, step_time=lambda s: 10.0 if s in slow else 1.0 + 0.01 * (s % 3),
                        checkpoints=(30, 60), eval=lambda s: 9.0 if s == 90 else 0.0)
    (p,) = prof.ProfileAnalyzer().run(store).profiles
    assert p.excluded_steps == (30, 60, 90)
    assert p.change_points == ()


def test_best_split_matches_brute_force():
    rng = np.random.default_rng(3)
    y = np.r_[rng.normal(0, 1, 40), rng.normal(1.5, 1, 25)]
    def sse(a):
        return ((a - a.mean()) ** 2).sum()
    brute = min(range(5, len(y) - 4), key=lambda k: sse(y[:k]) + sse(y[k:]))
    assert prof.best_split(y, 5) == brute


def test_noise_without_a_shift_has_no_change_point():
    rng = np.random.default_rng(4)
    seconds = np.exp(rng.normal(0, 0.05, 200))
    assert prof.change_points(np.arange(200), seconds) == []


# --------------------------------------------------------------- real runs
def test_trl_grpo_step_time_and_tokens_from_a_real_trainer_state(tmp_path):
    """A real TRL GRPOTrainer log (trainer_state.json, 100 steps) written through the writer."""
    history = json.loads((FIXTURES / "trl_grpo_zero_std" / "trainer_state.json").read_text())["log_history"]
    with EventWriter(tmp_path, "grpo", capture_env=False) as w:
        for row in history:
            w.log(row["step"], step_time=row["step_time"], num_tokens=row["num_tokens"])
    (p,) = prof.ProfileAnalyzer().run(open_store(tmp_path)).profiles
    assert p.step_source == "metric:step_time" and p.steps == 100
    times = np.array([r["step_time"] for r in history])
    tokens = np.array([r["num_tokens"] for r in history])
    assert p.median_step == pytest.approx(np.median(times))
    assert p.tokens_per_second == pytest.approx(np.diff(tokens).sum() / times[1:].sum())
    assert p.change_points == ()                      # a steady 19.7 s per step
    assert p.by_phase["unaccounted"] == 1.0
    assert p.bottleneck.startswith("100% of step time (")


@pytest.fixture(scope="module")
def slowed_run(tmp_path_factory):
    """The reference loop with best-of-8 rollouts switched on from step 50."""
    store = tmp_path_factory.mktemp("slow")
    subprocess.run([sys.executable, str(REPO / "reference" / "leak" / "train.py"), "--dir", str(store),
                    "--run-id", "slow", "--steps", "100", "--slow-from", "50", "--slow-factor", "8"],
                   check=True, capture_output=True, timeout=300)
    return store


@pytest.mark.slow
def test_real_run_slowdown_is_found_where_it_began(slowed_run):
    (p,) = prof.ProfileAnalyzer().run(open_store(slowed_run)).profiles
    assert p.step_source == "span:step"
    # other jobs on a shared CPU stretch a few steps either side: the split is good to a few steps
    worst = max((c for c in p.change_points if c.regression), key=lambda c: c.ratio)
    assert abs(worst.step - 50) <= 5 and worst.ratio > 2.0
    assert p.by_phase["rollout"] > 0.5
    assert p.bottleneck.startswith("rollout dominates: ")
    assert p.tokens_per_second is None and p.samples_per_second > 0        # logs samples=512 a step


# --------------------------------------------------------------------- CLI
def test_cli_without_spans_or_memory_says_what_to_log(tmp_path):
    with EventWriter(tmp_path, "bare", capture_env=False) as w:
        w.log(0, loss=1.0)
    res = CliRunner().invoke(main, ["profile", str(tmp_path)])
    assert res.exit_code == 1
    assert res.stderr == (
        "Error: no run in the store has span events or timing metrics: wrap each phase in "
        "`with rldk.writer.span('rollout'):` (also 'reward', 'reference', 'train', and 'step' around the "
        "whole step), or log step_time / timing_s/<phase> metrics; no memory events in the store: call "
        "rldk.writer.log_memory(step) every step\n")
    with pytest.raises(MissingEvents):
        prof.ProfileAnalyzer().run(open_store(tmp_path))


def test_cli_profile_ok_exit_0_and_json(tmp_path):
    spans_store(tmp_path, rollout=0.5, train=0.4)
    res = CliRunner().invoke(main, ["profile", str(tmp_path), "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)["details"]
    assert out["bottleneck"] == ["r: rollout dominates: 50% of step time (0.5 s of 1 s per step)"]
    assert out["missing"] == ["memory analysis skipped: no memory events in the store: call "
                              "rldk.writer.log_memory(step) every step"]
    assert "note: memory analysis skipped" in res.stderr


def test_cli_regression_exits_3_and_writes_cards(tmp_path):
    spans_store(tmp_path / "s", step_time=lambda s: 3.0 if s >= 60 else 1.0, rollout=0.5)
    res = CliRunner().invoke(main, ["profile", str(tmp_path / "s"), "--out-dir", str(tmp_path / "cards")])
    assert res.exit_code == 3, res.output
    card = (tmp_path / "cards" / "profile.md").read_text()
    assert "step time rose 3.00x at step 60" in card and "](profile-r.png)" in card
    assert (tmp_path / "cards" / "profile-r.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_unknown_run_is_a_usage_error(tmp_path):
    spans_store(tmp_path, rollout=0.5)
    res = CliRunner().invoke(main, ["profile", str(tmp_path), "--run", "nope"])
    assert res.exit_code == 2
    assert res.stderr == "Error: no run 'nope' in the store; runs: r\n"


def test_real_tiny_trl_grpo_run(tiny_grpo):
    """The shared real TRL GRPOTrainer run (rldk callback): step_time and num_tokens per step."""
    store = open_store(tiny_grpo.store)
    (p,) = prof.ProfileAnalyzer().run(store, prof.Params(model_params=1e5, peak_flops=1e12)).profiles
    assert p.step_source == "metric:step_time" and p.steps == tiny_grpo.steps
    run = store.run(tiny_grpo.run_id)
    times = run.metric("step_time")["value"].to_numpy()
    tokens = run.metric("num_tokens")["value"].to_numpy()
    assert p.tokens_per_second == pytest.approx(np.diff(tokens).sum() / times[1:].sum())
    assert p.mfu == pytest.approx(6 * 1e5 * p.tokens_per_second / 1e12)
    combined = prof.compute_profile(store)
    assert combined.memory.short == ((tiny_grpo.run_id, "host/rss", tiny_grpo.steps),)   # 8 readings: too few


def test_writer_profile_window_stores_operator_summary(tmp_path):
    """rldk.writer.profile: a torch.profiler window over steps 3-4 of a tiny real training loop."""
    import torch

    import rldk.writer as w

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w.init(tmp_path, run_id="prof", capture_env=False)
    try:
        for step in range(6):
            with w.span("step", step), w.profile(step, steps=range(3, 5)):
                with w.span("train", step):
                    loss = model(torch.randn(64, 16)).pow(2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            w.log(step, loss=loss.item())
    finally:
        w.close()
    store = open_store(tmp_path)
    op_steps = store.sql("SELECT DISTINCT step FROM spans WHERE starts_with(name, 'torch_op/') ORDER BY 1")
    assert op_steps["step"].to_list() == [3, 4]                    # only inside the window
    (p,) = prof.ProfileAnalyzer().run(store).profiles
    assert {ph.name for ph in p.phases} == {"train"}               # operators stay out of the phases
    names = {o["operator"] for o in p.operators}
    assert "aten::addmm" in names or "aten::linear" in names
    assert sum(o["share"] for o in p.operators) == pytest.approx(1.0)
    assert all(o["steps"] == 2 for o in p.operators if o["operator"] == "aten::addmm")
    tables = {t.name for t in prof.ProfileAnalyzer().run(store).report().tables}
    assert "Top operators (torch.profiler windows)" in tables
