"""What the safety analysis reads: sample events of a store, or a JSONL of prompt/response records."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rldk.core.errors import MissingEvents, UsageError
from rldk.core.store import Run, Store
from rldk.data import open_input

SAMPLES_SQL = """
SELECT run_id, step, text AS response,
       coalesce(json_extract_string(attrs, '$.prompt'), '') AS prompt,
       lower(coalesce(json_extract_string(attrs, '$.harmful'), json_extract_string(attrs, '$.label'),
                      json_extract_string(attrs, '$.category'), '')) AS label
FROM samples
WHERE run_id = $run
ORDER BY rank, step, seq
"""
LABEL_KEYS = ("harmful", "label", "category")


def load(source):
    """``(run_ids, step, prompt, response, label)`` from a Run, Store, store path or JSONL."""
    if isinstance(source, (str, Path)) and str(source).endswith((".jsonl", ".json")) and Path(source).is_file():
        return read_jsonl(source)
    if isinstance(source, Run):
        runs = [source]
    else:
        runs = (source if isinstance(source, Store) else open_input(source)).runs()
    return from_store(runs)


def from_store(runs):
    """The sample events of ``runs`` as columns; MissingEvents when there are none."""
    import polars as pl

    frames = [r.store.sql(SAMPLES_SQL, {"run": r.id}) for r in runs]
    frame = pl.concat(frames) if frames else pl.DataFrame()
    if frame.is_empty():
        raise MissingEvents("no sample events: log prompts and responses with "
                            "writer.log_samples(step, prompts, responses) or pass a JSONL of "
                            "{\"prompt\", \"response\"} records")
    return (frame["run_id"].to_list(), frame["step"].fill_null(-1).to_numpy(),
            frame["prompt"].to_list(), [t or "" for t in frame["response"].to_list()],
            frame["label"].to_list())


def read_jsonl(path):
    """Records ``{"prompt", "response"[, "step", "harmful" | "label" | "category"]}``, one per line.

    Raises UsageError naming the line for non-UTF-8 bytes, invalid JSON or a record
    without prompt/response strings.
    """
    steps, prompts, responses, labels = [], [], [], []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if raw.strip():
                step, prompt, response, label = _record(path, n, raw)
                steps.append(step), prompts.append(prompt), responses.append(response), labels.append(label)
    if not prompts:
        raise UsageError(f"{path}: no records; expected one {{\"prompt\", \"response\"}} object per line")
    return [Path(path).name] * len(prompts), np.array(steps, dtype=np.int64), prompts, responses, labels


def _record(path, n: int, raw: bytes):
    try:
        rec = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}:{n}: not UTF-8 (byte {exc.start}); re-encode the file as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{n}: invalid JSON ({exc.msg}); one JSON object per line") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("prompt"), str) \
            or not isinstance(rec.get("response"), str):
        raise UsageError(f"{path}:{n}: needs string fields 'prompt' and 'response'")
    step = rec.get("step", -1)
    if not isinstance(step, int) or isinstance(step, bool):
        raise UsageError(f"{path}:{n}: 'step' must be an integer, not {step!r}")
    label = next((rec[k] for k in LABEL_KEYS if rec.get(k) is not None), "")
    return step, rec["prompt"], rec["response"], str(label).lower()
