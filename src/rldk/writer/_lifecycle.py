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
_CAUGHT: dict = {}                 # signal number -> our handler, where we installed one
_HANDLING: set = set()             # the signals our handler has begun to handle
_WAKEUP: dict = {}                 # our wakeup pipe's "read" and "write" ends
_FORKING = threading.local()       # the signals a fork blocked, in the forking thread


def _register(writer) -> None:
    _LIVE.append(writer)
    if not _HOOKS["installed"]:
        import atexit

        _HOOKS["installed"] = True
        atexit.register(_close_at_exit)
        os.register_at_fork(before=_before_fork, after_in_parent=_unblock_after_fork,
                            after_in_child=_after_fork)
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


def _before_fork() -> None:
    """Block the signals our handlers catch across a fork. One sent to the child
    before its hook below has run then waits in the kernel; unblocked, Python drops
    it when it resets the child's signal state, and the child never ends."""
    if _CAUGHT:
        import signal

        before = signal.pthread_sigmask(signal.SIG_BLOCK, _CAUGHT)
        _FORKING.blocked = set(_CAUGHT) - before


def _unblock_after_fork() -> None:
    blocked = getattr(_FORKING, "blocked", None)
    if blocked:
        import signal

        _FORKING.blocked = None
        signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)


def _after_fork() -> None:
    try:
        _HANDLING.clear()
        if _CAUGHT:
            _watch_for_swallowed_signals()     # the parent's watcher thread is gone
        for writer in list(_LIVE):
            if not writer._closed:
                writer._after_fork_in_child()
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None and _LIVE:
            # multiprocessing children leave through os._exit, skipping atexit; its exit
            # hook runs the finalizers registered after its own fork handling (which
            # clears those registered before), so a Pool worker's events are written
            _close_at_mp_exit()
            mp_util.register_after_fork(_MP_CHILD, _close_at_mp_exit)
    finally:
        _unblock_after_fork()     # a SIGTERM sent meanwhile now ends the child


class _MpChild:
    """multiprocessing keeps its after-fork callbacks by weak reference to an object."""


_MP_CHILD = _MpChild()


def _close_at_mp_exit(_obj=None) -> None:
    sys.modules["multiprocessing.util"].Finalize(None, _close_at_exit, exitpriority=10)


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
            _HANDLING.add(signum)
            close_all("killed", {"signal": name})
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

        signal.signal(number, on_signal)
        _CAUGHT[number] = on_signal
    if _CAUGHT:
        _watch_for_swallowed_signals()


# ------------------------------------------------------ signals Python never handles
def _watch_for_swallowed_signals() -> None:
    """Deliver again a caught signal whose Python handler has not run.

    Python runs a handler only when the main thread next runs Python code. A signal
    that lands on another thread, or while the main thread waits for the GIL just
    before a blocking wait (a ``multiprocessing.Pool`` worker taking its queue's
    lock), leaves the handler pending for ever, and the process ignores SIGTERM:
    ``Pool.terminate`` then waits on that worker for ever. The C-level handler
    writes every caught signal to Python's wakeup fd; a small thread reads it and,
    while our handler has not started, sends the signal to the main thread again,
    which interrupts its wait. A program (asyncio, trio) that owns the wakeup fd
    keeps it, and this watch is off."""
    import signal

    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except ValueError:                               # not the main thread
        os.close(read), os.close(write)
        return
    inherited = _WAKEUP.get("write")
    if previous not in (-1, inherited):
        signal.set_wakeup_fd(previous)               # someone else's: theirs stays
        os.close(read), os.close(write)
        return
    for end in (_WAKEUP.get("read"), inherited):     # a forked child's copy of the parent's
        if end is not None:
            with contextlib.suppress(OSError):
                os.close(end)
    _WAKEUP.update(read=read, write=write)
    threading.Thread(target=_redeliver, args=(read,), name="rldk-signals", daemon=True).start()


def _redeliver(read: int, grace: float = 0.5) -> None:
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, _CAUGHT)   # never this thread's to take
    main = threading.main_thread().ident
    while True:
        try:
            data = os.read(read, 512)
        except OSError:
            return
        if not data:
            return
        for number in set(data) & set(_CAUGHT):
            time.sleep(grace)                        # the main thread usually handles it first
            while number not in _HANDLING and signal.getsignal(number) is _CAUGHT.get(number):
                try:
                    signal.pthread_kill(main, number)
                except (OSError, ValueError):        # the main thread has ended
                    return
                time.sleep(2 * grace)


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

