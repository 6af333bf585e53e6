"""A short torch.profiler window whose operator summary is stored as span events.

    import rldk.writer as w
    for step in range(n):
        with w.profile(step, steps=range(10, 13)):     # profiled at steps 10-12 only
            train_step()

Outside ``steps`` the context does nothing (no profiler, no cost). Inside, the
block runs under ``torch.profiler.profile`` (CPU, and CUDA when it is in use);
at exit the ``top`` operators by self time become ``span`` events named
``torch_op/<operator>`` at that step: value = self CPU seconds, ivalue = calls,
attrs = ``{"calls", "self_cpu_s", "cpu_total_s", "self_device_s"}``. ``rldk
profile`` lists them in a "Top operators" table and keeps them out of the phase
breakdown (they are nested inside the phases).
"""
from __future__ import annotations

import contextlib

OP_PREFIX = "torch_op/"


class ProfileWindow(contextlib.ContextDecorator):
    """Context manager profiling one block when ``step`` is in ``steps`` (always when None)."""

    def __init__(self, writer, step=None, steps=None, top: int = 25):
        self.writer, self.step, self.steps, self.top = writer, step, steps, int(top)
        self._prof = None

    def __enter__(self):
        step = self.step if self.step is not None else self.writer._last_step()
        if self.steps is not None and step not in self.steps:
            return self
        import torch

        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self._step = step
        self._prof = torch.profiler.profile(activities=activities)
        self._prof.__enter__()
        return self

    def __exit__(self, *exc):
        if self._prof is None:
            return False
        self._prof.__exit__(*exc)
        for name, seconds, calls, attrs in operator_summary(self._prof.key_averages(), self.top):
            self.writer.log_event("span", OP_PREFIX + name, self._step, value=seconds, ivalue=calls,
                                  attrs=attrs)
        self._prof = None
        return False


def operator_summary(averages, top: int) -> list[tuple[str, float, int, dict]]:
    """``(operator, self CPU seconds, calls, attrs)`` of the ``top`` operators by self time
    (``averages``: ``torch.profiler.profile().key_averages()``; its times are microseconds)."""
    def device_us(evt):
        return getattr(evt, "self_device_time_total", None) or getattr(evt, "self_cuda_time_total", 0) or 0

    ranked = sorted(averages, key=lambda e: (e.self_cpu_time_total + device_us(e)), reverse=True)
    out = []
    for evt in ranked[:top]:
        attrs = {"calls": int(evt.count), "self_cpu_s": evt.self_cpu_time_total / 1e6,
                 "cpu_total_s": evt.cpu_time_total / 1e6, "self_device_s": device_us(evt) / 1e6}
        out.append((str(evt.key), evt.self_cpu_time_total / 1e6, int(evt.count), attrs))
    return out
