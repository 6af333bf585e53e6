"""``rldk analyze``: every applicable analyzer over a store, one card each.

PNG plots are opt-in (``--plots``): drawing them imports matplotlib, which costs
more than analyzing a small store. ``--no-plots`` (the default) is still accepted.

Exit codes: 0 clean, 1 failure (unreadable store, no events to analyze, an analyzer
failed), 2 usage error, 3 problems found (``--fail-on error``: only when one of them is
an error; warnings are still printed and written into the cards), 4 inconclusive (no
check that finds training problems could run: the summary lists what to log).
"""
from __future__ import annotations

import contextlib
import os
import sys

import click

from rldk.cli import emit, exit_for, handle_errors, output_options, skip_pandas_probe
from rldk.core.errors import EXIT_FAILURE
from rldk.core.report import SEVERITIES


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--baseline", metavar="RUN", help="Compare every other run with this one (drift card).")
@click.option("--plots/--no-plots", default=False, show_default=True,
              help="Also draw PNG plots into the cards (imports matplotlib: slower).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: analyze each run as a Ray task (pip install 'rldk[ray]'); same cards.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="CPUs of the Ray instance started for --engine ray (default: all).")
@click.option("--fail-on", type=click.Choice(["warning", "error"]), default="warning", show_default=True,
              help="Exit 3 when a finding of this severity or worse was found (error: a CI gate that "
                   "fails on errors only; warnings are still reported).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Also write one self-contained HTML report (as `rldk report`).")
@output_options(out_dir="rldk_reports",
                out_dir_help="Write the cards (JSON, Markdown, PNG plots) and index.json/index.md here.")
@handle_errors
def analyze(paths, baseline, plots, engine, workers, fail_on, html_path, fmt, output, out_dir):
    """Run every analyzer whose events are present; write their cards into --out-dir
    (default rldk_reports) with index.json / index.md.

    PATHS: event stores, or logs of another tool (imported first, as `rldk import`).
    Exits 0 when nothing is wrong, 3 when problems were found (with --fail-on error:
    when an error was found), 4 when nothing could be checked (inconclusive), 1 when an
    analyzer failed or there was nothing to analyze.
    """
    with _one_blas_thread():
        if engine == "local":
            _open_database_meanwhile()
        from rldk.analyzers.suite import analyze as run_all
    from rldk.data import open_input

    fan_out = None
    if engine == "ray":
        from rldk.fleet import Engine
        from rldk.fleet.engines import import_ray

        import_ray()                             # before any work: a clear error without Ray
        fan_out = Engine("ray", workers)
    skip_pandas_probe()                              # foreign logs are converted first
    store = open_input(paths)                        # once, for the analysis and any HTML
    with _progress() as on_analyzer:
        result = run_all(paths, baseline=baseline, out_dir=out_dir, plots=plots, on_analyzer=on_analyzer,
                         store=store, engine=fan_out)
    if html_path:
        from rldk.core.html import write_html

        write_html(store, result.reports, html_path, title=f"rldk report: {', '.join(result.runs)}")
    report = result.report()
    emit(report, fmt, output)
    click.echo(f"cards: {out_dir}/index.md  json: {out_dir}/index.json", err=True)
    for outcome in result.errors:
        click.echo(f"Error: {outcome.analyzer}: {outcome.summary}", err=True)
    if result.errors:
        sys.exit(EXIT_FAILURE)
    gate = SEVERITIES.index(fail_on)
    if report.status == "problems" and all(SEVERITIES.index(f.severity) < gate for f in report.findings):
        click.echo(f"{len(report.findings)} warning(s), no {fail_on}: exit 0 (--fail-on {fail_on})", err=True)
        return
    exit_for(report)


@contextlib.contextmanager
def _one_blas_thread():
    """NumPy imported with one OpenBLAS thread. OpenBLAS starts a thread per core when it
    loads, which spin for a while: 60 ms of CPU, taken from DuckDB's start on a small
    machine, for analyzers that do no large linear algebra. The variable is unset once
    NumPy is imported, so programs started from this process see the user's environment;
    a user's own OPENBLAS_NUM_THREADS or OMP_NUM_THREADS is kept."""
    if "numpy" in sys.modules or {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"} & set(os.environ):
        yield
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        os.environ.pop("OPENBLAS_NUM_THREADS", None)


def _open_database_meanwhile() -> None:
    """Import DuckDB and open the analyzers' database on another thread while this one
    imports the analyzers and reads the footers (0.15 s that the catalog scan would
    otherwise wait for)."""
    import threading

    def load():
        try:
            import duckdb  # noqa: F401  (first: the analyzers' modules are not needed for it)

            from rldk.analyzers import _series

            _series.database()
        except ImportError:                      # whoever needs it says so
            pass

    threading.Thread(target=load, daemon=True).start()


def _progress():
    """A context giving ``on_analyzer(name, index, total)``: a transient progress bar on a
    terminal, nothing (and no rich import) when stderr is a pipe or a file."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    return _bar()


@contextlib.contextmanager
def _bar():
    from rich.progress import Progress

    with Progress(transient=True, console=None) as bar:
        task = bar.add_task("analyzing", total=None)

        def on_analyzer(name, index, total):
            bar.update(task, description=f"analyzer {name}", completed=index, total=total)

        yield on_analyzer
