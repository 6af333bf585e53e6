"""Determinism commands: ``check-determinism`` and the ``checkpoint`` group."""
from __future__ import annotations

import click

from rldk.cli import handle_errors, open_output

_FORMATS = ("table", "json", "markdown")


def _command_args(func):
    """The shared options of commands that run a training command after ``--``."""
    func = click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)(func)
    func = click.option("--shell", is_flag=True,
                        help="Run COMMAND with /bin/sh -c (default: exec the argv directly).")(func)
    func = click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                        help="Kill a run (and its children) after this many seconds.")(func)
    func = click.option("--signals", default=None,
                        help="Comma-separated metrics to compare (default: every shared metric "
                             "except clock/throughput/memory ones).")(func)
    func = click.option("--workdir", type=click.Path(file_okay=False), default=None,
                        help="Where the runs' stores and logs go (default: a new temp directory).")(func)
    func = click.option("--out", "out_dir", type=click.Path(file_okay=False), default="rldk_reports",
                        show_default=True, help="Directory for the JSON and Markdown card.")(func)
    return click.option("--format", "fmt", type=click.Choice(_FORMATS), default="table",
                        show_default=True, help="How to print the result.")(func)


def _signals(text):
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _emit(result, fmt: str, out_dir: str) -> None:
    """Write the card to ``out_dir``, print it, exit 3 when it found problems."""
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


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--replicas", type=click.IntRange(min=2), default=2, show_default=True,
              help="How many times to run COMMAND.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Each run must log at least this many steps (RLDK_MAX_STEPS tells it); "
                   "only those are compared.")
@_command_args
@handle_errors
def check_determinism(replicas, steps, command, shell, timeout, signals, workdir, out_dir, fmt):
    """Run COMMAND N times and show whether, where and why the runs differ.

    Each run writes its own store (RLDK_DIR, RLDK_RUN_ID are set for it); the
    runs are compared at three levels: tensor checksums, RNG digests, metrics.
    Exit 0 deterministic, 3 nondeterministic, 1 a run failed, 2 usage error.

    Example: rldk check-determinism --replicas 3 -- python train.py --seed 1
    """
    from rldk.analyzers.determinism import check_determinism as check

    result = check(list(command), _signals(signals), replicas, steps, timeout=timeout, shell=shell,
                   workdir=workdir)
    _emit(result, fmt, out_dir)


@click.group()
def checkpoint():
    """Checkpoint policy: verify saved state, check exact resume, diff checkpoints."""


@checkpoint.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--run", "run_id", default=None, help="The run to check when the store has several.")
@click.option("--deep", is_flag=True, help="Also load each checkpoint file and compare its model "
                                           "tensors with the checksums logged at save.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="rldk_reports",
              show_default=True, help="Directory for the JSON and Markdown card.")
@click.option("--format", "fmt", type=click.Choice(_FORMATS), default="table", show_default=True)
@handle_errors
def verify(paths, run_id, deep, out_dir, fmt):
    """Check that a run's checkpoints hold what an exact resume needs.

    PATHS: the run's event store. Needed parts: model, optimizer, RNG, data
    position (scheduler is reported when absent). Exit 3 when one lacks a part.
    """
    from rldk.checkpoint import verify_checkpoints

    _emit(verify_checkpoints(paths, run_id, deep), fmt, out_dir)


@checkpoint.command("resume-check", context_settings={"ignore_unknown_options": True})
@click.option("--at", "at_step", type=click.IntRange(min=0), default=None,
              help="Stop and checkpoint after this step (default: the middle of --to).")
@click.option("--to", "to_step", type=click.IntRange(min=1), default=10, show_default=True,
              help="Compare the runs up to this step (inclusive).")
@_command_args
@handle_errors
def resume_check(at_step, to_step, command, shell, timeout, signals, workdir, out_dir, fmt):
    """Check that COMMAND resumed from a checkpoint continues exactly.

    Runs COMMAND to --to uninterrupted; then to --at, where it must save a
    checkpoint; then resumes it from that checkpoint to --to. COMMAND follows
    RLDK_STOP_AT, RLDK_CHECKPOINT_DIR and RLDK_RESUME_FROM (see docs/determinism.md).
    Exit 0 exact resume, 3 the resumed run departs, 1 a run failed.
    """
    from rldk.checkpoint import resume_check as check

    at = at_step if at_step is not None else to_step // 2
    result = check(list(command), at=at, to=to_step, signals=_signals(signals), timeout=timeout,
                   shell=shell, workdir=workdir)
    _emit(result, fmt, out_dir)


@checkpoint.command()
@click.argument("a", type=click.Path(exists=True))
@click.argument("b", type=click.Path(exists=True))
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many top movers to list.")
@click.option("--prefix", default=None, help="Only tensors whose dotted name starts with this "
                                            "(e.g. model. or optimizer.state).")
@click.option("--format", "fmt", type=click.Choice(("table", "json", "csv", "markdown")), default="table",
              show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the result to this file instead of stdout.")
@handle_errors
def diff(a, b, top, prefix, fmt, output):
    """Compare checkpoints A and B tensor by tensor: L2, cosine, top movers.

    A and B: torch.save files (loaded with weights_only=True), .safetensors files,
    or checkpoint directories (model.safetensors, pytorch_model.bin, shards).
    Tables list the top movers (largest ||B - A|| / ||A||); json has every tensor.
    """
    from rldk.checkpoint import DIFF_COLUMNS, diff_checkpoints
    from rldk.core.render import render_rows, to_json

    result = diff_checkpoints(a, b, top, prefix)
    with open_output(output) as stream:
        if fmt == "json":
            stream.write(to_json(result.to_dict()) + "\n")
            return
        rows = [dict(zip(DIFF_COLUMNS, t.row())) for t in result.top]
        if rows:
            render_rows(rows, fmt, title="top movers", stream=stream)
        if fmt == "table":
            stream.write(result.report().summary + _only(result) + "\n")


def _only(result) -> str:
    out = ""
    for label, names in (("only in A", result.only_a), ("only in B", result.only_b),
                         ("shape differs", result.shape_mismatch)):
        if names:
            out += f" {len(names)} tensor(s) {label}: {', '.join(names[:5])}."
    return out
