"""Store commands: demo, runs, sql, compact."""
from __future__ import annotations

import sys

import click

from rldk.cli import handle_errors, open_output, output_options
from rldk.core.render import (
    RUN_COLUMNS,
    console,
    markdown_table,
    record_tables,
    render_rows,
    rich_table,
    rows_of,
    run_rows,
)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False), default="rldk_demo")
@click.option("--steps", default=300, show_default=True, help="Training steps per run.")
@handle_errors
def demo(directory, steps):
    """Train two tiny bandit policies into DIRECTORY, one with a learning-rate bug
    injected half-way, list them, and find the bug with the drift card.

    Exits 0 when rldk finds the divergence at the injected step (the demo worked).
    """
    import glob
    import os

    from rldk.analyzers.divergence import first_divergence
    from rldk.core.errors import RldkError
    from rldk.core.report import rich_view
    from rldk.core.store import open_store
    from rldk.examples.bandit import train_bandit
    from rldk.writer import EventWriter

    spike_at = steps // 2
    for old in glob.glob(os.path.join(glob.escape(directory), "bandit-*.r0.*.parquet")):
        os.unlink(old)                      # a previous demo's runs: start them afresh
    for run_id, spike in (("bandit-clean", None), ("bandit-lr-spike", spike_at)):
        with EventWriter(directory, run_id, config={"seed": 0, "lr_spike_at": spike},
                         capture_env=False) as writer:
            train_bandit(writer, steps=steps, seed=0, lr_spike_at=spike)
    store = open_store(directory)
    console(sys.stdout).print(rich_table(RUN_COLUMNS, run_rows(store.summary_rows()),
                                         title=f"runs in {directory}"))
    found = first_divergence("bandit-clean", "bandit-lr-spike", store=store)
    console(sys.stdout).print(rich_view(found.report()))
    click.echo(f"Injected: learning rate x50 from step {spike_at}. Found: "
               f"{'divergence at step ' + str(found.step) if found.diverged else 'no divergence'}.")
    click.echo(f"Next: rldk report {directory} -o report.html   |   "
               f"rldk sql \"SELECT name, avg(value) FROM metrics GROUP BY 1\" {directory}")
    if not (found.diverged and found.step == spike_at):
        raise RldkError(f"the demo's injected bug at step {spike_at} was not found where expected")


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--wide", is_flag=True,
              help="Every column in the table and markdown views (as json and csv always have).")
@output_options
@handle_errors
def runs(paths, wide, fmt, output):
    """List the runs in PATHS: id, status, step range, metric count, wall time.

    --wide, --format json and --format csv add ranks, step count, event kinds, metric
    names, start, last event, events and the evidence for the status.
    """
    from rldk.data import open_input

    summary = open_input(paths).summary_rows()            # rows as dicts: no Polars for a writer's files
    with open_output(output) as stream:
        if fmt == "table" and wide:
            console(stream).print(record_tables(*rows_of(summary)))
        elif wide or fmt not in ("table", "markdown"):
            render_rows(summary, fmt, title="runs", stream=stream, wide=True)
        elif fmt == "markdown":
            stream.write(markdown_table(RUN_COLUMNS, run_rows(summary)))
        else:
            console(stream).print(rich_table(RUN_COLUMNS, run_rows(summary), title=f"{len(summary)} run(s)",
                                             caption="every column: --wide or --format json|csv"))


@click.command()
@click.argument("query")
@click.argument("paths", nargs=-1, required=True)
@output_options
@handle_errors
def sql(query, paths, fmt, output):
    """Run QUERY (DuckDB SQL) over the event store in PATHS.

    Views: events, metrics, rng, tensors, memory, spans, samples, checkpoints,
    datasets, run_events, writer_events, runs.
    """
    import duckdb

    from rldk.core.errors import UsageError
    from rldk.data import open_input

    store = open_input(paths)
    try:
        result = store.sql(query)
    except duckdb.Error as exc:
        raise UsageError(f"query failed: {str(exc).splitlines()[0]}") from None
    with open_output(output) as stream:
        render_rows(result, fmt, stream=stream)


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Also merge runs that have no end event.")
@output_options
@handle_errors
def compact(paths, force, fmt, output):
    """Merge each finished run's segment files into one file."""
    from rldk.core.compaction import compact as compact_runs

    report = compact_runs(paths, force=force)
    with open_output(output) as stream:
        render_rows(report, fmt, title="compaction", stream=stream)
