"""Bisect on metrics: find the commit where a training metric went bad.

:func:`bisect` drives ``git bisect run`` between a good and a bad revision. At
each commit it runs the user's command (an argv list, no shell) with
``RLDK_DIR`` and ``RLDK_RUN_ID`` pointing at a fresh store outside the
repository, then evaluates a :class:`Predicate` on the run the command wrote:
a metric reduced over a window of steps (mean, max, min or last), or any SQL
over the store, compared with a threshold. The commit is **bad** when the
predicate holds. A commit whose command fails, times out, writes no events or
lacks the metric is skipped (exit 125 to git).

The user's checkout is never touched: bisection happens in a temporary
``git worktree`` that is removed afterwards, together with its bisect state, so
the repository is left exactly as found. A working tree with uncommitted
changes is refused unless ``allow_dirty`` (those changes would not be tested).

This module is also the script ``git bisect run`` calls at each commit:
``python -m rldk.bisect SPEC.json``.
"""
from __future__ import annotations

import json
import math
import operator
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rldk.core.errors import MissingEvents, RldkError, UsageError

GOOD, BAD, SKIP = 0, 1, 125
REDUCERS = ("mean", "max", "min", "last", "first", "median")
OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
             "==": operator.eq, "!=": operator.ne}
_CMP = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


class BisectError(RldkError):
    """Bisection could not run or could not name a commit."""


# ------------------------------------------------------------------------- predicate
def parse_cmp(text: str) -> tuple[str, float]:
    """``'> 0.2'`` -> ``('>', 0.2)``; operators ``> >= < <= == !=``."""
    match = _CMP.match(text or "")
    if not match:
        raise UsageError(f"invalid --cmp {text!r}: use an operator and a number, e.g. '> 0.2' or '<= 1e-3'")
    return match.group(1), float(match.group(2))


@dataclass(frozen=True)
class Predicate:
    """What makes a commit bad, evaluated on the run its command wrote.

    metric: metric name, reduced over the last ``window`` logged steps (all when
        None) with ``reduce`` (mean, max, min, last, first, median). Or
    sql: a query over the store's views returning one number (first column of
        the first row); then ``metric`` is ignored.
    op, threshold: the comparison; the commit is bad when ``value op threshold``.
    nan: verdict when the value is NaN or infinite: "bad" (the default: a
        diverged run is a bad run), "good" or "skip".
    """

    op: str
    threshold: float
    metric: str | None = None
    reduce: str = "mean"
    window: int | None = None
    sql: str | None = None
    nan: str = "bad"

    def __post_init__(self):
        if self.op not in OPERATORS:
            raise UsageError(f"unknown comparison {self.op!r}: one of {' '.join(OPERATORS)}")
        if (self.metric is None) == (self.sql is None):
            raise UsageError("give either --metric NAME or --sql QUERY (exactly one)")
        if self.reduce not in REDUCERS:
            raise UsageError(f"unknown --reduce {self.reduce!r}: one of {', '.join(REDUCERS)}")
        if self.window is not None and self.window < 1:
            raise UsageError(f"--window must be at least 1 step, not {self.window}")
        if self.nan not in ("bad", "good", "skip"):
            raise UsageError(f"--nan must be bad, good or skip, not {self.nan!r}")

    def describe(self) -> str:
        if self.sql is not None:
            return f"({self.sql}) {self.op} {self.threshold:g}"
        window = f"last {self.window} steps" if self.window else "all steps"
        return f"{self.reduce}({self.metric}, {window}) {self.op} {self.threshold:g}"

    def value(self, store) -> float:
        """The reduced value on the (single) run in ``store``; MissingEvents when absent."""
        if self.sql is not None:
            return _sql_value(store, self.sql)
        runs = store.runs()
        names = runs[0].metric_names() if runs else []
        if self.metric not in names:
            raise MissingEvents(f"the run has no metric {self.metric!r}; metrics: {', '.join(names) or 'none'}")
        values = runs[0].metric(self.metric)["value"].to_numpy()
        return reduce_values(values[-self.window:] if self.window else values, self.reduce)

    def verdict(self, value: float) -> int:
        """GOOD, BAD or SKIP for ``value``."""
        if not math.isfinite(value):
            return {"bad": BAD, "good": GOOD, "skip": SKIP}[self.nan]
        return BAD if OPERATORS[self.op](value, self.threshold) else GOOD

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def reduce_values(values, how: str) -> float:
    """``how`` of a 1-D array of metric values (NaN stays NaN for mean/max/min/median)."""
    import numpy as np

    if len(values) == 0:
        raise MissingEvents("the metric has no values in the window")
    fn = {"mean": np.mean, "max": np.max, "min": np.min, "median": np.median,
          "last": lambda v: v[-1], "first": lambda v: v[0]}[how]
    return float(fn(np.asarray(values, dtype=float)))


def _sql_value(store, query: str) -> float:
    import duckdb

    try:
        frame = store.sql(query)
    except duckdb.Error as exc:
        raise UsageError(f"--sql failed: {str(exc).splitlines()[0]}") from None
    if frame.is_empty() or frame.width == 0 or frame[0, 0] is None:
        raise MissingEvents("--sql returned no value (no rows, or NULL)")
    try:
        return float(frame[0, 0])
    except (TypeError, ValueError):
        raise UsageError(f"--sql must return a number, got {frame[0, 0]!r}") from None


# ----------------------------------------------------------------------------- probe
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
        return dict(self.__dict__)


