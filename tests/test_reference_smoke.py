"""CI runs the reference suite's smoke test: real training, injected bugs, every detector checked.

``smoke_tests/cpu_2min_test.py`` exits 0 only when each capability catches its
bug and stays silent on the clean runs (about two minutes on two free cores).
The GPU variant must refuse cleanly where it cannot run.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_smoke_test_passes(tmp_path):
    out = tmp_path / "cards"
    done = subprocess.run([sys.executable, str(ROOT / "smoke_tests" / "cpu_2min_test.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] and len(summary["rows"]) >= 20
    for card in ("divergence/divergence.json", "reward_health/reward_health.json", "safety/safety.json",
                 "bisect/bisect.json", "lineage/manifests.json"):
        assert (out / card).is_file(), card


def test_gpu_plan_puts_model_device_and_leak_size_on_every_run(tmp_path):
    sys.path.insert(0, str(ROOT / "smoke_tests"))
    try:
        from cpu_2min_test import BUGS_JSON, Plan
    finally:
        sys.path.remove(str(ROOT / "smoke_tests"))
    from reference.runner import RunSpec

    plan = Plan(json.loads(BUGS_JSON.read_text()), tmp_path,
                {"model": "small_1b", "model_path": "/models/m", "device": "cuda"},
                {"memory_leak": {"bug_scale": 256.0}}, "cuda:0/allocated")
    specs = [RunSpec(**s) for jobs in plan.worker_jobs().values() for s in jobs]
    assert {(s.model, s.model_path, s.device) for s in specs} == {("small_1b", "/models/m", "cuda")}
    assert [s.bug_scale for s in specs if s.bug == "memory_leak"] == [256.0]
    argv = plan.command(plan.bugs["bad_resume"]["run"], "summarization_helpfulness")
    assert argv[2:] == ["--task", "summarization_helpfulness", "--bug", "bad_resume", "--tensors-every", "1",
                        "--rng-every", "1", "--no-eval", "--model", "small_1b", "--model-path", "/models/m",
                        "--device", "cuda"]


def _gpu_main(argv):
    sys.path.insert(0, str(ROOT / "smoke_tests"))
    try:
        from gpu_1hr_test import main
    finally:
        sys.path.remove(str(ROOT / "smoke_tests"))
    return main(argv)


def test_gpu_test_needs_a_model_path(capsys, tmp_path):
    assert _gpu_main(["--size", "open_7b", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "error: --size open_7b needs --model PATH, a local directory with config.json, weights and "
        "tokenizer files (as save_pretrained writes them); nothing is downloaded\n")


def test_gpu_test_refuses_without_a_gpu(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    assert _gpu_main(["--size", "tiny_gpt2", "--out", str(tmp_path)]) == 2
    assert "no CUDA device is visible" in capsys.readouterr().err
