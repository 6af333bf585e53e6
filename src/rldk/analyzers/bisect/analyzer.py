"""Bisect behind the one analyzer interface: it reads no store, it runs a command per commit."""
from __future__ import annotations

from dataclasses import dataclass

from rldk.analyzers.base import Analyzer
from rldk.analyzers.bisect.driver import bisect
from rldk.analyzers.bisect.git import is_repository
from rldk.analyzers.bisect.predicate import Predicate
from rldk.analyzers.bisect.result import NAME, TITLE, BisectResult
from rldk.core.errors import UsageError


@dataclass(frozen=True)
class Params:
    """good, bad: revisions where the metric was fine / had gone wrong (good an ancestor
    of bad). command: the argv run at each commit from the repository root (no shell).
    predicate: what makes a commit bad. repo: the git repository ["."]. allow_dirty:
    bisect although the working tree has uncommitted changes [False]. timeout: seconds
    before a commit's command is killed and the commit skipped [None: no limit].
    check_ends: test good and bad first [True]."""

    good: str | None = None
    bad: str | None = None
    command: tuple[str, ...] = ()
    predicate: Predicate | None = None
    repo: str = "."
    allow_dirty: bool = False
    timeout: float | None = None
    check_ends: bool = True


class BisectAnalyzer(Analyzer):
    """The first commit between ``good`` and ``bad`` where the predicate holds on the
    run the command writes (``git bisect run`` in a temporary worktree)."""

    name = NAME
    title = TITLE
    consumes = ("metric",)
    Params = Params

    def applies(self, store=None, params: Params | None = None) -> bool:
        """Whether ``params`` name both revisions, a command and a predicate, in a git repository."""
        params = params or Params()
        given = params.good and params.bad and params.command and params.predicate is not None
        return bool(given) and is_repository(params.repo)

    def run(self, store=None, params: Params | None = None) -> BisectResult:
        """Bisect (``store`` is not read: each commit's command writes its own)."""
        params = params or Params()
        if not (params.good and params.bad and params.predicate is not None):
            raise UsageError("bisect needs --good, --bad and a predicate (--metric/--sql with --cmp)")
        return bisect(params.repo, params.good, params.bad, list(params.command), params.predicate,
                      allow_dirty=params.allow_dirty, timeout=params.timeout, check_ends=params.check_ends)
