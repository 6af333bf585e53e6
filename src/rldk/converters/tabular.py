"""Shared by the generic JSONL and CSV converters: field maps and rows -> event tables.

A field map renames source fields to rldk's names before anything else:
``"step=global_step,reward=reward_scalar"`` (``target=source`` pairs) makes the
source's ``global_step`` the step and its ``reward_scalar`` the metric ``reward``.

Then, per row: the step is the ``step`` field (else ``global_step``, ``iteration``,
``_step``, ``timestep``; else the row number, said in the summary); ``wall_time``
(else ``timestamp``, ``_timestamp``) in seconds is the event time; every other
numeric field is a ``metric``; ``response``/``completion`` text makes a ``sample``
event (``prompt`` and ``reward`` go with it). Other non-numeric fields are not
metrics: they are counted per field in the run's import event.

Rows are turned into Arrow tables every :data:`CHUNK_ROWS` rows
(:meth:`RowCollector.take`), so a converter can stream a file of any size. A row
whose step does not fit int64 is skipped with its reason; objects nested deeper
than :data:`MAX_DEPTH` are not flattened further (counted as ignored).
"""
from __future__ import annotations

import json
import math

from rldk.converters.base import metric_table
from rldk.core.errors import UsageError


class FieldMapError(UsageError, ValueError):
    """A malformed ``--field-map`` (a usage error; a ValueError for older callers)."""

STEP_FIELDS = ("step", "global_step", "iteration", "_step", "timestep", "time/total_timesteps", "current_steps")
TIME_FIELDS = ("wall_time", "timestamp", "_timestamp")
TEXT_FIELDS = ("response", "completion")
CHUNK_ROWS = 16_384
MAX_DEPTH = 32
_INT64 = 2 ** 63


def parse_field_map(spec) -> dict[str, str]:
    """``"a=b,c=d"`` (or a dict) -> ``{source: target}``; raises ValueError on a bad pair."""
    if not spec:
        return {}
    if isinstance(spec, dict):
        return {src: dst for dst, src in spec.items()}
    out = {}
    for pair in str(spec).split(","):
        target, sep, source = pair.strip().partition("=")
        if not sep or not target.strip() or not source.strip():
            raise FieldMapError(f"bad --field-map entry {pair.strip()!r}: use target=source, "
                             "e.g. step=global_step,reward=reward_scalar")
        out[source.strip()] = target.strip()
    return out


def number(value):
    """A float for JSON/CSV scalars ("nan", "inf" included), else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            return None
    return None


class RowCollector:
    """Accumulates rows (dicts) into metric and sample columns."""

    def __init__(self, field_map: dict[str, str]):
        self.field_map = field_map
        self.steps, self.names, self.values, self.walls = [], [], [], []
        self.samples = []              # (step, wall, text, value, attrs)
        self.ignored: dict[str, int] = {}
        self.step_field = None
        self.rows = 0

    def add(self, row: dict, rownum: int) -> str | None:
        """Collect one row; returns why it was skipped, or None."""
        row = {self.field_map.get(k, k): v for k, v in _flatten(row).items()}
        step = self._step(row, rownum)
        if not -_INT64 <= step < _INT64:
            return f"step {step} does not fit a 64-bit integer; row skipped"
        wall = next((number(row[f]) for f in TIME_FIELDS if f in row), None)
        self.rows += 1
        for name, raw in row.items():
            if name == self.step_field or name in TIME_FIELDS:
                continue
            value = number(raw)
            if value is not None:
                self.steps.append(step), self.names.append(name), self.values.append(value)
                self.walls.append(wall)
            elif name not in TEXT_FIELDS and name != "prompt" and raw not in (None, ""):
                self.ignored[name] = self.ignored.get(name, 0) + 1
        text_field = next((f for f in TEXT_FIELDS if isinstance(row.get(f), str)), None)
        if text_field is not None:
            attrs = {"prompt": str(row.get("prompt", "")), "index": rownum}
            self.samples.append((step, wall, row[text_field], number(row.get("reward")), json.dumps(attrs)))
        return None

    def take(self, at_least: int = CHUNK_ROWS) -> list:
        """The tables of the rows collected since the last take, once there are
        ``at_least`` values or samples (0: whatever there is); else []."""
        if len(self.names) + len(self.samples) < max(at_least, 1):
            return []
        out = self.tables()
        self.steps, self.names, self.values, self.walls, self.samples = [], [], [], [], []
        return out

    def _step(self, row: dict, rownum: int):
        if self.step_field is None:
            self.step_field = next((f for f in STEP_FIELDS if f in row), "")
        value = number(row.get(self.step_field)) if self.step_field else None
        if value is None or not math.isfinite(value) or value != int(value):
            return rownum
        return int(value)

    def tables(self) -> list:
        import pyarrow as pa

        walls = self.walls if any(w is not None for w in self.walls) else None
        out = [metric_table(self.steps, self.names, self.values, walls)] if self.names else []
        if self.samples:
            step, wall, text, value, attrs = zip(*self.samples)
            out.append(pa.table({"step": pa.array(step, pa.int64()), "wall_time": pa.array(wall, pa.float64()),
                                 "kind": pa.array(["sample"] * len(step)), "name": pa.array(["sample"] * len(step)),
                                 "value": pa.array(value, pa.float64()), "text": pa.array(text, pa.string()),
                                 "attrs": pa.array(attrs, pa.string())}))
        return out

    def meta(self) -> dict:
        return {"step_field": self.step_field or "(row number)", "rows": self.rows,
                "ignored_fields": self.ignored, "field_map": {v: k for k, v in self.field_map.items()}}


def _flatten(row: dict, prefix: str = "", depth: int = 0) -> dict:
    """Nested objects become ``parent/child`` names (verl-style ``{"data": {...}}`` too)."""
    out = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < MAX_DEPTH:
            out.update(_flatten(value, f"{name}/", depth + 1))
        else:
            out[name] = value
    return out
