"""The event writer: cheap appends on the training thread, Parquet off it.

This module holds the caller-facing half (``log`` and the event API, flush, close);
the encoder thread is in ``_encoder``, segment commits in ``_commit``, value reading
in ``_values`` and exit/signal/fork safety in ``_lifecycle``.

For a call whose values are all floats, the caller's thread only records the step,
the time, the names and the values: in C where the optional compiled hot path is
built (``_hotpath.c``: raw arrays, nothing allocated per call, ~0.1 us a call), else
as one ``(step, time, names, values)`` tuple appended to a deque (no lock:
``deque.append`` is atomic). Tensors, arrays and other values take a path that
reads them at once. A background thread wakes every ``flush_secs / 3``, or once
~64K values are queued, numbers the queued events in order (``seq``), encodes them
into Arrow tables in one batch and writes an immutable Parquet segment: written to
a hidden temporary file, fsynced, renamed into place. Batches are large so that the
encoder rarely takes the GIL from the training loop. A process killed at any
instant leaves only complete files and loses at most the events of the last
``flush_secs``. ``close`` (also run at exit and on SIGTERM/SIGHUP) writes the last segment, a ``run/end`` event whose status says how
the process ended, and merges the session's segments into one file under the
store's lock. A failed write is never reported as success: ``flush`` returns
False and ``close`` returns False (and warns with the count) while events are not
on disk. A forked child gets its own session and encoder thread. The fault model
is in docs/reliability.md.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
from collections import deque
from operator import countOf

from rldk.core.naming import (
    check_run_id,
    new_session,
)
from rldk.writer._commit import CommitMixin
from rldk.writer._encoder import EncoderMixin
from rldk.writer._lifecycle import (
    _claim,
    _default_run_id,
    _ending,
    _owner_name,
    _register,
    _release,
    _run_dir,
    _unregister,
)
from rldk.writer._limits import (
    _MAX_BACKLOG,
    _MAX_RECORDED,
    _MIN_WAKE_CALLS,
    _TABLE_BACKLOG,
    _WAKE_VALUES,
    RldkWarning,
    _now,
)
from rldk.writer._upload import Uploader
from rldk.writer._values import (
    _check_strict_step,
    _scalar,
    _snapshot,
    _text,
)

try:  # the compiled hot path, where setup.py found a C compiler; else the Python one below
    from rldk.writer._hotpath import Recorder
except ImportError:
    Recorder = None


class EventWriter(EncoderMixin, CommitMixin):
    """Writes one run's events (for one rank) into an event store directory.

    Parameters
    ----------
    dir : store directory (created if missing), or an object storage prefix
        (``s3://bucket/runs``; ``pip install rldk[s3]``; see docs/object_storage.md).
        ``RLDK_DIR`` overrides it, so a harness such as ``rldk check-determinism`` can
        redirect a script unchanged.
    run_id : the run's id (``RLDK_RUN_ID`` overrides); default ``<script>-<time>``.
    rank : process rank; default ``RLDK_RANK``, else ``RANK`` (torch.distributed), else 0.
    config, seed : recorded in the run's ``start`` event.
    flush_secs : at most this many seconds of events are lost if the process dies.
    segment_rows : a segment is also written once this many events are buffered
        (bounds memory whatever the logging rate).
    strict : raise ``ValueError`` in ``log`` for values or steps that are not numbers
        instead of recording them with a warning (``RLDK_STRICT=1`` also sets it).
    max_buffer_bytes : while segments cannot be written (disk full), events are kept
        up to this size, then the oldest are dropped and counted.
    compact_on_close : merge this session's segments into one file at ``close``.
    layout : ``"flat"`` (default: every file in ``dir``) or ``"hive"``: the run's files go
        to ``dir/project=<project>/run_id=<run_id>/``, so one run is one prefix (and
        ``rldk compact`` merges per run folder). ``RLDK_LAYOUT`` overrides it.
    project : the project folder of the hive layout (``RLDK_PROJECT`` overrides it;
        default ``default``); giving one chooses the hive layout.
    parquet_options : the segments' ParquetWriter options (converters pass
        ``SEGMENT_PARQUET_OPTIONS``, see :mod:`rldk.schemas.events`). By default a
        segment that ``close`` merges (a small one) is written with those, fast, and
        one that stays as it is with the compact ``PARQUET_OPTIONS``.
    """

    def __init__(self, dir=None, run_id=None, *, rank=None, config=None, seed=None,
                 flush_secs: float = 5.0, segment_rows: int = 100_000, strict: bool | None = None,
                 max_buffer_bytes: int = 256 << 20, compact_on_close: bool = True,
                 capture_env: bool = True, layout: str | None = None, project: str | None = None,
                 parquet_options: dict | None = None):
        import pyarrow.compute  # noqa: F401  (loaded now, not in the first flush mid-training)
        import pyarrow.parquet  # noqa: F401

        from rldk.writer._env import run_metadata

        chosen = os.environ.get("RLDK_RUN_ID") or (run_id if run_id is not None else _default_run_id())
        self.run_id = check_run_id(chosen)
        self.dir = _run_dir(os.environ.get("RLDK_DIR") or dir or "rldk_runs", self.run_id,
                            os.environ.get("RLDK_LAYOUT") or layout,
                            os.environ.get("RLDK_PROJECT") or project)
        self.rank = int(rank if rank is not None else
                        os.environ.get("RLDK_RANK", os.environ.get("RANK", 0)))
        self.strict = bool(strict) if strict is not None else os.environ.get("RLDK_STRICT") == "1"
        self.flush_secs = float(flush_secs)
        self.segment_rows = int(segment_rows)
        self.max_buffer_bytes = int(max_buffer_bytes)
        self.compact_on_close = compact_on_close
        self.parquet_options = parquet_options
        self.session = new_session()
        self.segments: list[str] = []        # file names of this session's written segments
        self._segment_rows: list[int] = []
        self.stats = {"events": 0, "segments": 0, "write_errors": 0, "dropped_events": 0,
                      "unwritten_events": 0, "calls_after_close": 0, "backpressure_waits": 0}
        self._prepare_dir()
        self._owner = _claim(self.dir, self.run_id, self.rank)
        # every event in call order: (step, wall, names, values) for an all-float log()
        # call, ("call", (step, wall, values)) for other calls, ("rows", (kind, step,
        # wall, rows)) and ("table", (table,)) for the rest. The encoder numbers them (seq) as it
        # takes them, so the order of calls is the order of events.
        self._queue: deque = deque()
        self._lock = threading.Lock()    # guards the table backlog count
        self._order = threading.Lock()   # the compiled path's calls enter the queue in call order
        self._recorder = None            # the compiled path (see _start_recording)
        self._seq = 0                    # the last seq handed out (encoder thread only)
        self._fast = not self.strict     # log() may take the all-float path
        self._set_wake(1)
        self._step = None
        self._pid = os.getpid()
        self._closed = False
        self._status = "complete"
        self._warned: set = set()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._flush_wanted = 0
        self._flush_done = 0
        self._flush_ok = True
        self._stop = False
        self._table_rows = 0
        self._init_encoder_state()
        meta = run_metadata(config, seed) if capture_env else {"config": config or {}, "seed": seed}
        meta["session"] = self.session
        if self._owner is None:
            meta["shared_run"] = True
        self._emit("run", [("start", None, None, None, None, meta)], step=None)
        # the start event is on disk before init returns: a run that dies before its
        # first flush still shows up (as incomplete), and the encoder is warm
        self._drain()
        self._write_segment()
        self._start_thread()
        self._start_recording()
        _register(self)

    def _start_recording(self) -> None:
        """Where the compiled hot path is built, ``self.log`` is its ``Recorder.log``:
        all-float calls are appended in C to raw arrays (step, time, names id, values),
        the encoder takes them as bytes; every other call reaches ``_log_slow``.
        ``RLDK_PURE_PYTHON=1`` keeps the Python path below (the tests run both)."""
        if Recorder is None or self.strict or os.environ.get("RLDK_PURE_PYTHON") == "1":
            return
        self._recorder = Recorder(self._log_slow, self._check_backlog, _WAKE_VALUES)
        self._fast = False               # EventWriter.log called unbound: the ordered path
        self.log = self._recorder.log

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"rldk-writer-{self.run_id}",
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ hot path
    def log(self, step, mapping=None, /, **scalars) -> None:
        """Record scalars for ``step``: ``log(10, loss=0.3)`` or ``log(10, {"objective/kl": 0.1})``.

        Values may be Python/numpy/torch scalars. NaN and inf are stored as such and
        counted. Anything else (strings, None, arrays, huge ints) is stored as text
        with a one-time warning per name; strict mode raises instead.
        """
        if mapping is None:
            mapping = scalars
        elif scalars:
            mapping = {**mapping, **scalars}
        # names and values are copied (the caller may reuse its dict); all Python floats
        # (immutable, nothing to read now): queue them as they are
        values = tuple(mapping.values())
        if self._fast and countOf(map(type, values), float) == len(values):
            queue = self._queue
            queue.append((step, _now(), tuple(mapping), values))
            self._step = step
            if len(queue) > self._check_len:
                self._check_backlog()
            return
        return self._log_general(step, dict(mapping))

    def _log_slow(self, step, mapping=None, /, **scalars) -> None:
        """The calls the compiled path does not take (tensors, ints, text, non-dict mappings)."""
        if mapping is None:
            mapping = scalars
        elif scalars:
            mapping = {**mapping, **scalars}
        return self._log_general(step, dict(mapping))

    def _set_wake(self, per_call: int) -> None:
        """Wake thresholds in calls for calls of ``per_call`` values (set by the encoder)."""
        self._wake_calls = max(_MIN_WAKE_CALLS, _WAKE_VALUES // max(1, per_call))
        self._max_calls = max(4 * _MIN_WAKE_CALLS, _MAX_BACKLOG // max(1, per_call))
        self._check_len = self._wake_calls

    def _behind(self, fraction: float = 1.0) -> bool:
        """More than ``fraction`` of the backlog queued (by calls, and by values for the
        compiled path), or the last write is more than ``flush_secs / 2`` ago."""
        rec = self._recorder
        return (len(self._queue) > self._max_calls * fraction
                or rec is not None and rec.values > _MAX_RECORDED * fraction
                or time.monotonic() - self._last_write > self._max_lag)

    def _put(self, item) -> None:
        """Queue an event; with the compiled path, as ``(calls recorded before it, item)``
        so the encoder can number both in call order."""
        if self._recorder is None:
            self._queue.append(item)
        else:
            with self._order:
                self._queue.append((len(self._recorder), item))
        if len(self._queue) > self._check_len:
            self._check_backlog()

    def _last_step(self):
        """The step of the last ``log`` call (spans and memory readings default to it)."""
        return self._step if self._recorder is None else self._recorder.last_step

    def _check_backlog(self) -> None:
        """The queue is long: wake the encoder, and wait for it when it is behind, by
        count (memory) or by time (a kill would lose more than ``flush_secs``)."""
        self._check_len = len(self._queue) + self._wake_calls     # check again after as many calls
        if self._recorder is not None:
            self._recorder.wake_at = self._recorder.values + _WAKE_VALUES
        self._wake.set()
        if self._behind():
            self._backpressure()

    def _backpressure(self) -> None:
        """Logging faster than the encoder keeps up (a tight loop with no real work, which
        starves the encoder thread of the GIL): wait for it so memory stays bounded and
        what a kill can lose stays within ``flush_secs``. Rare in real training."""
        self.stats["backpressure_waits"] += 1
        with self._cond:
            self._cond.wait_for(lambda: not self._behind(0.5) or not self._thread.is_alive(),
                                timeout=self.flush_secs)

    def _log_general(self, step, values) -> None:
        """The general path: ints, tensors, numpy scalars, text, None, strict mode, closed."""
        if self._closed:
            return self._after_close()
        values = _snapshot(values, self.strict)
        if self.strict:
            _check_strict_step(step)
        self._step = step
        if self._recorder is not None:
            self._recorder.last_step = step
        self._put(("call", (step, time.time(), values)))

    # ------------------------------------------------------------- other events
    def log_rng(self, step, generators=None) -> None:
        """Digests of the python, numpy, torch and CUDA RNG states (and of ``generators``)."""
        from rldk.writer.probes import rng_digests

        rows = [(source, None, None, dig, None, None) for source, dig in rng_digests(generators)]
        self._emit("rng", rows, step)

    def log_tensors(self, step, source, kind: str = "param") -> None:
        """Bit-exact checksums and stats of a module's params/grads/buffers, an
        optimizer's state, or a mapping of named tensors; ``kind`` names the group."""
        from rldk.writer.probes import named_tensors, tensor_stats

        rows = []
        for st in tensor_stats(named_tensors(source, kind)):
            attrs = {k: st[k] for k in ("dtype", "shape", "numel", "min", "max", "nan", "inf", "device")}
            rows.append((f"{kind}/{st['name']}", st["norm"], st["checksum"],
                         f"{st['checksum'] & 0xFFFFFFFFFFFFFFFF:016x}", None, attrs))
        self._emit("tensor", rows, step)

    def log_memory(self, step) -> None:
        """Host RSS and, where CUDA is in use, allocated/reserved/peak bytes and retries."""
        from rldk.writer.probes import memory_readings

        self._emit("memory", [(name, v, iv, None, None, None) for name, v, iv in memory_readings()], step)

    def span(self, name: str, step=None) -> "_Span":
        """Context manager / decorator timing a section; recorded as a ``span`` event
        whose value is the duration in seconds (step: ``step`` or the last logged step)."""
        return _Span(self, name, step)

    def log_samples(self, step, prompts, responses, rewards=None, **extra) -> None:
        """Text samples: one ``sample`` event per (prompt, response[, reward, extra...])."""
        prompts, responses = list(prompts), list(responses)
        if len(prompts) != len(responses):
            self._warn_once(("samples", "len"), f"log_samples at step {step}: {len(prompts)} prompts "
                            f"but {len(responses)} responses; the shorter length is used")
        rewards = list(rewards) if rewards is not None else None
        extra = {k: list(v) for k, v in extra.items()}
        rows = []
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            reward = None
            if rewards is not None and i < len(rewards):
                reward, _, _, problem = _scalar(rewards[i])
                if problem:
                    self._warn_once(("samples", "reward"), f"log_samples: reward {i} at step {step} "
                                    f"is not a number ({problem}); stored as null")
            attrs = {"prompt": _text(prompt), "index": i}
            for key, vals in extra.items():
                if i < len(vals):
                    attrs[key] = vals[i]
            rows.append(("sample", reward, None, None, _text(response), attrs))
        self._emit("sample", rows, step)

    def log_event(self, kind: str, name: str, step=None, *, value=None, ivalue=None,
                  digest=None, text=None, attrs=None) -> None:
        """Record one event of any kind in ``rldk.schemas.KINDS`` (checkpoint, dataset, ...)."""
        from rldk.schemas import KINDS

        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}: one of {', '.join(KINDS)}")
        self._emit(kind, [(name, value, ivalue, digest, text, attrs)], step)

    def log_checkpoint(self, step, path, model=None, optimizer=None, scheduler=None, rng=True,
                       dataloader_state=None, action: str = "save") -> dict:
        """A ``checkpoint`` event with digests of the model, optimizer, scheduler, RNG and
        data position saved at ``path`` (see :func:`rldk.writer.checkpoint.log_checkpoint`)."""
        from rldk.writer.checkpoint import log_checkpoint

        return log_checkpoint(self, step, path, model, optimizer, scheduler, rng, dataloader_state, action)

    def append_table(self, table) -> None:
        """Queue an Arrow table of events (converters use this); run_id, rank, seq and
        missing payload columns are filled in, the rest must follow the event schema.
        Waits while more than ~1M rows are queued, so a streaming import stays bounded."""
        if self._closed:
            return self._after_close()
        with self._lock:
            self._table_rows += table.num_rows
        self._put(("table", (table,)))
        self._wake.set()
        if self._table_rows > _TABLE_BACKLOG:
            with self._cond:
                self._cond.wait_for(lambda: self._table_rows <= _TABLE_BACKLOG // 2
                                    or not self._thread.is_alive(), timeout=60.0)

    def _emit(self, kind, rows, step) -> None:
        if self._closed and kind != "run":
            return self._after_close()
        if step is None:
            step = self._last_step() if kind in ("span", "memory") else None
        self._put(("rows", (kind, step, time.time(), rows)))

    # ---------------------------------------------------------- flush and close
    def flush(self, timeout: float = 60.0) -> bool:
        """Write everything logged so far to a segment. True once it is on disk; False
        when the write failed (disk full, permissions: the events stay buffered and are
        retried), the writer is closed or its thread is gone, or ``timeout`` passed."""
        if self._closed:
            return not self.stats["unwritten_events"]
        with self._cond:
            self._flush_wanted += 1
            target = self._flush_wanted
            self._wake.set()
            done = self._cond.wait_for(lambda: self._flush_done >= target or not self._thread.is_alive(),
                                       timeout)
            return bool(done and self._flush_done >= target and self._flush_ok)

    def close(self, status: str = "complete", timeout: float = 120.0, *, detail: dict | None = None) -> bool:
        """Flush, record the ``run/end`` event and merge this session's segments.

        ``status``: complete, failed (an exception ended the run) or killed (a
        signal); ``detail`` goes into the end event (the exception type, the signal).
        Returns True when every event reached disk; False (with a warning giving the
        count, also in ``stats["unwritten_events"]``) when some could not be written.
        """
        if self._closed or os.getpid() != self._pid:
            return not self.stats["unwritten_events"]
        self._status = status
        self._end_detail = detail or {}
        self._closed = True
        self._fast = False
        if self._recorder is not None:
            self._recorder.closed = 1
        with self._cond:
            self._stop = True
            self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._warn_once(("close",), f"rldk writer for run {self.run_id!r} did not finish writing "
                            f"within {timeout:.0f}s; segments written so far are complete")
            self.stats["unwritten_events"] = max(1, self.stats["unwritten_events"])
        _unregister(self)
        _release(self._owner, self.dir / _owner_name(self.run_id, self.rank))
        return not self.stats["unwritten_events"]

    @property
    def ok(self) -> bool:
        """True while no event was dropped or left unwritten (converters check it after close)."""
        return not (self.stats["unwritten_events"] or self.stats["dropped_events"])

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, _tb):
        if exc_type is None:
            self.close("complete")
        else:
            status, detail = _ending(exc)
            self.close(status, detail=detail)

    # --------------------------------------------------------- background thread
    def _after_fork_in_child(self) -> None:
        """The child of a fork: the parent's thread is gone and its locks may be held.
        Start over with fresh locks, an empty buffer (the parent writes what it logged),
        a new session (its own segment files) and a new encoder thread."""
        self._lock = threading.Lock()
        self._order = threading.Lock()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._queue = deque()
        if self._recorder is not None:   # the parent's calls: the parent writes them
            self._recorder.take()         # (the same object: rldk.writer.log stays bound to it)
            self._recorder.yield_every = 0
        self._set_wake(1)
        self._flush_wanted = self._flush_done = 0
        self._flush_ok, self._stop, self._table_rows = True, False, 0
        parent = self.session
        self.session = new_session()
        self.segments, self._segment_rows = [], []
        self.stats = {k: 0 for k in self.stats}
        self._pid = os.getpid()
        self._owner = None
        self._warned = set()
        self._init_encoder_state()
        self._uploader = Uploader(self.dir)
        self._emit("run", [("start", None, None, None, None,
                            {"session": self.session, "forked_from": parent, "pid": self._pid})], step=None)
        self._start_thread()

    def _after_close(self) -> None:
        self.stats["calls_after_close"] += 1
        self._warn_once(("closed",), f"rldk: run {self.run_id!r} is closed; events logged after "
                        "close() are not recorded (call rldk.writer.init again)")

    def _warn_once(self, key, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            # the encoder thread has no useful caller frame: name the writer instead
            warnings.warn_explicit(message, RldkWarning, "rldk.writer", 0, module="rldk.writer")


class _Span(contextlib.ContextDecorator):
    def __init__(self, writer: EventWriter, name: str, step):
        self.writer, self.name, self.step = writer, name, step

    def __enter__(self):
        self._wall = time.time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type, *_):
        seconds = time.perf_counter() - self._t0
        attrs = {"error": exc_type.__name__} if exc_type is not None else None
        w = self.writer
        if w._closed:
            return False
        step = self.step if self.step is not None else w._last_step()
        w._put(("rows", ("span", step, self._wall, [(self.name, seconds, None, None, None, attrs)])))
        return False


