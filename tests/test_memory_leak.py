"""Memory-leak detection: exact cases, statistics checks, a real leaking training loop, CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rldk.analyzers import memory_leak as ml
from rldk.cli import main
from rldk.core.errors import MissingEvents
from rldk.core.store import open_store
from rldk.writer import EventWriter

MIB = ml.MIB
REPO = Path(__file__).resolve().parents[1]


def write_memory(tmp_path, run_id, series: dict, steps=range(200)):
    """A store whose run logged ``series`` (name -> f(step) bytes) through the real writer."""
    with EventWriter(tmp_path, run_id, capture_env=False) as w:
        for step in steps:
            for name, f in series.items():
                v = f(step)
                w.log_event("memory", name, step, value=float(v), ivalue=int(v))
    return open_store(tmp_path)


def leak_from_50(step):
    return 100 * MIB + max(0, step - 50) * MIB


# --------------------------------------------------------------- exact cases
def test_exact_leak_slope_onset_growth_and_oom(tmp_path):
    store = write_memory(tmp_path, "r", {"cuda:0/allocated": leak_from_50})
    result = ml.MemoryLeakAnalyzer().run(store, ml.Params(device_limit_bytes=400 * MIB))
    (t,) = result.trends
    assert (t.first_step, t.last_step, t.points) == (20, 199, 180)      # warm-up: first 10% of 199 steps
    assert t.slope == MIB and t.slope_low == MIB and t.slope_high == MIB
    assert t.onset_step == 50
    assert t.start_bytes == 100 * MIB and t.end_bytes == 249 * MIB
    assert t.growth == pytest.approx(2.49)
    assert t.leak
    assert t.oom_step == 199 + 151                                       # (400 - 249) MiB at 1 MiB/step
    assert t.describe() == ("cuda:0/allocated grew 2.49x over 149 steps from step 50 (100 MiB -> 249 MiB, "
                            "+1.00 MiB/step); at this rate it reaches 400 MiB at step 350")
    report = result.report()
    assert report.status == "problems"
    assert [(f.code, f.severity, f.steps) for f in report.findings] == [("memory_leak", "error", (50, 199))]


def test_flat_noisy_memory_is_not_a_leak(tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 4 * MIB, 200)
    store = write_memory(tmp_path, "r", {"host/rss": lambda s: 400 * MIB + noise[s]})
    result = ml.MemoryLeakAnalyzer().run(store)
    assert not result.leaks
    assert result.report().status == "ok"
    assert result.report().summary == "no memory leak in 1 series after warm-up"


def test_one_off_jump_is_not_a_leak(tmp_path):
    # a cache allocated once at step 100 (+300 MiB) and flat afterwards: no growth at the end
    store = write_memory(tmp_path, "r", {"host/rss": lambda s: 400 * MIB + (300 * MIB if s >= 100 else 0)})
    (t,) = ml.MemoryLeakAnalyzer().run(store).trends
    assert not t.leak


def test_small_growth_below_thresholds_is_info_not_problem(tmp_path):
    store = write_memory(tmp_path, "r", {"host/rss": lambda s: 4000 * MIB + s * 0.1 * MIB})
    result = ml.MemoryLeakAnalyzer().run(store)
    (t,) = result.trends
    assert t.slope == pytest.approx(0.1 * MIB) and not t.leak      # 18 MiB < 32 MiB and < 10%
    assert [(f.code, f.severity) for f in result.report().findings] == [("memory_growth", "info")]
    assert result.report().status == "ok"


def test_alloc_retries_rising_is_a_warning(tmp_path):
    store = write_memory(tmp_path, "r", {"cuda:0/allocated": lambda s: 100 * MIB,
                                         "cuda:0/alloc_retries": lambda s: max(0, s - 150)})
    result = ml.MemoryLeakAnalyzer().run(store)
    assert result.to_dict()["retries"] == [
        {"run_id": "r", "series": "cuda:0/alloc_retries", "first_step": 20, "last_step": 199, "count": 49}]
    finding = [f for f in result.report().findings if f.code == "alloc_retries"][0]
    assert finding.title == ("cuda:0/alloc_retries: the CUDA caching allocator retried 49 allocations "
                             "between steps 20 and 199")


def test_too_few_readings_are_reported_not_judged(tmp_path):
    store = write_memory(tmp_path, "r", {"host/rss": leak_from_50}, steps=range(10))
    result = ml.MemoryLeakAnalyzer().run(store)
    assert result.trends == () and result.short == (("r", "host/rss", 10),)
    report = result.report()
    assert report.status == "inconclusive"
    assert report.summary.startswith("too few memory readings to judge (12 after warm-up needed)")
    assert [(c.name, c.status, c.detail) for c in report.checks] == [
        ("memory_trend", "skipped", "host/rss: 10 reading(s), 12 after warm-up needed: "
                                    "call rldk.writer.log_memory(step) every step")]


def test_run_without_memory_events_says_what_to_log(tmp_path):
    with EventWriter(tmp_path, "r", capture_env=False) as w:
        w.log(0, loss=1.0)
    store = open_store(tmp_path)
    assert not ml.MemoryLeakAnalyzer().applies(store)
    with pytest.raises(MissingEvents, match=r"^no memory events in the store: call rldk.writer.log_memory\(step\)"):
        ml.MemoryLeakAnalyzer().run(store)


# ------------------------------------------------------------- statistics
def test_theil_sen_matches_numpy_reference():
    rng = np.random.default_rng(1)
    x = np.arange(60, dtype=float)
    y = 3.0 * x + rng.standard_cauchy(60)                 # heavy tails: OLS would be pulled around
    i, j = np.triu_indices(60, 1)
    reference = np.median((y[j] - y[i]) / (x[j] - x[i]))
    slope, low, high = ml.theil_sen(x, y)
    assert slope == pytest.approx(reference)
    assert low <= slope <= high


@pytest.mark.parametrize("knot", [0, 37, 80])
def test_hinge_onset_finds_the_knot(knot):
    x = np.arange(100, dtype=float)
    y = 50 + np.maximum(0, x - knot) * 2.0
    assert ml.hinge_onset(x, y) == knot


def test_hinge_onset_matches_brute_force_least_squares():
    rng = np.random.default_rng(2)
    x = np.arange(80, dtype=float)
    y = 10 + np.maximum(0, x - 30) * 0.5 + rng.normal(0, 1, 80)
    best, best_sse = None, np.inf
    for k in x[:-3]:
        z = np.maximum(0, x - k)
        coef, *_ = np.linalg.lstsq(np.c_[np.ones_like(z), z], y, rcond=None)
        sse = ((y - np.c_[np.ones_like(z), z] @ coef) ** 2).sum()
        if coef[1] > 0 and sse < best_sse:
            best, best_sse = k, sse
    assert ml.hinge_onset(x, y) == best


# ------------------------------------------------- a real leaking training loop
@pytest.fixture(scope="module")
def leak_runs(tmp_path_factory):
    """The reference CPU training loop, run twice: leaking from step 50, and clean.

    glibc's malloc raises its mmap threshold after a large block is freed, and then
    serves the next 2 MiB tensors from freed heap memory: RSS starts to grow a few steps
    after the leak does (one CI run measured step 56). A fixed threshold keeps every 2 MiB
    tensor its own mapping, so RSS follows the memory the loop holds."""
    store = tmp_path_factory.mktemp("leak")
    script = REPO / "reference" / "leak" / "train.py"
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    for run_id, extra in (("leaky", ["--leak-from", "50"]), ("clean", [])):
        subprocess.run([sys.executable, str(script), "--dir", str(store), "--run-id", run_id,
                        "--steps", "150", *extra], check=True, capture_output=True, timeout=300, env=env)
    return store


@pytest.mark.slow
def test_real_leak_is_flagged_with_rate_and_onset(leak_runs):
    result = ml.MemoryLeakAnalyzer().run(open_store(leak_runs), ml.Params(run_id="leaky"))
    (t,) = [t for t in result.trends if t.series == "host/rss"]
    assert t.leak
    assert abs(t.onset_step - 50) <= 5                     # the list starts growing at step 50
    assert 1.5 * MIB < t.slope < 3.5 * MIB                 # one 2 MiB logits tensor kept per step
    assert t.growth > 1.3
    assert f"from step {t.onset_step}" in t.describe()


@pytest.mark.slow
def test_same_loop_without_leak_is_not_flagged(leak_runs):
    result = ml.MemoryLeakAnalyzer().run(open_store(leak_runs), ml.Params(run_id="clean"))
    assert not result.leaks
    assert result.report().status == "ok"


@pytest.mark.slow
def test_cli_profile_flags_the_leak_and_exits_3(leak_runs, tmp_path):
    res = CliRunner().invoke(main, ["profile", str(leak_runs), "--run", "leaky", "--host-memory", "4GiB",
                                    "--out-dir", str(tmp_path)])
    assert res.exit_code == 3, res.output
    assert "Compute and memory profile [problems]" in res.stdout and "Bottlenecks" in res.stdout
    assert (tmp_path / "memory_leak.md").exists() and (tmp_path / "memory-leaky-host_rss.png").exists()
    assert (tmp_path / "profile-leaky.png").exists()
    res = CliRunner().invoke(main, ["profile", str(leak_runs), "--run", "leaky", "--format", "json"])
    (line,) = json.loads(res.stdout)["details"]["bottleneck"]
    assert line.startswith("leaky: ") and "; memory leak: host/rss grew" in line
    res = CliRunner().invoke(main, ["profile", str(leak_runs), "--run", "clean", "--format", "json"])
    trends = json.loads(res.stdout)["details"]["memory_leak"]["trends"]
    assert trends and not any(t["leak"] for t in trends)


def test_cli_bad_memory_size_is_a_usage_error(tmp_path):
    store = write_memory(tmp_path, "r", {"host/rss": leak_from_50})
    res = CliRunner().invoke(main, ["profile", str(tmp_path), "--device-memory", "80 parsecs"])
    assert res.exit_code == 2
    assert res.stderr == "Error: invalid --device-memory '80 parsecs': a size such as 80GiB, 64GB or 8e10 (bytes)\n"
    assert store.files
