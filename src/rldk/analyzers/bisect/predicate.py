"""What makes a commit bad: a metric reduced over a window (or a SQL value) compared with a threshold."""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

from rldk import semantics
from rldk.core.errors import MissingEvents, UsageError
from rldk.core.result import as_dict

#: exit codes ``git bisect run`` understands
GOOD, BAD, SKIP = 0, 1, 125
REDUCERS = ("mean", "max", "min", "last", "first", "median")
OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
             "==": operator.eq, "!=": operator.ne}
_CMP = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def parse_cmp(text: str) -> tuple[str, float]:
    """``'> 0.2'`` -> ``('>', 0.2)``; operators ``> >= < <= == !=``."""
    match = _CMP.match(text or "")
    if not match:
        raise UsageError(f"invalid --cmp {text!r}: use an operator and a number, e.g. '> 0.2' or '<= 1e-3'")
    return match.group(1), float(match.group(2))


@dataclass(frozen=True)
class Predicate:
    """What makes a commit bad, evaluated on the run its command wrote.

    metric: metric name (a canonical name such as ``reward`` or ``kl_to_ref``, or
        the run's own, resolved through :mod:`rldk.semantics`), reduced over the last ``window`` logged steps (all when
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
        name = semantics.resolve_name(self.metric, names)
        if name is None:
            raise MissingEvents(f"the run has no metric {self.metric!r}; metrics: {', '.join(names) or 'none'}")
        values = runs[0].metric(name)["value"].to_numpy()
        return reduce_values(values[-self.window:] if self.window else values, self.reduce)

    def verdict(self, value: float) -> int:
        """GOOD, BAD or SKIP for ``value``."""
        if not math.isfinite(value):
            return {"bad": BAD, "good": GOOD, "skip": SKIP}[self.nan]
        return BAD if OPERATORS[self.op](value, self.threshold) else GOOD

    def to_dict(self) -> dict:
        return as_dict(self)


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

