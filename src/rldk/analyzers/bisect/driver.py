"""The git worktree driver: ``git bisect run`` in a temporary worktree, cleaned up always.

The user's checkout is never touched: bisection happens in a temporary ``git
worktree`` that is removed afterwards, together with its bisect state and the
runs' stores, so the repository is left exactly as found, also when the
bisection is interrupted (Ctrl-C or SIGTERM: the processes it started are killed
and the cleanup runs before it exits).
"""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from rldk import harness
from rldk.analyzers.bisect.git import (
    BisectError,
    check_clean,
    check_order,
    commit_sha,
    git,
    repo_root,
)
from rldk.analyzers.bisect.predicate import Predicate
from rldk.analyzers.bisect.probe import Probe, probe
from rldk.analyzers.bisect.result import BisectResult
from rldk.core.errors import UsageError

#: the module ``git bisect run`` runs at each commit (its ``__main__``)
PROBE_MODULE = "rldk.analyzers.bisect"


def bisect(repo, good: str, bad: str, command: list[str], predicate: Predicate, *,
           allow_dirty: bool = False, timeout: float | None = None, check_ends: bool = True) -> BisectResult:
    """Find the first commit between ``good`` and ``bad`` where ``predicate`` holds.

    ``command`` is an argv list run at each commit from the repository root.
    With ``check_ends`` the two ends are tested first, so a predicate that does
    not separate them is an error instead of a wrong answer.
    """
    if not command:
        raise UsageError("no command to run: put it after --, e.g. -- python train.py")
    root = repo_root(repo)
    good_sha, bad_sha = commit_sha(root, good, "--good"), commit_sha(root, bad, "--bad")
    check_order(root, good_sha, bad_sha, good, bad)
    if not allow_dirty:
        check_clean(root)
    packed = Path(root, git(root, "rev-parse", "--git-common-dir").strip(), "packed-refs")
    had_packed = packed.exists()
    with terminate_raises():
        work = Path(tempfile.mkdtemp(prefix="rldk-bisect-"))
        tree = work / "tree"
        try:
            git(root, "worktree", "add", "--detach", str(tree), bad_sha)
            spec = {"command": list(command), "predicate": predicate.to_dict(), "work": str(work),
                    "timeout": timeout}
            spec_path = work / "spec.json"
            spec_path.write_text(json.dumps(spec), encoding="utf-8")
            ends = _check_ends(spec, tree, good_sha, bad_sha, predicate) if check_ends else []
            output = _run_bisect(tree, good_sha, bad_sha, spec_path)
            return _outcome(root, tree, good_sha, bad_sha, predicate, output, ends, _read_probes(work))
        finally:
            with _ignoring_terminate():
                _cleanup(root, tree, work)
                _drop_empty_packed_refs(packed, had_packed)


@contextlib.contextmanager
def terminate_raises():
    """Within the block, SIGTERM raises ``SystemExit(143)`` (as Ctrl-C raises
    KeyboardInterrupt), so ``finally`` clauses run: a killed bisection cleans up.
    Only the main thread can handle signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _ignoring_terminate():
    """A second SIGTERM must not cut the cleanup short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _check_ends(spec: dict, tree: Path, good: str, bad: str, predicate: Predicate) -> list[Probe]:
    ends = []
    for sha, want in ((bad, "bad"), (good, "good")):
        git(tree, "checkout", "--quiet", "--detach", sha)
        p = probe(spec, str(tree))
        ends.append(p)
        if p.verdict != want:
            _end_error(p, want, predicate)
    return ends


def _end_error(p: Probe, want: str, predicate: Predicate) -> None:
    flag = f"--{want}"
    if p.reason.startswith("predicate not evaluated"):
        raise BisectError(f"the predicate never evaluates: at the {flag} commit {p.commit[:12]} "
                          f"{p.reason.removeprefix('predicate not evaluated: ')}")
    if p.verdict == "skip":
        raise BisectError(f"the {flag} commit {p.commit[:12]} cannot be tested: {p.reason}")
    raise BisectError(f"the {flag} commit {p.commit[:12]} is {p.verdict}, not {want}: "
                      f"{predicate.describe()} gives {p.value:.6g}; check --cmp and the revisions")


def _run_bisect(tree: Path, good: str, bad: str, spec_path: Path) -> str:
    git(tree, "bisect", "start", bad, good)
    argv = ["git", "bisect", "run", sys.executable, "-m", PROBE_MODULE, str(spec_path)]
    proc = subprocess.Popen(argv, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        output, _ = proc.communicate()
    except BaseException:             # interrupted: git, the probe and the command it runs go too
        harness.kill_group(proc)
        raise
    if "rldk bisect probe failed" in output:
        line = next(ln for ln in output.splitlines() if "rldk bisect probe failed" in ln)
        raise BisectError(line)
    return output


def _read_probes(work: Path) -> list[Probe]:
    path = work / "probes.jsonl"
    if not path.exists():
        return []
    return [Probe(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _outcome(root, tree, good, bad, predicate, output: str, ends, inner) -> BisectResult:
    probes = tuple(ends + inner)
    first = _bisect_ref(tree)
    if "is the first bad commit" in output and first:
        subject = git(root, "log", "-1", "--format=%s", first).strip()
        return BisectResult(good, bad, predicate, first, subject, (), probes, bool(ends))
    if "only 'skip'ped commits left" in output:
        if inner and all(p.reason.startswith("predicate not evaluated") for p in inner):
            raise BisectError(f"the predicate never evaluates between the ends: {inner[-1].reason}")
        candidates = tuple(re.findall(r"^([0-9a-f]{40})\b", output, flags=re.M))
        return BisectResult(good, bad, predicate, None, None, candidates, probes, bool(ends))
    raise BisectError(f"git bisect run did not finish: {output.strip().splitlines()[-1:] or 'no output'}")


def _bisect_ref(tree: Path) -> str | None:
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "refs/bisect/bad"], cwd=tree,
                          capture_output=True, text=True)
    return proc.stdout.strip() or None


def _cleanup(root: str, tree: Path, work: Path) -> None:
    if tree.exists():
        subprocess.run(["git", "bisect", "reset"], cwd=tree, capture_output=True)
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root, capture_output=True)
    subprocess.run(["git", "worktree", "prune"], cwd=root, capture_output=True)
    shutil.rmtree(work, ignore_errors=True)


def _drop_empty_packed_refs(packed: Path, existed: bool) -> None:
    """Deleting the worktree's bisect refs makes git create an empty ``packed-refs``
    (a header line only); remove it when it was not there before."""
    if existed or not packed.exists():
        return
    lines = packed.read_text(encoding="utf-8", errors="replace").splitlines()
    if all(line.startswith("#") for line in lines):
        packed.unlink()
