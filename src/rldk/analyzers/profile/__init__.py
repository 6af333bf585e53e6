"""Compute profile of a run: where step time goes, when steps got slower, throughput.

Reads ``span`` events (``with rldk.writer.span("rollout"): ...``; value = seconds)
and timing metrics that trainers log (TRL ``step_time``; verl ``timing_s/<phase>``,
``perf/time_per_step``, ``perf/total_num_tokens``, ``perf/throughput``,
``perf/mfu/actor``), plus ``checkpoint`` events to exclude checkpoint steps.
One concept a module:

* ``breakdown``: each timed name is put in a phase (``PHASES``: rollout, reward,
  reference, train; anything else is "other"); its share of step time is its total
  seconds over the total step seconds; checkpoint and eval steps are set apart.
* ``regression``: change points of log step time (binary segmentation, a
  Mann-Whitney test per split), leaving out warm-up, checkpoint and eval steps.
* ``throughput``: tokens/s and samples/s from per-step counts; MFU = 6 x
  parameters x tokens/s / (peak FLOP/s x devices) when model size and peak are known.
* ``result``: the frozen results and the report; ``analyzer``: :class:`ProfileAnalyzer`;
  ``with_memory``: the time profile and the memory trends together (``rldk profile``).
"""
from rldk.analyzers.profile.analyzer import ProfileAnalyzer, profile_run
from rldk.analyzers.profile.breakdown import (
           PHASES,
           PhaseTime,
           bottleneck_statement,
           phase_of,
)
from rldk.analyzers.profile.params import HOW_TO_TIME, Params
from rldk.analyzers.profile.regression import ChangePoint, best_split, change_points
from rldk.analyzers.profile.result import ProfileResult, RunProfile
from rldk.analyzers.profile.with_memory import ComputeProfile, compute_profile

__all__ = ["HOW_TO_TIME", "PHASES", "ChangePoint", "ComputeProfile", "Params", "PhaseTime",
           "ProfileAnalyzer", "ProfileResult", "RunProfile", "best_split", "bottleneck_statement",
           "change_points", "compute_profile", "phase_of", "profile_run"]
