"""``rldk check-determinism``: run a command N times and compare the runs."""
from __future__ import annotations

import click

from rldk.cli import handle_errors
from rldk.commands._options import command_args, emit_card, split_signals


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--replicas", type=click.IntRange(min=2), default=2, show_default=True,
              help="How many times to run COMMAND.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Each run must log at least this many steps (RLDK_MAX_STEPS tells it); "
                   "only those are compared.")
@command_args
@handle_errors
def check_determinism(replicas, steps, command, shell, timeout, signals, workdir, out_dir, fmt):
    """Run COMMAND N times and show whether, where and why the runs differ.

    Each run writes its own store (RLDK_DIR, RLDK_RUN_ID are set for it); the
    runs are compared at three levels: tensor checksums, RNG digests, metrics.
    Exit 0 deterministic, 3 nondeterministic, 1 a run failed, 2 usage error.

    Example: rldk check-determinism --replicas 3 -- python train.py --seed 1
    """
    from rldk.analyzers.determinism import check_determinism as check

    result = check(list(command), split_signals(signals), replicas, steps, timeout=timeout, shell=shell,
                   workdir=workdir)
    emit_card(result, fmt, out_dir)
