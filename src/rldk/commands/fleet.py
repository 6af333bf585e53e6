"""``rldk fleet``: one table of all runs, each analysed on its own.

Exit codes: 0 no run has a problem, 1 failure, 2 usage error (``--engine ray``
without Ray installed), 3 some run has a problem, 4 no run could be checked.
"""
from __future__ import annotations

import time

import click

from rldk.cli import emit, exit_for, handle_errors, output_options


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Run the per-run tasks in this process or as Ray tasks (pip install 'rldk[ray]').")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="CPUs of the Ray instance started for this command (default: all).")
@output_options
@handle_errors
def fleet(paths, engine, workers, fmt, output):
    """One table of all runs in PATHS: status, last step, reward, KL, entropy, loss and
    each run's worst finding, every run analysed on its own by the default analyzers.

    Exits 0 when no run has a problem, 3 when one has, 4 when no run could be checked.
    """
    from rldk.fleet import fleet as run_fleet

    start = time.perf_counter()
    result = run_fleet(paths, engine=engine, workers=workers)
    report = result.report()
    emit(report, fmt, output)
    click.echo(f"{len(result.rows)} run(s) on {engine} in {time.perf_counter() - start:.1f} s", err=True)
    exit_for(report)
