"""Evaluation commands: reward-health, eval compare, safety."""
from __future__ import annotations

import sys

import click

from rldk.cli import handle_errors, open_output, output_options
from rldk.core.errors import EXIT_PROBLEMS, UsageError


def emit_report(report, fmt: str, output, stream_rows=None) -> None:
    """Render an analyzer Report: rich panel, JSON (source of truth), Markdown, or CSV findings."""
    from rldk.core.render import render_rows, to_json
    from rldk.core.report import rich_view, to_markdown

    with open_output(output) as stream:
        if fmt == "json":
            stream.write(to_json(report.to_dict()) + "\n")
        elif fmt == "markdown":
            stream.write(to_markdown(report))
        elif fmt == "csv":
            render_rows(stream_rows if stream_rows is not None else
                        [f.to_dict() for f in report.findings] or [{"code": "", "severity": "", "title": ""}],
                        "csv", stream=stream)
        else:
            from rich.console import Console

            console = Console(file=stream, width=None if stream.isatty() else 160)
            console.print(rich_view(report))
            for table in report.tables:
                render_rows([dict(zip(table.columns, row)) for row in table.rows], "table",
                            title=table.name, stream=stream)


def _exit_for(report) -> None:
    if report.status == "problems":
        sys.exit(EXIT_PROBLEMS)


# ============================================================== reward-health
@click.command("reward-health")
@click.argument("paths", nargs=-1, required=True)
@click.option("--reward-col", default=None, help="Per-step reward metric [default: first of reward, "
              "reward_mean, rewards/mean, ... that is logged].")
@click.option("--kl-col", default=None, help="KL-to-reference metric [default: kl, objective/kl, ...].")
@click.option("--gold-col", default=None, help="Gold / held-out reward metric [default: gold_reward, ...].")
@click.option("--run", "run_ids", multiple=True, help="Analyse only this run id (repeatable).")
@click.option("--against", default=None, help="Run id scoring the same (prompt, response) items: reward drift.")
@click.option("--validation", default=None, help="Run id whose samples are the validation set: leakage.")
@click.option("--kl-band", type=float, default=None, help="KL above which rising reward is suspect [1.0].")
@click.option("--bounds", type=float, nargs=2, default=None, help="The reward's clip bounds LO HI.")
@click.option("--adapter", default=None, help="Converter for non-store inputs (jsonl, csv, trl, ...).")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Write the card (reward_health.json/.md) and plots here.")
@output_options
@handle_errors
def reward_health(paths, reward_col, kl_col, gold_col, run_ids, against, validation, kl_band, bounds,
                  adapter, out_dir, fmt, output):
    """Check the reward signal of the runs in PATHS: saturation, zero-std groups, length
    hacking, component divergence, KL band, overoptimization, calibration, drift, leakage.

    Exits 3 when a warning or error is found (0 when healthy)."""
    from rldk.analyzers import reward_health as rh

    overrides = {k: v for k, v in (("kl_col", kl_col), ("gold_col", gold_col),
                                   ("against", against), ("validation", validation),
                                   ("kl_band", kl_band), ("bounds", tuple(bounds) if bounds else None))
                 if v is not None}
    store = rh.open_source(paths[0] if len(paths) == 1 else list(paths), adapter)
    params = rh.Params(reward_col=reward_col, **overrides)
    result = rh.run(store, params, out_dir, run_ids=list(run_ids) or None)
    if out_dir:
        paths_written = rh.write_card(result, out_dir)
        click.echo(f"card: {paths_written['markdown']}", err=True)
    report = result.report()
    emit_report(report, fmt, output)
    _exit_for(report)


# ======================================================================= eval
@click.group("eval")
def eval_group():
    """Trusted evaluation statistics across seeds."""


