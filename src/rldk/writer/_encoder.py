"""The writer's encoder thread: drains the queue ``log()`` fills and encodes it.

A mixin of :class:`rldk.writer._writer.EventWriter` (one concept: turning queued
calls into Arrow tables, in batches, off the training thread).
"""
from __future__ import annotations

import time
from operator import countOf

from rldk.writer._limits import _WAKE_VALUES


class EncoderMixin:
    """Drain, batch and encode the queue (runs on the encoder thread)."""

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
        self._fills: dict = {}             # column name -> an array of alike rows (_alike)
        self._ahead = None                 # segments encoded on worker threads (encode_ahead)

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
            self._yield_to_encoder(64)
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
            self._yield_to_encoder(0)
            with self._cond:
                if wanted > self._flush_done:
                    self._flush_ok = ok
                self._flush_done = max(self._flush_done, wanted)
                self._cond.notify_all()
            if stop:
                return

    def _yield_to_encoder(self, every: int) -> None:
        """While the encoder works, the compiled ``log`` lets it take the GIL every
        ``every`` calls: in a tight loop it would wait a switch interval (5 ms) each
        time it gives the GIL up (numpy, Arrow and file calls do), ~20 times a batch."""
        if self._recorder is not None:
            self._recorder.yield_every = every

    def _drain(self) -> None:
        """Number everything queued so far (seq, in call order) and encode it into
        pending Arrow tables."""
        queue, recorded = self._queue, None
        if self._recorder is not None:
            with self._order:                 # the calls and the events queued after them
                recorded, count = self._recorder.take(), len(queue)
        else:
            count = len(queue)
        popleft = queue.popleft
        items = [popleft() for _ in range(count)]
        problems: list = []
        if recorded is not None or self._recorder is not None and items:
            self._drain_mixed(_interleave(recorded, items), problems, recorded)
        elif not items:
            pass
        elif countOf(map(len, items), 4) == len(items):   # only all-float log() calls: the usual
            self._encode_floats(items, range(self._seq + 1, self._seq + 1 + len(items)), problems)
            self._seq += len(items)
        else:
            self._drain_mixed(items, problems)
        self._check_len = self._wake_calls
        if self._recorder is not None:
            self._recorder.wake_at = _WAKE_VALUES
        for name, problem in problems:
            self._warn_once(("value", name), f"rldk: metric {name!r}: {problem}; stored as text "
                            "(value null). Log a number, or pass strict=True to raise.")
        if self.counters.bad_steps:
            self._warn_once(("steps",), "rldk: a step that is not an integer was stored as null")

    def _drain_mixed(self, items: list, problems: list, recorded=None) -> None:
        """A drain holding other events too: all-float calls are still encoded as one
        batch, other calls together, events of one kind (a span and a sample every few
        steps) as one table; every event keeps its seq."""
        seq, floats, float_seqs, calls, by_kind, parts = self._seq, [], [], [], {}, []
        for item in items:
            seq += 1
            if len(item) == 4:
                floats.append(item)
                float_seqs.append(seq)
                continue
            tag, payload = item
            if tag == "floats":                           # calls lo..hi of the compiled path's
                lo, hi = payload
                parts.append((seq, lo, hi))
                seq += hi - lo - 1
            elif tag == "call":
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
        if parts:
            self._encode_recorded(recorded, parts, problems)
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

    def _encode_recorded(self, recorded: tuple, parts: list, problems: list) -> None:
        """Encode the compiled path's calls (``Recorder.take``), numbered by ``parts``:
        ``(first seq, first call, end call)`` runs between other events."""
        import numpy as np

        from rldk.writer._encode import encode_recorded, recorded_calls, split_recorded

        seqs = np.concatenate([np.arange(first, first + hi - lo, dtype=np.int64) for first, lo, hi in parts])
        for part, lo, hi in split_recorded(recorded, self.segment_rows):   # bounded memory per segment
            self._encode_guarded(lambda: encode_recorded(self.run_id, self.rank, part, seqs[lo:hi], self.counters,
                                                         self._encode_state),
                                 lambda: recorded_calls(part, seqs[lo:hi]), problems, count=len(part[4]) // 8)
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
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        from rldk.schemas import memory_schema

        n = table.num_rows
        cols = []
        for field in memory_schema():
            if field.name == "seq" and "seq" not in table.column_names:   # rows keep the order they came in
                cols.append(pa.array(np.arange(first_seq, first_seq + n, dtype=np.int64)))
            elif field.name in ("run_id", "rank") or field.name not in table.column_names:
                cols.append(self._alike(field, n))
            elif field.name == "wall_time" and pa.types.is_floating(table.column("wall_time").type):
                ms = pc.round(pc.multiply(table.column("wall_time"), 1000.0))
                ms = pc.if_else(pc.is_finite(ms), ms, pa.scalar(None, pa.float64()))
                cols.append(ms.cast(pa.int64()).cast(pa.timestamp("ms")))
            else:
                cols.append(table.column(field.name).cast(field.type))
        return pa.Table.from_arrays(cols, schema=memory_schema())

    def _alike(self, field, n: int):
        """``n`` rows of ``field`` that are all alike (this writer's run id or rank, or
        null): a slice of one array kept per writer and grown as needed, so that an
        imported table of a million rows allocates nothing for them."""
        import numpy as np
        import pyarrow as pa

        column = self._fills.get(field.name)
        if column is None or len(column) < n:
            size = max(n, 2 * len(column) if column is not None else 0)
            if field.name == "run_id":
                column = pa.DictionaryArray.from_arrays(pa.array(np.zeros(size, np.int32)),
                                                        pa.array([self.run_id], pa.string()))
            elif field.name == "rank":
                column = pa.array(np.full(size, self.rank, np.int32))
            else:
                column = pa.nulls(size, field.type)
            self._fills[field.name] = column
        return column.slice(0, n)


def _interleave(recorded, items: list) -> list:
    """The queue's ``(calls recorded before it, event)`` items with the recorded calls
    between them as ``("floats", (first call, end call))`` items, in call order."""
    out, done = [], 0
    for before, item in items:
        if before > done:
            out.append(("floats", (done, before)))
            done = before
        out.append(item)
    total = len(recorded[1]) // 4 if recorded is not None else 0
    if total > done:
        out.append(("floats", (done, total)))
    return out
