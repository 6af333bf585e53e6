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
    reports, _ = analyzed("trl_grpo_truncation")
    (f,) = problems(reports, "health")
    assert (f.code, f.metric) == ("truncation", "completions/clipped_ratio")
    assert f.evidence["steps_all_truncated"] == [115, 135, 140, 150, 160, 170, 175, 180, 195, 200]
    assert f.evidence["early_median"] == 0.8 and f.evidence["late_median"] == 1.0
    assert not problems(reports, "nan_onset") and not problems(reports, "spikes")


def test_grpo_zero_std(analyzed):
    reports, _ = analyzed("trl_grpo_zero_std")
    (f,) = problems(reports, "health")
    assert (f.code, f.severity) == ("zero_std", "error")
    assert (f.evidence["rows_all_zero_std"], f.evidence["rows"]) == (84, 100)
    # the grad-norm jumps are the few steps with a learning signal: explained, not problems
    assert not problems(reports, "spikes")
    assert {x.code for x in reports["spikes"].findings} <= {"spike_explained"}


def test_sb3_entropy_collapse_but_not_in_the_healthy_run(analyzed):
    reports, _ = analyzed("sb3_ppo_entropy_collapse")
    (f,) = problems(reports, "health")
    assert (f.code, f.metric) == ("entropy_collapse", "train/entropy_loss")
    assert f.evidence["late"] < 0.2 * f.evidence["early"]
    assert f.evidence["early"] == pytest.approx(0.65, abs=0.01)   # -train/entropy_loss, iterations 2-5
    healthy, _ = analyzed("sb3_ppo_healthy")
    assert not problems(healthy, "health")
    assert ["sb3_ppo_healthy", "entropy_collapse"] in healthy["health"].details["checked"]


@pytest.mark.parametrize("name", ["trl_orpo_old_format", "mlflow_file_store"])
def test_runs_without_problems_pass(analyzed, name):
    reports, out = analyzed(name)
    assert out.problems == []
    assert reports["summary"].status == "ok"
