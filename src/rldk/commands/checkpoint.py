"""``rldk checkpoint``: verify saved state, check exact resume, diff checkpoints."""
from __future__ import annotations

import click

from rldk.cli import handle_errors, open_output
from rldk.commands._options import _FORMATS, command_args, emit_card, split_signals


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

    emit_card(verify_checkpoints(paths, run_id, deep), fmt, out_dir)


@checkpoint.command("resume-check", context_settings={"ignore_unknown_options": True})
@click.option("--at", "at_step", type=click.IntRange(min=0), default=None,
              help="Stop and checkpoint after this step (default: the middle of --to).")
@click.option("--to", "to_step", type=click.IntRange(min=1), default=10, show_default=True,
              help="Compare the runs up to this step (inclusive).")
@command_args
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
    result = check(list(command), at=at, to=to_step, signals=split_signals(signals), timeout=timeout,
                   shell=shell, workdir=workdir)
    emit_card(result, fmt, out_dir)


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
