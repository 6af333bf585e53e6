"""Writers end well: at exit, on SIGTERM/SIGHUP, after fork; one live writer per run and rank."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import warnings
from pathlib import Path

from rldk.core.errors import UsageError
from rldk.core.fs import ObjectDir, location
from rldk.core.naming import (
    check_project,
    safe_file_stem,
)
from rldk.writer._limits import LAYOUTS, RldkWarning


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


def _register(writer) -> None:
    _LIVE.append(writer)
    if not _HOOKS["installed"]:
        import atexit

        _HOOKS["installed"] = True
        atexit.register(_close_at_exit)
        os.register_at_fork(after_in_child=_after_fork)
        _install_signal_handlers()


def _unregister(writer) -> None:
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

