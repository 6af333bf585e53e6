"""Where tasks run: in this process (``local``) or as Ray tasks (``ray``).

Ray is optional (``pip install 'rldk[ray]'``) and imported only when asked for.
Without a running Ray instance one is started on this machine for the call
(``workers`` CPUs, no dashboard) and shut down after it; an instance the caller
started (``ray.init(...)``, a cluster address) is used as it is.
"""
from __future__ import annotations

from rldk.core.errors import UsageError

ENGINES = ("local", "ray")
NO_RAY = ("--engine ray needs Ray, which is not installed: pip install 'rldk[ray]' "
          "(or use --engine local)")


def run_tasks(func, calls, engine: str = "local", workers: int | None = None) -> list:
    """``[func(*args) for args in calls]``, in this process or as one Ray task per call."""
    if engine == "local":
        return [func(*args) for args in calls]
    if engine != "ray":
        raise UsageError(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    try:
        remote = ray.remote(num_cpus=1)(func)
        return ray.get([remote.remote(*args) for args in calls])
    finally:
        if started:
            ray.shutdown()


def import_ray():
    """The ``ray`` module, or a UsageError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(NO_RAY) from None
    return ray
