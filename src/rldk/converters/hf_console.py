"""Hugging Face Trainer console logs: what a TRL, LLaMA-Factory or plain ``transformers``
run printed to its terminal (``nohup.out``, a SLURM ``.out`` file, ``train.log``).

The Trainer prints each ``logging_steps`` step's metrics as a Python dict on a line of its
own, between the redraws of its tqdm progress bar::

      0%|          | 1/4129 [00:28<32:23:41, 28.25s/it]
    {'loss': 0.0, 'grad_norm': 1.39, 'reward': 0.92, 'reward_std': 0.16, 'kl': 0.0, 'epoch': 0.0}

A line is a metric line when, after the bar's carriage returns and ANSI colours are
removed, it is one dict literal holding ``'epoch'`` (the Trainer adds it to every log).
The dict carries no step: the step is the training bar's counter (``1`` of ``1/4129``),
the bar that was being drawn when the first metric line came (evaluation and generation
bars drawn later have their own totals and are not read as steps). A log with no bar
(``disable_tqdm``) numbers its metric lines 1, 2, ... and says so in the import event:
multiply by ``logging_steps`` for the Trainer's step. Evaluation dicts (``eval_*``) are
read at the training step they follow; the end-of-training summary (``train_runtime``,
``train_loss``, ...) is no step: its values go into the import event, and its
``train_runtime`` is the run's seconds. ``nan``/``inf`` and ``tensor(x)``/``np.float64(x)``
are read as numbers; a value that is not a number is skipped and reported with its line.

How the run ended: the training bar's last counter against its total (complete when it
reached it); "unknown" without a bar.
"""
from __future__ import annotations

import ast
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
from rldk.converters.verl import _ANSI, _TEXT_SUFFIXES, _number

NAME = "hf_console"
#: a tqdm bar's counter: ``| 12/4129 [`` (the text before it is the bar's description)
_BAR = re.compile(r"^(.*?)\|[^|]*\|\s*(\d+)/(\d+)\s*\[")
_DICT = re.compile(r"\{'[^']+':[^{}]*'epoch':[^{}]*\}")
#: a metric dict anywhere in a piece of a line (flat: the Trainer's logs hold numbers)
_FLAT_DICT = re.compile(r"\{'[^'{}]+':[^{}]*\}")
#: bare names Python prints for floats, and tensors/NumPy scalars, quoted for ``literal_eval``
_BARE = re.compile(r"(:\s*)(-?nan|-?inf|(?:np|numpy|torch)\.\w+\([^()]*\)|tensor\([^()]*\))(?=\s*[,}])")
#: how far into a file ``detect`` looks for the first metric line: a console log opens with
#: the launcher's, DeepSpeed's and vLLM's start-up output (0.3 MiB in a real TRL GRPO log)
CONSOLE_SCAN = 4 << 20
#: keys of the end-of-training summary dict
SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss")


def detect(path) -> bool:
    """True for a text file with a Trainer metric line within its first CONSOLE_SCAN bytes,
    or a directory holding one (2 levels down)."""
    return bool(log_files(path, limit=1))


def log_files(path, limit: int | None = None) -> list[Path]:
    return files_where(path, lambda p: (p.suffix in _TEXT_SUFFIXES or not p.suffix) and _has_metric_line(p), limit)


def _has_metric_line(path: Path) -> bool:
    """Whether a metric dict starts within the first CONSOLE_SCAN bytes of ``path``."""
    return any_line(path, lambda line: "'epoch'" in line and any(_DICT.search(t) for t in _pieces(line)),
                    CONSOLE_SCAN)


def _pieces(line: str):
    """The texts a terminal line shows: split at carriage returns, colours removed, stripped."""
    for piece in _ANSI.sub("", line.rstrip("\r\n")).split("\r"):
        piece = piece.strip()
        if piece:
            yield piece


def read(path, **_options) -> list[RunData]:
    path = Path(path)
    files = log_files(path)
    if not files:
        raise ConvertError(f"{path}: no Hugging Face Trainer console log found (lines such as "
                           "{'loss': 0.1, ..., 'epoch': 0.5} printed by a TRL or transformers run)")
    base = path if path.is_dir() else path.parent
    return [_read_file(f, relative_key(f, base)) for f in files]


