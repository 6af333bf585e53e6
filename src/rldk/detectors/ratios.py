"""Ratios (zero-std groups, truncation, clip fraction): a state at or above a line, from its onset.

A ratio's units make an absolute line meaningful (half of the groups, half of the
responses, a third of the tokens); the state is the first run of points at or above it
that lasts to the end of the run, judged on the rolling level when single points stray
out of it (a ratio over a few groups moves by whole groups). The clip fraction is judged
against the clip range it was computed with (``clip_ratio_blowup``).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from rldk.detectors.event import Event
from rldk.detectors.onsets import level_of, state_run

#: Ratios (zero-std groups, truncation, clip fraction): a stretch at or above this level.
#: Half of the groups without reward variance, half of the responses cut, a third of the
#: tokens clipped (PPO's clip fraction is 0.05-0.2 in healthy runs of every framework's docs).
ZERO_STD_HIGH = 0.5
TRUNCATION_HIGH = 0.5
CLIP_HIGH = 0.3
#: A clip range (PPO's epsilon) at or under this share of the widest range before a
#: clip-fraction rise explains the rise: half the range clips the ratios between the two
#: bounds too.
CLIP_RANGE_SHRINK = 0.5
#: A clip fraction that crosses CLIP_HIGH from a level already within this factor of its
#: new one drifted over the line (0.28 -> 0.33 over a million steps of PPO with minibatches
#: of 16, whose clip fraction rises with the policy's sharpening): no new regime, reported
#: as info. A blow-up's level is a multiple of the one before (the labelled one of the real
#: logs: 0.18 -> 0.80); a jump to 0.6 injected into every healthy log of the benchmark
#: (benchmarks/injection.py) is still one.
CLIP_RISE = 1.5


def high_ratio(code: str, metric: str, steps, values, high: float, what: str) -> Event | None:
    """A ratio quantity enters a state at or above ``high`` and stays to the end of the run
    (from the first step counts: no part of the run is assumed healthy). A stretch that
    the run leaves again is a transient of a rate, not a state it is stuck in. A ratio
    over a few groups moves by whole groups: when its points stray out of the state too
    often, its rolling level (``level_of``) is judged instead."""
    v = np.clip(np.asarray(values, float), 0, 1)
    # the points, or (a ratio over few groups jumps by whole groups) its rolling level
    found = state_run(v >= high, 0, final=True)
    if found is None:
        found = state_run(level_of(v) >= high, 0, final=True)
        if found is None:
            return None
        # a centred level rises a point or two before the points do: the state's first
        # step is its first point that is itself at or above the line
        found = (found[0] + int(np.argmax(v[found[0]:found[1]] >= high)), found[1])
    k, end = found
    level = float(np.median(v[k:end]))
    before = float(np.median(v[:k])) if k > 0 else None
    title = (f"{what} at {level:.2f} from step {int(steps[k])}"
             + (f" (was {before:.2f})" if before is not None else " (from the first step)"))
    return Event(code, metric, int(steps[k]), int(steps[end - 1]), "warning", title,
                 {"level": level, "before": before, "threshold": high,
                  "share_at_or_above": float(np.mean(v[k:end] >= high))})


def clip_ratio_blowup(metric: str, steps, values, partner=None) -> Event | None:
    """The clip fraction enters a state at or above CLIP_HIGH and stays (``high_ratio``),
    at CLIP_RISE x its level before or more (a fraction that drifted over the line: info).
    The fraction counts the ratios outside 1 +- epsilon, the clip range: where the run
    logs a clip range (``partner``) that was, at the onset, decayed to CLIP_RANGE_SHRINK or
    less of the widest range before it (rl-zoo's ``lin_`` schedules), the rise is the
    schedule's doing, reported as info."""
    event = high_ratio("clip_ratio_blowup", metric, steps, values, CLIP_HIGH, "PPO clip fraction")
    before = None if event is None else event.evidence["before"]
    if before is not None and event.evidence["level"] < CLIP_RISE * before:
        return replace(event, severity="info",
                       title=f"{event.title}: a drift over {CLIP_HIGH:g}, not a jump (under "
                             f"{CLIP_RISE:g}x the level before)")
    if event is None or partner is None:
        return event
    c_steps, c_values = np.asarray(partner[0]), np.asarray(partner[1], float)
    at = np.flatnonzero(c_steps >= event.onset)
    if not len(at):
        return event
    was = float(np.max(c_values[:at[0] + 1]))           # the widest range before the onset
    now = float(c_values[at[0]])                          # the range the state began with
    if not was > 0 or now > CLIP_RANGE_SHRINK * was:
        return event
    return replace(event, severity="info",
                   title=f"{event.title}, as the clip range was decayed from {was:.3g} to {now:.3g} "
                         "(a schedule: a smaller range clips more ratios)",
                   evidence={**event.evidence, "clip_range_before": was, "clip_range_at_onset": now})


def ratio_rule(code: str, high: float, what: str):
    def rule(metric, steps, values):
        return high_ratio(code, metric, steps, values, high, what)
    rule.__name__ = code
    return rule
