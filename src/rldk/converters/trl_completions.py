"""Tables of generations -> ``sample`` events: TRL's GRPO completion dumps, and any table
whose columns say which is the prompt, the completion and the reward.

TRL's ``GRPOTrainer`` with ``GRPOConfig(log_completions=True)`` writes one Parquet
file per logging step, ``<output_dir>/completions/completions_<step:05d>.parquet``,
with the columns ``step``, ``prompt``, ``completion``, one float column per reward
function (named after the function), any extra columns the reward functions
returned, and ``advantage`` (checked on TRL 1.16). This format reads such files on
their own: a single dump, the ``completions/`` folder, or an output directory that
has completion dumps but no ``trainer_state.json`` yet (the ``trl`` format reads
the dumps together with the metrics when it has one). Each row becomes one
``sample`` event: text = completion, value = the sum of the reward-function
columns (TRL's total reward with its default weights of 1), attrs = prompt,
per-function rewards, advantage, extra columns and the source file. So
``rldk reward-health`` and the safety analysis run on a real TRL run's completions.

:func:`samples_table` does the same for tables logged through other trackers
(``wandb.Table`` via :mod:`rldk.compat.wandb`, trackio tables): the columns are
recognised by name, case-insensitively:

- prompt: ``prompt``, ``input``, ``query``, ``question``, ``instruction`` (and plurals);
- completion: ``completion``, ``response``, ``output``, ``generation``, ``answer``, ``text``;
- reward: ``reward``, ``score``, ``total_reward``; without one, a table with an
  ``advantage`` column is TRL's and its other numeric columns are reward functions;
- step: ``step``, ``global_step``, ``train/global_step``, ``_step``;
- verl's validation table (``step, input_1, output_1, score_1, input_2, ...``): one
  sample per ``input_i/output_i/score_i`` triple.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from rldk.converters.base import (
    ConvertError,
    RunData,
    Skip,
    facts,
    relative_key,
    write_runs,
)
from rldk.converters.trl import completion_files, completions_table

NAME = "trl_completions"
PROMPT_COLUMNS = ("prompt", "prompts", "input", "inputs", "query", "queries", "question", "instruction")
COMPLETION_COLUMNS = ("completion", "completions", "response", "responses", "output", "outputs",
                      "generation", "generations", "answer", "text")
SCORE_COLUMNS = ("reward", "rewards", "score", "scores", "total_reward")
STEP_COLUMNS = ("step", "global_step", "train/global_step", "_step")
_WIDE = re.compile(r"(input|output|score)_(\d+)$", re.IGNORECASE)     # verl: input_1, output_1, score_1
_FOLDER = "completions"


# ------------------------------------------------------------------ detection
def detect(path) -> bool:
    """True for a ``completions_<step>.parquet`` file, or a directory holding such files
    (itself, in ``completions/``, or one level further down)."""
    path = Path(path)
    if path.is_file():
        return bool(_step_of(path))
    return path.is_dir() and bool(completion_folders(path))


def _step_of(path: Path) -> bool:
    """True for a file named like a TRL completion dump."""
    return path.suffix == ".parquet" and any(p.name == path.name for _, p in completion_files(path.parent))


def completion_folders(root: Path) -> list[Path]:
    """Folders under ``root`` (itself, ``*/``, ``*/*/``) holding completion dumps, sorted."""
    root = Path(root)
    candidates = [root, *sorted(root.glob("*")), *sorted(root.glob("*/*"))]
    return [d for d in candidates if d.is_dir() and not d.name.startswith(".") and completion_files(d)]


# ------------------------------------------------------------------ reading
def read(path, **_options) -> list[RunData]:
    """One :class:`RunData` per training output directory whose completion dumps are at ``path``."""
    path = Path(path)
    if path.is_file():
        if not _step_of(path):
            raise ConvertError(f"{path}: not a TRL completion dump (completions_<step>.parquet)")
        return [_read_files([path], _output_dir(path.parent).name or "run", str(path))]
    folders = completion_folders(path) if path.is_dir() else []
    if not folders:
        raise ConvertError(f"{path}: no TRL completion dumps (completions/completions_<step>.parquet) "
                           "found; train with GRPOConfig(log_completions=True)")
    return [_read_files([p for _, p in completion_files(f)], relative_key(_output_dir(f), path), str(f))
            for f in folders]


def _output_dir(folder: Path) -> Path:
    return folder.parent if folder.name == _FOLDER else folder


def _read_files(files: list[Path], key: str, source: str) -> RunData:
    """A damaged dump is skipped (and reported), the others are read."""
    tables, skipped = [], []
    for file in files:
        try:
            tables.append(completions_table(file))
        except ConvertError as exc:
            skipped.append(Skip(str(file), "file", str(exc).removeprefix(f"{file}: ")))
    meta = {"files": len(files), "framework": "trl",          # dumps have no timestamps nor planned length
            **facts("unknown", "TRL completion dumps record no planned length or times")}
    return RunData(key=key, source=source, tables=tables, skipped=skipped, meta=meta)


def convert(path, target, run_id=None, strict: bool = False, **options):
    """Convert TRL completion dumps at ``path`` into ``target`` (store directory or EventWriter)."""
    return write_runs(read(path, **options), target, run_id, NAME, source=str(path), strict=strict)


# ------------------------------------------------------------ any table of generations
def samples_table(columns, rows, step=None, source: str | None = None, wall_time: float | None = None):
    """``sample`` events (an Arrow table for ``EventWriter.append_table``) from a table of
    generations, or None when no column holds completions (see the module docstring).

    ``columns``: the column names; ``rows``: sequences of values in that order.
    ``step`` is used where a row has no step column; ``wall_time`` in seconds.
    """
    import pyarrow as pa

    columns = [str(c) for c in columns]
    rows = [list(r) for r in rows]
    samples = _wide_samples(columns, rows, step) if _is_wide(columns) else _long_samples(columns, rows, step)
    if samples is None:
        return None
    if source is not None:
        for s in samples:
            s[3]["source"] = source
    n = len(samples)
    table = {
        "step": pa.array([s[0] for s in samples], pa.int64()),
        "kind": pa.array(["sample"] * n, pa.string()),
        "name": pa.array(["sample"] * n, pa.string()),
        "value": pa.array([s[2] for s in samples], pa.float64()),
        "text": pa.array([s[1] for s in samples], pa.string()),
        "attrs": pa.array([json.dumps(s[3], default=str, allow_nan=True) for s in samples], pa.string()),
    }
    if wall_time is not None:
        table["wall_time"] = pa.array([wall_time] * n, pa.float64())
    return pa.table(table)


def _find(columns: list[str], names: tuple) -> str | None:
    lowered = {c.lower(): c for c in reversed(columns)}
    return next((lowered[n] for n in names if n in lowered), None)


def _long_samples(columns, rows, step):
    """One sample per row: ``[step, text, value, attrs]``."""
    completion = _find(columns, COMPLETION_COLUMNS)
    if completion is None:
        return None
    prompt, score, step_col = _find(columns, PROMPT_COLUMNS), _find(columns, SCORE_COLUMNS), _find(columns, STEP_COLUMNS)
    reserved = {completion, prompt, score, step_col, "advantage"}
    by_name = [dict(zip(columns, row)) for row in rows]
    reward_fns = [] if score is not None or "advantage" not in columns else \
        [c for c in columns if c not in reserved and _numeric_column(by_name, c)]
    out = []
    for i, row in enumerate(by_name):
        attrs = {"prompt": _text(row.get(prompt)) if prompt else None, "index": i}
        if reward_fns:
            attrs["rewards"] = {c: _number(row[c]) for c in reward_fns}
            finite = [v for v in attrs["rewards"].values() if v is not None and math.isfinite(v)]
            value = sum(finite) if finite else None
        else:
            value = _number(row.get(score)) if score else None
        attrs.update({c: _plain(row[c]) for c in columns if c not in reserved and c not in reward_fns})
        if "advantage" in row:
            attrs["advantage"] = _number(row["advantage"])
        out.append([_step(row.get(step_col), step), _text(row.get(completion), role=False), value, attrs])
    return out


def _is_wide(columns) -> bool:
    return any(_WIDE.match(c) and c.lower().startswith("output") for c in columns)


def _wide_samples(columns, rows, step):
    """verl's validation table: ``step, input_1, output_1, score_1, input_2, ...``."""
    slots: dict[int, dict] = {}
    for position, c in enumerate(columns):
        m = _WIDE.match(c)
        if m:
            slots.setdefault(int(m.group(2)), {})[m.group(1).lower()] = position
    step_col = _find(columns, STEP_COLUMNS)
    step_at = columns.index(step_col) if step_col else None
    out = []
    for row in rows:
        row_step = _step(row[step_at] if step_at is not None else None, step)
        for index, slot in sorted(slots.items()):
            if "output" not in slot:
                continue
            prompt = _text(row[slot["input"]]) if "input" in slot else None
            value = _number(row[slot["score"]]) if "score" in slot else None
            out.append([row_step, _text(row[slot["output"]], role=False), value,
                        {"prompt": prompt, "index": index - 1}])
    return out


def _numeric_column(rows: list[dict], column: str) -> bool:
    values = [r.get(column) for r in rows if r.get(column) is not None]
    return bool(values) and all(_number(v) is not None for v in values)


def _number(value) -> float | None:
    """A float for a number (Python, numpy, 0-d array), else None; bools are not rewards."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _step(value, default):
    number = _number(value)
    if number is not None and math.isfinite(number) and number == int(number):
        return int(number)
    return default


def _plain(value):
    """A JSON-friendly version of a cell (numpy scalars -> Python)."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return item()
    return value


def _text(value, role: bool = True) -> str:
    """A prompt/completion as text: conversational ones (lists of messages) joined by
    lines, as TRL's converter does (prompts with their roles, completions without)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(m, dict) for m in value):
        return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" if role else str(m.get("content", ""))
                         for m in value)
    return "" if value is None else str(value)
