"""Waiting between polls: a plain sleep, or inotify on Linux to wake early.

Polling is the default and always runs: network filesystems (NFS, Lustre, object
store mounts) deliver no change notifications for files written on another host.
With inotify the watcher also wakes as soon as a local writer renames a segment
into a watched directory, so the interval can stay long while findings still
appear at once; it never replaces the poll.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import time

from rldk.core.fs import is_remote

#: IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE: a segment renamed in, a
#: file written or removed.
_MASK = 0x00000080 | 0x00000008 | 0x00000100 | 0x00000200
_IN_NONBLOCK = 0o4000


class Sleeper:
    """``wait(seconds)``: sleep (the polling default)."""

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        pass


class Inotify(Sleeper):
    """``wait(seconds)`` returns early when a watched directory changes. Raises
    OSError where inotify is unavailable (not Linux, no libc symbol, watch limit)."""

    def __init__(self, directories):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._fd = libc.inotify_init1(_IN_NONBLOCK)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        for d in directories:
            if libc.inotify_add_watch(self._fd, os.fsencode(d), _MASK) < 0:
                err = ctypes.get_errno()
                self.close()
                raise OSError(err, f"inotify_add_watch {d}: {os.strerror(err)}")

    def wait(self, seconds: float) -> None:
        ready, _, _ = select.select([self._fd], [], [], seconds)
        if ready:
            time.sleep(0.02)                   # let a burst of renames settle
            try:
                while os.read(self._fd, 65536):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def waiter(paths, use_inotify: bool) -> tuple[Sleeper, str | None]:
    """A waiter for ``paths`` and, when inotify was asked for but is unavailable, why."""
    if not use_inotify:
        return Sleeper(), None
    local = [p for p in map(str, paths) if not is_remote(p)]
    if not local:
        return Sleeper(), "inotify does not see object storage; polling only"
    directories = sorted({p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p)) or "."
                          for p in local})
    try:
        return Inotify(directories), None
    except (OSError, AttributeError) as exc:
        return Sleeper(), f"inotify unavailable ({exc}); polling only"
