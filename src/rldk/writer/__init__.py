"""The event writer: ``import rldk.writer as w; w.init(...); w.log(step, kl=...)``.

Module-level functions act on one default writer (``init`` creates it; a first
``log`` without ``init`` creates one from ``RLDK_DIR``/``RLDK_RUN_ID`` or defaults,
with a warning saying where). Use :class:`EventWriter` directly for several runs
at once. Nothing here imports torch, polars or duckdb.
"""
from __future__ import annotations

import warnings

from rldk.writer._lifecycle import close_all
from rldk.writer._limits import RldkWarning
from rldk.writer._writer import EventWriter

__all__ = ["EventWriter", "RldkWarning", "init", "log", "log_rng", "log_tensors", "log_memory",
           "span", "log_samples", "log_event", "log_checkpoint", "flush", "close", "current", "close_all",
           "should_stop"]

_current: EventWriter | None = None
_guard = None          # the default writer's rldk.live.guards.Guard, when init(guards=...)


def init(dir=None, run_id=None, guards=None, **options) -> EventWriter:
    """Start the default writer (closing a previous one); options as :class:`EventWriter`.

    ``guards="default"`` (or a :class:`rldk.live.Guards`, or a dict of its fields) runs
    the live analyzers on this run in a background thread; see :func:`should_stop`.
    """
    global _current, _guard
    if _current is not None:
        close()
    _current = EventWriter(dir, run_id, **options)
    _bind_fast_log(_current)
    if guards:
        from rldk.live.guards import start

        _guard = start(_current, guards)
    return _current


def should_stop() -> bool:
    """True once a guard (``init(..., guards=...)``) found a problem at its ``stop_on``
    severity: leave the training loop (after saving what you want to keep). Raises
    ``rldk.Stop`` instead when the guards were configured with ``raise_stop=True``.
    Always False without guards. Cheap: call it every step."""
    return _guard.should_stop() if _guard is not None else False


def _bind_fast_log(writer) -> None:
    # ``w.log`` is looked up on the module at each call: pointing it at the bound
    # method skips one Python call on the hot path. ``from rldk.writer import log``
    # keeps the forwarding function below, which behaves the same.
    globals()["log"] = writer.log


def current() -> EventWriter | None:
    """The default writer, or None before ``init``."""
    return _current


def _default_writer() -> EventWriter:
    global _current
    if _current is None or _current._closed:
        _current = EventWriter()
        warnings.warn(f"rldk.writer.init() was not called: writing run {_current.run_id!r} "
                      f"to {_current.dir}", RldkWarning, stacklevel=3)
    return _current


def _forward_log(step, mapping=None, /, **scalars) -> None:
    """Record scalars for ``step`` (see :meth:`EventWriter.log`)."""
    (_current if _current is not None and not _current._closed else _default_writer()).log(step, mapping, **scalars)


log = _forward_log


def log_rng(step, generators=None) -> None:
    """Record RNG state digests (see :meth:`EventWriter.log_rng`)."""
    _default_writer().log_rng(step, generators)


def log_tensors(step, source, kind: str = "param") -> None:
    """Record tensor checksums (see :meth:`EventWriter.log_tensors`)."""
    _default_writer().log_tensors(step, source, kind)


def log_memory(step) -> None:
    """Record memory readings (see :meth:`EventWriter.log_memory`)."""
    _default_writer().log_memory(step)


def profile(step=None, steps=None, top: int = 25):
    """Profile a block with torch.profiler at ``steps`` (see :mod:`rldk.writer.profiler`)."""
    from rldk.writer.profiler import ProfileWindow

    return ProfileWindow(_default_writer(), step, steps, top)


def span(name: str, step=None):
    """Time a section (see :meth:`EventWriter.span`)."""
    return _default_writer().span(name, step)


def log_samples(step, prompts, responses, rewards=None, **extra) -> None:
    """Record text samples (see :meth:`EventWriter.log_samples`)."""
    _default_writer().log_samples(step, prompts, responses, rewards, **extra)


def log_event(kind: str, name: str, step=None, **payload) -> None:
    """Record one event of any kind (see :meth:`EventWriter.log_event`)."""
    _default_writer().log_event(kind, name, step, **payload)


def log_checkpoint(step, path, model=None, optimizer=None, scheduler=None, rng=True,
                   dataloader_state=None, action: str = "save") -> dict:
    """Record a checkpoint's per-part digests (see :meth:`EventWriter.log_checkpoint`)."""
    return _default_writer().log_checkpoint(step, path, model, optimizer, scheduler, rng, dataloader_state, action)


def flush(timeout: float = 60.0) -> bool:
    """Write everything logged so far; True once it is on disk, False if a write failed."""
    return _current.flush(timeout) if _current is not None else True


def close(status: str = "complete") -> bool:
    """Close the default writer: last segment, ``run/end`` event, merged file.
    False when some events could not be written (see :meth:`EventWriter.close`)."""
    global _current, _guard
    if _guard is not None:
        _guard.close()
        _guard = None
    ok = True
    if _current is not None:
        ok = _current.close(status)
        _current = None
    globals()["log"] = _forward_log
    return ok
