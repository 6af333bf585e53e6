"""``rldk bisect``: find the first commit where a metric goes bad."""
from __future__ import annotations

import click

from rldk.analyzers.bisect import BisectAnalyzer, Predicate, parse_cmp
from rldk.cli import emit, exit_for, handle_errors, open_output, output_options
from rldk.core.render import render_rows
from rldk.core.report import write_report


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--good", required=True, help="A revision where the metric was fine.")
@click.option("--bad", required=True, help="A later revision where it went wrong.")
@click.option("--metric", default=None, help="Metric to judge each commit by.")
@click.option("--cmp", "cmp_text", required=True, help="When a commit is bad, e.g. '> 0.2' (value op threshold).")
@click.option("--reduce", "how", type=click.Choice(["mean", "max", "min", "last", "first", "median"]),
              default="mean", show_default=True, help="How the metric's values are reduced.")
@click.option("--window", type=int, default=None, help="Reduce over the last N logged steps [all].")
@click.option("--sql", default=None, help="Instead of --metric: a query over the run's store returning one number.")
@click.option("--nan", "nan", type=click.Choice(["bad", "good", "skip"]), default="bad", show_default=True,
              help="Verdict when the value is NaN or infinite.")
@click.option("--repo", default=".", show_default=True, type=click.Path(file_okay=False),
              help="The git repository to bisect.")
@click.option("--timeout", type=float, default=None, help="Seconds before a commit's command is killed (skipped).")
@click.option("--allow-dirty", is_flag=True, help="Bisect although the working tree has uncommitted changes.")
@click.option("--no-check-ends", is_flag=True, help="Do not test --good and --bad first.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@output_options(out_dir=True)
@handle_errors
def bisect(good, bad, metric, cmp_text, how, window, sql, nan, repo, timeout, allow_dirty, no_check_ends,
           command, fmt, output, out_dir):
    """Find the first commit between --good and --bad where a metric goes bad.

    Runs COMMAND (after --, no shell) at each commit git bisect picks, with RLDK_DIR and
    RLDK_RUN_ID set so the run it writes is judged by --metric/--reduce/--window (or --sql)
    and --cmp. Commits whose command fails are skipped. Bisection happens in a temporary
    git worktree: your checkout is left as it was, also when rldk is interrupted.
    Exit 0 with the first bad commit, 4 when untestable commits leave it ambiguous.

    Example: rldk bisect --good v1.0 --bad HEAD --metric loss --window 10 --cmp '> 0.2' -- python train.py
    """
    op, threshold = parse_cmp(cmp_text)
    predicate = Predicate(op, threshold, metric=metric, reduce=how, window=window, sql=sql, nan=nan)
    analyzer = BisectAnalyzer()
    result = analyzer.run(None, analyzer.params(good=good, bad=bad, command=tuple(command), predicate=predicate,
                                                repo=repo, allow_dirty=allow_dirty, timeout=timeout,
                                                check_ends=not no_check_ends))
    report = result.report()
    if fmt == "csv":                  # the tested commits are a table
        table = report.tables[0]
        with open_output(output) as stream:
            render_rows([dict(zip(table.columns, row)) for row in table.rows], "csv", stream=stream)
        if out_dir:
            write_report(report, out_dir)
    else:
        emit(report, fmt, output, out_dir, analyzer, result)
    exit_for(report)
