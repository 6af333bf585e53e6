"""One tested commit: run the command there and judge the run it wrote.

This is what ``git bisect run`` calls at each commit (``python -m
rldk.analyzers.bisect SPEC.json``, see ``__main__.py``).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rldk import harness
from rldk.analyzers.bisect.git import git
from rldk.analyzers.bisect.predicate import BAD, GOOD, SKIP, Predicate
from rldk.core.errors import MissingEvents, StoreError, UsageError
from rldk.core.result import as_dict
from rldk.core.store import open_store


@dataclass(frozen=True)
class Probe:
    """One tested commit: its verdict ("good", "bad", "skip"), the value, why skipped."""

    commit: str
    subject: str
    verdict: str
    value: float | None
    reason: str
    seconds: float

    def to_dict(self) -> dict:
        return as_dict(self)


def probe(spec: dict, cwd: str) -> Probe:
    """Run the command at the commit checked out in ``cwd`` and judge its run."""
    commit = git(cwd, "rev-parse", "HEAD").strip()
    subject = git(cwd, "log", "-1", "--format=%s").strip()
    predicate = Predicate(**spec["predicate"])
    store_dir = Path(spec["work"]) / "runs" / commit
    shutil.rmtree(store_dir, ignore_errors=True)
    env = {**os.environ, "RLDK_DIR": str(store_dir), "RLDK_RUN_ID": f"bisect-{commit[:12]}"}
    started = time.monotonic()
    log_path = Path(spec["work"]) / "logs" / f"{commit}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        code = _run(spec["command"], cwd, env, log_path, spec.get("timeout"))
    except OSError as exc:
        return Probe(commit, subject, "skip", None, f"command could not start: {exc.strerror}",
                     time.monotonic() - started)
    seconds = time.monotonic() - started
    if code is None:
        return Probe(commit, subject, "skip", None, f"timed out after {spec['timeout']} s", seconds)
    if code != 0:
        return Probe(commit, subject, "skip", None, f"command exited with {code}: {_last_line(log_path)}",
                     seconds)
    return _judge(predicate, store_dir, commit, subject, seconds)


def _run(argv, cwd, env: dict, log_path: Path, timeout) -> int | None:
    """Run the command in its own process group; its exit code, None on timeout. The
    whole group is killed on timeout or when this process is interrupted."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            harness.kill_group(proc)
            return None
        except BaseException:
            harness.kill_group(proc)
            raise
    harness.kill_group(proc, grace=0.0)          # children that outlived the command
    return code


def _judge(predicate: Predicate, store_dir: Path, commit: str, subject: str, seconds: float) -> Probe:
    try:
        value = predicate.value(open_store(store_dir))
    except StoreError:
        return Probe(commit, subject, "skip", None, "the command wrote no rldk events (does it log with "
                     "rldk.writer? RLDK_DIR and RLDK_RUN_ID were set)", seconds)
    except (MissingEvents, UsageError) as exc:
        return Probe(commit, subject, "skip", None, f"predicate not evaluated: {exc}", seconds)
    verdict = {GOOD: "good", BAD: "bad", SKIP: "skip"}[predicate.verdict(value)]
    return Probe(commit, subject, verdict, value, "" if verdict != "skip" else "value is not finite", seconds)


def _last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"


def main(argv=None) -> int:
    """Entry point for ``git bisect run``: probe the current commit, record it, exit 0/1/125.

    SIGTERM (the driver stopping) kills the command under test before exiting."""
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
        result = probe(spec, os.getcwd())
        with open(Path(spec["work"]) / "probes.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(result.to_dict()) + "\n")
    except Exception as exc:  # anything else must stop the bisection, not mark a commit
        print(f"rldk bisect probe failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 128
    return {"good": GOOD, "bad": BAD, "skip": SKIP}[result.verdict]


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)
