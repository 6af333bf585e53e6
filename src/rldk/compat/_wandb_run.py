"""The run object of the wandb stand-in: ``log`` with wandb's step rules, ``config``,
``summary``, ``define_metric`` and ``finish``, written through one EventWriter.

Steps. wandb keeps an internal step: ``log(d)`` adds ``d`` to the current step's
row and moves on (``commit=False`` stays), ``log(d, step=s)`` writes at ``s`` (a
step below the current one is dropped, with a warning, as wandb drops it). rldk
stores each value at the step that means something for training:

1. the value of the key's step metric (``define_metric("train/*",
   step_metric="train/global_step")``; exact names before globs, a later glob
   before an earlier one) in the same ``log`` call, else the last value logged for
   that step metric (wandb's ``step_sync``), 0 before any: TRL logs its profiling
   timings without the step metric, before the first step is logged;
2. else ``train/global_step`` when the call holds it (transformers and OpenRLHF
   log it with every row);
3. else wandb's step.

A step metric is the step: it is not stored again as a metric.
"""
from __future__ import annotations

import atexit
import fnmatch
import os
import sys
import time
import warnings
from collections.abc import Mapping, MutableMapping

from rldk.compat._stats import value_stats
from rldk.compat._wandb_types import Histogram, Media, Table
from rldk.converters.trl_completions import samples_table
from rldk.writer import RldkWarning
from rldk.writer._encode import scalar_fields

DEFAULT_STEP_METRIC = "train/global_step"
_HERE = os.path.dirname(os.path.abspath(__file__))


class Config(MutableMapping):
    """``wandb.config``: attribute and item access, ``update(d, allow_val_change=True)``,
    ``setdefaults``, ``as_dict``. Changes after ``init`` are recorded as ``run``
    events named ``config`` (attrs: the changed keys)."""

    def __init__(self, items=None, on_change=None):
        object.__setattr__(self, "_items", dict(items or {}))
        object.__setattr__(self, "_on_change", on_change)

    def update(self, other=None, allow_val_change=None, **kwargs) -> None:
        changes = {**as_dict(other), **kwargs}
        if changes:
            self._items.update(changes)
            if self._on_change is not None:
                self._on_change(changes)

    def setdefaults(self, other) -> None:
        self.update({k: v for k, v in as_dict(other).items() if k not in self._items})

    def as_dict(self) -> dict:
        return dict(self._items)

    def __getitem__(self, key):
        return self._items[key]

    def __setitem__(self, key, value) -> None:
        self.update({key: value})

    def __delitem__(self, key) -> None:
        del self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._items[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name, value) -> None:
        self.update({name: value})

    def __repr__(self) -> str:
        return f"Config({self._items!r})"


class Summary(MutableMapping):
    """``wandb.summary`` / ``run.summary``: reads give the value set explicitly, else the
    last value logged; the values set explicitly are written at ``finish`` as
    step-less ``metric`` events with ``attrs = {"summary": true, "global_step": N}``
    (as rldk's TRL callback stores the Trainer's end-of-training summary)."""

    def __init__(self):
        object.__setattr__(self, "explicit", {})
        object.__setattr__(self, "last", {})

    def __getitem__(self, key):
        return self.explicit[key] if key in self.explicit else self.last[key]

    def __setitem__(self, key, value) -> None:
        self.explicit[key] = value

    def __delitem__(self, key) -> None:
        self.explicit.pop(key, None)
        self.last.pop(key, None)

    def __iter__(self):
        return iter({**self.last, **self.explicit})

    def __len__(self) -> int:
        return len({**self.last, **self.explicit})

    def __getattr__(self, name):
        if name.startswith("_") or name in ("explicit", "last"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"summary has no key {name!r}") from None

    def __setattr__(self, name, value) -> None:
        self[name] = value


