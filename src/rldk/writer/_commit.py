"""The writer's segment commits: atomic local files, one-PUT objects, merges at close.

A mixin of :class:`rldk.writer._writer.EventWriter` (one concept: getting encoded
tables onto storage as immutable segments, and the session's merge at close).
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings

from rldk.core import run_summary
from rldk.core.errors import StoreError
from rldk.core.fs import ObjectDir
from rldk.core.naming import (
    segment_name,
    temp_name,
)
from rldk.core.segments import merge_segments, repair, store_lock, write_segment
from rldk.writer._limits import (
    _COMPACT_MIN,
    _FINISH_TRIES,
    _FLUSH_UPLOAD_SECS,
    RldkWarning,
)
from rldk.writer._upload import Uploader


class CommitMixin:
    """Write, upload, shed and merge segments (called from the encoder thread)."""

    def encode_ahead(self, workers: int = 2) -> None:
        """Encode this writer's segments on ``workers`` threads of their own, several at
        once, and commit them in sequence order (an import: millions of rows in one go).
        Each is written and fsynced under a hidden name by its worker, then renamed into
        place by the writer's thread once every segment before it is: files appear
        whole and in order, as with one thread. Local stores only; call it before the
        first event is queued. The first failed write returns to one thread at a time."""
        if workers > 1 and not isinstance(self.dir, ObjectDir):
            self._ahead = AheadCommits(self.dir, self.parquet_options, workers)

    def _write_segment(self, started: float | None = None) -> bool:
        import pyarrow as pa

        if isinstance(self.dir, ObjectDir):
            return self._commit_remote(started)
        if self._ahead is not None:
            return self._write_ahead(started)
        table = pa.concat_tables(self._pending) if len(self._pending) > 1 else self._pending[0]
        name = segment_name(self.run_id, self.rank, self.session, len(self.segments))
        try:
            write_segment(table, self.dir, name, _uncompressed_nulls(self._options_for(table.num_rows), table),
                          run_summary.metadata_of(self._pending))
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

    def _options_for(self, rows: int) -> dict | None:
        """The Parquet options of a segment of ``rows`` rows: the writer's own when given.
        Else a small segment is written fast (``SEGMENT_PARQUET_OPTIONS``: 2.9 instead of
        3.9 ms of CPU for 10,700 values, 8% more bytes), since close() merges the small
        ones into one compact file; a big one, which stays as it is, gets the compact
        default (None)."""
        from rldk.schemas import SEGMENT_PARQUET_OPTIONS

        if self.parquet_options is not None:
            return self.parquet_options
        return SEGMENT_PARQUET_OPTIONS if _is_small(rows, self.segment_rows) else None

    def _write_ahead(self, started: float | None) -> bool:
        """:meth:`encode_ahead`'s write: hand the pending tables to a worker and commit the
        segments encoded before them, in order; all of them when the writer closes or a
        flush is wanted. True once everything handed over is committed."""
        ahead = self._ahead
        self._last_write = started if started is not None else time.monotonic()
        everything = self._stop or self._flush_wanted > self._flush_done
        try:
            if self._pending:
                ahead.wait(ahead.workers - 1)                # at most ``workers`` in flight
                self._take_committed()
                name = segment_name(self.run_id, self.rank, self.session, len(self.segments) + ahead.count)
                ahead.submit(self._pending, self._pending_rows, name)
                self._pending, self._pending_rows = [], 0
            ahead.wait(0 if everything else None)
            self._take_committed()
        except Exception as exc:
            return self._ahead_failed(exc)
        return not ahead.count

    def _take_committed(self) -> None:
        """Commit what is encoded, in order, and count it; then raise the error of the
        first segment that could not be written (the ones before it stay counted)."""
        done, error = self._ahead.commit()
        for name, rows in done:
            self.segments.append(name)
            self._segment_rows.append(rows)
            self.stats["segments"] += 1
        if error is not None:
            raise error

    def _ahead_failed(self, exc: Exception) -> bool:
        """A segment could not be written: every table not committed goes back to the
        front of ``_pending`` (in order) and segments are written one at a time from now
        on, with the one-thread path's retries, shedding and warnings."""
        tables = self._ahead.abandon()
        self._ahead = None
        self._pending = tables + self._pending
        self._pending_rows = sum(t.num_rows for t in self._pending)
        if not isinstance(exc, OSError):
            raise exc
        self.stats["write_errors"] += 1
        self._warn_once(("write",), f"rldk: cannot write to {self.dir} ({exc}); events are kept "
                        f"in memory (up to {self.max_buffer_bytes >> 20} MiB) and retried")
        self._shed()
        return False

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
            in_flight = self._ahead is not None and self._ahead.count
            if not (self._pending_rows or in_flight) or self._write_segment():
                break
            time.sleep(0.1 * (attempt + 1))
        if self._ahead is not None:
            self._ahead.close()
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
                 if _is_small(rows, self.segment_rows)]
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
        self._uploader = Uploader(self.dir, self.parquet_options)
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


