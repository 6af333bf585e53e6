"""``rldk diff``: the first step where two runs stop agreeing."""
from __future__ import annotations

import sys

import click

from rldk.cli import handle_errors, open_output, output_options
from rldk.core.errors import EXIT_PROBLEMS


def _split(text):
    return tuple(s.strip() for s in text.split(",") if s.strip()) if text else None


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--a", "run_a", metavar="RUN", help="Run id of side A (PATHS are then one store).")
@click.option("--b", "run_b", metavar="RUN", help="Run id of side B.")
@click.option("--signals", metavar="NAMES", help="Comma-separated metrics (default: all both log).")
@click.option("--replicas-a", multiple=True, metavar="RUN",
              help="Another run of A's configuration (repeat); gives the noise band.")
@click.option("--replicas-b", multiple=True, metavar="RUN", help="Another run of B's configuration.")
@click.option("--mode", type=click.Choice(["auto", "exact", "statistical"]), default="auto",
              show_default=True, help="Which level of evidence gives the verdict.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Also write the drift card (JSON, Markdown, PNG) into this directory.")
@output_options
@handle_errors
def diff(paths, run_a, run_b, signals, replicas_a, replicas_b, mode, out_dir, fmt, output):
    """Find the first step where two runs stop agreeing.

    PATHS: two paths holding one run each, or a store holding exactly two runs
    (A is the run of the first path), or any store with --a RUN --b RUN.
    Exits 0 when the runs agree, 3 when they diverge.
    """
    from rldk.analyzers.divergence import diff as run_diff

    result = run_diff(paths, run_a, run_b, _split(signals), replicas_a, replicas_b, mode=mode)
    report = result.report()
    if out_dir:
        _write_card(result, report, out_dir)
    with open_output(output) as stream:
        _render(report, result, fmt, stream)
    if result.diverged:
        sys.exit(EXIT_PROBLEMS)


def _write_card(result, report, out_dir):
    from rldk.analyzers import get
    from rldk.analyzers.suite import plots_or_note
    from rldk.core.report import write_report

    write_report(report, out_dir, plots_or_note(get("divergence"), result, out_dir))


def _render(report, result, fmt, stream):
    from rldk.core.render import render_rows, to_json
    from rldk.core.report import rich_view, to_markdown

    if fmt == "json":
        stream.write(to_json(report.to_dict()) + "\n")
    elif fmt == "markdown":
        stream.write(to_markdown(report))
    elif fmt == "csv":
        table = report.tables[0]
        render_rows([dict(zip(table.columns, r)) for r in table.rows], "csv", stream=stream)
    else:
        from rich.console import Console

        console = Console(file=stream, width=None if stream.isatty() else 160)
        console.print(rich_view(report))
        table = report.tables[0]
        render_rows([dict(zip(table.columns, r)) for r in table.rows], "table",
                    title=table.name, stream=stream)
