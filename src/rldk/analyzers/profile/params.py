"""Parameters of the compute profile (shared by its modules) and what to log for it."""
from __future__ import annotations

from dataclasses import dataclass

HOW_TO_TIME = ("wrap each phase in `with rldk.writer.span('rollout'):` (also 'reward', 'reference', "
               "'train', and 'step' around the whole step), or log step_time / timing_s/<phase> metrics")


@dataclass(frozen=True)
class Params:
    """Parameters of the compute profile.

    run_id: profile this run only (None: every run with spans or timing metrics).
    warmup_steps: first steps left out of the regression search (compilation, caches).
    min_ratio: smallest slowdown (median after / median before) reported as a regression.
    alpha: significance level of a change point (two-sided Mann-Whitney U).
    min_segment: fewest steps on each side of a change point.
    max_change_points: at most this many change points per run.
    model_params, peak_flops, num_devices: for MFU (peak FLOP/s of one device;
        devices default to the run's ranks); model_params also read from the run
        config keys in ``CONFIG_MODEL_PARAMS``.
    tokens_per_step, samples_per_step: counts when the run does not log them.
    """

    run_id: str | None = None
    warmup_steps: int = 1
    min_ratio: float = 1.25
    alpha: float = 0.01
    min_segment: int = 5
    max_change_points: int = 3
    model_params: float | None = None
    peak_flops: float | None = None
    num_devices: int | None = None
    tokens_per_step: float | None = None
    samples_per_step: float | None = None
