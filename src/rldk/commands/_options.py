"""Options shared by the commands that run a user's training command."""
from __future__ import annotations

import click

_FORMATS = ("table", "json", "markdown")


def run_options(func):
    """The options of commands that run a training command given after ``--``: COMMAND,
    ``--shell``, ``--timeout``, ``--signals``, ``--workdir``. Output options come from
    :func:`rldk.cli.output_options`."""
    func = click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)(func)
    func = click.option("--shell", is_flag=True,
                        help="Run COMMAND with /bin/sh -c (default: exec the argv directly).")(func)
    func = click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                        help="Kill a run (and its children) after this many seconds.")(func)
    func = click.option("--signals", default=None,
                        help="Comma-separated metrics to compare, canonical (reward_mean, kl) or as "
                             "logged (default: every shared metric except clock/throughput/memory "
                             "ones).")(func)
    return click.option("--workdir", type=click.Path(file_okay=False), default=None,
                        help="Where the runs' stores and logs go (default: a new temp directory).")(func)


def command_args(func):
    """``run_options`` plus the older ``--out DIR`` / ``--format`` pair, for commands not yet
    moved to :func:`rldk.cli.output_options` (``rldk checkpoint resume-check``)."""
    func = run_options(func)
    func = click.option("--out", "out_dir", type=click.Path(file_okay=False), default="rldk_reports",
                        show_default=True, help="Directory for the JSON and Markdown card.")(func)
    return click.option("--format", "fmt", type=click.Choice(_FORMATS), default="table",
                        show_default=True, help="How to print the result.")(func)


def split_signals(text):
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def emit_card(result, fmt: str, out_dir: str) -> None:
    """Write the card to ``out_dir``, print it, exit 3 when it found problems (the older
    output path of ``command_args`` commands)."""
    import sys

    from rldk.core.errors import EXIT_PROBLEMS
    from rldk.core.render import to_json
    from rldk.core.report import rich_view, to_markdown, write_report

    report = result.report()
    paths = write_report(report, out_dir)
    if fmt == "json":
        click.echo(to_json(report.to_dict()))
    elif fmt == "markdown":
        click.echo(to_markdown(report))
    else:
        from rich.console import Console

        Console().print(rich_view(report))
        click.echo(f"card: {paths['markdown']}  json: {paths['json']}")
    if report.status == "problems":
        sys.exit(EXIT_PROBLEMS)
