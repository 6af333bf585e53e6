"""The ``rldk`` command line: parse, call one library function, render, map errors.

Commands live in ``rldk.commands.*`` and are imported only when invoked, so
``rldk --help`` starts fast. Every command prints through ``emit`` with the
options of ``output_options``. Exit codes: 0 clean, 1 failure, 2 usage error,
3 the analysis ran and found problems (for CI gates), 4 inconclusive (the checks
that define the analysis could not run).
"""
from __future__ import annotations

import functools
import importlib
import sys

import click

from rldk import __version__, semantics
from rldk.core.errors import EXIT_FAILURE, EXIT_USAGE, RldkError

#: command name -> "module:attribute"; the one explicit registry of commands.
COMMANDS = {
    "demo": "rldk.commands.store:demo",
    "runs": "rldk.commands.store:runs",
    "sql": "rldk.commands.store:sql",
    "compact": "rldk.commands.store:compact",
    "import": "rldk.commands.convert:import_cmd",
    "analyze": "rldk.commands.analyze:analyze",
    "fleet": "rldk.commands.fleet:fleet",
    "diff": "rldk.commands.diff:diff",
    "check-determinism": "rldk.commands.determinism:check_determinism",
    "checkpoint": "rldk.commands.checkpoint:checkpoint",
    "reward-health": "rldk.commands.evaluation:reward_health",
    "eval": "rldk.commands.evaluation:eval_group",
    "safety": "rldk.commands.evaluation:safety",
    "profile": "rldk.commands.profiling:profile",
    "bisect": "rldk.commands.bisect:bisect",
    "lineage": "rldk.commands.lineage:lineage",
    "report": "rldk.commands.report:report",
    "watch": "rldk.commands.watch:watch",
}


