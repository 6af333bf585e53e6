"""Resume check: run a command uninterrupted and stopped-then-resumed, and compare."""
from __future__ import annotations

from pathlib import Path

from rldk import harness
from rldk.analyzers.checkpoint.events import (
    NEEDED,
    OPTIONAL,
    CheckpointEvent,
    checkpoint_events,
)
from rldk.analyzers.checkpoint.result import (
    RUN_REFERENCE,
    RUN_RESUMED,
    MissingState,
    ResumeCheckResult,
)
from rldk.analyzers.determinism import compare_runs
from rldk.core.errors import UsageError
from rldk.core.store import open_store
from rldk.writer.checkpoint import PARTS


def resume_check(cmd, at: int, to: int, signals=None, *, timeout: float | None = None,
                 shell: bool = False, workdir=None, env: dict | None = None, cwd=None) -> ResumeCheckResult:
    """Run ``cmd`` to ``to`` uninterrupted, and to ``at`` then resumed to ``to``; compare.

    The command follows the harness protocol: ``RLDK_STOP_AT=N`` -> stop after step
    N; with ``RLDK_CHECKPOINT_DIR`` set, save a checkpoint there when stopping and
    log it with ``log_checkpoint(step, path, ...)``; ``RLDK_RESUME_FROM=path`` ->
    restore that checkpoint (then ideally ``log_checkpoint(..., action="load")``)
    and continue after its step. Runs: ``reference`` (to ``to``) and ``resumed``
    (both halves, one run id) in ``workdir/store``.
    """
    if not 0 <= at < to:
        raise UsageError(f"--at must be at least 0 and below --to (got --at {at} --to {to})")
    argv = harness.split_command(cmd, shell)
    root = harness.fresh_workdir(workdir, "rldk-resume-")
    store_dir, ckpt_dir = root / "store", root / "checkpoints"
    base = {**(env or {}), harness.ENV_DIR: str(store_dir.resolve())}
    plan = (("reference", RUN_REFERENCE, {harness.ENV_STOP_AT: str(to)}),
            ("first half", RUN_RESUMED, {harness.ENV_STOP_AT: str(at),
                                         harness.ENV_CHECKPOINT_DIR: str(ckpt_dir.resolve())}))
    commands = [_run(argv, root, label, {**base, harness.ENV_RUN_ID: rid, **extra}, timeout, cwd)
                for label, rid, extra in plan]
    saved = _saved_checkpoint(open_store(str(store_dir)), at, argv)
    commands.append(_run(argv, root, "resumed half", {
        **base, harness.ENV_RUN_ID: RUN_RESUMED, harness.ENV_STOP_AT: str(to),
        harness.ENV_RESUME_FROM: saved.path}, timeout, cwd))
    store = open_store(str(store_dir))
    return _assess(store, at, to, signals, saved, tuple(commands), str(root))


def _run(argv, root: Path, label: str, env: dict, timeout, cwd):
    log = root / "logs" / f"{label.replace(' ', '-')}.log"
    result = harness.run_command(argv, log, env, timeout, cwd)
    if result.problem():
        raise harness.CommandFailed(f"the {label} run of `{' '.join(argv)}` {result.problem()} "
                                    f"(log: {result.log})")
    return result


def _saved_checkpoint(store, at: int, argv) -> CheckpointEvent:
    saves = [e for e in checkpoint_events(store, RUN_RESUMED) if e.action == "save"] \
        if RUN_RESUMED in store.run_ids else []
    match = [e for e in saves if e.step == at and e.path]
    if not match:
        seen = ", ".join(str(e.step) for e in saves) or "none"
        raise harness.CommandFailed(
            f"`{' '.join(argv)}` logged no checkpoint at step {at} (checkpoints logged: {seen}): with "
            f"{harness.ENV_STOP_AT}={at} and {harness.ENV_CHECKPOINT_DIR} set it must save one after "
            "that step and log it with rldk.writer.log_checkpoint(step, path, model, optimizer, ...)")
    return match[-1]


def _assess(store, at, to, signals, saved, commands, root) -> ResumeCheckResult:
    _check_reached(store, to)
    loads = [e for e in checkpoint_events(store, RUN_RESUMED) if e.action == "load"]
    loaded = loads[-1] if loads else None
    divergences = compare_runs(store, store.run(RUN_REFERENCE), store.run(RUN_RESUMED), signals,
                               window=(None, to))
    missing = diagnose(saved, loaded, divergences)
    return ResumeCheckResult(at, to, tuple(divergences), tuple(missing), saved, loaded, commands, root)


LAST_STEP_SQL = "SELECT max(step) AS last FROM metrics WHERE run_id = $run_id"


def _check_reached(store, to: int) -> None:
    for rid in (RUN_REFERENCE, RUN_RESUMED):
        frame = store.sql(LAST_STEP_SQL, {"run_id": rid})
        last = frame["last"][0] if frame.height else None
        if last is None or last < to:
            raise harness.CommandFailed(
                f"the {rid} run logged metrics up to step {last}, not to step {to}: with "
                f"{harness.ENV_STOP_AT}={to} it must train through step {to}")


def diagnose(saved: CheckpointEvent, loaded: CheckpointEvent | None, divergences) -> list[MissingState]:
    """Which state the resume lacked: parts not saved, parts restored differently.

    Ordered by the evidence of the first departure: a part that explains the level
    that differs first (RNG source -> rng; tensors -> model/optimizer/...) comes first.
    """
    out = [MissingState(p, "not saved", NEEDED.get(p) or OPTIONAL.get(p, ""))
           for p in PARTS if not saved.parts.get(p)]
    if loaded is not None:
        for part in PARTS:
            before, after = saved.parts.get(part), loaded.parts.get(part)
            if before and after and before.get("digest") != after.get("digest"):
                out.append(MissingState(part, "not restored", _restore_detail(part, before, after, saved, loaded)))
    first = _first_level(divergences)
    lead = {"rng": ("rng",), "tensor": ("model", "optimizer", "scheduler", "data", "rng"),
            "metric": ("data", "scheduler", "optimizer", "model", "rng")}.get(first, ())
    rank = {p: i for i, p in enumerate(lead)}
    how = {"not restored": 0, "not saved": 1}
    return sorted(out, key=lambda m: (rank.get(m.part, len(rank)), how[m.how], PARTS.index(m.part)))


def _first_level(divergences) -> str | None:
    found = [d for d in divergences if d.step is not None]
    order = ("rng", "tensor", "metric", "steps")
    first = min(found, key=lambda d: (d.step, order.index(d.level)), default=None)
    return first.level if first else None


def _restore_detail(part, before, after, saved, loaded) -> str:
    if part == "rng":
        a, b = before.get("sources") or {}, after.get("sources") or {}
        differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        return "RNG sources that differ after loading: " + ", ".join(differ)
    if part == "model":
        differ = [n for n in saved.tensors if loaded.tensors.get(n) != saved.tensors[n]]
        return f"{len(differ)} tensor(s) differ after loading" + (f", first {differ[0]}" if differ else "")
    return "its digest after loading differs from the one saved"


