"""``rldk check-determinism``: run a command N times and compare the runs."""
from __future__ import annotations

import click

from rldk.cli import emit, exit_for, handle_errors, output_options
from rldk.commands._options import run_options, split_signals


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--replicas", type=click.IntRange(min=2), default=2, show_default=True,
              help="How many times to run COMMAND.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Each run must log at least this many steps (RLDK_MAX_STEPS tells it); "
                   "only those are compared.")
@click.option("--keep", is_flag=True,
              help="Keep the temporary directory of the runs' stores and logs (without "
                   "--workdir it is removed after the check).")
@run_options
@output_options(out_dir=True)
@handle_errors
def check_determinism(replicas, steps, keep, command, shell, timeout, signals, workdir, fmt, output,
                      out_dir):
    """Run COMMAND N times and show whether, where and why the runs differ.

    Each run writes its own store (RLDK_DIR, RLDK_RUN_ID are set for it); the
    runs are compared at three levels: tensor checksums, RNG digests, metrics.
    Exit 0 deterministic, 3 nondeterministic, 4 inconclusive (nothing comparable
    was logged), 1 a run failed, 2 usage error.

    Example: rldk check-determinism --replicas 3 -- python train.py --seed 1
    """
    from rldk.analyzers import get
    from rldk.analyzers.determinism import check_determinism as check

    result = check(list(command), split_signals(signals), replicas, steps, timeout=timeout, shell=shell,
                   workdir=workdir, keep=keep)
    if keep and workdir is None:
        click.echo(f"runs kept in {result.store}", err=True)
    report = result.report()
    emit(report, fmt, output, out_dir, get("determinism"), result)
    exit_for(report)
