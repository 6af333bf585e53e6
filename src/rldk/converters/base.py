"""What every converter shares: the parsed-run container, skips, errors and the writing step.

A format module reads its files into :class:`RunData` objects (Arrow tables of
events, in the order they were logged, plus the lines it had to skip and why);
:func:`write_runs` hands each one to an :class:`~rldk.writer.EventWriter` with
``append_table`` (one vectorized append, no per-value calls) and returns a
:class:`ConvertSummary`.

A format may give ``tables`` as an iterator that reads its file as it goes (JSONL
and CSV do): the import then streams, in memory bounded by the writer's queue
whatever the file's size, and the run's skips and meta are complete once the
iterator is exhausted. Writing is checked: a run whose events did not all reach
disk raises :class:`ConvertError` (and its files are removed), never a summary.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from rldk.core import run_facts
from rldk.core.errors import RldkError
from rldk.core.fs import location
from rldk.core.run_summary import distinct, unique_sorted
from rldk.schemas import SEGMENT_PARQUET_OPTIONS

#: threads that encode an import's segments, several at once, committed in order
#: (:meth:`~rldk.writer.EventWriter.encode_ahead`; one where there is one core). Measured
#: on the 200 MB CSV of benchmarks/import.py: 1.26 -> 1.07 s at load 2.2 (interleaved
#: medians), no gain and ~0.1 s more CPU at load 3-4.5, when other work fills both cores;
#: streaming 1 GB of JSONL peaks at 469-478 MB instead of 415-432 MB.
ENCODE_WORKERS = 2

#: events an import's segment holds (at least: a segment takes whole tables)
_IMPORT_SEGMENT_ROWS = 1 << 19

#: Bumped when a converter's output for the same input changes (invalidates import caches).
CONVERTER_VERSION = 7


class ConvertError(RldkError):
    """An input a converter cannot read; the message names the file and line/record."""


@dataclass(frozen=True)
class Skip:
    """One input unit a converter skipped: ``where`` is a line ("line 12"), record or row."""

    file: str
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.where}: {self.reason}"


@dataclass
class RunData:
    """One run read from a source: event tables (``append_table`` columns) and what was skipped.

    ``key`` is the run's path relative to the input (the run id is derived from it);
    ``meta`` goes into the run's ``import`` event (framework config, state).
    """

    key: str
    source: str
    tables: object = field(default_factory=list)     # a list, or an iterator of tables
    skipped: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunSummary:
    """What one converted run holds: ``rows`` events, distinct ``metrics`` names,
    ``steps`` distinct metric steps (``first_step``..``last_step``), ``samples`` events."""

    run_id: str
    source: str
    rows: int
    metrics: tuple
    steps: int
    first_step: int | None
    last_step: int | None
    samples: int
    skipped: tuple

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "source": self.source, "rows": self.rows,
                "metrics": list(self.metrics), "steps": self.steps, "first_step": self.first_step,
                "last_step": self.last_step, "samples": self.samples,
                "skipped": [{"file": s.file, "where": s.where, "reason": s.reason} for s in self.skipped]}


@dataclass(frozen=True)
class ConvertSummary:
    """The result of one conversion: the ``format`` used, the ``store`` directory and each run."""

    format: str
    source: str
    store: str | None
    runs: tuple

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.runs)

    @property
    def skipped(self) -> tuple:
        return tuple(s for r in self.runs for s in r.skipped)

    @property
    def metrics(self) -> tuple:
        return tuple(sorted({m for r in self.runs for m in r.metrics}))

    def to_dict(self) -> dict:
        return {"schema_version": 1, "format": self.format, "source": self.source, "store": self.store,
                "rows": self.rows, "runs": [r.to_dict() for r in self.runs]}


# ------------------------------------------------------------------ tables
def metric_table(steps, names, values, wall_times=None):
    """An Arrow table of ``metric`` events from parallel lists/arrays (wall_time in seconds)."""
    import pyarrow as pa

    n = len(names)
    cols = {
        "step": pa.array(steps, pa.int64()),
        "kind": pa.array(["metric"], pa.string()).take(pa.array([0] * n, pa.int32())) if n else pa.array([], pa.string()),
        "name": pa.array(names, pa.string()),
        "value": pa.array(values, pa.float64()),
    }
    if wall_times is not None:
        cols["wall_time"] = pa.array(wall_times, pa.float64())
    return pa.table(cols)


# ------------------------------------------------------------------ run facts
def facts(status: str, evidence: str, seconds=None) -> dict:
    """The ``meta`` entries (:mod:`rldk.core.run_facts`) saying how a run ended by its own
    logs, in their words, and how many ``seconds`` it trained by their clock (omitted
    when the logs carry none: never the import's clock)."""
    out = {run_facts.STATUS: status, run_facts.EVIDENCE: evidence}
    if seconds is not None and math.isfinite(seconds) and seconds >= 0:
        out[run_facts.WALL_SECONDS] = round(float(seconds), 3)
    return out


def wall_span(walls) -> float | None:
    """Seconds from the first to the last of the log's own timestamps (None if it has none)."""
    lo = hi = None
    for w in walls:
        if w is not None and math.isfinite(w):
            lo, hi = (w, w) if lo is None else (min(lo, w), max(hi, w))
    return None if lo is None else hi - lo


# ------------------------------------------------------------------ run ids
_BAD = re.compile(r"[^A-Za-z0-9._+=@-]+")
_DOTS = re.compile(r"\.{2,}")
_SEGMENT = re.compile(r"\.(r\d+\.|compact-)")      # what follows the run id in a segment file name


def run_id_for(key: str, given: str | None, single: bool) -> str:
    """The run id of a source: ``given`` for a single run, ``given.key`` for several,
    else ``key`` with path separators and other characters a run id cannot hold as '-'."""
    from rldk.core.naming import check_run_id

    if given is not None and single:
        return check_run_id(given)
    stem = _DOTS.sub(".", _BAD.sub("-", key.replace("/", "-").replace("\\", "-")))
    stem = stem.lstrip("._+=@-")[:150] or "run"
    return check_run_id(f"{given}.{stem}" if given is not None else stem)


# ------------------------------------------------------------------ writing
def write_runs(runs: list[RunData], target, run_id: str | None, fmt: str,
               source: str | None = None, strict: bool = False, progress=None) -> ConvertSummary:
    """Write ``runs`` into ``target`` (a store directory, or an open EventWriter for one run).

    With ``strict`` any skipped input is an error (nothing is written). Runs are
    written sorted by key; ids must be distinct. Raises :class:`ConvertError` when
    the store cannot take the events (disk full): no summary claims success then.
    """
    runs = sorted(runs, key=lambda r: r.key)
    if strict:
        for run in runs:
            run.tables = list(run.tables)     # every skip must be known before writing
        _raise_on_skips(runs)
    for run in runs:
        run.tables = _peeked(run.tables)
    _raise_if_empty(runs, source)
    single = len(runs) == 1
    ids = [run_id_for(r.key, run_id, single) for r in runs]
    _check_distinct(runs, ids)
    from rldk.writer._writer import EventWriter  # not the package: it imports rldk.live

    if not isinstance(target, EventWriter):
        target = location(target)           # a local Path, or an object-store folder (s3://...)
        _check_new(target, ids)

    summaries = []
    for run, rid in zip(runs, ids):
        if isinstance(target, EventWriter):
            if not single:
                raise ConvertError(f"{source or run.source}: holds {len(runs)} runs but one writer was "
                                   "given; pass a store directory instead")
            summaries.append(_append(target, run, fmt, rid))
            continue
        summaries.append(_write_run(target, run, rid, fmt))
        if progress is not None:
            progress(run)
    store = None if isinstance(target, EventWriter) else str(target)
    return ConvertSummary(fmt, str(source or (runs[0].source if runs else "")), store, tuple(summaries))


def _write_run(store: Path, run: RunData, rid: str, fmt: str) -> "RunSummary":
    """One run into its own writer; on any failure its files are removed and the error raised."""
    from rldk.core.errors import StoreError
    from rldk.writer._writer import EventWriter

    try:
        writer = EventWriter(store, rid, capture_env=False, config=run.meta.get("config"),
                             flush_secs=3600, segment_rows=_IMPORT_SEGMENT_ROWS,
                             parquet_options=SEGMENT_PARQUET_OPTIONS)
    except StoreError as exc:
        raise ConvertError(str(exc)) from None
    writer.encode_ahead(min(ENCODE_WORKERS, os.cpu_count() or 1))
    try:
        summary = _append(writer, run, fmt, rid)
    except BaseException:
        writer.close("failed")
        _remove_session(store, writer)
        raise
    writer.close()
    if not writer.ok:
        _remove_session(store, writer)
        lost = writer.stats["unwritten_events"] + writer.stats["dropped_events"]
        raise ConvertError(f"{store}: could not write run {rid!r} ({lost} events not written, "
                           f"{writer.stats['write_errors']} failed writes): disk full or "
                           "not writable? Nothing of this run was kept; free space and import again")
    return summary


def _remove_session(store: Path, writer) -> None:
    """Delete the files one writer session wrote (a failed import leaves no partial run)."""
    import contextlib
    import os

    prefix = f"{writer.run_id}.r{writer.rank}.{writer.session}"
    for name in _names(store):
        if name.startswith(prefix) and name.endswith(".parquet"):
            with contextlib.suppress(OSError):
                if isinstance(store, Path):
                    os.unlink(store / name)
                else:
                    store.fs.rm(store / name)


def _names(store) -> list[str]:
    """File names directly in a store folder, local or on object storage ([] if absent)."""
    import os

    try:
        if isinstance(store, Path):
            return os.listdir(store) if store.is_dir() else []
        return [p.rsplit("/", 1)[-1] for p in store.fs.ls(store.key, detail=False)]
    except (FileNotFoundError, OSError):
        return []


def _peeked(tables):
    """``tables`` as a list or as an iterator whose first table was read already, so that
    an input that fails at once (empty, not this format) fails before anything is written."""
    if isinstance(tables, list):
        return tables
    import itertools

    iterator = iter(tables)
    for first in iterator:
        return itertools.chain([first], iterator)
    return []


def _append(writer, run: RunData, fmt: str, rid: str) -> "RunSummary":
    """Append a run's tables, then its ``run/import`` event (skips and meta are complete
    only once a streamed input is read); returns the run's summary."""
    tally = _Tally()
    for table in run.tables:
        if table.num_rows:
            tally.add(table)
            writer.append_table(table)
    writer.log_event("run", "import", attrs={"format": fmt, "source": run.source, "key": run.key,
                                             "meta": run.meta, "skipped": [str(s) for s in run.skipped[:100]],
                                             "skipped_count": len(run.skipped)})
    return tally.summary(rid, run)


def _raise_if_empty(runs, source) -> None:
    """Nothing to import is an error, not an empty run that analyzers would find clean."""
    if any(not isinstance(r.tables, list) for r in runs):     # streamed: a first table was read
        return
    if any(t.num_rows for r in runs for t in r.tables) or any(r.skipped for r in runs):
        return
    ignored = {k: v for r in runs for k, v in (r.meta.get("ignored") or {}).items()}
    what = f" (ignored: {', '.join(f'{v} {k}' for k, v in sorted(ignored.items()))})" if ignored else ""
    where = source or (runs[0].source if runs else "input")
    raise ConvertError(f"{where}: nothing to import: no metrics, samples or text in the logs{what}")


def _raise_on_skips(runs) -> None:
    skipped = [s for r in runs for s in r.skipped]
    if skipped:
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        raise ConvertError(f"{skipped[0]}{more}; --strict refuses to skip input: fix the file or drop --strict")


def _check_distinct(runs, ids) -> None:
    seen: dict = {}
    for run, rid in zip(runs, ids):
        if rid in seen:
            raise ConvertError(f"{run.source} and {seen[rid]} both map to run id {rid!r}; "
                               "convert them separately with --run-id")
        seen[rid] = run.source


def _check_new(store: Path, ids) -> None:
    """Refuse to import a run id the store already holds (its events would be doubled)."""
    names = [n for n in _names(store) if n.endswith(".parquet")]
    clash = sorted(rid for rid in set(ids) if any(_SEGMENT.match(n[len(rid):]) for n in names if n.startswith(rid)))
    if clash:
        raise ConvertError(f"{store}: already holds run {clash[0]!r}; importing again would duplicate "
                           "its events: pass --run-id NEW_ID or another --out-dir directory")


def summarize(run_id: str, run: RunData) -> RunSummary:
    """Counts of a converted run, computed from its tables (no store read)."""
    tally = _Tally()
    for t in run.tables:
        tally.add(t)
    return tally.summary(run_id, run)


class _Tally:
    """Counts of a run's tables, added one table at a time (a streamed import).

    Distinct steps are kept as a bitmap over the steps seen (1 bit a step: 1.2 MB for
    ten million steps), not as a set or hash table, so a huge import stays small."""

    def __init__(self):
        self.rows, self.samples, self.names = 0, 0, set()
        self.steps = _StepSet()

    def add(self, t) -> None:
        import pyarrow.compute as pc

        self.rows += t.num_rows
        if not t.num_rows:
            return
        kinds = t.column("kind")
        self.samples += _count(kinds, "sample")
        metrics = t if _count(kinds, "metric") == t.num_rows else t.filter(pc.equal(kinds, "metric"))
        self.names.update(distinct(metrics.column("name")))
        self.steps.add(unique_sorted(metrics.column("step")))

    def summary(self, run_id: str, run: RunData) -> RunSummary:
        lo, hi = self.steps.bounds()
        return RunSummary(run_id, run.source, self.rows, tuple(sorted(self.names)), self.steps.count(),
                          lo, hi, self.samples, tuple(run.skipped))


def _count(column, kind: str) -> int:
    """Rows of ``column`` equal to ``kind``; a dictionary column whose dictionaries
    lack it, or hold nothing else, is answered without a scan."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type) and column.null_count == 0:
        values = {v for chunk in column.chunks for v in chunk.dictionary.to_pylist()}
        if kind not in values:
            return 0
        if values == {kind}:
            return len(column)
    return int(pc.sum(pc.equal(column, kind)).as_py() or 0)


class _StepSet:
    """Distinct int64 steps: a bitmap from the first step seen while the steps span less
    than 2**30 values, else a sorted array of the distinct steps."""

    _SPAN = 1 << 30

    def __init__(self):
        self.base = None
        self.bits = None              # numpy bool array, index = step - base
        self.loose = None             # sorted distinct steps (numpy int64) when the span is too wide

    def add(self, steps) -> None:
        """Add ``steps``, an int64 NumPy array."""
        import numpy as np

        if not len(steps):
            return
        if self.loose is None:
            lo, hi = int(steps.min()), int(steps.max())
            base = lo if self.base is None else min(self.base, lo)
            top = hi if self.bits is None else max(hi, self.base + len(self.bits) - 1)
            if top - base < self._SPAN:
                self._grow(base, top)
                self.bits[steps - self.base] = True
                return
            self.loose = self._values()
        self.loose = np.union1d(self.loose, steps)

    def _grow(self, base: int, top: int) -> None:
        import numpy as np

        if self.bits is not None and base == self.base and top < self.base + len(self.bits):
            return
        size = max(top - base + 1, 2 * len(self.bits) if self.bits is not None else 0)
        size = min(size, self._SPAN)
        bits = np.zeros(max(size, top - base + 1), dtype=bool)
        if self.bits is not None:
            bits[self.base - base:self.base - base + len(self.bits)] = self.bits
        self.base, self.bits = base, bits

    def _values(self):
        import numpy as np

        if self.bits is None:
            return np.array([], dtype=np.int64)
        return np.flatnonzero(self.bits).astype(np.int64) + self.base

    def count(self) -> int:
        import numpy as np

        return len(self.loose) if self.loose is not None else \
            int(np.count_nonzero(self.bits)) if self.bits is not None else 0

    def bounds(self) -> tuple:
        """The first and last step, found in the bitmap without listing every step (a
        1 GB import's 11M steps would take two arrays of 91 MB at its very end)."""
        import numpy as np

        if self.loose is not None:
            return (int(self.loose[0]), int(self.loose[-1])) if len(self.loose) else (None, None)
        if self.bits is None or not self.bits.any():
            return None, None
        first, last = int(np.argmax(self.bits)), len(self.bits) - 1 - int(np.argmax(self.bits[::-1]))
        return self.base + first, self.base + last


def to_json(summary: ConvertSummary) -> str:
    return json.dumps(summary.to_dict(), sort_keys=True)


def files_where(path, test, limit: int | None = None, depth: int = 2) -> list[Path]:
    """``path`` itself when it is a file, else the files ``depth`` folders under it (sorted),
    that pass ``test``; the first ``limit`` of them (detection asks for one and stops there,
    without reading every other file of a large folder)."""
    path = Path(path)
    out = []
    for p in [path] if path.is_file() else sorted(walk_files(path, depth)):
        if test(p):
            out.append(p)
            if limit and len(out) >= limit:
                break
    return out


def any_line(path: Path, test, limit: int) -> bool:
    """Whether ``test`` (a decoded line -> bool) holds for a line that starts within the
    first ``limit`` bytes of ``path`` (read a line at a time: a line cut at the scan's edge
    is read whole; an unreadable file has none). Console logs open with start-up output
    and printed configs of unknown length, so a fixed head of the file is not enough."""
    seen = 0
    try:
        with open(path, "rb") as f:
            for raw in f:
                if test(raw.decode("utf-8", errors="replace")):
                    return True
                seen += len(raw)
                if seen >= limit:
                    return False
    except OSError:
        return False
    return False


def relative_key(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (posix), or its name when it is ``base`` itself."""
    path, base = Path(path), Path(base)
    if path == base:
        return path.name or "run"
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.name


def walk_files(root: Path, depth: int, _seen: set | None = None):
    """Files under ``root`` in sorted order, ``depth`` folders down, hidden folders skipped;
    a folder reached twice through symlinks (a loop, or two links to it) is read once."""
    seen = _seen if _seen is not None else set()
    real = os.path.realpath(root)
    if real in seen:
        return
    seen.add(real)
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.is_file():
            yield entry
        elif entry.is_dir() and depth > 0 and not entry.name.startswith("."):
            yield from walk_files(entry, depth - 1, seen)
