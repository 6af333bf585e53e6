"""Spikes in loss, gradient norm and KL: a value far above its recent level.

Consumes the ``metric`` events that :mod:`rldk.semantics` says are a loss, a value
loss, a gradient norm or a KL (``loss``, ``train/loss``, ``actor/pg_loss``,
``grad_norm``, ``objective/kl``, ``actor/ppo_kl``, ...: see ``SPIKY``). A logged value is a spike when it exceeds ``factor`` (5) times the
median of the ``window`` (25) values logged before it, once at least
``min_history`` (10) of them exist, that median is positive, and it is at least
``level_share`` (20%) of the window's 90th percentile. The last condition skips
windows with no level to spike from: a series that crosses zero (a GRPO or
policy-gradient loss) or one that mixes near-zero and normal values (the grad norm
of GRPO steps whose groups all had equal rewards). Windows count logged values,
not steps, so a run that logs every 5th step looks back 125 steps. Non-finite
values are left to ``nan_onset``. Consecutive spikes form one episode.

In a GRPO run where most groups have equal rewards (``frac_reward_zero_std``
averaging 0.5 or more), the loss and grad norm are near zero at the steps without
a learning signal and normal at the others; spikes that all fall on steps with
``frac_reward_zero_std < 1`` are reported as info, explained by that (the health
card's ``zero_std`` finding is the problem to fix). A run that logs only the reward's
spread (``reward_std``) has every group tied where it is exactly 0 (``ratios.TIED``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rldk import semantics
from rldk.analyzers import _series
from rldk.analyzers.base import Analyzer, has_events
from rldk.core.errors import MissingEvents
from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import Result, as_dict
from rldk.detectors import ratios

#: Quantities (``rldk.semantics``) watched for spikes: losses, the gradient norm, KLs.
SPIKY = ("loss", "value_loss", "grad_norm", "kl_to_ref", "ppo_approx_kl")
#: Quantities whose spikes are only ever info: the critic's loss scales with the returns
#: it fits, so it jumps whenever returns do (a run that starts to succeed included).
INFO_ONLY = ("value_loss",)
#: Quantities that start near zero and grow: never a spike below ``Params.kl_floor``.
KL_QUANTITIES = ("kl_to_ref", "ppo_approx_kl")
#: Quantities whose spikes that all came back are transient whatever their size (``_severe``).
TRANSIENT_WHEN_BACK = (*KL_QUANTITIES, "grad_norm")


#: Values after a spike needed to say whether the series came back from it.
MIN_AFTER = 3


def _ratio_scale(name: str) -> bool:
    """Whether a spike of ``name`` can be judged by its ratio to its level: only for
    log-scale quantities (grad norm, KLs; rldk.semantics kinds). A signed loss crosses
    zero and its ratios are meaningless; the value loss follows the returns (INFO_ONLY)."""
    q = semantics.quantity(_quantity(name) or "")
    return q is not None and q.log_scale and q.name not in INFO_ONLY


def _quantity(name: str) -> str | None:
    q, split, sign = semantics.classify(name)
    return q.name if q is not None and split == "train" and sign == 1 else None


@dataclass(frozen=True)
class Params:
    """factor: spike when value > factor x the rolling median (5: loss-spike practice).
    window: logged values in the rolling median; min_history: fewest before judging;
    level_share: the median must be at least this share of the window's 90th percentile.
    kl_floor: a KL value (nats) at or below this is never a spike. Training starts with
    the policy equal to its reference, so early KL is near zero and ordinary growth to a
    few hundredths of a nat is a large ratio; KL trouble is well above 0.1.
    severe: a spike this many times its level is a warning (of a KL: unless it recovered,
    ``_severe``). Below that a spike is
    reported as info: on the real healthy logs of benchmarks/data/real, isolated
    5-25x spikes of losses, value losses and approx_kl are common and harmless (they
    recover); a level that changes and stays is the onset rules' business (health
    card), and a spike in the last values of a log cannot be judged yet.
    """

    factor: float = 5.0
    window: int = 25
    min_history: int = 10
    level_share: float = 0.2
    kl_floor: float = 0.1
    severe: float = 100.0


@dataclass(frozen=True)
class Spikes:
    """One metric's spikes: steps, values and the rolling medians they exceeded
    (first ``20``), total count, episodes (runs of consecutive spiking rows), the
    worst ratio value / median with its step, and why they are expected (or "")."""

    run_id: str
    metric: str
    count: int
    episodes: int
    steps: tuple[int, ...]
    values: tuple[float, ...]
    medians: tuple[float, ...]
    worst_step: int
    worst_ratio: float
    rows: int
    explained: str = ""
    recovered: bool = True
    severe: bool = False


#: What a run without any watched series should log (the check's "could not run" text).
HOW_TO_WATCH = f"log a loss, grad norm or KL (quantities {', '.join(SPIKY)} of rldk.semantics)"


@dataclass(frozen=True)
class SpikesResult(Result):
    """spikes: the series with spikes; watched: (run_id, metric) examined;
    unwatched: runs of the store with no series to examine."""

    spikes: tuple[Spikes, ...]
    watched: tuple[tuple[str, str], ...]
    unwatched: tuple[str, ...] = ()

    def report(self) -> Report:
        findings = tuple(_finding(s) for s in self.spikes)
        problems = [f for f in findings if f.is_problem]
        summary = ("; ".join(f"{f.run_id}: {f.title}" for f in problems) if problems else
                   f"no unexplained spikes in {len(self.watched)} loss/grad-norm/KL series")
        cols = ("run", "metric", "spikes", "episodes", "worst_step", "worst_ratio", "steps")
        rows = tuple((s.run_id, s.metric, s.count, s.episodes, s.worst_step, s.worst_ratio,
                      list(s.steps)) for s in self.spikes)
        checks = tuple(Check("spikes", "ran", metric, run_id) for run_id, metric in self.watched)
        checks += tuple(Check("spikes", "skipped", HOW_TO_WATCH, run_id) for run_id in self.unwatched)
        return Report(analyzer=SpikesAnalyzer.name, title=SpikesAnalyzer.title,
                      status=verdict(findings, checks), summary=summary, findings=findings,
                      tables=(ReportTable("Spikes", cols, rows),), details=self.to_dict(),
                      checks=checks)


class SpikesAnalyzer(Analyzer):
    """Spikes in loss, grad-norm and KL series (see the module docstring)."""

    name = "spikes"
    title = "Loss / grad-norm / KL spikes"
    consumes = ("metric",)
    Params = Params

    def applies(self, store) -> bool:
        return has_events(store, ("metric",))

    def run(self, store, params: Params | None = None) -> SpikesResult:
        params = params or Params()
        watched = watched_metrics(store)
        if not watched:
            raise MissingEvents(f"no loss, grad-norm or KL metric in any run: {HOW_TO_WATCH}")
        found = []
        for run_id in dict.fromkeys(r for r, _ in watched):
            found += self._run_spikes(_series.Source(store, run_id),
                                      [n for r, n in watched if r == run_id], params)
        unwatched = tuple(r for r in store.run_ids if r not in {r for r, _ in watched})
        return SpikesResult(tuple(found), tuple(watched), unwatched)

    @staticmethod
    def _run_spikes(source, names, params: Params) -> list[Spikes]:
        gate = _zero_std(source)
        found = []
        for name, series in _series.load_series(source, names).items():
            floor = params.kl_floor if _quantity(name) in KL_QUANTITIES else None
            explain = gate
            if gate is not None and _quantity(name) in NEEDS_SIGNAL:
                series, explain = _with_signal(series, gate), None
            spikes = find_spikes(series, params, floor)
            if spikes is not None:
                found.append(_spikes(source.run_id, name, series, *spikes, explain, params))
        return found


def watched_metrics(store) -> list[tuple[str, str]]:
    """(run_id, metric) pairs whose names look like a loss, grad norm or KL."""
    return [(run_id, name) for run_id in store.run_ids
            for name in _series.run_index(_series.Source(store, run_id)) if _quantity(name) in SPIKY]


def rolling_prior(values: np.ndarray, window: int, min_history: int, quantile: float = 0.5):
    """The ``quantile`` of the ``window`` finite values before each position (NaN until
    ``min_history`` exist; NaN at non-finite positions), linearly interpolated between
    the two nearest order statistics (as Polars' rolling quantile computes it, to the bit)."""
    finite = np.isfinite(values)
    out = np.full(len(values), np.nan)
    kept = values[finite]
    windowed = np.full(len(kept), np.nan)          # the quantile of each window ending here
    if len(kept) >= window:
        windows = np.sort(np.lib.stride_tricks.sliding_window_view(kept, window), axis=1)
        windowed[window - 1:] = _interpolated(windows, quantile)
    for size in range(max(min_history, 1), min(window, len(kept) + 1)):   # the first, shorter ones
        windowed[size - 1] = _interpolated(np.sort(kept[:size])[None], quantile)[0]
    prior = np.full(len(kept), np.nan)
    prior[1:] = windowed[:-1]                      # the windows before each position
    out[finite] = prior
    return out


def _interpolated(rows: np.ndarray, quantile: float) -> np.ndarray:
    """Per row of sorted ``rows``: ``lower + (upper - lower) * fraction`` at the position
    ``(n - 1) * quantile``."""
    position = (rows.shape[1] - 1) * quantile
    lower, upper = int(np.floor(position)), int(np.ceil(position))
    if lower == upper:
        return rows[:, lower].copy()
    return rows[:, lower] + (rows[:, upper] - rows[:, lower]) * (position - lower)


def find_spikes(series, params: Params, floor: float | None = None):
    """``(index array, medians, recovered)`` of the spikes in ``series`` (values above
    ``floor`` only, when given), or None. A spike exceeds ``factor`` x the median of the
    ``window`` values before it and, when at least ``MIN_AFTER`` values follow it,
    also ``factor`` x the median of those after it: a point above both its past and its
    future is isolated, while a point of a rising trend or of a new level is not above
    its future. ``recovered``: every spike has such a future (the series came back)."""
    values = series.values
    med = rolling_prior(values, params.window, params.min_history)
    p90 = rolling_prior(values, params.window, params.min_history, 0.9)
    after = rolling_prior(values[::-1], params.window, MIN_AFTER)[::-1]
    with np.errstate(invalid="ignore"):
        hit = ((med > 0) & (med >= params.level_share * p90)
               & (values > params.factor * med)
               & (np.isnan(after) | (values > params.factor * after)))
        if floor is not None:
            hit &= values > floor
    idx = np.flatnonzero(hit)
    if not len(idx):
        return None
    return idx, med[idx], bool(np.isfinite(after[idx]).all())


#: Quantities that hold nothing but the KL term's share at steps where every group's rewards
#: tie (no advantage): their spikes are judged on the steps with a signal (``_zero_std``).
NEEDS_SIGNAL = frozenset(("grad_norm", "loss"))
#: ``_with_signal``: a value under this share of the level at steps with a signal is the
#: KL term's alone (the health rules leave out rows 10x under the held level likewise).
SIGNAL_SHARE = 0.1


def _with_signal(series, gate: set):
    """``series`` without the steps that had no learning signal (not in ``gate``) where its
    value is under SIGNAL_SHARE of its median at the steps that had one: there the loss and
    grad norm hold only what the KL term gives (a GRPO grad norm of ~1e-9 at tied steps is
    no level a KL-driven 0.005 spikes from), while a tied step at the run's usual level is
    one of its values (a norm that blows up there blows up)."""
    signal = np.isin(series.steps, np.fromiter(gate, np.int64, len(gate)))
    finite = np.isfinite(series.values)
    if not (signal & finite).any():
        return series
    level = float(np.median(series.values[signal & finite]))
    keep = signal | ~finite | (series.values >= SIGNAL_SHARE * level)
    return _series.Series(series.name, series.steps[keep], series.values[keep])


def _zero_std(source):
    """Steps with a learning signal (frac_reward_zero_std < 1) when most groups have
    none (mean >= 0.5); else None."""
    available = _series.metric_counts(source)
    name = semantics.resolve_name("zero_std_frac", available)
    spread = semantics.resolve_name("reward_std", available) if name is None else None
    if name is None and spread is None:
        return None
    s = _series.load_series(source, [name or spread])[name or spread]
    share = s.values if name is not None else ratios.tied(s.values)     # (``ratios.TIED``)
    finite = np.isfinite(share)
    if not finite.any() or share[finite].mean() < 0.5:
        return None
    return set(s.steps[finite & (share < 1.0)].tolist())


def _spikes(run_id, name, series, idx, medians, recovered, gate, params) -> Spikes:
    values = series.values[idx]
    ratios = values / medians
    worst = int(np.argmax(ratios))
    episodes = 1 + int(np.count_nonzero(np.diff(idx) > 1))
    steps = series.steps[idx]
    explained = ("every spike is at a step where some GRPO group had reward variance "
                 "(frac_reward_zero_std < 1) in a run where most have none"
                 if gate is not None and set(steps.tolist()) <= gate else "")
    return Spikes(run_id=run_id, metric=name, count=len(idx), episodes=episodes,
                  steps=tuple(int(s) for s in steps[:20]),
                  values=tuple(float(v) for v in values[:20]),
                  medians=tuple(float(m) for m in medians[:20]),
                  worst_step=int(steps[worst]), worst_ratio=float(ratios[worst]),
                  rows=len(series), explained=explained,
                  recovered=recovered, severe=_severe(name, float(ratios[worst]), recovered, params))


def _severe(name: str, ratio: float, recovered: bool, params: Params) -> bool:
    """Whether spikes whose worst is ``ratio`` x their level are a warning: ``severe`` x
    or more, on a quantity judged by its ratio (``_ratio_scale``). A KL's spikes that all
    came back are transient whatever their size: a KL of one batch is an average of
    per-token log-ratios, and a few tokens the reference finds improbable make it jump
    for that batch alone while the policy has not moved (the health card's ``kl_blowup``
    and ``approx_kl_blowup`` judge a KL that rises and stays). On the real healthy logs
    of benchmarks/data/real, TRL GRPO's ``kl`` jumps to 66-197 nats for single rows and
    a CleanRL PPO's ``approx_kl`` to 100x its level, each back at once, in runs that
    went on learning."""
    if ratio < params.severe or not _ratio_scale(name):
        return False
    return not (recovered and _quantity(name) in TRANSIENT_WHEN_BACK)


def _finding(s: Spikes) -> Finding:
    title = (f"{s.metric} spikes {s.count} time(s) in {s.episodes} episode(s); first at step "
             f"{s.steps[0]}: {s.values[0]:.4g} = {s.values[0] / s.medians[0]:.1f}x its rolling "
             f"median {s.medians[0]:.4g}")
    if s.explained:
        return Finding(code="spike_explained", severity="info", title=f"{title} ({s.explained})",
                       run_id=s.run_id, metric=s.metric, steps=(s.steps[0], s.steps[-1]),
                       evidence=as_dict(s),
                       fix="These are the only steps with a learning signal: fix the reward "
                           "variance (health card, zero_std), not the spikes.")
    if not s.severe:
        note = "transient: recovered" if s.recovered else "at the end of the log"
        return Finding(code="spike_transient", severity="info", title=f"{title} ({note})",
                       run_id=s.run_id, metric=s.metric, steps=(s.steps[0], s.steps[-1]),
                       evidence=as_dict(s),
                       fix="Isolated and recovered: look at the batch of that step if it recurs.")
    return Finding(code="spike", severity="warning", title=title, run_id=s.run_id, metric=s.metric,
                   steps=(s.steps[0], s.steps[-1]), evidence=as_dict(s),
                   fix="Check the batches at those steps (outlier rewards or very long sequences), "
                       "lower the learning rate or clip gradients (max_grad_norm); for KL spikes "
                       "reduce the step size or raise the KL coefficient.")

