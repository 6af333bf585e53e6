"""``check_determinism(cmd)``: run a command N times through :mod:`rldk.harness`, then
compare the replicas with :class:`DeterminismAnalyzer`.

Each replica writes its own store (``RLDK_DIR``/``RLDK_RUN_ID``) with the same
environment and arguments. Without ``workdir`` the stores and logs go into a new
``rldk-determinism-*`` temporary directory that is removed afterwards unless
``keep`` is set; it is kept when a replica fails, because the error names that
replica's log inside it.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from rldk import harness
from rldk.analyzers.determinism.analyzer import DeterminismAnalyzer
from rldk.analyzers.determinism.result import DeterminismResult, Params
from rldk.core.errors import StoreError, UsageError
from rldk.core.store import open_store

PREFIX = "rldk-determinism-"

#: Distinct steps each run of a replica's store logged metrics, tensors or RNG at.
STEPS_SQL = """
SELECT run_id, count(DISTINCT step) AS steps
FROM events
WHERE step IS NOT NULL AND kind IN ('metric', 'tensor', 'rng')
GROUP BY run_id
ORDER BY run_id
"""


def check_determinism(cmd, signals=None, replicas: int = 2, steps: int | None = None, *,
                      timeout: float | None = None, shell: bool = False, workdir=None,
                      env: dict | None = None, cwd=None, keep: bool = False) -> DeterminismResult:
    """Run ``cmd`` ``replicas`` times and compare the runs (see the module doc).

    cmd: an argv list, or a string split with :func:`shlex.split` (``shell=True``
    runs it with ``/bin/sh -c`` instead). signals: metrics to compare, canonical
    (``reward_mean``, ``kl``) or as logged (None: all but clock/throughput/memory).
    steps: each replica must log at least this many steps (``RLDK_MAX_STEPS`` tells
    the command); only those are compared. timeout: seconds per replica. workdir:
    where the replicas' stores and logs go (it must not hold event files; never
    removed); None: a temporary directory, removed after the check unless ``keep``
    (``result.store`` is then None). env: extra environment for every replica.
    Raises :class:`rldk.harness.CommandFailed` when a replica fails, hangs, writes
    no events or too few steps.
    """
    argv = harness.split_command(cmd, shell)
    params = _check_args(replicas, steps, signals)
    root = harness.fresh_workdir(workdir, PREFIX)
    remove = workdir is None and not keep
    try:
        result = _run_and_compare(argv, root, params, replicas, env, timeout, cwd)
    except harness.CommandFailed:
        remove = False                  # the error names the replica's log in ``root``
        raise
    finally:
        if remove:
            shutil.rmtree(root, ignore_errors=True)
    return replace(result, store=None if remove else str(root))


def _run_and_compare(argv, root: Path, params: Params, replicas: int, env, timeout, cwd):
    extra = dict(env or {})
    if params.steps is not None:
        extra[harness.ENV_MAX_STEPS] = str(params.steps)
    commands = tuple(_run_replica(argv, root, i, extra, timeout, cwd, params.steps)
                     for i in range(replicas))
    store = open_store([str(root / f"replica-{i}") for i in range(replicas)])
    return replace(DeterminismAnalyzer().run(store, params), commands=commands)


def _check_args(replicas, steps, signals) -> Params:
    if not isinstance(replicas, int) or replicas < 2:
        raise UsageError(f"--replicas must be at least 2, got {replicas}")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise UsageError(f"--steps must be a positive integer, got {steps}")
    if isinstance(signals, str):
        signals = [s.strip() for s in signals.split(",") if s.strip()]
    return Params(tuple(signals) if signals else None, steps)


def _run_replica(argv, root: Path, i: int, extra: dict, timeout, cwd, steps):
    store = root / f"replica-{i}"
    store.mkdir(parents=True, exist_ok=True)
    env = {**extra, harness.ENV_DIR: str(store.resolve()), harness.ENV_RUN_ID: f"replica-{i}"}
    result = harness.run_command(argv, root / "logs" / f"replica-{i}.log", env, timeout, cwd)
    label = f"replica {i} of `{' '.join(argv)}`"
    if result.problem():
        raise harness.CommandFailed(f"{label} {result.problem()} (log: {result.log})")
    _check_wrote(store, label, steps, result.log)
    return result


def _check_wrote(store: Path, label: str, steps, log: str) -> None:
    """Raise :class:`CommandFailed` unless ``store`` holds one run with ``steps`` steps."""
    try:
        counts = open_store(str(store)).sql(STEPS_SQL)
    except StoreError:
        counts = None
    if counts is None or counts.is_empty():
        raise harness.CommandFailed(
            f"{label} wrote no step events to RLDK_DIR={store}: it must log through rldk.writer "
            f"(or the TRL RldkCallback), which reads RLDK_DIR and RLDK_RUN_ID (log: {log})")
    if counts.height > 1:
        raise harness.CommandFailed(f"{label} wrote {counts.height} runs "
                                    f"({', '.join(counts['run_id'])}); one run per replica is expected")
    logged = int(counts["steps"][0])
    if steps is not None and logged < steps:
        raise harness.CommandFailed(f"{label} logged {logged} steps, fewer than the {steps} asked "
                                    f"(--steps; RLDK_MAX_STEPS={steps} was set) (log: {log})")
