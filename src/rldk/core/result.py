"""What every analysis result shares: one generic ``to_dict`` and self-rendering.

An analysis result is a frozen dataclass that subclasses :class:`Result` and
implements ``report() -> rldk.core.report.Report``. It then

* serialises itself (``to_dict``: its fields, recursively: nested dataclasses,
  tuples as lists, NumPy scalars and arrays as Python values, dicts by string key);
* prints a short verdict (``str(result)``: the report's one line, never a repr dump);
* renders in a terminal (``rich.print(result)``) and as Markdown (``to_markdown``).

JSON is the source of truth; every other form is rendered from the same report.
"""
from __future__ import annotations

import dataclasses
import math


def as_dict(obj) -> dict:
    """The fields of a dataclass instance as JSON-ready values (see :func:`jsonable`)."""
    return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)
            if f.repr}


def jsonable(value):
    """``value`` as JSON-ready data: objects with ``to_dict`` use it, dataclasses
    their fields, tuples/lists/sets become lists, NumPy values Python ones."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value
    if hasattr(value, "to_dict") and not isinstance(value, type):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return as_dict(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v) for v in items]
    return _numpy_or_str(value)


def _numpy_or_str(value):
    tolist = getattr(value, "tolist", None)           # NumPy scalars and arrays
    if tolist is not None:
        return jsonable(tolist())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, complex) or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return str(value)


class Result:
    """Mixin for analysis results (frozen dataclasses): generic ``to_dict``, short
    ``str``, rich and Markdown rendering through ``report()``."""

    def to_dict(self) -> dict:
        return as_dict(self)

    def report(self):
        raise NotImplementedError(f"{type(self).__name__} must implement report()")

    def __str__(self) -> str:
        return str(self.report())

    def __rich__(self):
        return self.report().__rich__()

    def to_markdown(self) -> str:
        return self.report().to_markdown()
