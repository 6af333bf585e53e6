"""The checkpoint analysis behind the one analyzer interface: verify ``checkpoint`` events."""
from __future__ import annotations

from dataclasses import dataclass

from rldk.analyzers.base import Analyzer
from rldk.analyzers.checkpoint.events import checkpoint_events
from rldk.analyzers.checkpoint.verify import NAME, VerifyResult, check_event
from rldk.data import open_input


@dataclass(frozen=True)
class Params:
    """run_id: the run to verify (None: every run in the store).
    deep: also load each checkpoint file and compare its model tensors with the
    checksums logged at save (reads every checkpoint file: slow for big models)."""

    run_id: str | None = None
    deep: bool = False


class CheckpointAnalyzer(Analyzer):
    """Whether every saved checkpoint holds what an exact resume needs: model,
    optimizer, RNG and data position (scheduler reported when absent), and
    (``deep``) whether its file still holds the model logged at save."""

    name = NAME
    title = "Checkpoint verification"
    consumes = ("checkpoint",)
    Params = Params

    def run(self, store, params: Params | None = None) -> VerifyResult:
        params = params or Params()
        run_ids = [store.run(params.run_id).id] if params.run_id is not None else store.run_ids
        saves = {rid: [e for e in checkpoint_events(store, rid) if e.action == "save"] for rid in run_ids}
        checks = tuple(check_event(e, params.deep) for rid in run_ids for e in saves[rid])
        without = tuple(rid for rid in run_ids if not saves[rid])
        return VerifyResult(tuple(run_ids), checks, without, params.deep)


def verify_checkpoints(paths, run_id: str | None = None, deep: bool = False) -> VerifyResult:
    """Check every saved checkpoint in the store at ``paths`` (of ``run_id``, or of every
    run) holds what an exact resume needs; see :class:`CheckpointAnalyzer`. Runs without
    checkpoint events make the result inconclusive, never "ok"."""
    return CheckpointAnalyzer().run(open_input(paths), Params(run_id, deep))
