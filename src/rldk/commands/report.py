"""``rldk report``: every analyzer's findings and the runs' curves in one HTML file."""
from __future__ import annotations

import sys

import click

from rldk.cli import exit_for, handle_errors, skip_pandas_probe
from rldk.core.errors import EXIT_FAILURE


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False), default="rldk_report.html",
              show_default=True, help="The HTML file to write.")
@click.option("--out-dir", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Also keep the JSON/Markdown cards in this directory.")
@click.option("--baseline", metavar="RUN", help="Compare every other run with this one.")
@click.option("--max-points", default=1000, show_default=True,
              help="Curves longer than twice this are downsampled (min/max per step bucket).")
@handle_errors
def report(paths, output, out_dir, baseline, max_points):
    """Write one self-contained HTML report for the runs in PATHS.

    Opens offline in any browser: run overview, findings by severity with evidence
    and fixes, interactive curves of the runs side by side, and every card.
    Exits like `rldk analyze`: 3 when problems were found, 4 when nothing could be
    checked (inconclusive).
    """
    import tempfile

    from rldk.analyzers.suite import analyze
    from rldk.core.html import write_html
    from rldk.data import open_input

    skip_pandas_probe()                              # foreign logs are converted first
    store = open_input(paths)                        # once, for the analysis and the curves
    with tempfile.TemporaryDirectory(prefix="rldk-cards-") as scratch:
        analysis = analyze(paths, baseline=baseline, out_dir=out_dir or scratch, plots=False, store=store)
        write_html(store, analysis.reports, output, max_points=max_points,
                   title=f"rldk report: {', '.join(analysis.runs)}")
    summary = analysis.report()
    click.echo(f"wrote {output}: {len(analysis.runs)} run(s), {len(analysis.reports)} card(s), "
               f"{len(analysis.problems)} problem(s); {summary.status}")
    for outcome in analysis.errors:
        click.echo(f"Error: {outcome.analyzer}: {outcome.summary}", err=True)
    if analysis.errors:
        sys.exit(EXIT_FAILURE)
    exit_for(summary)
