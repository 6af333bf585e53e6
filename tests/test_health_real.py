"""``rldk analyze`` on real training logs (../shared/fixtures/real, see its SOURCES.md):
the findings a person reading the logs agrees with, checked against the facts
SOURCES.md lists and the numbers in the files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from rldk.analyzers.suite import analyze

REAL = Path(os.environ.get("RLDK_REAL_FIXTURES", Path(__file__).resolve().parents[2] /
                           "shared" / "fixtures" / "real"))
if not REAL.is_dir():
    REAL = Path("/work/shared/fixtures/real")
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason="real fixtures not present")


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    """Analyze each fixture once (imported through the converters into a private cache)."""
    root = tmp_path_factory.mktemp("real")
    mp = pytest.MonkeyPatch()
    mp.setenv("RLDK_CACHE_DIR", str(root / "cache"))
    cache: dict = {}

    def get(name):
        if name not in cache:
            out = analyze(REAL / name, out_dir=root / name, plots=False)
            cache[name] = ({r.analyzer: r for r in out.reports}, out)
        return cache[name]
    yield get
    mp.undo()


def problems(reports, analyzer):
    return [f for f in reports[analyzer].findings if f.is_problem]


def test_dpo_nan_grad_norm_steps(analyzed):
    reports, out = analyzed("trl_dpo_nan_gradnorm")
    (f,) = problems(reports, "nan_onset")
    assert f.metric == "grad_norm" and f.steps == (1, 74)
    first = f.evidence["first"]
    assert (first["steps"], first["nan"], first["rows"], first["persistent"]) == ([1, 2, 18, 74], 4, 75, False)
    assert f.severity == "warning"                         # recovers each time: skipped fp16 steps
    assert f.evidence["order"] == ["grad_norm"]            # the only non-finite metric
    assert not problems(reports, "health")


def test_grpo_truncation(analyzed):
    """completions/clipped_ratio is 0.5-0.9 (median 0.8) from the first logged step (5), then
    0.9-1.0 from 75 to the end (200): the run truncates most completions from its start (no
    part of it is assumed healthy), and the finding's onset is the step where it got worse,
    75, with the level before it and the fact that the share was over the line from the
    first step."""
    reports, _ = analyzed("trl_grpo_truncation")
    (f,) = problems(reports, "health")
    assert (f.code, f.metric, f.steps) == ("truncation_onset", "completions/clipped_ratio", (75, 200))
    assert f.evidence["before"] == pytest.approx(0.8) and f.evidence["from_first_step"]
    assert f.evidence["share_at_or_above"] == 1.0
    assert not problems(reports, "nan_onset") and not problems(reports, "spikes")


def test_grpo_zero_std(analyzed):
    """reward 0.0625/0.125 at steps 1-2, then exactly 0 at 92 of the 98 later steps; every
    group without reward variance (frac_reward_zero_std 0.75-1.0) from the first step."""
    reports, _ = analyzed("trl_grpo_zero_std")
    found = {f.code: f for f in problems(reports, "health")}
    assert set(found) == {"reward_collapse", "zero_std_onset"}
    assert (found["reward_collapse"].steps, found["reward_collapse"].severity) == ((3, 100), "error")
    assert found["zero_std_onset"].steps == (1, 100)
    # the grad-norm jumps are the few steps with a learning signal: explained, not problems
    assert not problems(reports, "spikes")
    assert {x.code for x in reports["spikes"].findings} <= {"spike_explained"}


def test_sb3_entropy_collapse_but_not_in_the_healthy_run(analyzed):
    reports, _ = analyzed("sb3_ppo_entropy_collapse")
    (f,) = problems(reports, "health")
    assert (f.code, f.metric) == ("entropy_collapse", "train/entropy_loss")
    assert f.evidence["now"] < 0.2 * f.evidence["held"]
    assert f.evidence["held"] == pytest.approx(0.671, abs=0.001)   # -train/entropy_loss, its highest level
    assert f.evidence["below_from"] == 23552                       # first below 20% of it, staying
    assert f.steps[0] == 5120                  # where the fall into it started (left 90% of its level)
    healthy, _ = analyzed("sb3_ppo_healthy")
    assert not problems(healthy, "health")
    assert ["sb3_ppo_healthy", "entropy_collapse"] in healthy["health"].details["checked"]


@pytest.mark.parametrize("name", ["trl_orpo_old_format", "mlflow_file_store"])
def test_runs_without_problems_pass(analyzed, name):
    reports, out = analyzed(name)
    assert out.problems == []
    assert reports["summary"].status == "ok"
