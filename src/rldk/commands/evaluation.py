"""Evaluation commands: reward-health, eval compare, safety."""
from __future__ import annotations

import click

from rldk.analyzers.eval_compare import EvalCompareAnalyzer, plot_profiles
from rldk.analyzers.reward_health import RewardHealthAnalyzer
from rldk.analyzers.safety import SafetyAnalyzer
from rldk.cli import emit, exit_for, handle_errors, output_options
from rldk.core.errors import UsageError
from rldk.data import open_input


def _source(paths):
    return paths[0] if len(paths) == 1 else list(paths)


# ============================================================== reward-health
@click.command("reward-health")
@click.argument("paths", nargs=-1, required=True)
@click.option("--reward-col", default=None, help="Per-step reward metric [default: the run's reward "
              "(reward, reward_mean, rewards/mean, ...)].")
@click.option("--kl-col", default=None, help="KL-to-reference metric [default: kl, objective/kl, "
              "actor/reward_kl_penalty, ...; never a PPO approx_kl].")
@click.option("--length-col", default=None, help="Mean response-length metric [default: "
              "completions/mean_length, response_length, ...].")
@click.option("--gold-col", default=None, help="Gold / held-out reward metric [default: gold_reward, ...].")
@click.option("--val-reward-col", default=None, help="Validation reward metric [default: eval_reward, "
              "eval/reward, ...].")
@click.option("--run", "run_ids", multiple=True, help="Analyse only this run id (repeatable).")
@click.option("--against", default=None, help="Run id scoring the same (prompt, response) items: reward drift.")
@click.option("--validation", default=None, help="Run id whose samples are the validation set: leakage.")
@click.option("--kl-band", type=float, default=None, help="KL above which rising reward is suspect [1.0].")
@click.option("--bounds", type=float, nargs=2, default=None, help="The reward's clip bounds LO HI.")
@click.option("--adapter", default=None, help="Converter for non-store inputs (jsonl, csv, trl, ...).")
@output_options(out_dir=True)
@handle_errors
def reward_health(paths, reward_col, kl_col, length_col, gold_col, val_reward_col, run_ids, against,
                  validation, kl_band, bounds, adapter, fmt, output, out_dir):
    """Check the reward signal of the runs in PATHS: saturation, zero-std groups, length
    hacking, component divergence, KL band, overoptimization, calibration, drift, leakage.

    Exits 3 when a warning or error is found, 4 when no verdict was possible (the
    checks that define reward health could not run: the card says what to log),
    0 when healthy."""
    analyzer = RewardHealthAnalyzer()
    params = analyzer.params(reward_col=reward_col, kl_col=kl_col, length_col=length_col,
                             gold_col=gold_col, val_reward_col=val_reward_col, against=against,
                             validation=validation, kl_band=kl_band,
                             bounds=tuple(bounds) if bounds else None)
    store = open_input(_source(paths), adapter)
    result = analyzer.run(store, params, out_dir=out_dir, run_ids=list(run_ids) or None)
    report = result.report()
    emit(report, fmt, output, out_dir, analyzer, result)
    exit_for(report)


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
@output_options(out_dir=True)
@handle_errors
def compare(sources, metric, last, task_key, reps, confidence, seed, labels, plot, fmt, output, out_dir):
    """Compare runs A... against runs --vs B... (stores, globs or CSV score tables).

    Each run is a seed; its score is the mean of its last --last values of --metric.
    Prints mean, median and IQM with stratified-bootstrap intervals, P(A > B),
    effect sizes, Welch's t-test and the seeds needed for 80% power. Exits 3 when
    a task is underpowered, 4 when no interval is possible (one run per task)."""
    a, b = split_sides(sources)
    analyzer = EvalCompareAnalyzer()
    params = analyzer.params(a_sources=tuple(a), b_sources=tuple(b), labels=tuple(labels), metric=metric,
                             last=last, task_key=task_key, reps=reps, confidence=confidence, seed=seed)
    result = analyzer.run(None, params)
    if plot:
        plot_profiles(result, plot)
        click.echo(f"performance profiles: {plot}", err=True)
    report = result.report()
    emit(report, fmt, output, out_dir, analyzer, result)
    exit_for(report)


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
@output_options(out_dir=True)
@handle_errors
def safety(paths, over_refusal_max, harmful_refusal_min, min_samples, fmt, output, out_dir):
    """Refusal, over-refusal, harmful-content and jailbreak rates of the samples in PATHS
    (event stores, or one JSONL of {"prompt", "response"} records), with the refusal
    curve by step. Exits 3 when a problem is flagged, 4 when too few samples leave
    no verdict."""
    analyzer = SafetyAnalyzer()
    params = analyzer.params(over_refusal_max=over_refusal_max, harmful_refusal_min=harmful_refusal_min,
                             min_samples=min_samples)
    result = analyzer.run(_source(paths), params)
    report = result.report()
    emit(report, fmt, output, out_dir, analyzer, result)
    exit_for(report)
