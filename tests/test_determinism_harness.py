"""The command harness and check-determinism's handling of bad commands (fast: no torch)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rldk import harness
from rldk.analyzers.determinism import check_determinism
from rldk.cli import main
from rldk.core.errors import UsageError

PY = sys.executable
#: a training stand-in: logs N steps of one metric through the real writer
LOGGER = ("import sys; from rldk.writer import EventWriter\n"
          "w = EventWriter(capture_env=False)\n"
          "for i in range(int(sys.argv[1])): w.log(i, loss=1.0 / (i + 1))\n"
          "w.close()\n")


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (exited, or a zombie nobody reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def _wait_gone(pid: int, secs: float = 5.0) -> bool:
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("cmd, shell, expected", [
    ("python train.py --seed 1", False, ["python", "train.py", "--seed", "1"]),
    ("python 'my script.py'", False, ["python", "my script.py"]),
    (["python", "a b.py"], False, ["python", "a b.py"]),
    ("echo $HOME | wc", True, ["/bin/sh", "-c", "echo $HOME | wc"]),
    (["echo", "a b"], True, ["/bin/sh", "-c", "echo 'a b'"]),
])
def test_split_command(cmd, shell, expected):
    assert harness.split_command(cmd, shell) == expected


@pytest.mark.parametrize("cmd, message", [
    ("", "no command given: pass the training command after `--`, "
         "e.g. rldk check-determinism -- python train.py"),
    ([], "no command given: pass the training command after `--`, "
         "e.g. rldk check-determinism -- python train.py"),
    ("python 'unclosed", "cannot split the command \"python 'unclosed\": No closing quotation"),
])
def test_split_command_refuses(cmd, message):
    with pytest.raises(UsageError) as err:
        harness.split_command(cmd)
    assert str(err.value) == message


def test_run_command_ok_and_failure(tmp_path):
    ok = harness.run_command([PY, "-c", "print('hello')"], tmp_path / "ok.log")
    assert ok.ok and ok.returncode == 0 and ok.problem() is None
    assert Path(ok.log).read_text() == "hello\n"
    bad = harness.run_command([PY, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"],
                              tmp_path / "bad.log")
    assert not bad.ok
    assert bad.problem() == "exited with status 3: boom"


def test_env_is_passed(tmp_path):
    result = harness.run_command([PY, "-c", "import os; print(os.environ['RLDK_RUN_ID'])"],
                                 tmp_path / "env.log", env={"RLDK_RUN_ID": "replica-7"})
    assert Path(result.log).read_text() == "replica-7\n"


def test_not_found(tmp_path):
    with pytest.raises(UsageError) as err:
        harness.run_command(["no-such-program-rldk"], tmp_path / "x.log")
    assert str(err.value) == "command not found: no-such-program-rldk (not on PATH)"
    with pytest.raises(UsageError) as err:
        harness.run_command(["./missing.py"], tmp_path / "x.log", cwd=tmp_path)
    assert str(err.value) == "command not found: ./missing.py (no such file)"


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    code = ("import subprocess, sys, time\n"
            "p = subprocess.Popen(['sleep', '60'])\n"
            "open(sys.argv[1], 'w').write(str(p.pid))\n"
            "time.sleep(60)\n")
    start = time.monotonic()
    result = harness.run_command([PY, "-c", code, str(pidfile)], tmp_path / "hang.log", timeout=1.5)
    assert result.timed_out and result.returncode is None
    assert result.problem().startswith("timed out after ")
    assert time.monotonic() - start < 10
    assert _wait_gone(int(pidfile.read_text()))


def test_children_that_outlive_the_command_are_killed(tmp_path):
    pidfile = tmp_path / "orphan.pid"
    code = ("import subprocess, sys\n"
            "p = subprocess.Popen(['sleep', '60'])\n"
            "open(sys.argv[1], 'w').write(str(p.pid))\n")        # exits, leaving sleep behind
    result = harness.run_command([PY, "-c", code, str(pidfile)], tmp_path / "orphan.log")
    assert result.ok
    assert _wait_gone(int(pidfile.read_text()))


def test_sigterm_ignored_then_sigkill(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "KILL_GRACE_SECS", 0.5)
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    start = time.monotonic()
    result = harness.run_command([PY, "-c", code], tmp_path / "stubborn.log", timeout=1.0)
    assert result.timed_out
    assert time.monotonic() - start < 8


# ------------------------------------------------------------------ check-determinism input errors
def _cli(args):
    return CliRunner().invoke(main, args)


def test_cli_command_not_found(tmp_path):
    result = _cli(["check-determinism", "--workdir", str(tmp_path / "w"), "--", "no-such-program-rldk"])
    assert result.exit_code == 2
    assert result.stderr == "Error: command not found: no-such-program-rldk (not on PATH)\n"


def test_cli_command_fails(tmp_path):
    work = tmp_path / "w"
    result = _cli(["check-determinism", "--workdir", str(work), "--", PY, "-c",
                   "import sys; print('CUDA out of memory'); sys.exit(3)"])
    assert result.exit_code == 1
    log = work / "logs" / "replica-0.log"
    assert result.stderr == (f"Error: replica 0 of `{PY} -c import sys; print('CUDA out of memory'); "
                             f"sys.exit(3)` exited with status 3: CUDA out of memory (log: {log})\n")


def test_cli_command_writes_nothing(tmp_path):
    work = tmp_path / "w"
    result = _cli(["check-determinism", "--workdir", str(work), "--", PY, "-c", "pass"])
    assert result.exit_code == 1
    store = work / "replica-0"
    assert result.stderr == (
        f"Error: replica 0 of `{PY} -c pass` wrote no step events to RLDK_DIR={store}: it must log "
        "through rldk.writer (or the TRL RldkCallback), which reads RLDK_DIR and RLDK_RUN_ID "
        f"(log: {work / 'logs' / 'replica-0.log'})\n")


def test_cli_fewer_steps_than_asked(tmp_path):
    work = tmp_path / "w"
    result = _cli(["check-determinism", "--steps", "5", "--workdir", str(work), "--",
                   PY, "-c", LOGGER, "3"])
    assert result.exit_code == 1
    assert "logged 3 steps, fewer than the 5 asked (--steps; RLDK_MAX_STEPS=5 was set)" in result.stderr
    assert result.stderr.startswith("Error: replica 0 of ")


def test_cli_hang_times_out(tmp_path):
    work = tmp_path / "w"
    result = _cli(["check-determinism", "--timeout", "1", "--workdir", str(work), "--",
                   PY, "-c", "import time; time.sleep(60)"])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: replica 0 of `{PY} -c import time; time.sleep(60)` timed out "
                             f"after 1s (its process group was killed) "
                             f"(log: {work / 'logs' / 'replica-0.log'})\n")


@pytest.mark.parametrize("args, message", [
    (["check-determinism", "--replicas", "1", "--", "true"], "Invalid value for '--replicas'"),
    (["check-determinism"], "Missing argument 'COMMAND...'"),
    (["check-determinism", "--steps", "0", "--", "true"], "Invalid value for '--steps'"),
])
def test_cli_usage_errors(args, message):
    result = _cli(args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_workdir_with_events_is_refused(tmp_path):
    work = tmp_path / "w"
    first = check_determinism([PY, "-c", LOGGER, "3"], workdir=work)
    assert first.passed
    with pytest.raises(UsageError) as err:
        check_determinism([PY, "-c", LOGGER, "3"], workdir=work)
    assert str(err.value) == (f"{work} already holds event files: give an empty or new --workdir "
                              "(each run needs a fresh store)")


def test_metrics_only_replicas_pass_and_say_what_was_compared(tmp_path):
    result = check_determinism(f"{PY} -c '{LOGGER}' 4", replicas=3, steps=4, workdir=tmp_path / "w")
    assert result.passed and result.verdict == "deterministic"
    assert result.replicas == ("replica-0", "replica-1", "replica-2")
    assert result.steps_compared == 4 and result.levels_compared == ("metric",)
    assert result.first_divergent_step is None
    codes = {f.code for f in result.report().findings}
    assert {"no_tensor_events", "no_rng_events"} <= codes
