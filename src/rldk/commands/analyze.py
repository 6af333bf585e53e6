"""Analysis commands: ``rldk analyze`` (every applicable analyzer) and ``rldk diff``.

Exit codes: 0 clean, 1 failure (unreadable store, no events to analyze), 2 usage
error, 3 (``EXIT_PROBLEMS``) the analysis ran and found problems / a divergence.
"""
from __future__ import annotations

import sys

import click

from rldk.cli import handle_errors
from rldk.core.errors import EXIT_FAILURE, EXIT_PROBLEMS


def _split(text):
    return tuple(s.strip() for s in text.split(",") if s.strip()) if text else None


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--baseline", metavar="RUN", help="Compare every other run with this one (drift card).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="rldk_reports",
              show_default=True, help="Directory for the cards (JSON, Markdown, PNG).")
@click.option("--no-plots", is_flag=True, help="Write no PNG plots.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Also write one self-contained HTML report (as `rldk report`).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Terminal summary as a rich table or as JSON.")
@handle_errors
def analyze(paths, baseline, out_dir, no_plots, html_path, fmt):
    """Run every analyzer whose events are present; write cards into --out.

    PATHS: event stores, or logs of another tool (imported first, as `rldk import`).
    Exits 0 when nothing is wrong, 3 when problems were found, 1 when an analyzer
    failed or there was nothing to analyze.
    """
    from rich.progress import Progress

    from rldk.analyzers.suite import analyze as run_all

    with Progress(transient=True, disable=not sys.stderr.isatty(), console=None) as bar:
        task = bar.add_task("analyzing", total=None)

        def on_analyzer(name, index, total):
            bar.update(task, description=f"analyzer {name}", completed=index, total=total)

        result = run_all(paths, baseline=baseline, out_dir=out_dir, plots=not no_plots,
                         on_analyzer=on_analyzer)
    if html_path:
        from rldk.core.html import write_html
        from rldk.data import open_input

        write_html(open_input(paths), result.reports, html_path,
                   title=f"rldk report: {', '.join(result.runs)}")
    if fmt == "json":
        from rldk.core.render import to_json

        click.echo(to_json(result.to_dict()))
    else:
        from rich.console import Console

        Console(width=None if sys.stdout.isatty() else 160).print(result.rich_summary())
    for outcome in result.errors:
        click.echo(f"Error: {outcome.analyzer}: {outcome.summary}", err=True)
    if result.errors:
        sys.exit(EXIT_FAILURE)
    if result.problems:
        sys.exit(EXIT_PROBLEMS)
