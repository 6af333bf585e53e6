"""`rldk eval compare` and rldk.analyzers.eval_compare: API and CLI together."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rldk.analyzers.eval_compare import compare
from rldk.cli import main
from rldk.writer import EventWriter


def make_runs(root, prefix, finals, task=None, steps=12):
    """One run per final score: reward 0 for the first steps, then ``final`` for the last 10."""
    for i, final in enumerate(finals):
        config = {"task": task} if task else {}
        with EventWriter(root, f"{prefix}{i}", config=config, capture_env=False) as w:
            for step in range(steps):
                w.log(step, reward=final if step >= steps - 10 else 0.0)
    return str(root)


@pytest.fixture(scope="module")
def bandit_sides(tmp_path_factory):
    """Real REINFORCE training (rldk's bandit example), 4 seeds per learning rate."""
    from rldk.examples.bandit import train_bandit

    root = tmp_path_factory.mktemp("bandit")
    for lr in (0.2, 0.02):
        for seed in range(4):
            with EventWriter(root / f"lr{lr}", f"lr{lr}-s{seed}", config={"seed": seed},
                             capture_env=False) as w:
                train_bandit(w, steps=100, seed=seed, lr=lr)
    return str(root / "lr0.2"), str(root / "lr0.02")


def test_hand_checkable_scores(tmp_path):
    a = make_runs(tmp_path / "a", "a", [3.0, 4.0])
    b = make_runs(tmp_path / "b", "b", [1.0, 2.0, 3.0])
    result = compare([a], [b], reps=200)
    assert result.a.scores[:, 0].tolist() == [3.0, 4.0]
    assert result.improvement.point == pytest.approx(5.5 / 6)
    row = result.per_task[0]
    assert row["cliffs_delta"] == pytest.approx(5 / 6)
    assert (row["mean_a"], row["mean_b"]) == (3.5, 2.0)
    assert result.aggregates["A"]["mean"].point == 3.5
    assert result.metric == "reward"


def test_tasks_from_config_and_csv(tmp_path):
    make_runs(tmp_path / "a", "x", [1.0, 2.0], task="t1")
    make_runs(tmp_path / "a", "y", [5.0, 6.0], task="t2")
    csv = tmp_path / "b.csv"
    csv.write_text("task,seed,score\nt1,0,0.5\nt1,1,1.5\nt2,0,5.5\nt2,1,4.0\n", encoding="utf-8")
    result = compare([str(tmp_path / "a")], [str(csv)], reps=200)
    assert result.a.tasks == ("t1", "t2") and result.b.tasks == ("t1", "t2")
    # t1: 1>0.5, 1<1.5, 2>0.5, 2>1.5 -> 3/4; t2: 5<5.5, 5>4, 6>5.5, 6>4 -> 3/4
    assert result.improvement.point == pytest.approx(0.75)


def test_real_training_better_learning_rate_wins(bandit_sides):
    a, b = bandit_sides
    result = compare([a], [b], labels=("lr0.2", "lr0.02"), metric="reward_mean", reps=1000)
    assert result.improvement.point == 1.0
    assert result.aggregates["lr0.2"]["iqm"].lower > result.aggregates["lr0.02"]["iqm"].upper
    assert result.per_task[0]["p_value"] < 0.01


def test_cli_json(bandit_sides):
    a, b = bandit_sides
    out = CliRunner().invoke(main, ["eval", "compare", a, "--vs", b, "--metric", "reward_mean",
                                    "--reps", "300", "--format", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["analyzer"] == "eval_compare"
    assert data["status"] == "ok" and data["details"]["improvement"]["point"] == 1.0
    assert [c["name"] for c in data["checks"] if c["status"] == "ran"] == [
        "confidence_intervals", "effect_sizes", "power"]


def test_cli_plot(bandit_sides, tmp_path):
    pytest.importorskip("matplotlib")
    a, b = bandit_sides
    out = CliRunner().invoke(main, ["eval", "compare", a, "--vs", b, "--metric", "reward_mean",
                                    "--reps", "200", "--plot", str(tmp_path / "p.png")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_one_seed_says_no_interval(tmp_path):
    a = make_runs(tmp_path / "a", "a", [3.0])
    b = make_runs(tmp_path / "b", "b", [1.0, 2.0])
    result = compare([a], [b], reps=100)
    assert result.improvement.lower is None
    assert any("one run per task: no confidence interval is possible" in n for n in result.notes)
    assert result.report().findings == () and result.status == "inconclusive" and not result.passed
    check = next(c for c in result.checks if c.name == "confidence_intervals")
    assert check.status == "skipped"
    assert check.detail == "side A has one run per task: run more seeds (two or more per task)"
    out = CliRunner().invoke(main, ["eval", "compare", a, "--vs", b, "--reps", "100", "--format", "json"])
    assert out.exit_code == 4
    assert json.loads(out.output)["summary"] == "P(A > B) = 1.00 (no interval: one run per task) on reward."


def test_underpowered_note(tmp_path):
    a = make_runs(tmp_path / "a", "a", [1.0, 2.0, 3.0])
    b = make_runs(tmp_path / "b", "b", [0.5, 1.5, 2.5])        # d = 0.5: needs 64 seeds a side
    result = compare([a], [b], reps=100)
    assert result.per_task[0]["seeds_needed"] == 64
    assert any(n.startswith("underpowered on task all") and "needs 64 runs per side; there are 3" in n
               for n in result.notes)
    assert [f.code for f in result.findings] == ["underpowered"] and result.status == "problems"
    out = CliRunner().invoke(main, ["eval", "compare", a, "--vs", b, "--reps", "100"])
    assert out.exit_code == 3


def test_analyzer_needs_both_sides(tmp_path):
    from rldk.analyzers import get
    from rldk.analyzers.eval_compare import EvalCompareAnalyzer, Params
    from rldk.core.errors import UsageError

    analyzer = get("eval_compare")
    assert isinstance(analyzer, EvalCompareAnalyzer)
    assert not analyzer.applies(None) and not analyzer.applies(None, Params(a_sources=("x",)))
    assert analyzer.applies(None, Params(a_sources=("x",), b_sources=("y",)))
    with pytest.raises(UsageError, match="eval compare needs both sides"):
        analyzer.run(None, Params())
    a = make_runs(tmp_path / "a", "a", [3.0, 4.0])
    result = analyzer.run(None, Params(a_sources=(a,), b_sources=(a,), metric="reward_mean", reps=50))
    assert result.metric == "reward" and result.improvement.point == 0.5


@pytest.mark.parametrize("args, message", [
    (["A"], "Error: give the runs to compare as A... --vs B... (exactly one --vs)"),
    (["A", "--vs"], "Error: both sides need at least one source: A... --vs B..."),
    (["A", "--vs", "B", "--metrc", "x"], "Error: no such option: --metrc (see rldk eval compare --help)"),
])
def test_cli_usage_errors(args, message):
    out = CliRunner().invoke(main, ["eval", "compare", *args])
    assert out.exit_code == 2
    assert out.output.strip().splitlines()[-1] == message


def test_cli_unequal_runs_per_task(tmp_path):
    make_runs(tmp_path / "a", "x", [1.0, 2.0], task="t1")
    make_runs(tmp_path / "a", "y", [5.0], task="t2")
    b = make_runs(tmp_path / "b", "b", [1.0])
    out = CliRunner().invoke(main, ["eval", "compare", str(tmp_path / "a"), "--vs", b])
    assert out.exit_code == 2
    assert out.output.strip() == ("Error: side A: tasks have different numbers of runs (t1: 2, t2: 1); "
                                  "a stratified bootstrap needs the same number of runs per task")


def test_cli_missing_metric_lists_names(tmp_path):
    a = make_runs(tmp_path / "a", "a", [1.0])
    out = CliRunner().invoke(main, ["eval", "compare", a, "--vs", a, "--metric", "accuracy"])
    assert out.exit_code == 2
    assert out.output.strip() == "Error: run 'a0' has no metric 'accuracy'; metrics: reward"


def test_csv_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("seed,score\n0,1.0\n1,oops\n", encoding="utf-8")
    out = CliRunner().invoke(main, ["eval", "compare", str(bad), "--vs", str(bad)])
    assert out.exit_code == 2
    assert out.output.strip() == f"Error: {bad}:3: score 'oops' is not a number"
    nan = tmp_path / "nan.csv"
    nan.write_text("score\nnan\n", encoding="utf-8")
    out = CliRunner().invoke(main, ["eval", "compare", str(nan), "--vs", str(bad)])
    assert out.output.strip() == f"Error: {nan}:2: score is nan; drop or fix that run"


def test_scores_are_finite_means_of_last_values(tmp_path):
    with EventWriter(tmp_path / "a", "a0", capture_env=False) as w:
        for step, v in enumerate([0.0, 1.0, float("nan"), 3.0]):
            w.log(step, reward=v)
    result = compare([str(tmp_path / "a")], [str(tmp_path / "a")], last=2, reps=50)
    assert result.a.scores[0, 0] == 2.0        # NaN dropped, then mean of 1 and 3
    assert np.isfinite(result.a.scores).all()
