"""Re-analysing a live run, in this process or in a child process that keeps the watcher small.

:func:`problems` is the one evaluation: the registered analyzers on a store of a
run's committed files, keeping that run's warning and error findings (as plain
dicts of :class:`rldk.live.state.LiveFinding` fields). :class:`InProcess` calls it
directly (guards: the training process already holds the libraries).
:class:`Child` calls it in a child process (running :func:`serve`: one
JSON line per request and per answer on its stdin/stdout): the analyzers' DuckDB
and Polars queries, and the memory those libraries keep once used, live and die
there, so ``rldk watch`` itself only holds pyarrow and its bounded run state. The
child is started with the monitor (its imports overlap the first read) and again
when a run needs evaluating after it ended; it serves every evaluation while runs
keep changing (no start-up cost per evaluation: the latency stays that of the
analysis), and is ended after ``idle_exit`` seconds without work, so a watcher
polling finished or quiet runs holds no child at all. A run that changes after a
quiet spell longer than ``idle_exit`` waits for a new child's imports (about a
second) once. A child that dies is
replaced at the next evaluation; the failed evaluation is retried like any other.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

from rldk.analyzers import _series, get
from rldk.core.errors import MissingEvents
from rldk.core.store import Store

#: Fields of a LiveFinding that the evaluation fills (the monitor adds the run's
#: step at evaluation and the time).
FIELDS = ("run_id", "analyzer", "code", "severity", "metric", "onset", "title", "fix")


class EvaluationError(Exception):
    """An evaluation failed; ``kind`` names the original exception's type."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def problems(analyzers, files: list[str], run_id: str) -> list[dict]:
    """The warning and error findings of ``analyzers`` (instances) on ``run_id`` in
    ``files``, each a dict of ``FIELDS``, first finding per (analyzer, code, metric)."""
    store = Store(files)
    found: dict = {}
    try:
        for analyzer in analyzers:
            for f in _findings(analyzer, store, run_id):
                onset = getattr(f, "onset", None)
                if onset is None and f.steps:
                    onset = f.steps[0]
                found.setdefault((analyzer.name, f.code, f.metric), {
                    "run_id": f.run_id, "analyzer": analyzer.name, "code": f.code,
                    "severity": f.severity, "metric": f.metric,
                    "onset": None if onset is None else int(onset), "title": f.title, "fix": f.fix})
    finally:
        _series.clear_cache()     # series of a run still growing are stale at once
    return list(found.values())


def _findings(analyzer, store: Store, run_id: str) -> list:
    """The problem findings of ``analyzer`` on ``run_id`` (none when the analyzer
    does not apply or lacks its events)."""
    try:
        if not analyzer.applies(store):
            return []
        report = analyzer.run(store, analyzer.params()).report()
    except MissingEvents:
        return []
    return [f for f in report.findings if f.is_problem and f.run_id == run_id]


class InProcess:
    """Evaluates in the calling process. ``secs``: what the last evaluation cost
    the monitor's throttle counts: its analysis time, except for an evaluator's
    first evaluation (0: it pays once for imports and the query engines' start-up,
    and would otherwise hold back the next evaluation several times as long)."""

    def __init__(self, names):
        self.analyzers = [get(name) for name in names]
        self.secs = 0.0
        self._warm = False

    def __call__(self, run_id: str, files: list[str]) -> list[dict]:
        start = time.monotonic()
        try:
            return problems(self.analyzers, files, run_id)
        finally:
            self.secs = time.monotonic() - start if self._warm else 0.0
            self._warm = True

    def tidy(self) -> None:
        pass

    def close(self) -> None:
        pass


class Child(InProcess):
    """Evaluates in a child process, started on demand and ended after ``idle_exit``
    idle seconds (see the module docstring). ``peak_rss`` (bytes): the largest
    resident size a child reported. ``secs`` is the CPU time (all threads) the
    child spent on the analysis: the share of a core that the throttle bounds,
    whatever else loads the machine (not its start-up, nor a new child's first
    evaluation)."""

    _command = ("-c", "import sys; from rldk.live.worker import serve; serve(sys.argv[1:])")

    def __init__(self, names, idle_exit: float = 10.0):
        super().__init__(names)                   # unknown names fail here, in one line
        self.names, self.idle_exit = list(names), idle_exit
        self.proc: subprocess.Popen | None = None
        self.last_used = 0.0
        self.started = 0                          # children started so far
        self.peak_rss = 0
        self._child()                             # its imports overlap the first read

    def __call__(self, run_id: str, files: list[str]) -> list[dict]:
        proc = self._child()
        start = time.monotonic()
        request = {"run_id": run_id, "files": files, "analyzers": self.names}
        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        self.last_used = time.monotonic()
        self.secs = self.last_used - start
        warm, self._warm = self._warm, True
        if not line:
            self.close()
            raise EvaluationError("ChildExited", "the analysis process ended "
                                  f"(exit status {proc.returncode}); a new one is started")
        answer = json.loads(line)
        self.secs = min(self.secs, answer.get("secs", self.secs)) if warm else 0.0
        self.peak_rss = max(self.peak_rss, answer.get("peak_rss", 0))
        if "error" in answer:
            raise EvaluationError(answer["kind"], answer["error"])
        return answer["findings"]

    def _child(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, *self._command, *self.names], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True, bufsize=1)
            self.started += 1
            self.last_used = time.monotonic()
            self._warm = False
        return self.proc

    def tidy(self) -> None:
        """End the child once it has been idle for ``idle_exit`` seconds."""
        if self.proc is not None and time.monotonic() - self.last_used >= self.idle_exit:
            self.close()

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()                    # the child ends at end of input
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def serve(names=(), stdin=sys.stdin, stdout=sys.stdout) -> None:
    """The child's loop: one JSON request per line in, one JSON answer per line out,
    until end of input (anything else printed goes to stderr). ``names``: the
    analyzers to load before the first request, with their query engines, so that
    the imports overlap the watcher's reading instead of delaying a finding."""
    import resource

    sys.stdout = sys.stderr
    import duckdb  # noqa: F401
    import polars  # noqa: F401

    cached: dict = {tuple(names): [get(name) for name in names]}
    for line in stdin:
        request = json.loads(line)
        names = tuple(request["analyzers"])
        if names not in cached:
            cached[names] = [get(name) for name in names]
        start = time.process_time()
        try:
            answer = {"findings": problems(cached[names], request["files"], request["run_id"])}
        except Exception as exc:      # a file compacted away mid-read: the parent retries
            answer = {"kind": type(exc).__name__, "error": str(exc).splitlines()[0][:300] if str(exc) else ""}
        answer["secs"] = time.process_time() - start
        answer["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (
            1 if sys.platform == "darwin" else 1024)
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()
