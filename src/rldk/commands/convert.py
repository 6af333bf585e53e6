"""``rldk import FORMAT PATH``: convert other tools' logs into an event store."""
from __future__ import annotations

import click

from rldk.cli import handle_errors, open_output, output_options, skip_pandas_probe

_LARGE_BYTES = 16 << 20        # show a progress display above this much input


@click.command("import")
@click.argument("format_name", metavar="FORMAT")
@click.argument("path", type=click.Path(exists=True))
@click.option("--run-id", default=None, help="Run id (a prefix when PATH holds several runs).")
@click.option("--strict", is_flag=True, help="Fail on any skipped line or record instead of reporting it.")
@click.option("--field-map", default=None, help="jsonl/csv: rename fields, e.g. step=global_step,reward=reward_scalar")
@click.option("--no-crc", is_flag=True, help="tensorboard/openrlhf: skip CRC32C verification.")
@output_options(out_dir="rldk_runs", out_dir_help="Event store directory to write the runs into.")
@handle_errors
def import_cmd(format_name, path, run_id, strict, field_map, no_crc, fmt, output, out_dir):
    """Import the logs at PATH into the event store --out-dir.

    FORMAT: auto, trl, trl_completions, mlflow, trackio, sb3, verl, hf_console, wandb, openrlhf, tensorboard, scalars_json, jsonl, csv.
    Skipped lines or records are reported (file and line/record); --strict makes
    them an error. Ends with a summary: rows, metrics, steps, skips per run.
    """
    from rldk.converters import convert_path, detect_format, module

    skip_pandas_probe()
    chosen = detect_format(path) if format_name == "auto" else format_name
    module(chosen)
    options = {}
    if field_map:
        options["field_map"] = field_map
    if no_crc:
        options["verify_crc"] = False
    with _progress(path, chosen) as progress:
        summary = convert_path(path, chosen, out_dir, run_id, strict=strict, progress=progress, **options)
    with open_output(output) as stream:
        _render(summary, fmt, stream, detected=format_name == "auto")


def _progress(path, fmt):
    """A rich display on stderr for large inputs when stderr is a terminal (a no-op
    context otherwise: a log file or a pipe gets no progress, and rich is not imported)."""
    import contextlib
    import sys
    from pathlib import Path

    if not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    p = Path(path)
    size = p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    if size < _LARGE_BYTES:
        return contextlib.nullcontext(None)
    return _RichProgress(f"importing {p.name} as {fmt} ({size / 1e6:.1f} MB)")


class _RichProgress:
    def __init__(self, label: str):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed} runs"), TimeElapsedColumn(),
                                 console=Console(stderr=True), transient=True)
        self.label = label

    def __enter__(self):
        self.progress.__enter__()
        self.task = self.progress.add_task(self.label, total=None)
        return self

    def __call__(self, run) -> None:
        self.progress.advance(self.task)

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)


def _render(summary, fmt: str, stream, detected: bool) -> None:
    from rldk.core.render import render_rows, to_json

    if fmt == "json":
        stream.write(to_json(summary.to_dict()) + "\n")
        return
    rows = [{"run_id": r.run_id, "rows": r.rows, "metrics": len(r.metrics), "steps": r.steps,
             "first_step": r.first_step, "last_step": r.last_step, "samples": r.samples,
             "skipped": len(r.skipped)} for r in summary.runs]
    how = f"(detected as {summary.format})" if detected else f"as {summary.format}"
    n_runs, skipped = len(summary.runs), summary.skipped
    click.echo(f"imported {summary.source} {how} into {summary.store}: {n_runs} run{'s' * (n_runs != 1)}, "
               f"{summary.rows} event{'s' * (summary.rows != 1)}, {len(skipped)} skipped", file=stream)
    render_rows(rows, fmt, stream=stream)
    if fmt in ("table", "markdown"):
        for skip in skipped[:10]:
            click.echo(f"skipped {skip}", file=stream)
        if len(skipped) > 10:
            click.echo(f"... and {len(skipped) - 10} more skipped (see --format json)", file=stream)
        click.echo(f"Next: rldk runs {summary.store}", file=stream)