class AheadCommits:
    """Segments being encoded on worker threads (:meth:`CommitMixin.encode_ahead`),
    oldest first: each is written to a hidden file (``temp_name`` of its final name,
    which :func:`~rldk.core.segments.repair` removes if the process dies) and renamed to
    its final name by :meth:`commit`, never before the segments ahead of it."""

    def __init__(self, directory, options: dict | None, workers: int):
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self.directory, self.options, self.workers = directory, options, workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="rldk-encode")
        self._flight: deque = deque()         # (future, final name, tables, rows)

    @property
    def count(self) -> int:
        return len(self._flight)

    def submit(self, tables: list, rows: int, name: str) -> None:
        self._flight.append((self._pool.submit(self._encode, tables, name), name, tables, rows))

    def _encode(self, tables: list, name: str) -> None:
        import pyarrow as pa

        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        write_segment(table, self.directory, temp_name(name), _uncompressed_nulls(self.options, table),
                      run_summary.metadata_of(tables))

    def wait(self, keep: int | None) -> None:
        """Wait until at most ``keep`` segments are still encoding (None: no wait)."""
        if keep is not None:
            for future, *_ in list(self._flight)[:max(0, len(self._flight) - keep)]:
                future.exception()

    def commit(self) -> tuple[list, Exception | None]:
        """Rename the finished segments at the head into place, in order: their ``(name,
        rows)``, and the error of the first that failed (it stays in flight), if one did."""
        done = []
        while self._flight and self._flight[0][0].done():
            future, name, _, rows = self._flight[0]
            error = future.exception()
            if error is None:
                try:
                    os.replace(self.directory / temp_name(name), self.directory / name)
                except OSError as exc:
                    error = exc
            if error is not None:
                return done, error
            self._flight.popleft()
            done.append((name, rows))
        return done, None

    def abandon(self) -> list:
        """Wait for every segment in flight, remove the files of those not committed and
        return their tables, oldest first (the caller writes them again)."""
        tables = []
        for future, name, parts, _ in self._flight:
            future.exception()
            with contextlib.suppress(OSError):
                os.unlink(self.directory / temp_name(name))
            tables.extend(parts)
        self._flight.clear()
        self.close()
        return tables

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _is_small(rows: int, segment_rows: int) -> bool:
    """Whether a segment of ``rows`` rows is small: close() merges small segments when
    there are several (:meth:`CommitMixin._merge_small`); big ones stay as they are."""
    return rows < segment_rows // 4


def _uncompressed_nulls(options: dict | None, table) -> dict | None:
    """``options`` with no compression for the columns that are all null in ``table``:
    their pages hold nothing but the levels saying so (a few bytes either way), and Arrow
    makes a compression context for each page it compresses (-0.025 s of CPU per 10M
    rows of the long layout's five null columns)."""
    codecs, levels = (options or {}).get("compression"), (options or {}).get("compression_level")
    if not isinstance(codecs, dict) or not isinstance(levels, (dict, type(None))):
        return options
    empty = [c for c in table.column_names if table.column(c).null_count == table.num_rows]
    if not empty:
        return options
    out = {**options, "compression": {**codecs, **dict.fromkeys(empty, "none")}}
    if levels:                            # Arrow refuses a level for an uncompressed column
        out["compression_level"] = {c: level for c, level in levels.items() if c not in empty}
    return out
