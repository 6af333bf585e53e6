"""verl logs: the file logger's JSONL and the console log.

- File logger (``trainer.logger=['file']``): one JSON object a line,
  ``{"step": N, "data": {"actor/pg_loss": 0.1, ...}}``; NaN is written as ``null``
  and read back as NaN.
- Console log (``trainer.logger=['console']``, usually captured from Ray's output):
  lines such as ``(TaskRunner pid=4242) step:12 - actor/pg_loss:0.031 - critic/score/mean:np.float64(0.5)``
  with ANSI colour codes. Ray prefixes and colours are removed; ``np.float64(x)``,
  ``np.int64(x)``, ``tensor(x)``, ``nan``, ``inf`` are read as numbers. Lines without
  ``step:N - `` are ordinary console output and ignored; a ``key:value`` pair whose
  value is not a number is skipped and reported with its line number. A line of
  exactly 4096 characters was cut by wandb's copy of the console (``output.log``): its
  last pair is skipped and reported (a cut number would read as a wrong one).

How the run ended: its last step against the planned total, from the console's
``Total training steps: N`` line (else ``'total_training_steps': N`` in the printed
config); "unknown" without one (the file logger does not record it). Its seconds
are the sum of ``timing_s/step``.
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
    any_line,
    facts,
    files_where,
    metric_table,
    relative_key,
    write_runs,
)

NAME = "verl"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PREFIX = re.compile(r"^\s*\([A-Za-z_][\w.]* pid=\d+[^)]*\)\s*")
_STEP = re.compile(r"(?:^|\s)step:(-?\d+)\s+-\s+(.*)$")
_WRAPPED = re.compile(r"^(?:np\.(?:float|int|uint)\d*|numpy\.\w+|tensor|torch\.tensor)\((.*?)(?:,\s*\w+=.*)?\)$")
_TEXT_SUFFIXES = (".log", ".txt", ".out", ".err")
_TOTAL = re.compile(r"Total training steps:\s*(\d+)|'total_training_steps':\s*(\d+)")
STEP_TIME = "timing_s/step"
#: wandb's ``output.log`` keeps at most this many characters of a console line
CUT_AT = 4096


def detect(path) -> bool:
    """True for a verl JSONL or console log, or a directory with one (2 levels down)."""
    return bool(log_files(path, limit=1))


def log_files(path, limit: int | None = None) -> list[Path]:
    return files_where(path, lambda p: _kind(p) is not None, limit)


#: How far into a text file ``_kind`` looks for the first ``step:N - key:value`` line: a
#: verl console log opens with Ray's start-up output and the whole resolved config (100-130
#: KiB before the first step in verl's own GPG baseline logs), so 64 KiB is not enough.
CONSOLE_SCAN = 4 << 20
_CONSOLE_STEP = re.compile(r"(?:^|\s)step:\d+\s+-\s+\S+:", re.M)


def _kind(path: Path) -> str | None:
    """'jsonl' (from the first 64 KiB of the file), 'console' (a step line within the
    first CONSOLE_SCAN bytes) or None."""
    if path.suffix in (".jsonl", ".json"):
        try:
            with open(path, "rb") as f:
                head = f.read(65536).decode("utf-8", errors="replace")
        except OSError:
            return None
        lines = [ln for ln in head.splitlines() if ln.strip()]
        try:
            first = json.loads(lines[0]) if lines else None
        except ValueError:
            return None
        return "jsonl" if isinstance(first, dict) and "step" in first and isinstance(first.get("data"), dict) else None
    if path.suffix in _TEXT_SUFFIXES or not path.suffix:
        return "console" if _has_step_line(path) else None
    return None


def _has_step_line(path: Path) -> bool:
    """Whether a console ``step:N - key:value`` line starts within the first CONSOLE_SCAN
    bytes of ``path``."""
    return any_line(path, lambda line: bool(_CONSOLE_STEP.search(_ANSI.sub("", line))), CONSOLE_SCAN)


def read(path, **_options) -> list[RunData]:
    path = Path(path)
    files = log_files(path)
    if not files:
        raise ConvertError(f"{path}: no verl log found (JSONL lines {{\"step\": N, \"data\": {{...}}}} "
                           "or console lines 'step:N - key:value - ...')")
    base = path if path.is_dir() else path.parent
    return [_read_file(f, relative_key(f, base)) for f in files]


def _read_file(file: Path, key: str) -> RunData:
    steps, names, values, skipped, planned = [], [], [], [], {}
    reader = _jsonl_rows if _kind(file) == "jsonl" else _console_rows
    for lineno, step, items in reader(file, skipped, planned):
        for name, raw in items:
            value = _number(raw)
            if value is None:
                skipped.append(Skip(str(file), f"line {lineno}", f"{name}: not a number: {str(raw)[:60]!r}"))
                continue
            steps.append(step), names.append(name), values.append(value)
    stem = key.rsplit(".", 1)[0] if "." in Path(key).name else key
    meta = {"log": "jsonl" if reader is _jsonl_rows else "console",
            **run_facts(steps, names, values, planned.get("total"), planned.get("words"))}
    return RunData(key=stem, source=str(file), tables=[metric_table(steps, names, values)],
                   skipped=skipped, meta=meta)


def run_facts(steps, names, values, total, words) -> dict:
    """How the run ended by its log (:func:`rldk.converters.base.facts`): the last step
    against ``total`` (stated in the log as ``words``); seconds = sum of ``timing_s/step``."""
    times = [v for n, v in zip(names, values) if n == STEP_TIME and math.isfinite(v)]
    seconds = math.fsum(times) if times else None
    last = max(steps) if steps else None
    if total is None or total <= 0 or last is None:
        return facts("unknown", "verl log: no total_training_steps stated", seconds)
    status = "complete" if last >= total else "incomplete"
    return facts(status, f"verl log: last step {last} of {words}", seconds)


def _lines(file: Path):
    with open(file, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            yield lineno, raw.decode("utf-8", errors="replace")


def _jsonl_rows(file: Path, skipped: list, planned: dict):
    for lineno, line in _lines(file):
        if not line.strip():
            continue
        try:
            row = json.loads(line.strip())
        except ValueError as exc:
            skipped.append(Skip(str(file), f"line {lineno}", f"invalid JSON ({exc}); line skipped"))
            continue
        step = row.get("step") if isinstance(row, dict) else None
        data = row.get("data") if isinstance(row, dict) else None
        if not isinstance(step, int) or isinstance(step, bool) or not isinstance(data, dict):
            skipped.append(Skip(str(file), f"line {lineno}", "not {\"step\": int, \"data\": {...}}"))
            continue
        yield lineno, step, [(k, math.nan if v is None else v) for k, v in data.items()]


def _console_rows(file: Path, skipped: list, planned: dict):
    """Metric lines; the first statement of the planned total goes into ``planned``."""
    for lineno, line in _lines(file):
        if "step:" not in line:
            if "total_training_steps" in line or "Total training steps" in line:
                _planned(line, planned)
            continue
        raw_line = line.rstrip("\r\n")
        text = _PREFIX.sub("", _ANSI.sub("", raw_line))
        m = _STEP.search(text)
        if m is None:
            continue
        parts = m.group(2).rstrip().removesuffix(" -").split(" - ")
        if len(raw_line) == CUT_AT and len(parts) > 1:
            # wandb's copy of the console cuts long lines here: the last value may be a
            # cut number ("1220" of "1220.41"), so it is not read
            name = parts.pop().partition(":")[0].strip()
            skipped.append(Skip(str(file), f"line {lineno}", f"{name}: the line is cut at {CUT_AT} "
                                "characters (wandb's console limit); its last value is not read"))
        items = []
        for part in parts:
            name, sep, raw = part.strip().partition(":")
            if not sep or not name:
                skipped.append(Skip(str(file), f"line {lineno}", f"not key:value: {part.strip()[:60]!r}"))
                continue
            items.append((name, raw.strip()))
        yield lineno, int(m.group(1)), items


def _planned(line: str, planned: dict) -> None:
    m = _TOTAL.search(_ANSI.sub("", line))
    if m and "total" not in planned:
        planned["total"] = int(m.group(1) or m.group(2))
        planned["words"] = m.group(0)                    # the log's own words


def _number(raw):
    if isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, (int, float)):
        return float(raw)
    if not isinstance(raw, str):
        return None
    m = _WRAPPED.match(raw)
    if m:
        raw = m.group(1)
    try:
        return float(raw)
    except ValueError:
        return None


def convert(path, target, run_id=None, strict: bool = False, **options):
    """Convert verl logs at ``path`` into ``target`` (store directory or EventWriter)."""
    return write_runs(read(path, **options), target, run_id, NAME, source=str(path), strict=strict)
