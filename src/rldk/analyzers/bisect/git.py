"""The git commands bisection needs, with one-line errors that say what to do."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from rldk.core.errors import RldkError, UsageError


class BisectError(RldkError):
    """Bisection could not run or could not name a commit."""


def repo_root(path) -> str:
    """The top directory of the git work tree holding ``path``."""
    if shutil.which("git") is None:
        raise BisectError("git is not installed (or not on PATH): rldk bisect drives `git bisect run`")
    p = Path(path)
    if not p.is_dir():
        raise UsageError(f"no such directory: {p}")
    proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=p, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError(f"not a git repository: {p.resolve()}: run rldk bisect inside the repository "
                         "whose history you want to search (or pass --repo)")
    return proc.stdout.strip()


def git(cwd, *args, check: bool = True) -> str:
    """The output of ``git ARGS`` in ``cwd``; :class:`BisectError` with git's last line on failure."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise BisectError(f"git {' '.join(args[:2])} failed: {said[-1] if said else f'exit {proc.returncode}'}")
    return proc.stdout


def commit_sha(root: str, rev: str, flag: str) -> str:
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError(f"{flag} {rev!r} is not a commit in {root}")
    return proc.stdout.strip()


def check_order(root: str, good: str, bad: str, good_name: str, bad_name: str) -> None:
    if good == bad:
        raise UsageError(f"--good {good_name} and --bad {bad_name} are the same commit: nothing to bisect")
    proc = subprocess.run(["git", "merge-base", "--is-ancestor", good, bad], cwd=root)
    if proc.returncode != 0:
        raise UsageError(f"--good {good_name} is not an ancestor of --bad {bad_name}: pass an older good "
                         "commit (or swap them)")


def check_clean(root: str) -> None:
    status = git(root, "status", "--porcelain", "--untracked-files=no")
    if status.strip():
        first = status.splitlines()[0][3:]
        raise UsageError(f"the working tree of {root} has uncommitted changes ({first}, ...) that bisect "
                         "would not test: commit or stash them, or pass --allow-dirty")




def is_repository(path) -> bool:
    """Whether ``path`` is a directory inside a git work tree (and git is installed)."""
    if shutil.which("git") is None or not Path(path).is_dir():
        return False
    proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True, text=True)
    return proc.returncode == 0