def _read_file(file: Path, key: str) -> RunData:
    skipped = []
    bars: dict[int, int] = {}          # total -> last counter of each bar drawn so far
    latest = None                      # the total of the bar drawn last
    train_total = None                 # the training bar's total, fixed at the first metric line
    records = []                       # (line number, evaluation?, bar counter or None, dict)
    summary = {}
    with open(file, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            text = raw.decode("utf-8", errors="replace")
            if "|" not in text and "'epoch'" not in text:
                continue
            for piece in _pieces(text):
                for kind, part in _segments(piece):
                    if kind == "bar":
                        bars[int(part.group(3))] = int(part.group(2))
                        latest = int(part.group(3))
                        continue
                    row = _literal(part)
                    if row is None:
                        skipped.append(Skip(str(file), f"line {lineno}", f"not a dict of numbers: {part[:60]!r}"))
                        continue
                    if any(k in row for k in SUMMARY_KEYS[:3]):
                        summary = row
                        continue
                    evaluation = all(k.startswith("eval_") or k == "epoch" for k in row)
                    if not evaluation and train_total is None and latest is not None:
                        train_total = latest
                    counter = bars.get(train_total) if train_total is not None else None
                    records.append((lineno, evaluation, counter, row))
    numbered, why = _numbered(records)
    steps, names, values = [], [], []
    for (lineno, _, _, row), step in zip(records, numbered):
        for name, raw_value in row.items():
            value = _number(raw_value)
            if value is None:
                skipped.append(Skip(str(file), f"line {lineno}", f"{name}: not a number: {str(raw_value)[:60]!r}"))
                continue
            steps.append(step), names.append(name), values.append(value)
    stem = key.rsplit(".", 1)[0] if "." in Path(key).name else key
    meta = {"log": "hf_console", "step": "progress bar" if why is None else f"metric line number ({why})",
            **({"summary": {k: v for k, v in summary.items() if _number(v) is not None}} if summary else {}),
            **run_facts(bars.get(train_total) if train_total is not None else None, train_total,
                        _number(summary.get("train_runtime")))}
    return RunData(key=stem, source=str(file), tables=[metric_table(steps, names, values)],
                   skipped=skipped, meta=meta)


def _segments(piece: str):
    """``("bar", match)`` and ``("dict", text)`` in the order a piece shows them: a metric
    dict printed on the same line as a bar's redraw (stdout and stderr interleaved, or
    stdout flushed in blocks) is read as well as the bar."""
    at = 0
    for m in _FLAT_DICT.finditer(piece):
        if "'epoch':" not in m.group(0):
            continue            # a printed config (DeepSpeed's, the script's own), no metric line
        head = piece[at:m.start()].strip()
        if head and (bar := _BAR.match(head)) is not None:
            yield "bar", bar
        yield "dict", m.group(0)
        at = m.end()
    tail = piece[at:].strip()
    if tail and (bar := _BAR.match(tail)) is not None:
        yield "bar", bar


def _numbered(records) -> tuple[list[int], str | None]:
    """The step of each record, and why the bar's counter was not used (None when it was).
    The counter is the step when every training dict has one and it rises from dict to
    dict; otherwise (no bar; stdout flushed in blocks, so several dicts come out at one
    redraw; a capture that kept only the bar's first states) the training dicts are
    numbered 1, 2, ... and an evaluation dict takes the number of the training dict
    before it: a step the console cannot give is never guessed, and no row is lost to
    another at the same step."""
    train = [counter for _, evaluation, counter, _ in records if not evaluation]
    if train and all(c is not None for c in train) and all(b > a for a, b in zip(train, train[1:])):
        return [counter if counter is not None else 0 for _, _, counter, _ in records], None
    if not any(c is not None for c in train):
        why = "no progress bar"
    else:
        why = "the progress bar's counter did not rise from one metric line to the next: stdout was buffered"
    out, n = [], 0
    for _, evaluation, _, _ in records:
        n += 0 if evaluation else 1
        out.append(n)
    return out, why


def _literal(text: str) -> dict | None:
    """The dict a metric line prints, or None when it is no dict literal."""
    for candidate in (text, _BARE.sub(lambda m: m.group(1) + repr(m.group(2)), text)):
        try:
            row = ast.literal_eval(candidate)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        return row if isinstance(row, dict) and all(isinstance(k, str) for k in row) else None
    return None


def run_facts(last, total, seconds) -> dict:
    """How the run ended by its console: the training bar's last counter against its total."""
    seconds = seconds if seconds is not None and math.isfinite(seconds) else None
    if last is None or not total:
        return facts("unknown", "Trainer console: no progress bar to read the planned steps from", seconds)
    status = "complete" if last >= total else "incomplete"
    return facts(status, f"Trainer console: progress bar at {last}/{total}", seconds)


def convert(path, target, run_id=None, strict: bool = False, **options):
    """Convert Trainer console logs at ``path`` into ``target`` (store directory or EventWriter)."""
    return write_runs(read(path, **options), target, run_id, NAME, source=str(path), strict=strict)
