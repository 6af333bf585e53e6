"""``rldk profile``: time by phase, step-time regressions, throughput and memory leaks."""
from __future__ import annotations

import re

import click

from rldk.cli import emit, exit_for, handle_errors, output_options
from rldk.core.errors import UsageError

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
@output_options(out_dir=True, out_dir_help="Write the cards (profile/memory_leak .json/.md) and their plots here.")
@handle_errors
def profile(paths, run_id, warmup_steps, min_ratio, model_params, peak_flops, num_devices, tokens_per_step,
            samples_per_step, memory_warmup, device_memory, host_memory, fmt, output, out_dir):
    """Where the step time of the runs in PATHS goes, when steps got slower, throughput and
    MFU, and whether memory leaks. PATHS are event stores or trainer logs (converted).

    Reads span events (rldk.writer.span), timing metrics (step_time, timing_s/*, perf/*)
    and memory events (rldk.writer.log_memory). Exits 3 when a regression or a leak is
    found, 4 when nothing could be judged, 1 when the runs have neither timings nor
    memory readings."""
    from rldk.analyzers import memory_leak
    from rldk.analyzers import profile as prof
    from rldk.data import open_input

    params = prof.Params(run_id=run_id, warmup_steps=warmup_steps, min_ratio=min_ratio,
                         model_params=model_params, peak_flops=peak_flops, num_devices=num_devices,
                         tokens_per_step=tokens_per_step, samples_per_step=samples_per_step)
    mem = memory_leak.Params(run_id=run_id, warmup_steps=memory_warmup,
                             device_limit_bytes=parse_size(device_memory, "--device-memory"),
                             host_limit_bytes=parse_size(host_memory, "--host-memory"))
    result = prof.compute_profile(open_input(paths), params, mem)
    for line in result.missing:
        click.echo(f"note: {line}", err=True)
    if out_dir:
        for analyzer, part in result.parts():          # each part keeps its own card
            emit_card(analyzer, part, out_dir)
    report = result.report()
    emit(report, fmt, output)
    exit_for(report)


def emit_card(analyzer, result, out_dir) -> None:
    """Write ``result``'s card and plots into ``out_dir`` (as ``rldk analyze`` does)."""
    from rldk.analyzers.suite import plots_or_note
    from rldk.core.report import write_report

    written = write_report(result.report(), out_dir, plots_or_note(analyzer, result, out_dir))
    click.echo(f"card: {written['markdown']}", err=True)
