"""The event writer: cheap appends on the training thread, Parquet off it.

The caller's thread only appends ``(step, time, names, values)`` to a deque
(no lock: ``deque.append`` is atomic), after one C-level type check that sends
tensors, arrays and other non-float values to a path that reads them at once. A
background thread wakes every ``flush_secs / 2``, or once ~128K values are queued,
numbers the queued events in order (``seq``), encodes them into Arrow tables in one
batch and writes an immutable Parquet segment: written to a hidden temporary file,
fsynced, renamed into place. Batches are large so that the encoder rarely takes
the GIL from the training loop. A process killed at any instant leaves only
complete files and loses at most the events of the last ``flush_secs``. ``close`` (also run at exit and on
SIGTERM/SIGHUP) writes the last segment, a ``run/end`` event whose status says how
the process ended, and merges the session's segments into one file under the
store's lock. A failed write is never reported as success: ``flush`` returns
False and ``close`` returns False (and warns with the count) while events are not
on disk. A forked child gets its own session and encoder thread. The fault model
is in docs/reliability.md.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import warnings
from collections import deque
from operator import countOf
from pathlib import Path

from rldk.core.errors import StoreError, UsageError
from rldk.core.fs import ObjectDir, location
from rldk.core.naming import (
    check_project,
    check_run_id,
    new_session,
    safe_file_stem,
    segment_name,
    temp_name,
)
from rldk.core.segments import merge_segments, repair, store_lock, write_segment
from rldk.writer._upload import Uploader

_PLAIN = frozenset((float, int, bool))
_WAKE_VALUES = 1 << 16        # queued values that wake the encoder before its timer does
_MAX_BACKLOG = 1 << 18        # queued values before log() waits for the encoder (memory bound)
_MIN_WAKE_CALLS = 256         # the wake threshold in calls, however many values a call has
_COMPACT_MIN = 8              # close() merges a session's segments when it wrote more
_TABLE_BACKLOG = 1 << 18      # rows of queued tables (converters) before append_table waits
_FINISH_TRIES = 3             # close() tries the last segment this often before giving up
_FLUSH_UPLOAD_SECS = 60.0     # flush() waits this long for an upload to object storage
_now = time.time


class RldkWarning(RuntimeWarning):
    """A problem the writer fixed up or worked around without stopping training."""


class EventWriter:
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
    """

    def __init__(self, dir=None, run_id=None, *, rank=None, config=None, seed=None,
                 flush_secs: float = 5.0, segment_rows: int = 100_000, strict: bool | None = None,
                 max_buffer_bytes: int = 256 << 20, compact_on_close: bool = True,
                 capture_env: bool = True, layout: str | None = None, project: str | None = None):
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
        _register(self)

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

    def _set_wake(self, per_call: int) -> None:
        """Wake thresholds in calls for calls of ``per_call`` values (set by the encoder)."""
        self._wake_calls = max(_MIN_WAKE_CALLS, _WAKE_VALUES // max(1, per_call))
        self._max_calls = max(4 * _MIN_WAKE_CALLS, _MAX_BACKLOG // max(1, per_call))
        self._check_len = self._wake_calls

    def _check_backlog(self) -> None:
        """The queue is long: wake the encoder, and wait for it when it is behind, by
        count (memory) or by time (a kill would lose more than ``flush_secs``)."""
        queued = len(self._queue)
        self._check_len = queued + self._wake_calls     # check again after as many calls
        self._wake.set()
        if queued > self._max_calls or time.monotonic() - self._last_write > self._max_lag:
            self._backpressure()

    def _backpressure(self) -> None:
        """Logging faster than the encoder keeps up (a tight loop with no real work, which
        starves the encoder thread of the GIL): wait for it so memory stays bounded and
        what a kill can lose stays within ``flush_secs``. Rare in real training."""
        self.stats["backpressure_waits"] += 1
        with self._cond:
            self._cond.wait_for(lambda: (len(self._queue) < self._max_calls // 2
                                         and time.monotonic() - self._last_write <= self._max_lag)
                                or not self._thread.is_alive(), timeout=self.flush_secs)

    def _log_general(self, step, values) -> None:
        """The general path: ints, tensors, numpy scalars, text, None, strict mode, closed."""
        if self._closed:
            return self._after_close()
        values = self._snapshot(values)
        if self.strict:
            _check_strict_step(step)
        self._step = step
        self._queue.append(("call", (step, time.time(), values)))
        if len(self._queue) > self._check_len:
            self._check_backlog()

    def _snapshot(self, values: dict) -> dict:
        """Read tensors and arrays now (they may change in place before encoding); ``values``
        is the writer's own copy.

        One-element tensors on an accelerator are fetched together: one
        device-to-host copy per call and device, not one sync per value.
        """
        if self.strict:
            _check_strict(values)
        out = values
        on_device: dict = {}
        for name, v in values.items():
            if type(v) in _PLAIN or not hasattr(v, "item"):
                continue
            device = getattr(v, "device", None)
            if device is not None and getattr(device, "type", "cpu") != "cpu" and _numel(v) == 1:
                on_device.setdefault(device, []).append(name)
            elif _numel(v) == 1:
                try:
                    out[name] = v.item()
                except Exception:  # stored as text by the encoder, never raised
                    out[name] = repr(v)
            elif hasattr(v, "shape"):
                out[name] = f"<{type(v).__name__} shape={tuple(v.shape)}>"
        for names in on_device.values():
            _fetch_together(values, names, out)
        return out

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
        self._queue.append(("table", (table,)))
        self._wake.set()
        if self._table_rows > _TABLE_BACKLOG:
            with self._cond:
                self._cond.wait_for(lambda: self._table_rows <= _TABLE_BACKLOG // 2
                                    or not self._thread.is_alive(), timeout=60.0)

    def _emit(self, kind, rows, step) -> None:
        if self._closed and kind != "run":
            return self._after_close()
        if step is None:
            step = self._step if kind in ("span", "memory") else None
        self._queue.append(("rows", (kind, step, time.time(), rows)))
        if len(self._queue) > self._check_len:
            self._check_backlog()

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
    def _init_encoder_state(self):
        from rldk.writer._encode import Counters

        self.counters = Counters()
        self._encode_state: dict = {}
        self._pending: list = []           # encoded Arrow tables not yet in a segment
        self._pending_rows = 0
        self._last_write = time.monotonic()
        # the encoder drains the queue just before each write: the loss at a kill is at
        # most the time between writes plus one drain and write; log() waits for the
        # encoder once the last write is this far behind
        self._write_every = self.flush_secs / 3
        self._max_lag = self.flush_secs / 2
        self._end_detail: dict = {}

    def _loop(self) -> None:
        while True:
            # asleep until the next write is due, unless log() (a long queue), flush or
            # close wakes it: the encoder takes the GIL a few times a second at most
            self._wake.wait(max(0.0, self._last_write + self._write_every - time.monotonic()))
            self._wake.clear()
            with self._cond:
                stop, wanted = self._stop, self._flush_wanted
            started = time.monotonic()
            ok = False
            try:
                self._drain()
                # a segment holds what was queued when the drain started
                due = (stop or wanted > self._flush_done or self._pending_rows >= self.segment_rows
                       or started - self._last_write >= self._write_every)
                if stop:
                    self._finish()
                elif due and self._pending_rows:
                    self._write_segment(started)
                elif due:
                    self._last_write = started
                ok = not self._pending_rows
            except Exception as exc:  # the writer must never take the training loop down
                self._warn_once(("loop", type(exc).__name__), f"rldk writer error (events kept in "
                                f"memory, will retry): {type(exc).__name__}: {exc}")
            with self._cond:
                if wanted > self._flush_done:
                    self._flush_ok = ok
                self._flush_done = max(self._flush_done, wanted)
                self._cond.notify_all()
            if stop:
                return

    def _drain(self) -> None:
        """Number everything queued so far (seq, in call order) and encode it into
        pending Arrow tables."""
        queue = self._queue
        popleft = queue.popleft
        items = [popleft() for _ in range(len(queue))]
        problems: list = []
        if not items:
            pass
        elif countOf(map(len, items), 4) == len(items):   # only all-float log() calls: the usual
            self._encode_floats(items, range(self._seq + 1, self._seq + 1 + len(items)), problems)
            self._seq += len(items)
        else:
            self._drain_mixed(items, problems)
        self._check_len = self._wake_calls
        for name, problem in problems:
            self._warn_once(("value", name), f"rldk: metric {name!r}: {problem}; stored as text "
                            "(value null). Log a number, or pass strict=True to raise.")
        if self.counters.bad_steps:
            self._warn_once(("steps",), "rldk: a step that is not an integer was stored as null")

    def _drain_mixed(self, items: list, problems: list) -> None:
        """A drain holding other events too: all-float calls are still encoded as one
        batch, other calls together, events of one kind (a span and a sample every few
        steps) as one table; every event keeps its seq."""
        seq, floats, float_seqs, calls, by_kind = self._seq, [], [], [], {}
        for item in items:
            seq += 1
            if len(item) == 4:
                floats.append(item)
                float_seqs.append(seq)
                continue
            tag, payload = item
            if tag == "call":
                calls.append((seq, *payload))
            elif tag == "rows":
                kind, step, wall, rows = payload
                by_kind.setdefault(kind, []).extend((seq, step, wall, *r) for r in rows)
            else:
                table = payload[0]
                self._encode_guarded(lambda: self._conform_table(table, seq), None, problems,
                                     what="table", count=table.num_rows)
                seq += table.num_rows - 1
                with self._lock:
                    self._table_rows -= table.num_rows
                with self._cond:
                    self._cond.notify_all()               # release a waiting append_table
        if floats:
            self._encode_floats(floats, float_seqs, problems)
        self._seq = seq
        self._encode_calls(calls, problems)
        for kind, rows in by_kind.items():
            self._encode_rows(kind, rows, problems)

    def _encode_floats(self, calls: list, seqs, problems: list) -> None:
        """Encode all-float ``(step, wall, names, values)`` calls numbered ``seqs``: runs
        of calls with the same names as one batch, at most a segment at a time."""
        from rldk.writer._encode import encode_float_calls, same_names

        for start, end, keys in same_names(calls):
            chunk = max(1, self.segment_rows // max(1, len(keys)))
            if start == 0 and end == len(calls):
                self._set_wake(len(keys))
            for lo in range(start, end, chunk):           # bounded memory per segment
                part, numbers = calls[lo:min(end, lo + chunk)], seqs[lo:min(end, lo + chunk)]
                self._encode_guarded(lambda: encode_float_calls(
                    self.run_id, self.rank, keys, part, numbers, self.counters, self._encode_state),
                    lambda: [(q, c[0], c[1], dict(zip(c[2], c[3]))) for q, c in zip(numbers, part)], problems,
                    count=len(part) * len(keys))
        with self._cond:
            self._cond.notify_all()                       # release a waiting log() (backpressure)

    def _encode_rows(self, kind, rows, problems) -> None:
        from rldk.writer._encode import encode_rows

        if rows:
            self._encode_guarded(lambda: encode_rows(self.run_id, self.rank, kind, rows), None,
                                 problems, what=kind, count=len(rows))

    def _encode_calls(self, calls, problems) -> None:
        from rldk.writer._encode import encode_metrics

        if calls:
            self._encode_guarded(lambda: encode_metrics(self.run_id, self.rank, calls, self.counters,
                                                        self._encode_state, problems),
                                 lambda: calls, problems, count=sum(len(c[3]) for c in calls))

    def _encode_guarded(self, encode, calls_for_fallback, problems, what="metric", count=1) -> None:
        """Run an encoder; if it fails, encode the same calls one value at a time so
        nothing is lost. Only if that fails too are the events dropped, and counted."""
        from rldk.writer._encode import encode_calls_one_by_one

        try:
            self._add(encode())
            return
        except Exception as exc:  # an encoder bug must never take the training loop down
            error = f"{type(exc).__name__}: {exc}"
        try:
            if calls_for_fallback is None:
                raise RuntimeError(error)
            self._add(encode_calls_one_by_one(self.run_id, self.rank, calls_for_fallback(),
                                              self.counters, problems))
            self._warn_once(("encoder", error[:80]), f"rldk: the fast encoder failed ({error}); "
                            "the values were stored one by one (please report this)")
        except Exception as exc2:
            self.stats["dropped_events"] += count
            self._warn_once(("encoder-drop", what), f"rldk: could not encode {what} events "
                            f"({error}; {type(exc2).__name__}: {exc2}); dropped and counted")

    def _add(self, table) -> None:
        if table.num_rows:
            self._pending.append(table)
            self._pending_rows += table.num_rows
            self.stats["events"] += table.num_rows
            if self._pending_rows >= self.segment_rows:
                self._write_segment()

    def _conform_table(self, table, first_seq: int):
        import pyarrow as pa
        import pyarrow.compute as pc

        from rldk.schemas import memory_schema

        n = table.num_rows
        fill = {"run_id": pa.array([self.run_id] * n, pa.string()).dictionary_encode(),
                "rank": pa.array([self.rank] * n, pa.int32())}
        if "seq" not in table.column_names:  # rows keep the order they came in
            fill["seq"] = pa.array(range(first_seq, first_seq + n), pa.int64())
        cols = []
        for field in memory_schema():
            if field.name in fill:
                cols.append(fill[field.name])
            elif field.name not in table.column_names:
                cols.append(pa.nulls(n, field.type))
            elif field.name == "wall_time" and pa.types.is_floating(table.column("wall_time").type):
                ms = pc.round(pc.multiply(table.column("wall_time"), 1000.0))
                ms = pc.if_else(pc.is_finite(ms), ms, pa.scalar(None, pa.float64()))
                cols.append(ms.cast(pa.int64()).cast(pa.timestamp("ms")))
            else:
                cols.append(table.column(field.name).cast(field.type))
        return pa.Table.from_arrays(cols, schema=memory_schema())

    def _write_segment(self, started: float | None = None) -> bool:
        import pyarrow as pa

        if isinstance(self.dir, ObjectDir):
            return self._commit_remote(started)
        table = pa.concat_tables(self._pending) if len(self._pending) > 1 else self._pending[0]
        name = segment_name(self.run_id, self.rank, self.session, len(self.segments))
        try:
            write_segment(table, self.dir, name)
        except OSError as exc:
            self.stats["write_errors"] += 1
            self._warn_once(("write",), f"rldk: cannot write to {self.dir} ({exc}); events are kept "
                            f"in memory (up to {self.max_buffer_bytes >> 20} MiB) and retried")
            self._shed()
            return False
        finally:
            self._last_write = started if started is not None else time.monotonic()
        self.segments.append(name)
        self._segment_rows.append(table.num_rows)
        self.stats["segments"] += 1
        self._pending, self._pending_rows = [], 0
        return True

    def _commit_remote(self, started: float | None) -> bool:
        """Object storage: hand the pending tables to the uploader (one PUT at a time, on
        its thread) and return at once, so a stalled network never holds the encoder;
        they leave ``_pending`` when their upload returns. Waits for it only in
        ``init``, ``flush`` (up to 60 s) and ``close``. True once nothing is pending."""
        up = self._uploader
        wait = (None if self._stop or getattr(self, "_thread", None) is None
                else _FLUSH_UPLOAD_SECS if self._flush_wanted > self._flush_done else 0.0)
        self._last_write = started if started is not None else time.monotonic()
        for _ in range(2):                  # take the upload in flight, then start the next
            if not up.wait(wait):
                self._shed(keep=up.tables)
                return False
            done = up.take()
            if done is not None and not self._uploaded(*done):
                self._shed()
                return False
            if not self._pending:
                return True
            up.start(self._pending, segment_name(self.run_id, self.rank, self.session,
                                                 len(self.segments)))
        return not self._pending

    def _uploaded(self, name: str, rows: int, tables: int, error) -> bool:
        """Account for a finished upload: its tables leave ``_pending``, or stay (an error)."""
        if error is not None:
            self.stats["write_errors"] += 1
            self._warn_once(("write",), f"rldk: cannot upload to {self.dir} ({type(error).__name__}: "
                            f"{error}); events are kept in memory (up to {self.max_buffer_bytes >> 20} "
                            "MiB) and retried")
            return False
        del self._pending[:tables]
        self._pending_rows -= rows
        self.segments.append(name)
        self._segment_rows.append(rows)
        self.stats["segments"] += 1
        return True

    def _shed(self, keep: int = 0) -> None:
        """Drop the oldest buffered tables beyond ``max_buffer_bytes`` (never the first
        ``keep``: an upload in flight holds them)."""
        size = sum(t.nbytes for t in self._pending)
        while len(self._pending) > keep and size > self.max_buffer_bytes:
            oldest = self._pending.pop(keep)
            size -= oldest.nbytes
            self._pending_rows -= oldest.num_rows
            self.stats["dropped_events"] += oldest.num_rows
            self._warn_once(("dropped",), f"rldk: dropped the oldest buffered events of run "
                            f"{self.run_id!r}: the store has been unwritable too long")

    def _finish(self) -> None:
        from rldk.writer._encode import encode_rows

        end = {"status": self._status, **self._end_detail, "session": self.session,
               "stats": dict(self.stats), "counters": self.counters.to_dict()}
        end["stats"]["events"] += 1
        self._seq += 1
        self._add(encode_rows(self.run_id, self.rank, "run",
                              [(self._seq, None, time.time(), "end", None, None, None, None, end)]))
        for attempt in range(_FINISH_TRIES):
            if not self._pending_rows or self._write_segment():
                break
            time.sleep(0.1 * (attempt + 1))
        if self._pending_rows:
            self.stats["unwritten_events"] += self._pending_rows
            warnings.warn_explicit(
                f"rldk: {self._pending_rows} events of run {self.run_id!r} could not be written to "
                f"{self.dir} and are lost ({self.stats['write_errors']} failed writes: disk full or "
                "not writable?)", RldkWarning, "rldk.writer", 0, module="rldk.writer")
            self._pending, self._pending_rows = [], 0
            return
        self._merge_small()

    def _merge_small(self) -> None:
        """Merge small segments (under the store lock): always when they are many, and
        when they add up to less than one segment (a short run ends as one file); big
        segments stay as they are."""
        small = [name for name, rows in zip(self.segments, self._segment_rows)
                 if rows < self.segment_rows // 4]
        worth_it = len(small) > _COMPACT_MIN or (len(small) > 1 and len(small) == len(self.segments))
        if not (self.compact_on_close and worth_it):
            return
        try:
            with store_lock(self.dir):
                merge_segments(self.dir, small, segment_name(self.run_id, self.rank, self.session))
        except Exception as exc:      # OSError, or any error of an object storage client
            self._warn_once(("compact",), f"rldk: could not merge segments in {self.dir} ({exc}); "
                            "they stay as they are (run `rldk compact` later)")

    # ------------------------------------------------------------------ helpers
    def _prepare_dir(self) -> None:
        """Check the directory is writable, and finish merges a killed process left."""
        self._uploader = Uploader(self.dir)
        if isinstance(self.dir, ObjectDir):
            return self._probe_remote()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.dir / temp_name(f"probe-{self.session}")
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreError(f"cannot write the event store at {self.dir}: {exc.strerror or exc}; "
                             "pass a writable directory (or set RLDK_DIR)") from None
        with contextlib.suppress(OSError), store_lock(self.dir, blocking=False) as held:
            if held:
                repair(self.dir)

    def _probe_remote(self) -> None:
        """One small PUT and DELETE, so that bad credentials, a missing bucket or an
        unreachable endpoint fail ``init`` with one line, not the first flush."""
        probe = self.dir / temp_name(f"probe-{self.session}")
        try:
            fs = self.dir.fs
            fs.pipe_file(probe.split("://", 1)[1], b"")
            fs.rm_file(probe.split("://", 1)[1])
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot write the event store at {self.dir}: {type(exc).__name__}: "
                             f"{exc}; check the credentials (AWS_* variables), the bucket and the "
                             "endpoint (AWS_ENDPOINT_URL)") from None

    def _after_fork_in_child(self) -> None:
        """The child of a fork: the parent's thread is gone and its locks may be held.
        Start over with fresh locks, an empty buffer (the parent writes what it logged),
        a new session (its own segment files) and a new encoder thread."""
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._queue = deque()
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
        step = self.step if self.step is not None else w._step
        w._queue.append(("rows", ("span", step, self._wall, [(self.name, seconds, None, None, None, attrs)])))
        if len(w._queue) > w._check_len:
            w._check_backlog()
        return False


# --------------------------------------------------------------- value helpers
def _numel(v) -> int:
    numel = getattr(v, "numel", None)
    if callable(numel):
        return numel()
    size = getattr(v, "size", None)
    return size if isinstance(size, int) else (1 if not hasattr(v, "shape") else -1)


def _fetch_together(values: dict, names: list, out: dict) -> None:
    """Copy one-element accelerator tensors to the host in a single transfer."""
    import torch

    try:
        stacked = torch.stack([values[n].detach().reshape(()).to(torch.float64) for n in names])
        for name, v in zip(names, stacked.cpu().tolist()):
            out[name] = v
    except Exception:  # mixed dtypes that cannot stack: one by one, still never raising
        for name in names:
            try:
                out[name] = values[name].item()
            except Exception:
                out[name] = repr(values[name])


def _scalar(v):
    from rldk.writer._encode import scalar_fields

    return scalar_fields(v)


def _text(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return str(v)


def _check_strict_step(step) -> None:
    if not isinstance(step, int) or isinstance(step, bool):
        raise ValueError(f"rldk strict mode: step {step!r} is not an integer")


def _check_strict(values: dict) -> None:
    from rldk.writer._encode import scalar_fields

    for name, v in values.items():
        problem = scalar_fields(v)[3]
        if problem is not None:
            raise ValueError(f"rldk strict mode: metric {name!r}: {problem}")


LAYOUTS = ("flat", "hive")


def _run_dir(base, run_id: str, layout: str | None, project: str | None):
    """The folder a run's files go to: ``base`` (flat), or
    ``base/project=<project>/run_id=<run_id>`` (hive); local or on object storage."""
    where = location(base)
    layout = layout or ("hive" if project else "flat")
    if layout not in LAYOUTS:
        raise UsageError(f"layout {layout!r}: use 'flat' or 'hive' (RLDK_LAYOUT)")
    if layout == "flat":
        if project is not None:
            raise UsageError("project is a folder of the hive layout: pass layout='hive' too")
        return where
    parts = (f"project={check_project(project or 'default')}", f"run_id={run_id}")
    return where.sub(*parts) if isinstance(where, ObjectDir) else where.joinpath(*parts)


def _default_run_id() -> str:
    script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] not in ("", "-c") else "run"
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in script).strip("._-") or "run"
    return f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}"


# ------------------------------------------------------- exit and signal safety
_LIVE: list = []
_HOOKS = {"installed": False}
_SIGNALS = ("SIGTERM", "SIGHUP")


def _register(writer: EventWriter) -> None:
    _LIVE.append(writer)
    if not _HOOKS["installed"]:
        import atexit

        _HOOKS["installed"] = True
        atexit.register(_close_at_exit)
        os.register_at_fork(after_in_child=_after_fork)
        _install_signal_handlers()


def _unregister(writer: EventWriter) -> None:
    with contextlib.suppress(ValueError):
        _LIVE.remove(writer)


def close_all(status: str = "complete", detail: dict | None = None) -> None:
    """Close every open writer of this process."""
    for writer in list(_LIVE):
        writer.close(status, detail=detail)


def _close_at_exit() -> None:
    """At interpreter exit: the status says how the process ended. An uncaught
    exception (Python keeps it in ``sys.last_value`` for the exit) is ``failed``,
    Ctrl-C is ``killed``, a normal end or ``sys.exit`` is ``complete``."""
    exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    close_all(*(_ending(exc) if exc is not None else ("complete",)))


def _ending(exc: BaseException) -> tuple[str, dict]:
    """The end status and detail for a run ended by ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        return "killed", {"signal": "SIGINT"}
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return "complete", {}
    return "failed", {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}


def _after_fork() -> None:
    for writer in list(_LIVE):
        if not writer._closed:
            writer._after_fork_in_child()
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None and _LIVE:
        # multiprocessing children leave through os._exit, skipping atexit; its own
        # exit hook runs registered finalizers, so a Pool worker's events are written
        mp_util.Finalize(None, _close_at_exit, exitpriority=10)


def _install_signal_handlers() -> None:
    """SIGTERM and SIGHUP close the writers (status killed) and then end the process
    as the signal would have. A program that handles a signal itself keeps its
    handler (atexit still closes the writers if it exits)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return
    for name in _SIGNALS:
        number = getattr(signal, name, None)
        if number is None or signal.getsignal(number) is not signal.SIG_DFL:
            continue

        def on_signal(signum, frame, name=name):
            close_all("killed", {"signal": name})
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

        signal.signal(number, on_signal)


# ------------------------------------------------- one live writer per run and rank
def _claim(directory: Path, run_id: str, rank: int):
    """Hold ``.<run_id>.r<rank>.lock`` for the writer's life. Another live process
    writing the same run and rank would mix two streams into one run: warn (once)
    and carry on, marking the start event. Returns the descriptor, or None."""
    if isinstance(directory, ObjectDir):
        return _NO_LOCK      # object storage has no locks: two writers of one run are not detected
    try:
        import fcntl
    except ImportError:      # pragma: no cover - not POSIX
        return None
    try:
        fd = os.open(directory / _owner_name(run_id, rank), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
    warnings.warn(f"rldk: another live process is writing run {run_id!r} rank {rank} in {directory}; "
                  "both streams go into one run: pass a distinct run_id (or rank)", RldkWarning, stacklevel=4)
    return None


_NO_LOCK = -1


def _owner_name(run_id: str, rank: int) -> str:
    return f".{safe_file_stem(run_id)}.r{rank}.lock"


def _release(fd, path: Path) -> None:
    """Remove the run's lock file and let it go (a writer opening it meanwhile may miss
    the warning; it never blocks or loses data)."""
    if fd is not None and fd != _NO_LOCK:
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.close(fd)
