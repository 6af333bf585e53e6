"""Running training commands for the harnesses: argv lists, env, timeout, cleanup.

``check-determinism`` and ``checkpoint resume-check`` run a user's command several
times, each writing its own run into a fresh store through the ``RLDK_DIR`` /
``RLDK_RUN_ID`` environment variables that :class:`rldk.writer.EventWriter` reads
first. A command is an argv list; a string is split with :func:`shlex.split`, and
a shell is used only when asked (``shell=True``).

Each command runs in its own process group (its own session), so whatever it
spawns (DataLoader workers, ``torchrun`` children, a shell's pipeline) is killed
with it: on timeout, on Ctrl-C in the harness, and after a normal exit, in case
a child outlived its parent. Output goes to log files, never to pipes that a
chatty program could fill until it blocks.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rldk.core.errors import RldkError, UsageError

#: seconds between SIGTERM to a process group and SIGKILL
KILL_GRACE_SECS = 5.0
_TAIL_BYTES = 4000

#: Environment variables the harnesses set for the command (documented in docs/determinism.md).
ENV_DIR = "RLDK_DIR"                  # event store directory of this run
ENV_RUN_ID = "RLDK_RUN_ID"            # run id of this run
ENV_MAX_STEPS = "RLDK_MAX_STEPS"      # steps the harness needs (check-determinism --steps)
ENV_STOP_AT = "RLDK_STOP_AT"          # stop after this step (resume-check)
ENV_CHECKPOINT_DIR = "RLDK_CHECKPOINT_DIR"   # save the stop checkpoint here (resume-check)
ENV_RESUME_FROM = "RLDK_RESUME_FROM"  # resume from this checkpoint path (resume-check)


class CommandFailed(RldkError):
    """The command under test failed, hung or could not be started."""


@dataclass(frozen=True)
class CommandResult:
    """One finished run of a command.

    argv: what was run. returncode: its exit status (negative: killed by that
    signal; None if it timed out). seconds: wall-clock duration. timed_out: killed
    after ``timeout``. log: path of its combined stdout/stderr. tail: the last
    lines of that log (for error messages).
    """

    argv: tuple[str, ...]
    returncode: int | None
    seconds: float
    timed_out: bool
    log: str
    tail: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def problem(self) -> str | None:
        """One line saying why the run did not succeed, or None if it did."""
        if self.timed_out:
            return f"timed out after {self.seconds:.0f}s (its process group was killed)"
        if self.returncode is not None and self.returncode < 0:
            return f"was killed by signal {-self.returncode} ({_signal_name(-self.returncode)})"
        if self.returncode:
            last = _last_line(self.tail)
            return f"exited with status {self.returncode}" + (f": {last}" if last else "")
        return None

    def to_dict(self) -> dict:
        return {"argv": list(self.argv), "returncode": self.returncode,
                "seconds": round(self.seconds, 3), "timed_out": self.timed_out, "log": self.log}


def split_command(cmd, shell: bool = False) -> list[str]:
    """The argv to run: a string is split with shlex (or run by ``/bin/sh -c`` when
    ``shell``); a sequence is used as it is. Raises :class:`UsageError` when empty."""
    if isinstance(cmd, (str, os.PathLike)):
        text = os.fspath(cmd)
        try:
            argv = ["/bin/sh", "-c", text] if shell else shlex.split(text)
        except ValueError as exc:
            raise UsageError(f"cannot split the command {text!r}: {exc}") from None
    else:
        argv = [os.fspath(a) for a in cmd]
        if shell:
            argv = ["/bin/sh", "-c", shlex.join(argv)]
    if not argv or not argv[0].strip():
        raise UsageError("no command given: pass the training command after `--`, "
                         "e.g. rldk check-determinism -- python train.py")
    return argv


def resolve_program(argv: list[str], cwd=None) -> None:
    """Raise :class:`UsageError` if ``argv[0]`` is neither on PATH nor a file."""
    prog = argv[0]
    if os.sep in prog:
        path = Path(cwd or ".") / prog
        if not path.exists():
            raise UsageError(f"command not found: {prog} (no such file)")
        if not os.access(path, os.X_OK):
            raise UsageError(f"command not executable: {prog} (run it through its interpreter, "
                             f"e.g. python {prog})")
        return
    import shutil

    if shutil.which(prog) is None:
        raise UsageError(f"command not found: {prog} (not on PATH)")


def run_command(argv, log_path, env: dict | None = None, timeout: float | None = None,
                cwd=None) -> CommandResult:
    """Run ``argv`` to completion in its own process group; output goes to ``log_path``.

    ``env`` is added to (and overrides) the current environment. On timeout the
    whole group gets SIGTERM, then SIGKILL after :data:`KILL_GRACE_SECS`. Members of
    the group still alive after the command exits are killed too. Raises
    :class:`UsageError` when the program does not exist.
    """
    argv = [str(a) for a in argv]
    resolve_program(argv, cwd)
    full_env = {**os.environ, **(env or {})}
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=full_env, cwd=cwd, start_new_session=True)
        except OSError as exc:      # e.g. exec format error, permission denied
            raise UsageError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
        returncode, timed_out = _wait(proc, timeout)
    return CommandResult(tuple(argv), returncode, time.monotonic() - start, timed_out,
                         str(log_path), _tail(log_path))


def _wait(proc: subprocess.Popen, timeout):
    """Wait for ``proc``; kill its process group on timeout or interruption."""
    try:
        returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return None, True
    except BaseException:            # KeyboardInterrupt: never leave the group running
        kill_group(proc)
        raise
    kill_group(proc, grace=0.0)      # children that outlived the command
    return returncode, False


def kill_group(proc: subprocess.Popen, grace: float | None = None) -> None:
    """SIGTERM the process group of ``proc``, then SIGKILL whatever is left after ``grace``
    seconds (default :data:`KILL_GRACE_SECS`; the writer flushes on SIGTERM).

    With ``grace=0`` the survivors of an already finished command get SIGKILL at once.
    """
    grace = KILL_GRACE_SECS if grace is None else grace
    pgid = proc.pid             # start_new_session: the group id is the leader's pid
    if grace > 0:
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(pgid):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.05)
    _signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace or 5.0)


def _signal_group(pgid: int, sig) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - _TAIL_BYTES))
        return f.read().decode("utf-8", errors="replace")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return "unknown"


def fresh_workdir(workdir, prefix: str) -> Path:
    """``workdir`` created if needed (it must hold no event files), or a new temp directory."""
    if workdir is None:
        import tempfile

        return Path(tempfile.mkdtemp(prefix=prefix))
    root = Path(workdir)
    if root.exists() and any(root.rglob("*.parquet")):
        raise UsageError(f"{root} already holds event files: give an empty or new --workdir "
                         "(each run needs a fresh store)")
    root.mkdir(parents=True, exist_ok=True)
    return root


def python_argv(script, *args) -> list[str]:
    """``[sys.executable, script, *args]``: run a Python script with this interpreter."""
    return [sys.executable, os.fspath(script), *map(str, args)]
