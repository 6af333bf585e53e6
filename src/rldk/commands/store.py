"""Store commands: demo, runs, sql, compact."""
from __future__ import annotations

import click

from rldk.cli import handle_errors, open_output, output_options


@click.command()
@click.argument("directory", type=click.Path(file_okay=False), default="rldk_demo")
@click.option("--steps", default=300, show_default=True, help="Training steps per run.")
@handle_errors
def demo(directory, steps):
    """Train two tiny bandit policies (one with an LR bug) into DIRECTORY and list them."""
    from rldk.core.store import open_store
    from rldk.examples.bandit import train_bandit
    from rldk.writer import EventWriter

    for run_id, spike in (("bandit-clean", None), ("bandit-lr-spike", steps // 2)):
        with EventWriter(directory, run_id, config={"seed": 0, "lr_spike_at": spike},
                         capture_env=False) as writer:
            train_bandit(writer, steps=steps, seed=0, lr_spike_at=spike)
    from rldk.core.render import render_rows

    render_rows(open_store(directory).summary().select(
        "run_id", "steps", "metrics", "events", "status"), "table", title=f"runs in {directory}")
    click.echo(f"Next: rldk diff {directory} --a bandit-clean --b bandit-lr-spike   |   "
               f"rldk sql \"SELECT name, avg(value) FROM metrics GROUP BY 1\" {directory}")


@click.command()
@click.argument("paths", nargs=-1, required=True)
@output_options
@handle_errors
def runs(paths, fmt, output):
    """List the runs in PATHS: id, steps, kinds, metrics, wall time, status."""
    from rldk.core.render import render_rows
    from rldk.core.store import open_store

    summary = open_store(paths).summary()
    with open_output(output) as stream:
        render_rows(summary, fmt, title="runs", stream=stream)


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
    from rldk.core.render import render_rows
    from rldk.core.store import open_store

    store = open_store(paths)
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
    from rldk.core.render import render_rows
    from rldk.core.segments import compact as compact_runs

    report = compact_runs(paths, force=force)
    with open_output(output) as stream:
        render_rows(report, fmt, title="compaction", stream=stream)