class Run:
    """One wandb-style run writing to ``writer`` (an :class:`rldk.writer.EventWriter`)."""

    def __init__(self, writer, *, name=None, project=None, group=None, tags=None, notes=None,
                 job_type=None, entity=None, config=None):
        self._writer = writer
        self.id = writer.run_id
        self.name = name or writer.run_id
        self.project, self.group, self.entity, self.job_type, self.notes = project, group, entity, job_type, notes
        self.tags = tuple(tags or ())
        self.config = Config(config, on_change=self._config_changed)
        self.summary = Summary()
        self._step = 0                        # wandb's internal step
        self._rldk_step = None                # the last step events were written at
        self._exact: dict[str, str] = {}      # metric name -> its step metric
        self._globs: list[tuple[str, str]] = []
        self._step_metrics: set[str] = {DEFAULT_STEP_METRIC}
        self._last_step_value: dict[str, int] = {}
        self._seen_rows: dict[str, set] = {}
        self._ignored: dict[str, int] = {}
        self._warned: set = set()
        self._finished = False
        writer.log_event("run", "wandb", attrs={"name": self.name, "project": project, "group": group,
                                                "tags": list(self.tags), "notes": notes, "job_type": job_type,
                                                "entity": entity})
        atexit.register(self._finish_at_exit)

    # ------------------------------------------------------------------ attributes
    @property
    def step(self) -> int:
        return self._step

    @property
    def dir(self) -> str:
        return str(self._writer.dir)

    @property
    def url(self) -> str:
        return self._writer.dir.resolve().as_uri()

    @property
    def path(self) -> str:
        return f"{self.project}/{self.id}"

    def _label(self, **_labels) -> None:
        """transformers labels its runs; nothing to record."""

    # ------------------------------------------------------------------ logging
    def log(self, data=None, step=None, commit=None, sync=None) -> None:
        """``wandb.log``: record ``data`` (numbers, Tables, Histograms, nested dicts)."""
        if self._finished:
            return self._warn("finished", f"run {self.id!r} is finished; wandb.log after finish() is not recorded")
        if not isinstance(data, Mapping):
            return self._warn("data", f"wandb.log takes a dict, got {type(data).__name__}; not recorded")
        row = self._advance(step, commit)
        if row is None:
            return
        flat = dict(_flatten(data))
        for metric in self._step_metrics.intersection(flat):
            value = _as_int(flat[metric])
            if value is not None:
                self._last_step_value[metric] = value
        by_step: dict = {}
        for name, value in flat.items():
            if name not in self._step_metrics:
                self._route(name, value, self._step_for(name, flat, row), by_step)
        for rldk_step, values in by_step.items():
            self._writer.log(rldk_step, values)
            self._rldk_step = rldk_step

    def _advance(self, step, commit) -> int | None:
        """wandb's step bookkeeping; the wandb step of this call, or None if it is dropped."""
        if step is None:
            row = self._step
            if commit is not False:
                self._step += 1
            return row
        row = _as_int(step)
        if row is None:
            self._warn(("step", "type"), f"wandb.log: step {step!r} is not an integer; the run's own step is used")
            return self._advance(None, commit)
        if row < self._step:
            self._warn(("step", "back"), f"wandb.log: step {row} is below the current step {self._step}; "
                       "dropped, as wandb drops it (steps must increase)")
            return None
        self._step = row + 1 if commit else row
        return row

    def _step_for(self, name: str, flat: dict, row: int) -> int:
        metric = self._exact.get(name) or next((m for g, m in reversed(self._globs) if fnmatch.fnmatchcase(name, g)),
                                                None)
        if metric is None and DEFAULT_STEP_METRIC in flat:
            metric = DEFAULT_STEP_METRIC
        return row if metric is None else self._last_step_value.get(metric, 0)

    def _route(self, name: str, value, step: int, by_step: dict) -> None:
        """Put one value where it belongs: a metric, sample events or summary stats."""
        if isinstance(value, Table):
            return self._log_table(name, value, step)
        if isinstance(value, Histogram):
            return self._stats(name, value.stats, step, by_step)
        if isinstance(value, Media):
            self._ignored[type(value).__name__] = self._ignored.get(type(value).__name__, 0) + 1
            return self._warn(("media", type(value).__name__), f"wandb.{type(value).__name__} values are "
                              "counted, not stored, by rldk")
        if _is_sequence(value):                           # wandb turns these into histograms
            return self._stats(name, value_stats(value), step, by_step)
        by_step.setdefault(step, {})[name] = value
        if isinstance(value, (int, float)):
            self.summary.last[name] = value

    def _stats(self, name: str, stats: dict, step: int, by_step: dict) -> None:
        values = by_step.setdefault(step, {})
        for stat, v in stats.items():
            values[f"{name}/{stat}"] = v

    def _log_table(self, key: str, table: Table, step: int) -> None:
        """New rows of a table become sample events (a table re-logged with its old rows,
        as verl's validation table is, adds only the new ones)."""
        seen = self._seen_rows.setdefault(key, set())
        rows = []
        for row in table.data:
            digest = repr(row)
            if digest not in seen:
                seen.add(digest)
                rows.append(row)
        if not rows:
            return
        events = samples_table(table.columns, rows, step, source=key, wall_time=time.time())
        if events is None:
            self._ignored["Table"] = self._ignored.get("Table", 0) + 1
            return self._warn(("table", key), f"wandb.Table {key!r} has no completion column "
                              f"(columns: {', '.join(map(str, table.columns))}); not stored as samples. "
                              "Name the column completion, response or output")
        self._writer.append_table(events)

    # ------------------------------------------------------------------ the rest of the API
    def define_metric(self, name: str, step_metric=None, step_sync=None, hidden=None, summary=None,
                      goal=None, overwrite=None, **_options):
        """Record which metric is the step of ``name`` (a name or a glob such as ``train/*``)."""
        if step_metric:
            step_metric = str(step_metric)
            self._step_metrics.add(step_metric)
            if any(ch in name for ch in "*?["):
                self._globs.append((name, step_metric))
            else:
                self._exact[name] = step_metric
        return None

    def watch(self, *args, **kwargs) -> None:
        self._warn("watch", "wandb.watch does nothing under rldk; record parameter and gradient checksums "
                   "with rldk.writer.log_tensors(step, model)")

    def unwatch(self, *args, **kwargs) -> None:
        return None

    def log_artifact(self, artifact, name=None, type=None, aliases=None, **_options):
        attrs = artifact.to_attrs(aliases) if hasattr(artifact, "to_attrs") else {"path": str(artifact),
                                                                                  "name": name, "type": type}
        self._writer.log_event("run", "artifact", self._rldk_step, attrs=attrs)
        return artifact

    def alert(self, title, text, level=None, wait_duration=None) -> None:
        self._writer.log_event("run", "alert", self._rldk_step, text=str(text),
                               attrs={"title": str(title), "level": str(level or "INFO")})

    def save(self, *args, **kwargs) -> bool:
        return True

    def finish(self, exit_code=None, quiet=None) -> None:
        """Write the summary and close the run (status failed for a non-zero ``exit_code``)."""
        if self._finished:
            return
        self._finished = True
        for name, raw in self.summary.explicit.items():
            value, ivalue, text, _ = scalar_fields(raw)
            self._writer.log_event("metric", name, None, value=value, ivalue=ivalue, text=text,
                                   attrs={"summary": True, "global_step": self._rldk_step})
        if self._ignored:
            self._writer.log_event("writer", "wandb/not_stored", ivalue=sum(self._ignored.values()),
                                   attrs={"by_type": self._ignored})
        self._writer.close("complete" if exit_code in (None, 0) else "failed")
        atexit.unregister(self._finish_at_exit)

    def _finish_at_exit(self) -> None:
        self.finish()

    def _config_changed(self, changes: dict) -> None:
        if not self._finished:
            self._writer.log_event("run", "config", self._rldk_step, attrs=changes)

    def _warn(self, key, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"rldk.compat.wandb: {message}", RldkWarning, stacklevel=caller_level())

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.finish(exit_code=0 if exc_type is None else 1)
        return False


