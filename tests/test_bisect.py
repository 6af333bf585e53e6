"""Bisect on metrics: a real repository whose history breaks training at a known commit."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from reference.bisect_repo.make_repo import AMBIGUOUS, BROKEN, FIRST_BAD, make_repo
from rldk.analyzers.bisect import BisectError, Predicate, bisect, parse_cmp, reduce_values
from rldk.cli import main
from rldk.core.errors import UsageError

PREDICATE = Predicate(">", 0.2, metric="loss", window=10)
COMMAND = [sys.executable, "train.py"]


def repo_state(repo: Path) -> dict:
    """Everything bisect could leave behind: HEAD, refs, worktrees, status, files, bisect logs."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True).stdout
    return {"head": git("rev-parse", "HEAD"), "branch": git("symbolic-ref", "HEAD"),
            "refs": git("for-each-ref"), "worktrees": git("worktree", "list", "--porcelain"),
            "status": git("status", "--porcelain", "--ignored"),
            "files": sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if ".git" not in p.parts),
            "git_dir": sorted(p.name for p in (repo / ".git").iterdir()),
            "index": (repo / ".git" / "index").read_bytes(),
            "reflog": (repo / ".git" / "logs" / "HEAD").read_text()}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("bisect") / "repo"
    commits = make_repo(path)
    return path, commits


@pytest.fixture(scope="module")
def api_run(repo):
    path, commits = repo
    before = repo_state(path)
    result = bisect(path, commits["c0"], commits["c7"], COMMAND, PREDICATE)
    return result, before, repo_state(path)


@pytest.mark.slow
def test_bisect_names_the_commit_that_changed_the_lr(repo, api_run):
    _, commits = repo
    result, _, _ = api_run
    assert result.first_bad == commits[FIRST_BAD]
    assert result.subject == "change the default learning rate"
    assert result.candidates == ()


@pytest.mark.slow
def test_values_seen_at_each_commit_and_broken_commit_skipped(repo, api_run):
    _, commits = repo
    result, _, _ = api_run
    label = {sha: name for name, sha in commits.items()}
    seen = {label[p.commit]: p for p in result.probes}
    assert [label[p.commit] for p in result.probes[:2]] == ["c7", "c0"]       # the ends are checked first
    assert seen[BROKEN].verdict == "skip"
    assert seen[BROKEN].reason == "command exited with 1: NameError: name 'load_dataset' is not defined"
    for name, p in seen.items():
        if name == BROKEN:
            continue
        bad = name >= FIRST_BAD
        assert p.verdict == ("bad" if bad else "good")
        assert (p.value > 1.0) if bad else (p.value < 0.05)     # lr 1e-4 barely moves; lr 0.1 converges


@pytest.mark.slow
def test_repository_is_left_exactly_as_found(api_run):
    _, before, after = api_run
    assert after == before


@pytest.mark.slow
def test_cli_prints_the_first_bad_commit_and_the_table(repo):
    path, commits = repo
    res = CliRunner().invoke(main, ["bisect", "--repo", str(path), "--good", commits["c0"], "--bad", "main",
                                    "--metric", "loss", "--window", "10", "--cmp", "> 0.2", "--",
                                    *COMMAND])
    assert res.exit_code == 0, res.output
    assert f"first bad commit: {commits[FIRST_BAD]} change the default learning rate" in res.stdout
    assert "tested commits (mean(loss, last 10 steps) > 0.2 is bad)" in res.stdout
    assert "NameError" in res.stdout


@pytest.mark.slow
def test_untestable_commit_next_to_the_first_bad_one_leaves_candidates(tmp_path):
    commits = make_repo(tmp_path / "amb", AMBIGUOUS)
    res = CliRunner().invoke(main, ["bisect", "--repo", str(tmp_path / "amb"), "--good", commits["c0"],
                                    "--bad", commits["c3"], "--metric", "loss", "--cmp", "> 0.2",
                                    "--format", "json", "--", *COMMAND])
    assert res.exit_code == 4                       # inconclusive: commits in between untestable
    out = json.loads(res.stdout)["details"]
    assert out["first_bad"] is None
    assert sorted(out["candidates"]) == sorted([commits["c1"], commits["c2"]])


# -------------------------------------------------------------- bad input
def test_non_git_directory_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(main, ["bisect", "--repo", str(tmp_path), "--good", "a", "--bad", "b",
                                    "--metric", "loss", "--cmp", "> 1", "--", sys.executable, "x.py"])
    assert res.exit_code == 2
    assert res.stderr == (f"Error: not a git repository: {tmp_path.resolve()}: run rldk bisect inside the "
                          "repository whose history you want to search (or pass --repo)\n")


