"""Bisect behind the analyzer interface, and a bisection killed by SIGTERM leaves nothing behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rldk import analyzers
from rldk.analyzers.bisect import BisectAnalyzer, BisectResult, Predicate, Probe
from rldk.core.errors import UsageError

#: a command that announces itself (its pid in started.txt beside the repository) and hangs
HANG = ("import os, pathlib, time; "
        "pathlib.Path(os.environ['MARK']).write_text(str(os.getpid())); time.sleep(120)")


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})


def _small_repo(path: Path) -> Path:
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    for i in range(4):
        (path / "f.txt").write_text(str(i))
        _git(path, "add", "f.txt")
        _git(path, "commit", "-q", "-m", f"c{i}")
    return path


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_registered_and_applies_only_with_a_repository_and_a_command(tmp_path):
    analyzer = analyzers.get("bisect")
    assert isinstance(analyzer, BisectAnalyzer)
    repo = _small_repo(tmp_path / "repo")
    pred = Predicate(">", 1.0, metric="loss")
    full = analyzer.params(good="HEAD~3", bad="HEAD", command=("true",), predicate=pred, repo=str(repo))
    assert analyzer.applies(None, full)
    assert not analyzer.applies(None, analyzer.params(good="HEAD~3", bad="HEAD", predicate=pred, repo=str(repo)))
    assert not analyzer.applies(None, analyzer.params(good="a", bad="b", command=("true",), predicate=pred,
                                                      repo=str(tmp_path)))
    with pytest.raises(UsageError, match=r"^bisect needs --good, --bad and a predicate"):
        analyzer.run(None, analyzer.params(command=("true",)))


def test_result_report_is_ok_with_a_commit_and_inconclusive_without():
    pred = Predicate(">", 0.2, metric="loss")
    probes = (Probe("b" * 40, "bad end", "bad", 4.7, "", 0.1), Probe("a" * 40, "good end", "good", 0.01, "", 0.1))
    found = BisectResult("a" * 40, "b" * 40, pred, "c" * 40, "change lr", (), probes)
    report = found.report()
    assert report.status == "ok" and found.passed
    assert report.summary == f"first bad commit: {'c' * 40} change lr"
    assert [c.name for c in report.checks] == ["ends_separated", "commits_tested", "first_bad_commit"]
    assert report.details["probes"][0]["verdict"] == "bad"
    ambiguous = BisectResult("a" * 40, "b" * 40, pred, None, None, ("c" * 40, "d" * 40), probes)
    assert ambiguous.report().status == "inconclusive" and not ambiguous.passed
    assert ambiguous.report().summary == ("the first bad commit is one of cccccccccccc, dddddddddddd "
                                          "(commits in between could not be tested)")


@pytest.mark.parametrize("ends", [True, False], ids=["while-testing-an-end", "inside-git-bisect-run"])
def test_sigterm_leaves_no_worktree_temp_dir_or_process(tmp_path, ends):
    repo = _small_repo(tmp_path / "repo")
    mark, tmp = tmp_path / "started.txt", tmp_path / "tmp"
    tmp.mkdir()
    argv = [sys.executable, "-m", "rldk.cli", "bisect", "--repo", str(repo), "--good", "HEAD~3", "--bad", "HEAD",
            "--metric", "loss", "--cmp", "> 1", *([] if ends else ["--no-check-ends"]),
            "--", sys.executable, "-c", HANG]
    proc = subprocess.Popen(argv, env={**os.environ, "MARK": str(mark), "TMPDIR": str(tmp)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not mark.exists() or not mark.read_text():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    command_pid = int(mark.read_text())
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    worktrees = subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=repo, capture_output=True,
                               text=True).stdout
    assert worktrees.count("worktree ") == 1
    assert list(tmp.iterdir()) == []                               # the rldk-bisect-* directory is gone
    assert not (repo / ".git" / "BISECT_LOG").exists()
    deadline = time.monotonic() + 10
    while _alive(command_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(command_pid)                                 # the command under test was killed
