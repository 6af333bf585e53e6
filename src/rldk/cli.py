"""The ``rldk`` command line: parse, call one library function, render, map errors.

Commands live in ``rldk.commands.*`` and are imported only when invoked, so
``rldk --help`` starts fast. Exit codes: 0 clean, 1 failure, 2 usage error,
3 the analysis ran and found problems (for CI gates).
"""
from __future__ import annotations

import functools
import importlib
import sys

import click

from rldk import __version__
from rldk.core.errors import EXIT_FAILURE, EXIT_USAGE, RldkError

#: command name -> "module:attribute"; the one explicit registry of commands.
COMMANDS = {
    "demo": "rldk.commands.store:demo",
    "runs": "rldk.commands.store:runs",
    "sql": "rldk.commands.store:sql",
    "compact": "rldk.commands.store:compact",
    "import": "rldk.commands.convert:import_cmd",
    "analyze": "rldk.commands.analyze:analyze",
    "diff": "rldk.commands.analyze:diff",
    "check-determinism": "rldk.commands.determinism:check_determinism",
    "checkpoint": "rldk.commands.determinism:checkpoint",
    "reward-health": "rldk.commands.evaluation:reward_health",
    "eval": "rldk.commands.evaluation:eval_group",
    "safety": "rldk.commands.evaluation:safety",
    "profile": "rldk.commands.profiling:profile",
    "bisect": "rldk.commands.profiling:bisect",
    "lineage": "rldk.commands.lineage:lineage",
    "report": "rldk.commands.report:report",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx):
        return sorted(name for name in COMMANDS if self._load(name) is not None)

    def get_command(self, ctx, name):
        return self._load(name)

    @staticmethod
    def _load(name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            if exc.name and exc.name.startswith("rldk.commands"):
                return None              # a command whose module is not part of this build
            raise


def output_options(func):
    """``--format table|json|csv|markdown`` and ``--output PATH`` for a command."""
    from rldk.core.render import FORMATS

    @click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
                  help="How to print the result.")
    @click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
                  help="Write the result to this file instead of stdout.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def handle_errors(func):
    """Map library errors to one line on stderr and their exit code: never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except RldkError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            click.echo(f"Error: {exc.strerror}: {exc.filename}", err=True)
            sys.exit(EXIT_FAILURE)
        except ValueError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EXIT_USAGE)

    return wrapper


def open_output(path):
    """A text stream for ``--output`` (stdout when None)."""
    return open(path, "w", encoding="utf-8") if path else sys.stdout


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rldk")
def main():
    """rldk: find where and why an RL training run went wrong.

    Runs write typed events with rldk.writer (or are imported with `rldk import`);
    every command here reads that event store offline.
    """


if __name__ == "__main__":
    main()
