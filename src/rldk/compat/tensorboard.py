"""A TensorBoard ``SummaryWriter`` stand-in that writes to an rldk event store.

    from rldk.compat.tensorboard import SummaryWriter     # was: from torch.utils.tensorboard import ...
    with SummaryWriter("tb/ppo/seed1") as tb:
        tb.add_scalar("train/kl", kl, global_step=step)

Where the run goes: TensorBoard treats ``log_dir`` as one run inside a folder of
runs, and so does this class: the store directory is ``log_dir``'s parent and the
run id its last part (``tb/ppo/seed1`` -> run ``seed1`` in store ``tb/ppo``).
Without ``log_dir`` it is TensorBoard's default ``runs/<Mon>D_HH-MM-SS_<host><comment>``.
``RLDK_DIR`` and ``RLDK_RUN_ID`` override both, as for every rldk writer.

What is recorded: ``add_scalar`` / ``add_scalars`` as ``metric`` events (``add_scalars``
names them ``main_tag/tag``); ``add_text`` as a metric event with a null value and
the text in ``text`` (as rldk's TensorBoard converter stores text); ``add_histogram``
as ``tag/min``, ``/max``, ``/mean``, ``/std``, ``/count`` metrics (``/nonfinite``
when some values are NaN/inf); ``add_hparams`` as a ``run`` event named ``hparams``
plus its metrics. A call without ``global_step`` uses the last step this writer was
given (0 before any). Images, figures, audio, graphs, embeddings and the rest are
accepted and counted, not stored.
"""
from __future__ import annotations

import os
import socket
import time
import warnings
from pathlib import Path

from rldk.compat._stats import stats_from_bins, value_stats
from rldk.compat._wandb_run import caller_level
from rldk.converters.base import metric_table, run_id_for
from rldk.writer import EventWriter, RldkWarning
from rldk.writer._encode import scalar_fields

__all__ = ["SummaryWriter"]


