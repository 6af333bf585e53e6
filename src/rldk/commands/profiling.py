"""Profiling commands: profile (time by phase, regressions, throughput, memory leaks) and bisect."""
from __future__ import annotations

import re
import sys

import click

from rldk.cli import handle_errors, open_output, output_options
from rldk.core.errors import EXIT_PROBLEMS, UsageError

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | None, flag: str) -> float | None:
    """``'80GiB'``, ``'80GB'``, ``'8e10'`` -> bytes; None passes through."""
    if text is None:
        return None
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        raise UsageError(f"invalid {flag} {text!r}: a size such as 80GiB, 64GB or 8e10 (bytes)")
    return float(match.group(1)) * _UNITS[unit]


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--run", "run_id", default=None, help="Profile only this run id.")
@click.option("--warmup-steps", default=1, show_default=True, help="First steps left out of the regression search.")
@click.option("--min-ratio", default=1.25, show_default=True, help="Smallest step-time slowdown reported.")
@click.option("--model-params", type=float, default=None, help="Model parameter count, for MFU.")
@click.option("--peak-flops", type=float, default=None, help="Peak FLOP/s of one device, for MFU (e.g. 989e12).")
@click.option("--num-devices", type=int, default=None, help="Devices the run used [its ranks].")
@click.option("--tokens-per-step", type=float, default=None, help="Tokens per step when the run does not log them.")
@click.option("--samples-per-step", type=float, default=None, help="Samples per step when the run does not log them.")
@click.option("--memory-warmup", type=int, default=None, help="Steps ignored before memory trends [10% of steps].")
@click.option("--device-memory", default=None, help="Memory of one accelerator (e.g. 80GiB): projects the OOM step.")
@click.option("--host-memory", default=None, help="Host memory limit (e.g. 64GiB): projects the OOM step of host/rss.")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Write the cards (profile/memory_leak .json/.md) and profile.png here.")
@output_options
@handle_errors
def profile(paths, run_id, warmup_steps, min_ratio, model_params, peak_flops, num_devices, tokens_per_step,
            samples_per_step, memory_warmup, device_memory, host_memory, out_dir, fmt, output):
    """Where the step time of the runs in PATHS goes, when steps got slower, throughput and
    MFU, and whether memory leaks. PATHS are event stores or trainer logs (converted).

    Reads span events (rldk.writer.span), timing metrics (step_time, timing_s/*, perf/*)
    and memory events (rldk.writer.log_memory). Exits 3 when a regression or a leak is
    found, 1 when the runs have neither timings nor memory readings."""
    from rldk.analyzers import memory_leak
    from rldk.analyzers import profile as prof
    from rldk.data import open_input

    store = open_input(paths)
    params = prof.Params(run_id=run_id, warmup_steps=warmup_steps, min_ratio=min_ratio,
                         model_params=model_params, peak_flops=peak_flops, num_devices=num_devices,
                         tokens_per_step=tokens_per_step, samples_per_step=samples_per_step)
    mem = memory_leak.Params(run_id=run_id, warmup_steps=memory_warmup,
                             device_limit_bytes=parse_size(device_memory, "--device-memory"),
                             host_limit_bytes=parse_size(host_memory, "--host-memory"))
    result = prof.compute_profile(store, params, mem)
    for line in result.missing:
        click.echo(f"note: {line}", err=True)
    if out_dir:
        _write_cards(result, out_dir)
    _emit(result, fmt, output)
    if result.problems:
        sys.exit(EXIT_PROBLEMS)


def _write_cards(result, out_dir) -> None:
    from rldk.analyzers import memory_leak
    from rldk.analyzers import profile as prof
    from rldk.core.plots import MissingPlotting
    from rldk.core.report import write_report

    for module, part in ((prof, result.timing), (memory_leak, result.memory)):
        if part is None:
            continue
        try:
            pngs = module.plots(part, out_dir)
        except MissingPlotting as exc:
            click.echo(f"note: {exc}", err=True)
            pngs = {}
        written = write_report(part.report(), out_dir, pngs)
        click.echo(f"card: {written['markdown']}", err=True)


def _emit(result, fmt: str, output) -> None:
    from rldk.core.render import render_rows, to_json
    from rldk.core.report import rich_view, to_markdown

    reports = result.reports()
    with open_output(output) as stream:
        if fmt == "json":
            stream.write(to_json({**result.to_dict(), "reports": [r.to_dict() for r in reports]}) + "\n")
        elif fmt == "markdown":
            stream.write("\n".join(to_markdown(r) for r in reports))
        elif fmt == "csv":
            table = reports[0].tables[0]
            render_rows([dict(zip(table.columns, row)) for row in table.rows], "csv", stream=stream)
        else:
            from rich.console import Console

            console = Console(file=stream, width=None if stream.isatty() else 160)
            for report in reports:
                console.print(rich_view(report))
                for table in report.tables:
                    render_rows([dict(zip(table.columns, row)) for row in table.rows], "table",
                                title=table.name, stream=stream)
            for line in result.bottlenecks():
                stream.write(f"bottleneck: {line}\n")
