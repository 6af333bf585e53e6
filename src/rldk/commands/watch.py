"""``rldk watch``: follow running jobs' stores and show problems as they appear.

Exit codes: 0 (stopped by Ctrl-C or ``--duration``, or ``--once`` done), 3 a
finding at the ``--fail-on`` severity, 2 usage error.
"""
from __future__ import annotations

import sys

import click

from rldk.cli import emit, handle_errors, output_options
from rldk.core.errors import EXIT_PROBLEMS, UsageError


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--once", is_flag=True, help="Read everything, print the current state and exit (cron, CI).")
@click.option("--fail-on", type=click.Choice(["warning", "error"]), default=None,
              help="Exit 3 at the first finding of this severity or worse.")
@click.option("--webhook", metavar="URL", help="POST each new finding as JSON to this URL.")
@click.option("--json", "as_json", is_flag=True, help="Print findings as JSON lines (one per finding).")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between polls of the store.")
@click.option("--stall-after", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="Show a run with no new event for this many seconds (and no end event) as stalled.")
@click.option("--inotify", is_flag=True,
              help="Also wake on local file events (Linux); polling still runs, for network filesystems.")
@click.option("--duration", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds (default: until Ctrl-C).")
@click.option("--adapter", default=None, help="Converter format of foreign logs (trl, jsonl, tensorboard...).")
@output_options
@handle_errors
def watch(paths, once, fail_on, webhook, as_json, interval, stall_after, inotify, duration, adapter,
          fmt, output):
    """Follow the stores (or growing logs of another tool) in PATHS while jobs write them.

    Each committed segment is read once; runs that changed are re-analysed with the
    analyzers of `rldk analyze` (throttled), so a finding shows the same code and
    onset step. One line per run: state (running, stalled, complete...), step, key
    metrics with sparklines; findings below as they appear. --once prints the state
    through --format and exits; --json streams findings as JSON lines.
    """
    from rldk.live.monitor import Monitor

    if webhook and not webhook.startswith(("http://", "https://")):
        raise UsageError(f"--webhook {webhook}: give an http:// or https:// URL")
    # Following, the analyzers run in a child process that ends when runs go quiet,
    # so the watcher stays small; --once is short-lived and evaluates in-process.
    with Monitor(paths, adapter=adapter, min_interval=interval, stall_after=stall_after,
                 isolate=not once) as monitor:
        sink = _Sink(monitor, webhook, as_json, fail_on)
        if once:
            sink.handle(monitor.poll(force=True), announce=as_json)
            if not as_json:
                emit(_report(monitor), fmt, output)
            sink.finish()
            return
        _follow(monitor, sink, interval, inotify, duration)


def _follow(monitor, sink, interval, inotify, duration) -> None:
    from rich.console import Console
    from rich.live import Live

    from rldk.live.follow import follow
    from rldk.live.render import rich_view

    console = Console()
    live = console.is_terminal and not sink.as_json
    view = Live(rich_view(monitor, sink.recent), console=console, auto_refresh=False) if live else None
    try:
        if view is not None:
            view.start()
        for poll in follow(monitor, interval, inotify, duration):
            sink.handle(poll, announce=not live)
            if view is not None:
                view.update(rich_view(monitor, sink.recent), refresh=True)
            sink.finish()
    except KeyboardInterrupt:
        pass
    finally:
        if view is not None:
            view.stop()


def _report(monitor):
    from rldk.live.render import report

    return report(monitor)


class _Sink:
    """Where new findings go: stdout (plain or JSON lines), the webhook, the exit code."""

    def __init__(self, monitor, webhook, as_json, fail_on):
        self.monitor, self.webhook, self.as_json, self.fail_on = monitor, webhook, as_json, fail_on
        self.recent: list = []
        self.failing = None
        self._warned: set = set()

    def handle(self, poll, announce: bool) -> None:
        from rldk.live.render import json_line, post

        for message in poll.warnings:
            self._warn(message)
        for run_id in sorted(poll.removed):
            self._warn(f"run {run_id}: its files are gone (deleted)")
        for f in poll.findings:
            self.recent.append(f)
            if announce:
                click.echo(json_line(f) if self.as_json else
                           f"{f.severity}: {f.run_id}: step {f.onset}: {f.title} [{f.code}]")
            if self.webhook:
                failed = post(self.webhook, f)
                if failed:
                    self._warn(failed)
            if self.failing is None and self.fail_on and f.at_least(self.fail_on):
                self.failing = f

    def finish(self) -> None:
        """Exit 3 once a finding reached --fail-on."""
        if self.failing is not None:
            f = self.failing
            click.echo(f"Failing: {f.run_id}: {f.severity} {f.code} from step {f.onset} "
                       f"(--fail-on {self.fail_on})", err=True)
            sys.exit(EXIT_PROBLEMS)

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            click.echo(f"Warning: {message}", err=True)
