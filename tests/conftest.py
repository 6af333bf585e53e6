"""Shared fixtures. Keep this file small: only what several test modules need.

``tiny_grpo``: one real TRL GRPOTrainer run of the tiny GPT-2 (reference/tiny_trl.py),
8 steps on the CPU with rldk's callback (RNG digests, tensor checksums and memory
every step), a checkpoint at steps 4 and 8, TensorBoard events and GRPO
completion dumps. Built once per test session (about 5 s).

``smoke_run``: one run of ``smoke_tests/cpu_2min_test.py`` per session (its cards in a
temporary directory, with ``git status --porcelain`` before and after), shared by the
tests that check its verdicts, its recorded outputs and that it leaves the checkout alone.

``wait_for_wandb_exit``: waits until a wandb offline file is completely written.

``real_imports``: one import cache (``RLDK_CACHE_DIR``) for the session's detection
benchmarks on the real logs, so each log is converted once, not once per module.

Under ``CI=true`` a test skipped because something is missing (a library, a fixture,
a program: the skip reason says "not installed", "missing", "not present", "could not
import"...) fails instead: CI promises every check runs.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
MISSING = re.compile(r"could not import|no module named|not installed|not present|missing|unavailable|"
                     r"not found|does not import", re.IGNORECASE)


def in_ci() -> bool:
    """True when the CI environment variable says so (``true`` or ``1``)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI, a skip for something missing becomes a failure that says what was missing."""
    outcome = yield
    report = outcome.get_result()
    if not (in_ci() and report.skipped and not hasattr(report, "wasxfail")):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if MISSING.search(reason):
        report.outcome = "failed"
        report.longrepr = f"CI=true: a promised check was skipped: {reason}"


@pytest.fixture(scope="session")
def tiny_grpo(tmp_path_factory):
    from reference.tiny_trl import run_grpo

    root = tmp_path_factory.mktemp("tiny_grpo")
    out = root / "out"
    store = root / "store"
    run_grpo(out, seed=0, steps=8, rldk_dir=store, run_id="grpo",
             rldk_callback_kwargs={"rng_every": 1, "tensors_every": 1, "memory_every": 1},
             save_steps=4, tensorboard=True, log_completions=True)
    return SimpleNamespace(out=out, store=store, run_id="grpo", steps=8)


def git_status() -> str | None:
    """``git status --porcelain`` of this checkout (None when it is not a git checkout)."""
    done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                          capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The CPU smoke test run once, from the repository root, as documented."""
    out = tmp_path_factory.mktemp("smoke") / "cards"
    before = git_status()
    done = subprocess.run([sys.executable, "smoke_tests/cpu_2min_test.py", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    return SimpleNamespace(out=out, returncode=done.returncode, stdout=done.stdout, stderr=done.stderr,
                           status_before=before, status_after=git_status())


@pytest.fixture(scope="session")
def real_imports(tmp_path_factory):
    """A fresh import cache for the real logs of benchmarks/data/real, shared by the
    session's benchmark runs that import them with their metric maps."""
    return tmp_path_factory.mktemp("real-imports")


@pytest.fixture(scope="session")
def wait_for_wandb_exit():
    """A function waiting until a .wandb file has its exit record: wandb's service may
    still be writing after ``run.finish()`` returns."""
    import time

    def wait(file, timeout=60.0):
        from wandb.proto import wandb_internal_pb2 as pb

        from rldk.converters.wandb_offline import records

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, data in records(file.read_bytes(), file, []):
                record = pb.Record()
                record.ParseFromString(data)
                if record.WhichOneof("record_type") == "exit":
                    return
            time.sleep(0.2)
        raise AssertionError(f"{file}: wandb never wrote its exit record")

    return wait