# ------------------------------------------------------------------ helpers
def caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside rldk.compat."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_HERE):
        frame, level = frame.f_back, level + 1
    return level


def as_dict(obj) -> dict:
    """A config source as a dict: a mapping, an OmegaConf config, an argparse Namespace,
    a dataclass or any object with attributes; None is empty."""
    if obj is None:
        return {}
    if type(obj).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, Mapping):
        return dict(obj)
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return dict(vars(obj)) if hasattr(obj, "__dict__") else {"value": obj}


def _flatten(data: Mapping, prefix: str = ""):
    """Nested dicts as ``outer/inner`` names."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{name}/")
        else:
            yield name, value


def _as_int(value) -> int | None:
    """An integral step value (3, 3.0, numpy/torch scalars), else None."""
    if value is None or isinstance(value, bool):
        return None
    value, _, _, problem = scalar_fields(value)
    if problem is not None or value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return int(value) if value == int(value) else None


def _is_sequence(value) -> bool:
    """A list/tuple of numbers or an array/tensor of more than one element."""
    if isinstance(value, (list, tuple)):
        return len(value) > 0 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    shape = getattr(value, "shape", None)
    if shape is None or not hasattr(value, "dtype"):
        return False
    size = 1
    for n in tuple(shape):
        size *= int(n)
    return size > 1