#: command name -> its help's first sentence, for ``rldk --help`` without importing every
#: command (and numpy, polars... with them); a test checks each against the command's own.
SUMMARIES = {
    "demo": "Train two tiny bandit policies into DIRECTORY, one with a learning-rate bug injected "
            "half-way, list them, and find the bug with the drift card.",
    "runs": "List the runs in PATHS: id, status, step range, metric count, wall time.",
    "sql": "Run QUERY (DuckDB SQL) over the event store in PATHS.",
    "compact": "Merge each finished run's segment files into one file.",
    "import": "Import the logs at PATH into the event store --out-dir.",
    "analyze": "Run every analyzer whose events are present; write their cards into --out-dir "
               "(default rldk_reports) with index.json / index.md.",
    "fleet": "One table of all runs in PATHS: status, last step, reward, KL, entropy, loss and each "
             "run's worst finding, every run analysed on its own by the default analyzers.",
    "diff": "Find the first step where two runs stop agreeing.",
    "check-determinism": "Run COMMAND N times and show whether, where and why the runs differ.",
    "checkpoint": "Checkpoint policy: verify saved state, check exact resume, diff checkpoints.",
    "reward-health": "Check the reward signal of the runs in PATHS: saturation, zero-std groups, "
                     "length hacking, component divergence, KL band, overoptimization, calibration, "
                     "drift, leakage.",
    "eval": "Trusted evaluation statistics across seeds.",
    "safety": 'Refusal, over-refusal, harmful-content and jailbreak rates of the samples in PATHS '
              '(event stores, or one JSONL of {"prompt", "response"} records), with the refusal '
              "curve by step.",
    "profile": "Where the step time of the runs in PATHS goes, when steps got slower, throughput "
               "and MFU, and whether memory leaks.",
    "bisect": "Find the first commit between --good and --bad where a metric goes bad.",
    "lineage": "Content hashes of datasets: the graph a run recorded, manifests beside data on "
               "disk, train/validation overlap.",
    "report": "Write one self-contained HTML report for the runs in PATHS.",
    "watch": "Follow the stores (or growing logs of another tool) in PATHS while jobs write them.",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (``--help`` imports none)."""

    def list_commands(self, ctx):
        return sorted(name for name in COMMANDS if self._present(name))

    def format_commands(self, ctx, formatter):
        """The command list from ``SUMMARIES``, laid out as click lays out loaded commands."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = [(n, click.Command(n, help=SUMMARIES.get(n, "")).get_short_help_str(limit))
                for n in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    @staticmethod
    def _present(name) -> bool:
        """Whether the command's module is part of this build (found, not imported)."""
        from importlib.util import find_spec

        return find_spec(COMMANDS[name].split(":")[0]) is not None

    def get_command(self, ctx, name):
        return self._load(name)

    @staticmethod
    def _load(name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            if exc.name and exc.name.startswith("rldk.commands"):
                return None              # a command whose module is not part of this build
            raise


def _use_metric_map(ctx, param, path):
    """Make the map at ``path`` part of the metric table before any command runs."""
    if path is not None:
        try:
            semantics.use_metric_map(path)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return path


def output_options(func=None, *, out_dir: bool | str = False, formats=None,
                   out_dir_help: str = "Also write the cards (JSON, Markdown, PNG plots) into this directory."):
    """The one set of output options every command uses.

    ``--format table|json|csv|markdown`` (how to print), ``-o/--output FILE`` (print
    into a file instead of stdout) and, with ``out_dir``, ``--out-dir DIR`` (write
    the cards: ``<analyzer>.json`` / ``.md`` and PNG plots; a string ``out_dir`` is
    its default directory). Every directory option is ``--out-dir``; ``--output`` is
    always a file. The command receives ``fmt``, ``output`` and ``out_dir``. ``--metric-map
    FILE`` is taken here too (``rldk analyze runs/ --metric-map map.json``), as before the
    command name: it extends the metric table before the command runs.
    """
    from rldk.core.render import FORMATS

    def decorate(f):
        if out_dir:
            default = out_dir if isinstance(out_dir, str) else None
            f = click.option("--out-dir", "out_dir", type=click.Path(file_okay=False), default=default,
                             show_default=default is not None, help=out_dir_help)(f)
        f = click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
                         help="Write the result to this file instead of stdout.")(f)
        f = click.option("--metric-map", type=click.Path(dir_okay=False), default=None, expose_value=False,
                         callback=_use_metric_map, is_eager=True,
                         help='JSON file naming your metrics\' meanings, e.g. {"kl_to_ref": ["my/kl"]} '
                              "(as `rldk --metric-map FILE <command>`).")(f)
        return click.option("--format", "fmt", type=click.Choice(formats or FORMATS), default="table",
                            show_default=True, help="How to print the result.")(f)

    return decorate(func) if func is not None else decorate


def emit(report, fmt: str, output=None, out_dir=None, analyzer=None, result=None) -> None:
    """Print ``report`` (an ``rldk.core.report.Report``) in ``fmt`` to ``output`` (stdout
    when None) and, with ``out_dir``, write its cards there (with ``analyzer.plots(result)``
    when both are given). The one renderer behind every command."""
    from rldk.core.report import render_report, write_report

    if out_dir:
        pngs = {}
        if analyzer is not None and result is not None:
            from rldk.analyzers.suite import plots_or_note

            pngs = plots_or_note(analyzer, result, out_dir)
        written = write_report(report, out_dir, pngs)
        click.echo(f"card: {written['markdown']}  json: {written['json']}", err=True)
    with open_output(output) as stream:
        render_report(report, fmt, stream)


def exit_for(report) -> None:
    """Exit 3 when ``report`` found problems, 4 when it is inconclusive (else return)."""
    from rldk.core.errors import EXIT_INCONCLUSIVE, EXIT_PROBLEMS

    if report.status == "problems":
        sys.exit(EXIT_PROBLEMS)
    if report.status == "inconclusive":
        sys.exit(EXIT_INCONCLUSIVE)


def handle_errors(func):
    """Map library errors to one line on stderr and their exit code: never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except RldkError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            click.echo(f"Error: {exc.strerror}: {exc.filename}", err=True)
            sys.exit(EXIT_FAILURE)
        except ValueError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EXIT_USAGE)

    return wrapper


def open_output(path):
    """A text stream for ``--output`` (stdout when None; not closed on exit). The file is
    written whole or not at all: a full disk or an unwritable path is a one-line error
    (exit 1), never a traceback or a half-written file."""
    import contextlib

    return _atomic_text(path) if path else contextlib.nullcontext(sys.stdout)


class _atomic_text:
    """Collect the text, then write it with ``rldk.core.segments.write_file_atomic``."""

    def __init__(self, path):
        import io

        self.path, self.buffer = path, io.StringIO()

    def __enter__(self):
        return self.buffer

    def __exit__(self, kind, value, tb):
        if kind is not None:
            return False
        from rldk.core.errors import StoreError
        from rldk.core.segments import write_file_atomic

        try:
            write_file_atomic(self.path, self.buffer.getvalue().encode("utf-8"))
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot write the output ({exc.strerror or exc})") from None
        return False


class _NoPandas:
    """An import finder that answers "no pandas" (see ``skip_pandas_probe``)."""

    def find_spec(self, name, path=None, target=None):
        if name == "pandas":
            raise ModuleNotFoundError("pandas is not probed by rldk commands", name="pandas")
        return None


def skip_pandas_probe() -> None:
    """Spare a command the pandas import (~0.3 s of CPU) that pyarrow makes on the first
    array it builds from Python objects, only to ask whether they are pandas objects
    (rldk's never are): pyarrow's probe is answered "no pandas" once, right after
    pyarrow is imported (a command that never imports pyarrow pays nothing). pyarrow
    still imports pandas where pandas is needed (``to_pandas``, ``Table.from_pandas``),
    and ``import pandas`` works as before. Commands call it; library callers'
    processes are left alone."""
    if "pandas" in sys.modules:
        return
    if "pyarrow" in sys.modules:
        _answer_probe(sys.modules["pyarrow"])
    elif not any(isinstance(f, _AfterArrow) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterArrow())


def _answer_probe(pa) -> None:
    finder = _NoPandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])
    except ImportError:
        pass
    finally:
        sys.meta_path.remove(finder)


class _AfterArrow:
    """An import finder that lets pyarrow be imported as usual, then answers its pandas
    probe (``skip_pandas_probe``); it leaves ``sys.meta_path`` once pyarrow is imported
    (a mere ``find_spec``, as Polars asks whether pyarrow is installed, leaves it there)."""

    def find_spec(self, name, path=None, target=None):
        if name != "pyarrow":
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ProbingLoader(spec.loader, self)
        return spec


class _ProbingLoader:
    """pyarrow's own loader, then the probe answered once the module is complete."""

    def __init__(self, loader, finder: _AfterArrow):
        self.loader, self.finder = loader, finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        if self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
        self.loader.exec_module(module)
        if "pandas" not in sys.modules:
            _answer_probe(module)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rldk")
@click.option("--metric-map", type=click.Path(dir_okay=False), default=None, expose_value=False,
              callback=_use_metric_map, is_eager=True, envvar="RLDK_METRIC_MAP",
              help='JSON file naming your metrics\' meanings, e.g. {"kl_to_ref": ["my/kl"]}; '
                   "tried before the built-in names (also read from RLDK_METRIC_MAP).")
def main():
    """rldk: find where and why an RL training run went wrong.

    Runs write typed events with rldk.writer (or are imported with `rldk import`);
    every command here reads that event store offline. Metric names resolve through
    one table (docs/semantics.md); add your own names with --metric-map FILE or the
    RLDK_METRIC_MAP environment variable.
    """


def run() -> None:
    """The ``rldk`` console script: :func:`main`, then the process ends without the
    interpreter's teardown, which after a large analysis spends 0.07 s releasing
    Polars, DuckDB and pyarrow for nothing. Exit handlers still run (writers close,
    threads join) and stdio is flushed; the exit code is main's."""
    import atexit
    import os

    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if code is not None and not isinstance(code, int):
        click.echo(code, err=True)             # what sys.exit("text") prints
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):          # a closed pipe: nothing more to say
            pass
    os._exit(code or 0)


if __name__ == "__main__":
    run()