class SummaryWriter:
    """``torch.utils.tensorboard.SummaryWriter(log_dir=None, comment="", ...)`` writing to rldk.

    ``run_id`` and ``config`` (keyword-only, rldk's own) name the run and record its
    configuration; TensorBoard's other arguments are accepted and unused.
    """

    def __init__(self, log_dir=None, comment="", purge_step=None, max_queue=10, flush_secs=120,
                 filename_suffix="", *, run_id=None, config=None):
        if log_dir is None:
            stamp = time.strftime("%b%d_%H-%M-%S")
            log_dir = os.path.join("runs", f"{stamp}_{socket.gethostname()}{comment}")
        self.log_dir = str(log_dir)
        path = Path(self.log_dir)
        name = run_id or path.name or "run"
        self.writer = EventWriter(path.parent, run_id_for(name, None, True), config=config,
                                  flush_secs=min(float(flush_secs), 5.0))
        self._step = 0
        self._ignored: dict[str, int] = {}
        self._warned: set = set()

    def get_logdir(self) -> str:
        return self.log_dir

    # ------------------------------------------------------------------ scalars and text
    def add_scalar(self, tag, scalar_value, global_step=None, walltime=None, new_style=False,
                   double_precision=False) -> None:
        """One metric event ``tag`` at ``global_step``; ``walltime`` in seconds since the epoch."""
        self._log(global_step, {str(tag): scalar_value}, walltime)

    def add_scalars(self, main_tag, tag_scalar_dict, global_step=None, walltime=None) -> None:
        """Metric events ``main_tag/tag`` for each ``tag: value``."""
        self._log(global_step, {f"{main_tag}/{tag}": v for tag, v in tag_scalar_dict.items()}, walltime)

    def add_text(self, tag, text_string, global_step=None, walltime=None) -> None:
        """A metric event with a null value and ``text_string`` in ``text``."""
        self.writer.log_event("metric", str(tag), self._step_of(global_step), text=str(text_string))

    # ------------------------------------------------------------------ histograms
    def add_histogram(self, tag, values, global_step=None, bins="tensorflow", walltime=None,
                      max_bins=None) -> None:
        """Summary statistics of ``values`` (array, tensor or sequence) as ``tag/<stat>`` metrics."""
        stats = value_stats(values)
        if not stats:
            return self._warn(("histogram", tag), f"add_histogram({tag!r}): values are not numbers; not stored")
        self._log(global_step, {f"{tag}/{stat}": v for stat, v in stats.items()}, walltime)

    def add_histogram_raw(self, tag, min, max, num, sum, sum_squares, bucket_limits, bucket_counts,
                          global_step=None, walltime=None) -> None:
        """Statistics of a histogram already binned: exact count/min/max/mean/std from the sums."""
        stats = {"min": min, "max": max, "count": num}
        try:
            mean = float(sum) / float(num)
            stats.update(mean=mean, std=max_zero(float(sum_squares) / float(num) - mean * mean) ** 0.5)
        except (TypeError, ValueError, ZeroDivisionError):
            stats = stats_from_bins(bucket_counts, [min, *bucket_limits]) or stats
        self._log(global_step, {f"{tag}/{stat}": v for stat, v in stats.items()}, walltime)

    def add_hparams(self, hparam_dict, metric_dict, hparam_domain_discrete=None, run_name=None,
                    global_step=None) -> None:
        """A ``run`` event ``hparams`` (the hyperparameters) and the metrics of ``metric_dict``."""
        self.writer.log_event("run", "hparams", attrs={"hparams": dict(hparam_dict), "run_name": run_name})
        self._log(global_step, dict(metric_dict), None)

    # ------------------------------------------------------------------ the rest
    def __getattr__(self, name):
        """``add_image``, ``add_figure``, ``add_graph``, ``add_embedding``...: accepted, counted."""
        if not name.startswith("add_"):
            raise AttributeError(f"SummaryWriter has no attribute {name!r}")

        def ignored(*args, **kwargs) -> None:
            self._ignored[name] = self._ignored.get(name, 0) + 1
            self._warn(name, f"SummaryWriter.{name} is counted, not stored, by rldk")
        return ignored

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        """Close the run (counts of what was not stored go into a ``writer`` event)."""
        self._close("complete")

    def _close(self, status: str) -> None:
        if self.writer._closed:
            return
        if self._ignored:
            self.writer.log_event("writer", "tensorboard/not_stored", ivalue=sum(self._ignored.values()),
                                  attrs={"by_method": self._ignored})
        self.writer.close(status)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self._close("complete" if exc_type is None else "failed")
        return False

    # ------------------------------------------------------------------ helpers
    def _step_of(self, global_step) -> int:
        if global_step is not None:
            try:
                self._step = int(global_step)
            except (TypeError, ValueError):
                self._warn(("step", "type"), f"global_step {global_step!r} is not an integer; "
                           f"the last step ({self._step}) is used")
        return self._step

    def _log(self, global_step, values: dict, walltime) -> None:
        step = self._step_of(global_step)
        if walltime is None:
            self.writer.log(step, values)
            return
        self._log_at(step, values, walltime)

    def _log_at(self, step: int, values: dict, walltime) -> None:
        """Numbers with the caller's wall time, as one small Arrow table (walltime is rarely
        given); anything else goes through the writer's checks, at the current time."""
        fields = {name: scalar_fields(v) for name, v in values.items()}
        try:
            wall = float(walltime)
        except (TypeError, ValueError):
            wall = None
        if wall is None or any(f[3] is not None for f in fields.values()):
            self.writer.log(step, values)
            return
        names = list(fields)
        self.writer.append_table(metric_table([step] * len(names), names, [fields[n][0] for n in names],
                                              [wall] * len(names)))

    def _warn(self, key, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"rldk.compat.tensorboard: {message}", RldkWarning, stacklevel=caller_level())


def max_zero(x: float) -> float:
    return x if x > 0 else 0.0