def test_predicate_that_never_evaluates_is_a_clear_error(repo):
    path, commits = repo
    before = repo_state(path)
    with pytest.raises(BisectError) as err:
        bisect(path, commits["c0"], commits["c7"], COMMAND, Predicate(">", 0.2, metric="reward"))
    assert str(err.value) == (f"the predicate never evaluates: at the --bad commit {commits['c7'][:12]} "
                              "the run has no metric 'reward'; metrics: grad_norm, loss")
    assert repo_state(path) == before


def test_dirty_tree_is_refused_unless_allowed(repo):
    path, commits = repo
    train = path / "train.py"
    original = train.read_text()
    try:
        train.write_text(original + "\n# local edit\n")
        with pytest.raises(UsageError, match=r"has uncommitted changes \(train.py, ...\) that bisect would not "
                                             r"test: commit or stash them, or pass --allow-dirty"):
            bisect(path, commits["c0"], commits["c7"], COMMAND, PREDICATE)
        with pytest.raises(BisectError, match="the predicate never evaluates"):     # got past the check
            bisect(path, commits["c0"], commits["c7"], COMMAND, Predicate(">", 0, metric="nope"),
                   allow_dirty=True)
        assert train.read_text() == original + "\n# local edit\n"                   # the edit survives
    finally:
        train.write_text(original)


def test_wrong_direction_and_unknown_revisions(repo):
    path, commits = repo
    with pytest.raises(UsageError, match=r"^--good 'nope' is not a commit in "):
        bisect(path, "nope", commits["c7"], COMMAND, PREDICATE)
    with pytest.raises(UsageError, match=r"is not an ancestor of --bad"):
        bisect(path, commits["c7"], commits["c0"], COMMAND, PREDICATE)


def test_good_end_that_is_bad_is_reported(repo):
    path, commits = repo
    with pytest.raises(BisectError, match=r"^the --good commit [0-9a-f]{12} is bad, not good: "
                                          r"mean\(loss, all steps\) > 0.001 gives "):
        bisect(path, commits["c0"], commits["c7"], COMMAND, Predicate(">", 0.001, metric="loss"))


# ---------------------------------------------------------------- predicate
@pytest.mark.parametrize("text,expected", [("> 0.2", (">", 0.2)), (">=1e-3", (">=", 0.001)),
                                           ("  < -5 ", ("<", -5.0)), ("!= 0", ("!=", 0.0)), ("== .5", ("==", 0.5))])
def test_parse_cmp(text, expected):
    assert parse_cmp(text) == expected


@pytest.mark.parametrize("text", ["0.2", "> x", "=> 1", ">", ""])
def test_parse_cmp_rejects(text):
    with pytest.raises(UsageError, match=r"invalid --cmp .*: use an operator and a number, e.g. '> 0.2'"):
        parse_cmp(text)


@pytest.mark.parametrize("how,expected", [("mean", 2.5), ("max", 4.0), ("min", 1.0), ("last", 4.0),
                                          ("first", 1.0), ("median", 2.5)])
def test_reduce_values(how, expected):
    assert reduce_values(np.array([1.0, 2.0, 3.0, 4.0]), how) == expected


def test_nan_verdicts():
    assert Predicate(">", 1, metric="m").verdict(float("nan")) == 1
    assert Predicate(">", 1, metric="m", nan="good").verdict(float("inf")) == 0
    assert Predicate(">", 1, metric="m", nan="skip").verdict(float("nan")) == 125
    assert Predicate("<", 1, metric="m").verdict(0.5) == 1


def test_predicate_needs_metric_or_sql():
    with pytest.raises(UsageError, match=r"give either --metric NAME or --sql QUERY \(exactly one\)"):
        Predicate(">", 1)


def test_sql_predicate_on_a_store(tmp_path):
    from rldk.core.store import open_store
    from rldk.writer import EventWriter

    with EventWriter(tmp_path, "r", capture_env=False) as w:
        for step in range(5):
            w.log(step, loss=float(step))
    store = open_store(tmp_path)
    pred = Predicate(">", 1, sql="SELECT max(value) FROM metrics WHERE name = 'loss'")
    assert pred.value(store) == 4.0
    assert Predicate(">", 1, metric="loss", window=2, reduce="mean").value(store) == 3.5
    assert json.loads(json.dumps(pred.to_dict()))["sql"].startswith("SELECT")
