"""CI runs the reference suite's smoke test: real training, injected bugs, every detector checked.

``smoke_tests/cpu_2min_test.py`` exits 0 only when each capability catches its
bug and stays silent on the clean runs (about two minutes on two free cores).
The GPU variant must refuse cleanly where it cannot run.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_smoke_test_passes(smoke_run):
    assert smoke_run.returncode == 0, smoke_run.stdout[-4000:] + smoke_run.stderr[-4000:]
    summary = json.loads((smoke_run.out / "summary.json").read_text())
    assert summary["passed"] and len(summary["rows"]) == 24
    for card in ("divergence/divergence.json", "reward_health/reward_health.json",
                 "safety/unsafe_policy/safety.json", "safety/safety_clean/safety.json",
                 "bisect/bisect.json", "lineage/manifests.json", "eval/mean_difference.json"):
        assert (smoke_run.out / card).is_file(), card


def test_every_check_has_a_negative_twin(smoke_run):
    rows = json.loads((smoke_run.out / "summary.json").read_text())["rows"]
    by_capability = {}
    for row in rows:
        by_capability.setdefault(row["capability"], []).append(row["bug"])
    for capability, bugs in by_capability.items():
        clean = [b for b in bugs if b.startswith(("clean", "committed", "two clean"))]
        assert clean and len(clean) < len(bugs), (capability, bugs)


def test_smoke_test_prints_its_time_cpu_and_memory(smoke_run):
    last = smoke_run.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"24/24 checks hold; wall time [\d.]+ s, CPU time [\d.]+ s \(this process and its "
                        r"children\), largest process peak RSS \d+ MiB\.", last), last


def test_smoke_test_leaves_the_checkout_unchanged(smoke_run):
    if smoke_run.status_before is None:
        pytest.skip("git is not installed or this is not a git checkout")
    assert smoke_run.status_after == smoke_run.status_before


def test_out_must_be_new_or_empty(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    done = subprocess.run([sys.executable, str(ROOT / "smoke_tests" / "cpu_2min_test.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == f"error: --out {tmp_path} is not an empty directory: give a new or empty one\n"
    assert (tmp_path / "mine.txt").read_text() == "keep me"


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


def _gpu_module():
    sys.path.insert(0, str(ROOT / "smoke_tests"))
    try:
        import gpu_1hr_test
    finally:
        sys.path.remove(str(ROOT / "smoke_tests"))
    return gpu_1hr_test


def _gpu_main(argv):
    return _gpu_module().main(argv)


def test_gpu_dry_run_runs_the_whole_plan_on_the_cpu_with_the_tiny_model(monkeypatch, tmp_path):
    from reference.runner import RunSpec

    gpu, calls = _gpu_module(), []
    monkeypatch.setattr(gpu, "run_suite", lambda args, *a, **k: calls.append((args, a, k)) or 0)
    assert gpu.main(["--dry-run", "--size", "open_7b", "--out", str(tmp_path / "cards")]) == 0
    (args, (overrides, bug_overrides, series), kw), = calls
    assert (overrides, bug_overrides, series, kw) == ({"model": "tiny_gpt2", "device": "cpu"}, {}, "host/rss",
                                                      {"slots": 1, "timeout": 1800})
    from cpu_2min_test import BUGS_JSON, Plan          # imported by gpu_1hr_test above

    plan = Plan(json.loads(BUGS_JSON.read_text()), tmp_path, overrides, bug_overrides, series)
    specs = [RunSpec(**s) for jobs in plan.worker_jobs().values() for s in jobs]
    assert len(specs) == 9 and {(s.model, s.device) for s in specs} == {("tiny_gpt2", "cpu")}
    assert gpu.main(["--dry-run", "--record"]) == 2




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