def probe(spec: dict, cwd: str) -> Probe:
    """Run the command at the commit checked out in ``cwd`` and judge its run."""
    commit = _git(cwd, "rev-parse", "HEAD").strip()
    subject = _git(cwd, "log", "-1", "--format=%s").strip()
    predicate = Predicate(**spec["predicate"])
    store_dir = Path(spec["work"]) / "runs" / commit
    shutil.rmtree(store_dir, ignore_errors=True)
    env = {**os.environ, "RLDK_DIR": str(store_dir), "RLDK_RUN_ID": f"bisect-{commit[:12]}"}
    started = time.monotonic()
    log_path = Path(spec["work"]) / "logs" / f"{commit}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log_path, "wb") as log:
            code = subprocess.run(spec["command"], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=spec.get("timeout")).returncode
    except subprocess.TimeoutExpired:
        return Probe(commit, subject, "skip", None, f"timed out after {spec['timeout']} s",
                     time.monotonic() - started)
    except OSError as exc:
        return Probe(commit, subject, "skip", None, f"command could not start: {exc.strerror}",
                     time.monotonic() - started)
    seconds = time.monotonic() - started
    if code != 0:
        return Probe(commit, subject, "skip", None, f"command exited with {code}: {_last_line(log_path)}",
                     seconds)
    return _judge(predicate, store_dir, commit, subject, seconds)


def _judge(predicate: Predicate, store_dir: Path, commit: str, subject: str, seconds: float) -> Probe:
    from rldk.core.errors import StoreError
    from rldk.core.store import open_store

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
    """Entry point for ``git bisect run``: probe the current commit, record it, exit 0/1/125."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
        result = probe(spec, os.getcwd())
        with open(Path(spec["work"]) / "probes.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(result.to_dict()) + "\n")
    except Exception as exc:  # anything else must stop the bisection, not mark a commit
        print(f"rldk bisect probe failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 128
    return {"good": GOOD, "bad": BAD, "skip": SKIP}[result.verdict]


# ---------------------------------------------------------------------------- bisect
@dataclass(frozen=True)
class BisectResult:
    """The outcome of a bisection.

    first_bad: the first bad commit (None when skipped commits leave it ambiguous;
    then ``candidates`` lists the commits it could be). probes: every tested
    commit, in the order tested (the two ends first).
    """

    good: str
    bad: str
    predicate: Predicate
    first_bad: str | None
    subject: str | None
    candidates: tuple[str, ...]
    probes: tuple[Probe, ...]

    def to_dict(self) -> dict:
        return {"good": self.good, "bad": self.bad, "predicate": self.predicate.to_dict(),
                "predicate_text": self.predicate.describe(), "first_bad": self.first_bad,
                "subject": self.subject, "candidates": list(self.candidates),
                "probes": [p.to_dict() for p in self.probes]}


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
    good_sha, bad_sha = _commit(root, good, "--good"), _commit(root, bad, "--bad")
    _check_order(root, good_sha, bad_sha, good, bad)
    if not allow_dirty:
        _check_clean(root)
    work = Path(tempfile.mkdtemp(prefix="rldk-bisect-"))
    tree = work / "tree"
    packed = Path(root, _git(root, "rev-parse", "--git-common-dir").strip(), "packed-refs")
    had_packed = packed.exists()
    try:
        _git(root, "worktree", "add", "--detach", str(tree), bad_sha)
        spec = {"command": list(command), "predicate": predicate.to_dict(), "work": str(work),
                "timeout": timeout}
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        ends = _check_ends(spec, tree, good_sha, bad_sha, predicate) if check_ends else []
        output = _run_bisect(tree, good_sha, bad_sha, spec_path)
        return _outcome(root, tree, good_sha, bad_sha, predicate, output, ends, _read_probes(work))
    finally:
        _cleanup(root, tree, work)
        _drop_empty_packed_refs(packed, had_packed)


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


def _git(cwd, *args, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise BisectError(f"git {' '.join(args[:2])} failed: {said[-1] if said else f'exit {proc.returncode}'}")
    return proc.stdout


def _commit(root: str, rev: str, flag: str) -> str:
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError(f"{flag} {rev!r} is not a commit in {root}")
    return proc.stdout.strip()


def _check_order(root: str, good: str, bad: str, good_name: str, bad_name: str) -> None:
    if good == bad:
        raise UsageError(f"--good {good_name} and --bad {bad_name} are the same commit: nothing to bisect")
    proc = subprocess.run(["git", "merge-base", "--is-ancestor", good, bad], cwd=root)
    if proc.returncode != 0:
        raise UsageError(f"--good {good_name} is not an ancestor of --bad {bad_name}: pass an older good "
                         "commit (or swap them)")


def _check_clean(root: str) -> None:
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    if status.strip():
        first = status.splitlines()[0][3:]
        raise UsageError(f"the working tree of {root} has uncommitted changes ({first}, ...) that bisect "
                         "would not test: commit or stash them, or pass --allow-dirty")


def _check_ends(spec: dict, tree: Path, good: str, bad: str, predicate: Predicate) -> list[Probe]:
    ends = []
    for sha, want in ((bad, "bad"), (good, "good")):
        _git(tree, "checkout", "--quiet", "--detach", sha)
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
    _git(tree, "bisect", "start", bad, good)
    proc = subprocess.run(["git", "bisect", "run", sys.executable, "-m", "rldk.bisect", str(spec_path)],
                          cwd=tree, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
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
        subject = _git(root, "log", "-1", "--format=%s", first).strip()
        return BisectResult(good, bad, predicate, first, subject, (), probes)
    if "only 'skip'ped commits left" in output:
        if inner and all(p.reason.startswith("predicate not evaluated") for p in inner):
            raise BisectError(f"the predicate never evaluates between the ends: {inner[-1].reason}")
        candidates = tuple(re.findall(r"^([0-9a-f]{40})\b", output, flags=re.M))
        return BisectResult(good, bad, predicate, None, None, candidates, probes)
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


if __name__ == "__main__":
    sys.exit(main())