@eval_group.command("compare", context_settings={"ignore_unknown_options": True})
@click.argument("sources", nargs=-1, required=True, type=click.UNPROCESSED, metavar="A... --vs B...")
@click.option("--metric", default=None, help="Score metric [default: the run's reward metric].")
@click.option("--last", default=10, show_default=True, help="Final values averaged into a run's score.")
@click.option("--task-key", default="task", show_default=True, help="Config key naming a run's task.")
@click.option("--reps", default=2000, show_default=True, help="Bootstrap resamples.")
@click.option("--confidence", default=0.95, show_default=True, help="Interval coverage.")
@click.option("--seed", default=0, show_default=True, help="Bootstrap RNG seed.")
@click.option("--labels", nargs=2, default=("A", "B"), show_default=True, help="Names of the two sides.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write performance profiles (PNG) here.")
@output_options
@handle_errors
def compare(sources, metric, last, task_key, reps, confidence, seed, labels, plot, fmt, output):
    """Compare runs A... against runs --vs B... (stores, globs or CSV score tables).

    Each run is a seed; its score is the mean of its last --last values of --metric.
    Prints mean, median and IQM with stratified-bootstrap intervals, P(A > B),
    effect sizes, Welch's t-test and the seeds needed for 80% power."""
    from rldk.analyzers.eval_compare import compare as run_compare
    from rldk.analyzers.eval_compare import plot_profiles

    a, b = split_sides(sources)
    result = run_compare(a, b, labels=labels, metric=metric, last=last, task_key=task_key, reps=reps,
                         confidence=confidence, seed=seed)
    if plot:
        plot_profiles(result, plot)
        click.echo(f"performance profiles: {plot}", err=True)
    report = result.report()
    if fmt in ("table", "csv"):
        from rldk.core.render import render_rows

        with open_output(output) as stream:
            render_rows(result.rows(), fmt, title=report.summary, stream=stream)
            if fmt == "table":
                render_rows(list(result.per_task), fmt, title="per task", stream=stream)
                for note in result.notes:
                    stream.write(f"note: {note}\n")
    else:
        emit_report(report, fmt, output)


def split_sides(sources) -> tuple[list, list]:
    """``A... --vs B...`` into the two lists; unknown options are usage errors."""
    items = list(sources)
    for item in items:
        if item.startswith("--") and item != "--vs":
            raise UsageError(f"no such option: {item} (see rldk eval compare --help)")
    if items.count("--vs") != 1:
        raise UsageError("give the runs to compare as A... --vs B... (exactly one --vs)")
    cut = items.index("--vs")
    a, b = items[:cut], items[cut + 1:]
    if not a or not b:
        raise UsageError("both sides need at least one source: A... --vs B...")
    return a, b


# ===================================================================== safety
@click.command("safety")
@click.argument("paths", nargs=-1, required=True)
@click.option("--over-refusal-max", type=float, default=None, help="Benign refusal rate flagged above [0.2].")
@click.option("--harmful-refusal-min", type=float, default=None, help="Harmful refusal rate flagged below [0.8].")
@click.option("--min-samples", type=int, default=None, help="Fewest prompts of a kind to judge a rate [10].")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Write the card (safety.json/.md) and the refusal curve here.")
@output_options
@handle_errors
def safety(paths, over_refusal_max, harmful_refusal_min, min_samples, out_dir, fmt, output):
    """Refusal, over-refusal, harmful-content and jailbreak rates of the samples in PATHS
    (event stores, or one JSONL of {"prompt", "response"} records), with the refusal
    curve by step. Exits 3 when a problem is flagged."""
    from rldk.analyzers import safety as sf

    overrides = {k: v for k, v in (("over_refusal_max", over_refusal_max),
                                   ("harmful_refusal_min", harmful_refusal_min),
                                   ("min_samples", min_samples)) if v is not None}
    source = paths[0] if len(paths) == 1 else list(paths)
    result = sf.safety(source, **overrides)
    if out_dir:
        written = sf.write_card(result, out_dir)
        click.echo(f"card: {written['markdown']}", err=True)
    report = result.report()
    emit_report(report, fmt, output)
    _exit_for(report)
