"""Committing a writer's segments to object storage off the encoder thread.

On object storage a segment is committed by one PUT (see :mod:`rldk.core.segments`).
A PUT can stall for as long as the network does, so it runs on its own thread,
one at a time: the encoder keeps draining the training thread's buffers meanwhile
(``log`` never waits on the network), and the writer keeps the tables of the
upload in flight until the PUT returns, so a failed upload is retried with them.
"""
from __future__ import annotations

import threading

from rldk.core import run_summary
from rldk.core.segments import write_segment


class Uploader:
    """At most one segment upload in flight for one writer."""

    def __init__(self, directory, options: dict | None = None):
        self.directory = directory
        self.options = options           # the segments' ParquetWriter options (None: the default)
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._error: BaseException | None = None
        self.name: str | None = None
        self.rows = 0
        self.tables = 0          # how many of the writer's leading pending tables are in flight

    @property
    def busy(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    def start(self, tables: list, name: str) -> None:
        import pyarrow as pa

        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        self.name, self.rows, self.tables = name, table.num_rows, len(tables)
        self._error = None
        self._done.clear()
        summary = run_summary.metadata_of(tables)
        self._thread = threading.Thread(target=self._put, args=(table, name, summary),
                                        name=f"rldk-upload-{name}", daemon=True)
        self._thread.start()

    def _put(self, table, name: str, summary: dict) -> None:
        try:
            write_segment(table, self.directory, name, self.options, summary)
        except BaseException as exc:          # reported to the writer by take()
            self._error = exc
        finally:
            self._done.set()

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (None: until done); True when nothing is in flight."""
        return self._thread is None or self._done.wait(timeout)

    def take(self):
        """The finished upload as ``(name, rows, tables, error)``, once; None when
        nothing finished since the last call."""
        if self._thread is None or not self._done.is_set():
            return None
        self._thread = None
        return self.name, self.rows, self.tables, self._error
