"""Scalar dumps: one JSON document ``{"<tag>": {"<step>": value, ...}, ...}``.

The shape a TensorBoard log takes when a script dumps its scalars to JSON: NeMo-RL's
test suites write their runs' TensorBoard scalars this way (``metrics.json``), as do
hand-written ``EventAccumulator`` exports. Every top-level value is a tag's series, an
object from step (an integer, written as a JSON key: a string) to value. Numbers become
``metric`` events at their step; ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (and the
bare ``NaN``/``Infinity`` tokens Python's ``json`` writes) are NaN/inf; a ``null`` or any
other value is left out and reported with its tag and step, as is a step key that is
not an integer.

How the run ended is "unknown" (a dump holds no planned length), and there is no wall
time. One run per file; its key is the file's name without ``.json`` (the folder's
name for a file named ``metrics.json``, which says nothing of the run).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from rldk.converters.base import ConvertError, RunData, Skip, facts, metric_table, write_runs

NAME = "scalars_json"
#: Largest file read to decide whether it is a scalar dump (they are small: a value per
#: tag and step); larger JSON files are left to the other formats.
MAX_DETECT_BYTES = 256 << 20
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def detect(path) -> bool:
    """True for a ``.json`` file (or a directory holding one) shaped as a scalar dump."""
    return bool(files(path, limit=1))


def files(path, limit: int | None = None) -> list[Path]:
    path = Path(path)
    found = [path] if path.is_file() else sorted(p for p in path.glob("*.json") if p.is_file())
    out = [p for p in found if p.suffix == ".json" and _is_dump(p)]
    return out[:limit] if limit else out


def _is_dump(path: Path) -> bool:
    try:
        if path.stat().st_size > MAX_DETECT_BYTES:
            return False
        with open(path, "rb") as f:
            if f.read(64).lstrip()[:1] != b"{":
                return False
        data = _load(path)
    except (OSError, ValueError, RecursionError):
        return False
    return _shaped(data)


def _load(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _shaped(data) -> bool:
    """Whether ``data`` is ``{tag: {step: value}}``: an object of objects whose keys are
    mostly integers (a dump whose every step key is something else is some other JSON)."""
    if not isinstance(data, dict) or not data or not all(isinstance(s, dict) and s for s in data.values()):
        return False
    keys = [k for series in data.values() for k in series]
    return sum(_step(k) is not None for k in keys) * 2 > len(keys)


def _step(key: str) -> int | None:
    try:
        return int(key)
    except (TypeError, ValueError):
        return None


def read(path, **_options) -> list[RunData]:
    path = Path(path)
    if path.is_file():
        return [read_file(path)]          # parsed once; read_file says when it is no dump
    targets = files(path)
    if not targets:
        raise ConvertError(f"{path}: no scalar dump found (a .json file holding "
                           '{"<tag>": {"<step>": value}}, as NeMo-RL\'s metrics.json)')
    return [read_file(f) for f in targets]


def read_file(file: Path) -> RunData:
    try:
        data = _load(file)
    except (OSError, ValueError, RecursionError) as exc:
        raise ConvertError(f"{file}: not readable as JSON ({exc})") from None
    if not _shaped(data):
        raise ConvertError(f'{file}: not a scalar dump ({{"<tag>": {{"<step>": value}}}})')
    steps, names, values, skipped = [], [], [], []
    for tag, series in data.items():
        for key, value in series.items():
            step = _step(key)
            number = _number(value)
            if step is None or number is None:
                why = (f"step {key!r} is not an integer" if step is None
                       else f"value {json.dumps(value)[:80]} is not a number")
                skipped.append(Skip(str(file), f"tag {tag!r}, step {key!r}", f"{why}; value left out"))
                continue
            steps.append(step), names.append(str(tag)), values.append(number)
    key = file.parent.name if file.stem == "metrics" and file.parent.name else file.stem
    meta = {"format": "scalar dump {tag: {step: value}}", "tags": len(data),
            **facts("unknown", "a scalar dump holds no planned length or end of the run")}
    return RunData(key=key, source=str(file), tables=[metric_table(steps, names, values)],
                   skipped=skipped, meta=meta)


def _number(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value in _SPECIAL:
        return _SPECIAL[value]
    return None


def convert(path, target, run_id=None, strict: bool = False, **options):
    """Convert the scalar dump(s) at ``path`` into ``target`` (store directory or EventWriter)."""
    return write_runs(read(path, **options), target, run_id, NAME, source=str(path), strict=strict)
