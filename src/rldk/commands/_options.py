"""Options shared by the commands that run a user's training command."""
from __future__ import annotations

import click


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


def split_signals(text):
    return [s.strip() for s in text.split(",") if s.strip()] if text else None
