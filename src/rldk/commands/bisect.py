"""``rldk bisect``: find the first commit where a metric goes bad."""
from __future__ import annotations

import sys

import click

from rldk.cli import handle_errors, open_output, output_options
from rldk.core.errors import EXIT_FAILURE


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
@output_options
@handle_errors
def bisect(good, bad, metric, cmp_text, how, window, sql, nan, repo, timeout, allow_dirty, no_check_ends,
           command, fmt, output):
    """Find the first commit between --good and --bad where a metric goes bad.

    Runs COMMAND (after --, no shell) at each commit git bisect picks, with RLDK_DIR and
    RLDK_RUN_ID set so the run it writes is judged by --metric/--reduce/--window (or --sql)
    and --cmp. Commits whose command fails are skipped. Bisection happens in a temporary
    git worktree: your checkout is left as it was.

    Example: rldk bisect --good v1.0 --bad HEAD --metric loss --window 10 --cmp '> 0.2' -- python train.py
    """
    from rldk.bisect import Predicate, parse_cmp
    from rldk.bisect import bisect as run_bisect

    op, threshold = parse_cmp(cmp_text)
    predicate = Predicate(op, threshold, metric=metric, reduce=how, window=window, sql=sql, nan=nan)
    result = run_bisect(repo, good, bad, list(command), predicate, allow_dirty=allow_dirty, timeout=timeout,
                        check_ends=not no_check_ends)
    _emit_bisect(result, fmt, output)
    if result.first_bad is None:
        sys.exit(EXIT_FAILURE)


def _emit_bisect(result, fmt: str, output) -> None:
    from rldk.core.render import render_rows, to_json

    rows = [{"commit": p.commit[:12], "subject": p.subject, "verdict": p.verdict, "value": p.value,
             "note": p.reason, "seconds": round(p.seconds, 2)} for p in result.probes]
    with open_output(output) as stream:
        if fmt == "json":
            stream.write(to_json(result.to_dict()) + "\n")
            return
        render_rows(rows, fmt, title=f"tested commits ({result.predicate.describe()} is bad)", stream=stream)
        if fmt in ("table", "markdown"):
            stream.write("\n" + _verdict_line(result) + "\n")


def _verdict_line(result) -> str:
    if result.first_bad:
        return f"first bad commit: {result.first_bad} {result.subject}"
    listed = ", ".join(c[:12] for c in result.candidates)
    return f"the first bad commit is one of {listed} (commits in between could not be tested)"
