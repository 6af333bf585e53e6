"""How an imported run ended and how long it trained: facts read from its own logs.

The writer dates events by its own clock and closes every import with an ``end``
event, so for a run imported from logs neither says anything about the training:
the last event is the import, and every import "completes". A converter records
what the logs themselves show in the ``meta`` of the run's ``run/import`` event:

- ``rldk_status``: "complete" (the logs reach the planned end: TRL ``global_step``
  = ``max_steps``, SB3 ``total_timesteps`` reached, verl ``total_training_steps``
  reached, MLflow FINISHED), "incomplete" (they stop before it), "failed" or
  "killed" (the tool recorded so: MLflow FAILED, KILLED; "killed" as ``Run.status``
  names a native run ended by a signal) or "unknown" (no planned length, no end record).
- ``rldk_status_evidence``: the log's own words for it, e.g.
  "trainer_state.json: global_step 75 of max_steps 100".
- ``rldk_wall_seconds``: seconds of training from the log's own timestamps
  (absent when the logs carry none).

Readers (``Store.summary`` and its ``runs`` view, ``Run.status``, the summary
analyzer) take these for every run with an import event; without them such a run
is "unknown" with no wall time, never "complete" nor import-clock seconds.
"""
from __future__ import annotations

import math

STATUS = "rldk_status"
EVIDENCE = "rldk_status_evidence"
WALL_SECONDS = "rldk_wall_seconds"
#: what a converter may record under ``STATUS``
IMPORTED_STATUSES = ("complete", "incomplete", "failed", "killed", "terminated", "unknown")


def imported(attrs: dict) -> tuple[str, str | None, float | None]:
    """``(status, evidence, wall_seconds)`` of an imported run from its import event's attrs."""
    meta = attrs.get("meta") or {}
    status = meta.get(STATUS)
    seconds = meta.get(WALL_SECONDS)
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds):
        seconds = None
    evidence = meta.get(EVIDENCE)
    return (status if status in IMPORTED_STATUSES else "unknown",
            str(evidence) if evidence is not None else None, seconds)


# How the ``runs`` summary reads run events (the same values as ``RUNS_SQL`` in
# rldk.core.store computes with DuckDB's JSON functions), for the per-file summaries
# of rldk.core.run_summary.
_SQL_STATUSES = ("complete", "incomplete", "failed", "killed", "terminated")


def import_partial(attrs: str | None) -> dict:
    """``{seconds, status, evidence}`` of one ``run/import`` event's attrs (JSON text):
    ``TRY_CAST`` of the wall seconds to a double, the status if a known one else
    "unknown", the evidence as text."""
    meta = _object(_object(_loads(attrs)).get("meta"))
    status = meta.get(STATUS)
    return {"seconds": _double(meta.get(WALL_SECONDS)),
            "status": status if status in _SQL_STATUSES else "unknown",
            "evidence": _text(meta.get(EVIDENCE))}


def end_partial(wall_ms: int | None, attrs: str | None) -> list | None:
    """``[wall_ms, status]`` of one ``run/end`` event, None when it has no status or time."""
    status = _text(_object(_loads(attrs)).get("status"))
    return None if wall_ms is None or status is None else [wall_ms, status]


def native_status(end_status: str | None) -> str:
    """A native run's status from its last end event's status (None: no end event)."""
    return "incomplete" if end_status is None else end_status.replace("terminated", "killed")


def _loads(text):
    import json

    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return None


def _object(value) -> dict:
    return value if isinstance(value, dict) else {}


def _double(value) -> float | None:
    if isinstance(value, (bool, int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _text(value) -> str | None:
    """A JSON value as ``json_extract_string`` gives it: strings as they are, others as JSON."""
    import json

    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))
