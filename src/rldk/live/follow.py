"""The watch loop: poll, wait, repeat (the CLI renders what each poll yields)."""
from __future__ import annotations

import time

from rldk.live.monitor import Monitor, Poll
from rldk.live.notify import waiter


def follow(monitor: Monitor, interval: float = 1.0, inotify: bool = False,
           duration: float | None = None):
    """Yield a :class:`Poll` after each poll of ``monitor``, every ``interval`` seconds
    (sooner on a local change with ``inotify``), forever or for ``duration`` seconds.
    The first poll reads the whole store and evaluates every run at once."""
    wait, why = waiter(monitor.tailer.paths, inotify)
    end = None if duration is None else time.monotonic() + duration
    try:
        first = monitor.poll(force=True)
        if why:
            first.warnings.insert(0, why)
        yield first
        while end is None or time.monotonic() < end:
            left = interval if end is None else max(0.0, min(interval, end - time.monotonic()))
            wait.wait(left)
            yield monitor.poll()
    finally:
        wait.close()


__all__ = ["follow", "Poll"]
