"""``rldk analyze``: every applicable analyzer over a store, one card each.

Exit codes: 0 clean, 1 failure (unreadable store, no events to analyze, an analyzer
failed), 2 usage error, 3 problems found, 4 inconclusive (no check that finds
training problems could run: the summary lists what to log).
"""
from __future__ import annotations

import sys

import click

from rldk.cli import emit, exit_for, handle_errors, output_options
from rldk.core.errors import EXIT_FAILURE


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--baseline", metavar="RUN", help="Compare every other run with this one (drift card).")
@click.option("--no-plots", is_flag=True, help="Write no PNG plots.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: analyze each run as a Ray task (pip install 'rldk[ray]'); same cards.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="CPUs of the Ray instance started for --engine ray (default: all).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Also write one self-contained HTML report (as `rldk report`).")
@output_options(out_dir="rldk_reports",
                out_dir_help="Write the cards (JSON, Markdown, PNG plots) and index.json/index.md here.")
@handle_errors
def analyze(paths, baseline, no_plots, engine, workers, html_path, fmt, output, out_dir):
    """Run every analyzer whose events are present; write their cards into --out-dir
    (default rldk_reports) with index.json / index.md.

    PATHS: event stores, or logs of another tool (imported first, as `rldk import`).
    Exits 0 when nothing is wrong, 3 when problems were found, 4 when nothing could
    be checked (inconclusive), 1 when an analyzer failed or there was nothing to analyze.
    """
    from rich.progress import Progress

    from rldk.analyzers.suite import analyze as run_all

    fan_out = None
    if engine == "ray":
        from rldk.fleet import Engine
        from rldk.fleet.engines import import_ray

        import_ray()                             # before any work: a clear error without Ray
        fan_out = Engine("ray", workers)

    with Progress(transient=True, disable=not sys.stderr.isatty(), console=None) as bar:
        task = bar.add_task("analyzing", total=None)

        def on_analyzer(name, index, total):
            bar.update(task, description=f"analyzer {name}", completed=index, total=total)

        result = run_all(paths, baseline=baseline, out_dir=out_dir, plots=not no_plots,
                         on_analyzer=on_analyzer, engine=fan_out)
    if html_path:
        from rldk.core.html import write_html
        from rldk.data import open_input

        write_html(open_input(paths), result.reports, html_path,
                   title=f"rldk report: {', '.join(result.runs)}")
    report = result.report()
    emit(report, fmt, output)
    click.echo(f"cards: {out_dir}/index.md  json: {out_dir}/index.json", err=True)
    for outcome in result.errors:
        click.echo(f"Error: {outcome.analyzer}: {outcome.summary}", err=True)
    if result.errors:
        sys.exit(EXIT_FAILURE)
    exit_for(report)
