"""``rldk diff``: the first step where two runs stop agreeing."""
from __future__ import annotations

import click

from rldk.cli import emit, exit_for, handle_errors, output_options
from rldk.commands._options import split_signals


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--a", "run_a", metavar="RUN", help="Run id of side A (PATHS are then one store).")
@click.option("--b", "run_b", metavar="RUN", help="Run id of side B.")
@click.option("--signals", metavar="NAMES",
              help="Comma-separated metrics, canonical (reward_mean, kl) or as logged "
                   "(default: all both log).")
@click.option("--replicas-a", multiple=True, metavar="RUN",
              help="Another run of A's configuration (repeat); gives the noise band.")
@click.option("--replicas-b", multiple=True, metavar="RUN", help="Another run of B's configuration.")
@click.option("--mode", type=click.Choice(["auto", "exact", "statistical"]), default="auto",
              show_default=True, help="Which level of evidence gives the verdict.")
@output_options(out_dir=True)
@handle_errors
def diff(paths, run_a, run_b, signals, replicas_a, replicas_b, mode, fmt, output, out_dir):
    """Find the first step where two runs stop agreeing.

    PATHS: two paths holding one run each, or a store holding exactly two runs
    (A is the run of the first path), or any store with --a RUN --b RUN.
    Exits 0 when the runs agree, 3 when they diverge.
    """
    from rldk.analyzers import get
    from rldk.analyzers.divergence import diff as run_diff

    result = run_diff(paths, run_a, run_b, split_signals(signals), replicas_a, replicas_b, mode=mode)
    report = result.report()
    emit(report, fmt, output, out_dir, get("divergence"), result)
    exit_for(report)
