"""Checkpoint analysis: verify logged saves, check an exact resume, diff two checkpoints.

Modules: :mod:`.events` (checkpoint events read back), :mod:`.verify` (does each
save hold what an exact resume needs), :mod:`.analyzer` (``CheckpointAnalyzer``,
``verify_checkpoints``), :mod:`.resume` and :mod:`.result` (``resume_check``: run a
command uninterrupted and stopped-then-resumed, compare), :mod:`.loading` (safe
torch/safetensors loading) and :mod:`.diff` (``diff_checkpoints``). Logging the
events is :mod:`rldk.writer.checkpoint`.
"""
from __future__ import annotations

from rldk.analyzers.checkpoint.analyzer import (
           CheckpointAnalyzer,
           Params,
           verify_checkpoints,
)
from rldk.analyzers.checkpoint.diff import (
           DIFF_COLUMNS,
           CheckpointDiff,
           TensorDiff,
           diff_checkpoints,
           tensor_diff,
)
from rldk.analyzers.checkpoint.events import (
           NEEDED,
           OPTIONAL,
           CheckpointEvent,
           checkpoint_events,
)
from rldk.analyzers.checkpoint.loading import load_state
from rldk.analyzers.checkpoint.result import MissingState, ResumeCheckResult
from rldk.analyzers.checkpoint.resume import diagnose, resume_check
from rldk.analyzers.checkpoint.verify import CheckpointCheck, VerifyResult, check_event
from rldk.writer.checkpoint import PARTS

__all__ = ["CheckpointAnalyzer", "Params", "verify_checkpoints", "VerifyResult", "CheckpointCheck",
           "check_event", "resume_check", "ResumeCheckResult", "MissingState", "diagnose",
           "diff_checkpoints", "CheckpointDiff", "TensorDiff", "tensor_diff", "DIFF_COLUMNS", "load_state",
           "CheckpointEvent", "checkpoint_events", "PARTS", "NEEDED", "OPTIONAL"]
