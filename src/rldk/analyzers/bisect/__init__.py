"""Bisect on metrics: find the commit where a training metric went bad.

:func:`bisect` drives ``git bisect run`` between a good and a bad revision. At
each commit it runs the user's command (an argv list, no shell) with
``RLDK_DIR`` and ``RLDK_RUN_ID`` pointing at a fresh store outside the
repository, then evaluates a :class:`Predicate` on the run the command wrote:
a metric reduced over a window of steps (mean, max, min or last), or any SQL
over the store, compared with a threshold. The commit is **bad** when the
predicate holds. A commit whose command fails, times out, writes no events or
lacks the metric is skipped (exit 125 to git).

Modules: :mod:`.predicate` (parsing and reduction), :mod:`.probe` (one commit;
``python -m rldk.analyzers.bisect`` is what ``git bisect run`` calls),
:mod:`.git` and :mod:`.driver` (the temporary worktree, cleaned up also on
SIGTERM), :mod:`.result` and :mod:`.analyzer` (``BisectAnalyzer``). A working
tree with uncommitted changes is refused unless ``allow_dirty``.
"""
from __future__ import annotations

from rldk.analyzers.bisect.analyzer import BisectAnalyzer, Params
from rldk.analyzers.bisect.driver import bisect
from rldk.analyzers.bisect.git import BisectError, repo_root
from rldk.analyzers.bisect.predicate import (
    BAD,
    GOOD,
    OPERATORS,
    REDUCERS,
    SKIP,
    Predicate,
    parse_cmp,
    reduce_values,
)
from rldk.analyzers.bisect.probe import Probe, probe
from rldk.analyzers.bisect.result import BisectResult

__all__ = ["BisectAnalyzer", "Params", "bisect", "BisectResult", "BisectError", "Predicate", "parse_cmp",
           "reduce_values", "Probe", "probe", "repo_root", "GOOD", "BAD", "SKIP", "REDUCERS", "OPERATORS"]
