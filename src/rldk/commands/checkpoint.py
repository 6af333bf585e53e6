"""``rldk checkpoint``: verify saved state, check exact resume, diff checkpoints."""
from __future__ import annotations

import click

from rldk.analyzers.checkpoint import CheckpointAnalyzer, diff_checkpoints, resume_check
from rldk.cli import emit, exit_for, handle_errors, open_output, output_options
from rldk.commands._options import run_options, split_signals
from rldk.core.render import render_rows
from rldk.core.report import write_report
from rldk.data import open_input


@click.group()
def checkpoint():
    """Checkpoint policy: verify saved state, check exact resume, diff checkpoints."""


@checkpoint.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--run", "run_id", default=None, help="The run to check [every run in the store].")
@click.option("--deep", is_flag=True, help="Also load each checkpoint file and compare its model "
                                           "tensors with the checksums logged at save.")
@output_options(out_dir=True)
@handle_errors
def verify(paths, run_id, deep, fmt, output, out_dir):
    """Check that a run's checkpoints hold what an exact resume needs.

    PATHS: the run's event store. Needed parts: model, optimizer, RNG, data
    position (scheduler is reported when absent). Exit 3 when one lacks a part,
    4 when no run logged a checkpoint event (nothing was verified).
    """
    analyzer = CheckpointAnalyzer()
    result = analyzer.run(open_input(paths), analyzer.params(run_id=run_id, deep=deep))
    report = result.report()
    emit(report, fmt, output, out_dir, analyzer, result)
    exit_for(report)


@checkpoint.command("resume-check", context_settings={"ignore_unknown_options": True})
@click.option("--at", "at_step", type=click.IntRange(min=0), default=None,
              help="Stop and checkpoint after this step (default: the middle of --to).")
@click.option("--to", "to_step", type=click.IntRange(min=1), default=10, show_default=True,
              help="Compare the runs up to this step (inclusive).")
@run_options
@output_options(out_dir=True)
@handle_errors
def resume_check_cmd(at_step, to_step, command, shell, timeout, signals, workdir, fmt, output, out_dir):
    """Check that COMMAND resumed from a checkpoint continues exactly.

    Runs COMMAND to --to uninterrupted; then to --at, where it must save a
    checkpoint; then resumes it from that checkpoint to --to. COMMAND follows
    RLDK_STOP_AT, RLDK_CHECKPOINT_DIR and RLDK_RESUME_FROM (see docs/determinism.md).
    Exit 0 exact resume, 3 the resumed run departs, 1 a run failed.
    """
    at = at_step if at_step is not None else to_step // 2
    result = resume_check(list(command), at=at, to=to_step, signals=split_signals(signals), timeout=timeout,
                          shell=shell, workdir=workdir)
    report = result.report()
    emit(report, fmt, output, out_dir)
    exit_for(report)


@checkpoint.command()
@click.argument("a", type=click.Path(exists=True))
@click.argument("b", type=click.Path(exists=True))
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many top movers to list.")
@click.option("--prefix", default=None, help="Only tensors whose dotted name starts with this "
                                            "(e.g. model. or optimizer.state).")
@output_options(out_dir=True)
@handle_errors
def diff(a, b, top, prefix, fmt, output, out_dir):
    """Compare checkpoints A and B tensor by tensor: L2, cosine, top movers.

    A and B: torch.save files (loaded with weights_only=True), .safetensors files,
    or checkpoint directories (model.safetensors, pytorch_model.bin, shards).
    The card lists the top movers (largest ||B - A|| / ||A||); json has every tensor
    under details, csv is one row per tensor. Exit 3 when tensor names or shapes differ.
    """
    result = diff_checkpoints(a, b, top, prefix)
    report = result.report()
    if fmt == "csv":                  # a table of tensors, not a list of findings
        with open_output(output) as stream:
            render_rows([t.to_dict() for t in result.tensors], "csv", stream=stream)
        if out_dir:
            write_report(report, out_dir)
    else:
        emit(report, fmt, output, out_dir)
    exit_for(report)
