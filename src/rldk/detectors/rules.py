"""Onset-aware rules: what a regime change of each quantity means, and from which step.

Each rule reads one quantity (``rldk.semantics``), cuts its series into regimes
(``rldk.detectors.regimes``) and answers one question, e.g. "did the entropy fall
to a fifth of a level it held, and stay there?". The onset it reports is the first
step of the regime the series entered and stayed in; the evidence names the
levels before and after. No rule compares with "the first tenth of the run": the
reference level is a regime the run actually held (its highest, for a collapse),
wherever it lies, so a collapse at step 12 of 200 is found at step 12.

Thresholds are ratios between regime levels (or absolute bounds where the
quantity's units make one meaningful: a fraction of truncated responses), each
named below with the measurement that justifies it; the scale of "a regime" comes
from the series' own noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rldk.detectors.regimes import Regime, Regimes, regimes

#: Shortest regime (logged points) that can serve as the reference level of a fall or
#: a rise: a single outlier point is not a level the run held.
MIN_REFERENCE = 3
#: A bad state that does not last to the end of the run still counts when it holds this
#: share of the run's points (and at least MIN_REFERENCE): an entropy collapse that the
#: run later crashes out of is still a collapse, from its first step.
MIN_STRETCH = 0.1
#: Entropy collapse: the entropy stays below this share of the highest level it held.
#: A fifth: healthy LLM/PPO runs lose up to ~60% of their entropy as they learn (the
#: real healthy logs in benchmarks/data/real: meal planner 3.36 -> 0.84 nats is a 75%
#: fall over a whole run and is benign), collapses fall by 5-50x.
ENTROPY_COLLAPSE = 0.2
#: Length collapse / explosion: the mean response length falls below a third of, or
#: rises above three times, a level it held.
LENGTH_FACTOR = 3.0
#: Reward degradation: the reward falls back by at least this share of what the run
#: had gained (peak minus the lowest level before it) and stays there.
DEGRADATION_SHARE = 0.5
#: Reward collapse: share of the values from the onset on that sit exactly at the floor.
FLOOR_SHARE = 0.8
#: Ratios (zero-std groups, truncation, clip fraction): a regime at or above this level
#: is a problem when the run entered it (or started in it) and stayed.
ZERO_STD_HIGH = 0.5
TRUNCATION_HIGH = 0.5
CLIP_HIGH = 0.3
#: KL to the reference: a regime above this many nats, at least KL_JUMP times the level
#: before it. Healthy GRPO/PPO runs stay below ~0.1-0.3 nats (the real fixtures: 0.05).
KL_HIGH = 1.0
KL_JUMP = 10.0
#: Gradient norm: a regime at least this many times the run's typical (median) level.
GRAD_JUMP = 10.0


@dataclass(frozen=True)
class Event:
    """A detected change of regime: ``code`` (the event), the ``metric`` as logged,
    ``onset`` (first step of the new regime) and ``last`` step, ``severity``,
    a one-line ``title`` and the ``evidence`` (levels, steps, thresholds)."""

    code: str
    metric: str
    onset: int
    last: int
    severity: str
    title: str
    evidence: dict = field(default_factory=dict)


def _peak_before(parts, j: int) -> Regime | None:
    """The highest regime before index ``j`` that lasted MIN_REFERENCE points."""
    held = [p for p in parts[:j] if p.size >= MIN_REFERENCE]
    return max(held, key=lambda p: p.level) if held else None


def _trough_before(parts, j: int) -> Regime | None:
    held = [p for p in parts[:j] if p.size >= MIN_REFERENCE]
    return min(held, key=lambda p: p.level) if held else None


def _first_stretch(r: Regimes, inside, start: int = 0) -> tuple[int, int] | None:
    """``(i, j)``: the first run of consecutive regimes ``parts[i:j]`` (from ``start``)
    that all satisfy ``inside`` and either reach the end of the series or hold at least
    MIN_STRETCH of its points (a bad state the run stayed in for a while, even if it
    later recovered or crashed out of it)."""
    n = len(r.values)
    need = max(MIN_REFERENCE, int(np.ceil(MIN_STRETCH * n)))
    i = start
    while i < len(r.parts):
        if not inside(r.parts[i]):
            i += 1
            continue
        j = i
        while j < len(r.parts) and inside(r.parts[j]):
            j += 1
        if j == len(r.parts) or r.parts[j - 1].end - r.parts[i].start >= need:
            return i, j
        i = j
    return None


def _staying(r: Regimes, inside) -> int | None:
    """Index of the first regime from which every later regime satisfies ``inside``."""
    j = None
    for i in range(len(r.parts) - 1, -1, -1):
        if not inside(r.parts[i]):
            break
        j = i
    return j


def entropy_collapse(metric: str, steps, values) -> Event | None:
    """Entropy (positive, discrete policies) falls below ENTROPY_COLLAPSE x a level it held
    and stays there (to the end, or for MIN_STRETCH of the run). A differential entropy
    (negative values: Gaussian policies) has no collapse to zero."""
    values = np.asarray(values, float)
    if np.nanmin(values) <= 0:
        return None
    r = regimes(steps, values, "nonneg")
    for j in range(1, len(r.parts)):
        peak = _peak_before(r.parts, j)
        if peak is None:
            continue
        limit = peak.level + np.log(ENTROPY_COLLAPSE)
        found = _first_stretch(r, lambda p: p.level < limit, j)
        if found is None or found[0] != j:
            continue
        low = min(r.parts[found[0]:found[1]], key=lambda p: p.level)
        last = r.parts[found[1] - 1].last
        return Event("entropy_collapse", metric, r.parts[j].first, last,
                     "error" if low.raw < ENTROPY_COLLAPSE ** 2 * peak.raw else "warning",
                     f"{metric} collapsed from {peak.raw:.3g} to {low.raw:.3g} from step {r.parts[j].first}",
                     {"held": peak.raw, "held_steps": [peak.first, peak.last], "low": low.raw,
                      "threshold_share": ENTROPY_COLLAPSE})
    return None


def length_change(metric: str, steps, values) -> Event | None:
    """Mean response length falls below 1/LENGTH_FACTOR of, or rises above LENGTH_FACTOR
    times, a level it held, and stays."""
    r = regimes(steps, np.asarray(values, float), "nonneg")
    step = np.log(LENGTH_FACTOR)
    for j in range(1, len(r.parts)):
        peak, trough = _peak_before(r.parts, j), _trough_before(r.parts, j)
        if peak is not None and all(p.level < peak.level - step for p in r.parts[j:]):
            return _length_event("length_collapse", metric, r, j, peak, "fell")
        if trough is not None and all(p.level > trough.level + step for p in r.parts[j:]):
            return _length_event("length_explosion", metric, r, j, trough, "grew")
    return None


def _length_event(code, metric, r, j, held, verb) -> Event:
    now = r.parts[-1]
    return Event(code, metric, r.parts[j].first, int(r.steps[-1]), "error",
                 f"{metric} {verb} from {held.raw:.4g} to {now.raw:.4g} from step {r.parts[j].first}",
                 {"held": held.raw, "held_steps": [held.first, held.last], "now": now.raw,
                  "factor": LENGTH_FACTOR})


def high_ratio(code: str, metric: str, steps, values, high: float, what: str) -> Event | None:
    """A ratio quantity enters a regime at or above ``high`` and stays (from the start
    counts: no part of the run is assumed healthy)."""
    r = regimes(steps, np.clip(np.asarray(values, float), 0, 1), "ratio")
    j = _staying(r, lambda p: p.raw >= high)
    if j is None:
        return None
    share = float(np.mean(r.values[r.parts[j].start:] >= high))
    before = r.parts[j - 1].raw if j > 0 else None
    title = (f"{what} at {r.parts[-1].raw:.2f} from step {r.parts[j].first}"
             + (f" (was {before:.2f})" if before is not None else " (from the first step)"))
    return Event(code, metric, r.parts[j].first, int(r.steps[-1]), "warning", title,
                 {"level": r.parts[-1].raw, "before": before, "threshold": high,
                  "share_at_or_above": share})


def reward_degradation(metric: str, steps, values) -> Event | None:
    """The reward (or episode return) falls back by DEGRADATION_SHARE of what the run had
    gained and stays below its peak; onset: the first step after the peak regime."""
    r = regimes(steps, np.asarray(values, float), "signed")
    held = [i for i, p in enumerate(r.parts) if p.size >= MIN_REFERENCE]
    if len(r.parts) < 2 or not held:
        return None
    peak_i = max(held, key=lambda i: r.parts[i].level)
    if peak_i == len(r.parts) - 1:
        return None
    peak, final = r.parts[peak_i], r.parts[-1]
    base = min((p.level for p in r.parts[:peak_i + 1]), default=peak.level)
    gain = peak.level - base
    scale = max(gain, abs(peak.level) * DEGRADATION_SHARE, 3 * r.sigma)
    if peak.level - final.level < DEGRADATION_SHARE * scale:
        return None
    onset = r.parts[peak_i + 1].first
    return Event("reward_degradation", metric, onset, int(r.steps[-1]), "warning",
                 f"{metric} fell from {peak.raw:.4g} to {final.raw:.4g} from step {onset}",
                 {"peak": peak.raw, "peak_steps": [peak.first, peak.last], "now": final.raw,
                  "gain_before_peak": gain, "share": DEGRADATION_SHARE})


def reward_collapse(metric: str, steps, values) -> Event | None:
    """The reward sits at one value, its floor, from some step on: no signal left.

    Onset: the first step at the floor from which at least FLOOR_SHARE of the values
    to the end are at the floor, over at least MIN_STRETCH of the run, after a higher
    level (a reward at its floor for the whole run is constant: reported from its first
    step). "At the floor" is exact up to 1e-9 relative: rewards that collapse sit on a
    value (0, a format penalty), not near one.
    """
    v = np.asarray(values, float)
    steps = np.asarray(steps)
    n = len(v)
    if n < 2 * MIN_REFERENCE:
        return None
    floor = float(np.min(v))
    at = np.abs(v - floor) <= 1e-9 * max(1.0, abs(floor))
    share = np.cumsum(at[::-1])[::-1] / np.arange(n, 0, -1)          # share at floor in v[k:]
    need = max(MIN_REFERENCE, int(np.ceil(MIN_STRETCH * n)))
    ok = at & (share >= FLOOR_SHARE) & (np.arange(n) <= n - need)
    if not ok.any():
        return None
    k = int(np.argmax(ok))
    if k > 0 and not (v[:k].mean() > floor):
        return None
    before = float(np.median(v[:k])) if k else None
    if k == 0 and np.ptp(v) > 0:
        return None                        # at the floor from the start with a few values above: no fall
    title = (f"{metric} collapsed to {floor:.4g} from step {int(steps[k])}"
             + (f" (was {before:.4g})" if before is not None else ": constant for the whole run"))
    return Event("reward_collapse", metric, int(steps[k]), int(steps[-1]), "error", title,
                 {"floor": floor, "before": before, "share_at_floor": float(share[k])})


def kl_blowup(metric: str, steps, values) -> Event | None:
    """KL to the reference enters a regime above KL_HIGH nats, KL_JUMP x the level before."""
    values = np.asarray(values, float)
    r = regimes(steps, np.maximum(values, 0), "logscale")
    for j in range(1, len(r.parts)):
        before = r.parts[j - 1]
        p = r.parts[j]
        if p.raw >= KL_HIGH and p.raw >= KL_JUMP * max(before.raw, 1e-12):
            return Event("kl_blowup", metric, p.first, p.last, "error",
                         f"{metric} jumped from {before.raw:.3g} to {p.raw:.3g} at step {p.first}",
                         {"before": before.raw, "after": p.raw, "threshold": KL_HIGH})
    return None


def grad_norm_explosion(metric: str, steps, values) -> Event | None:
    """Gradient norm rises to a regime GRAD_JUMP x every level the run was at before it.
    A run that starts high and settles (warm-up) is not an explosion, nor is a return to
    a level the run already had (GRPO's near-zero norms at steps without reward variance
    are removed before this rule sees the series: ``rldk.analyzers.health.onset``)."""
    values = np.asarray(values, float)
    if np.nanmax(values) <= 0:
        return None
    r = regimes(steps, np.maximum(values, 0), "logscale")
    for j in range(1, len(r.parts)):
        top = max(p.level for p in r.parts[:j])
        p = r.parts[j]
        if p.size >= 2 and p.level - top >= np.log(GRAD_JUMP):
            before = max(r.parts[:j], key=lambda q: q.level)
            return Event("grad_norm_explosion", metric, p.first, p.last, "warning",
                         f"{metric} rose to {p.raw:.3g} at step {p.first}, {p.raw / before.raw:.0f}x "
                         f"anything before (at most {before.raw:.3g})",
                         {"before_max": before.raw, "level": p.raw, "factor": GRAD_JUMP})
    return None


#: quantity -> the rules that read it, in order.
RULES = {
    "entropy": (entropy_collapse,),
    "response_length": (length_change,),
    "reward": (reward_collapse, reward_degradation),
    "episode_return": (reward_degradation,),
    "kl_to_ref": (kl_blowup,),
    "grad_norm": (grad_norm_explosion,),
    "zero_std_frac": (lambda m, s, v: high_ratio("zero_std_onset", m, s, v, ZERO_STD_HIGH,
                                                 "share of zero-std reward groups"),),
    "truncation_ratio": (lambda m, s, v: high_ratio("truncation_onset", m, s, v, TRUNCATION_HIGH,
                                                    "share of truncated responses"),),
    "clip_ratio": (lambda m, s, v: high_ratio("clip_ratio_blowup", m, s, v, CLIP_HIGH,
                                              "PPO clip fraction"),),
}
