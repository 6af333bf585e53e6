"""First divergence: the first step where two runs that should agree stop agreeing.

Three levels of evidence, strongest first:

1. **bitwise** (event kinds ``tensor``, ``rng``): the first step where a tensor
   checksum or an RNG-state digest differs, naming the first tensor (in logging
   order) and RNG source that differ. Compared per ``(rank, step, name)``.
2. **exact** (kind ``metric``): the first common step where a signal's values
   differ at all (NaN equals NaN). For runs meant to be bit-identical.
3. **statistical** (kind ``metric``): for runs that differ by seed or by
   nondeterministic kernels. The difference ``d = b - a`` per common step is
   standardized by a noise band (from replicas when given, else from the early
   steps), clipped to ``+-clip`` so that one outlier cannot alarm alone, and fed to
   a two-sided CUSUM (allowance ``k``, threshold ``h``). The reported step is the
   change *start*: the first step of the CUSUM excursion that crossed ``h`` (the
   step after the last step where that CUSUM was zero), not the alarm step.

Which level gives the verdict (``mode="auto"``): replicas given -> statistical;
otherwise, if every signal is equal at the runs' first common step, the runs are
taken as meant to be identical and the earliest bitwise/exact difference is the
divergence; else statistical. The other levels are still reported as evidence.

Steps are aligned by step number: per signal only steps both runs logged are
compared (other logging intervals, gaps and shorter runs drop out, never filled);
a step logged twice keeps its last value; multi-rank runs use the lowest rank
(see ``rldk.analyzers._series``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import numpy as np

from rldk import semantics
from rldk.analyzers import _series
from rldk.analyzers._cusum import (
    Alarm,
    Band,
    auto_threshold,
    cusum,
    floor_sigma,
    replica_band,
    standardize,
    warmup_band,
)
from rldk.analyzers.base import Analyzer
from rldk.core.errors import MissingEvents, RldkError, UsageError

NAME = "divergence"
CONSUMES = ("metric", "tensor", "rng")
MODES = ("auto", "exact", "statistical")
#: Metrics left out of the default signals: wall-clock timings differ between any two runs.
TIMING = re.compile(r"time|fps|per_second|throughput|elapsed|duration|runtime", re.IGNORECASE)
_CURVE_POINTS = 600


@dataclass(frozen=True)
class Params:
    """Parameters of the divergence analysis (defaults from the CUSUM literature).

    baseline: for ``rldk analyze``: the run every other run is compared against.
    signals: metric names (canonical or as logged); None: every metric both runs
        log except wall-clock timings (``TIMING``).
    mode: "auto", "exact" or "statistical" (module docstring).
    k: CUSUM allowance in noise standard deviations (0.5: tuned to a 1-sigma shift).
    h: CUSUM threshold; None: ``max(5, ln(n m / alpha) - 1.166)`` for n compared
        steps and m signals (Siegmund's approximation: about ``alpha`` false alarms
        per comparison of two runs, split evenly over the signals), raised to
        ``margin`` x the largest CUSUM the replicas reach against each other.
    alpha: tolerated false-alarm rate per comparison when ``h`` is None.
    clip: standardized differences are clipped to +-clip (a 2-step blip cannot alarm).
    warmup: early common steps that estimate the band without replicas;
        None: n // 10, at least ``min_warmup``, at most 500.
    min_warmup: fewest common steps the statistical level accepts.
    smooth: width in steps of the rolling median that smooths the replica band.
    margin: factor over the replicas' own largest CUSUM when calibrating ``h``.
    bitwise: also compare tensor checksums and RNG digests when both runs log them.
    """

    baseline: str | None = None
    signals: tuple[str, ...] | None = None
    mode: str = "auto"
    k: float = 0.5
    h: float | None = None
    alpha: float = 0.01
    clip: float = 2.5
    warmup: int | None = None
    min_warmup: int = 10
    smooth: int = 11
    margin: float = 1.25
    bitwise: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise UsageError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.clip <= self.k:
            raise UsageError(f"clip ({self.clip}) must exceed k ({self.k})")


# -------------------------------------------------------------------- results
@dataclass(frozen=True)
class SignalDivergence:
    """One signal compared between the runs.

    signal: the name asked for; name_a, name_b: the metric names in each run.
    common_steps / first_step / last_step: the aligned steps; only_a / only_b:
        steps logged by one run only (left out).
    exact_step: first common step where the values differ at all (None: identical);
        value_a / value_b: the values there.
    change_start: statistical level, first step of the alarming CUSUM excursion
        (None: no alarm); alarm_step: where the CUSUM crossed ``threshold``;
        direction: "up" (b above a) or "down".
    magnitude: median of (d - center) from change_start to alarm_step, in the
        metric's units; z: magnitude / band sigma.
    max_abs_delta: largest |b - a| over the common steps (finite values).
    duplicates_*, non_numeric_*: rows left out (see ``_series``).
    """

    signal: str
    name_a: str
    name_b: str
    common_steps: int
    first_step: int | None
    last_step: int | None
    only_a: int
    only_b: int
    exact_step: int | None
    value_a: float | None
    value_b: float | None
    change_start: int | None = None
    alarm_step: int | None = None
    direction: str | None = None
    magnitude: float | None = None
    z: float | None = None
    max_abs_delta: float | None = None
    threshold: float | None = None
    band: Band | None = None
    duplicates_a: int = 0
    duplicates_b: int = 0
    non_numeric_a: int = 0
    non_numeric_b: int = 0
    note: str = ""

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "band"}
        out["band"] = self.band.to_dict() if self.band else None
        return out


@dataclass(frozen=True)
class BitwiseEvidence:
    """Tensor checksums or RNG digests compared per (rank, step, name).

    kind: "tensor" or "rng". compared: (rank, step, name) entries both runs logged;
    steps: distinct steps among them; first_common: the first of them. first_step: the first step where any differs
    (None: all equal); names: those differing there, in run A's logging order
    (at most 20); differing: how many differ there. only_a / only_b: entries
    logged by one run only.
    """

    kind: str
    compared: int
    steps: int
    first_common: int | None
    first_step: int | None
    names: tuple[str, ...]
    differing: int
    only_a: int
    only_b: int

    @property
    def first_name(self) -> str | None:
        return self.names[0] if self.names else None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "compared": self.compared, "steps": self.steps,
                "first_common": self.first_common, "first_step": self.first_step, "first_name": self.first_name,
                "names": list(self.names), "differing": self.differing,
                "only_a": self.only_a, "only_b": self.only_b}


@dataclass(frozen=True)
class Divergence:
    """Where runs ``run_a`` and ``run_b`` stop agreeing.

    diverged: whether they do; step: the first divergent step (None when not);
    signal: what diverged there (a metric, ``tensor/<name>`` or ``rng/<source>``);
    level: "bitwise", "exact" or "statistical" (the evidence behind ``step``);
    mode: the level the verdict was taken from ("exact" covers bitwise too).
    signals: per-signal comparison; tensors, rng: bitwise evidence (None when a
    run logs none); replicas_a / replicas_b: extra runs used for the band.
    curve: the plotted signal, downsampled (steps, a, b, band_low, band_high).
    """

    run_a: str
    run_b: str
    diverged: bool
    step: int | None
    signal: str | None
    level: str | None
    mode: str
    verdict: str
    signals: tuple[SignalDivergence, ...]
    tensors: BitwiseEvidence | None = None
    rng: BitwiseEvidence | None = None
    replicas_a: tuple[str, ...] = ()
    replicas_b: tuple[str, ...] = ()
    curve: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        return {"run_a": self.run_a, "run_b": self.run_b, "diverged": self.diverged,
                "step": self.step, "signal": self.signal, "level": self.level,
                "mode": self.mode, "verdict": self.verdict,
                "signals": [s.to_dict() for s in self.signals],
                "tensors": self.tensors.to_dict() if self.tensors else None,
                "rng": self.rng.to_dict() if self.rng else None,
                "replicas_a": list(self.replicas_a), "replicas_b": list(self.replicas_b),
                "curve": self.curve}

    def report(self):
        """The drift card (an ``rldk.core.report.Report``)."""
        return card([self])


# ---------------------------------------------------------------- public API
def first_divergence(run_a, run_b, signals=None, *, store=None, replicas_a=(), replicas_b=(),
                     mode: str | None = None, params: Params | None = None, **options) -> Divergence:
    """The first step where ``run_b`` stops agreeing with ``run_a``.

    run_a, run_b, replicas_*: :class:`rldk.core.store.Run` objects, run ids in
    ``store`` (a Store), or paths/globs holding one run each. signals: a metric
    name, a list of names or None (see :class:`Params`). ``mode`` and other
    ``options`` override fields of ``params``. Raises :class:`UsageError` for a
    signal a run does not log, :class:`MissingEvents` for a run without metrics,
    :class:`RldkError` when the runs share no step.
    """
    params = params or Params()
    if isinstance(signals, str):
        signals = tuple(s.strip() for s in signals.split(",") if s.strip())
    overrides = dict(options, **({"mode": mode} if mode else {}))
    if signals is not None:
        overrides["signals"] = tuple(signals)
    params = replace(params, **overrides) if overrides else params
    a, b = _series.source_of(run_a, store), _series.source_of(run_b, store)
    reps_a = [_series.source_of(r, store) for r in replicas_a]
    reps_b = [_series.source_of(r, store) for r in replicas_b]
    return compare(a, b, reps_a, reps_b, params)


def diff(paths, run_a: str | None = None, run_b: str | None = None, signals=None,
         replicas_a=(), replicas_b=(), **options) -> Divergence:
    """``rldk diff``: :func:`first_divergence` of two runs named by paths and/or ids.

    With ``run_a`` and ``run_b``, all ``paths`` form one store holding both runs.
    Without them: two paths holding one run each are the two sides (the same run id
    may then appear in both); else ``paths`` together must hold exactly two runs,
    and A is the one in the first path. Replicas are run ids in that store or paths.
    """
    from rldk.core.store import open_store

    paths = [str(p) for p in ([paths] if isinstance(paths, (str, bytes)) else paths)]
    if (run_a is None) != (run_b is None):
        raise UsageError("pass both --a and --b, or neither")
    if run_a is not None:
        store = open_store(paths)
        sides = [_series.source_of(store.run(r), store) for r in (run_a, run_b)]
    else:
        store, sides = _two_sides(paths)
    reps = [[_series.source_of(r, store) for r in group] for group in (replicas_a, replicas_b)]
    return first_divergence(*sides, signals, replicas_a=reps[0], replicas_b=reps[1], **options)


def _two_sides(paths):
    from rldk.core.store import open_store

    if len(paths) == 2:
        stores = [open_store(p) for p in paths]
        if all(len(s.run_ids) == 1 for s in stores):
            return open_store(paths), [_series.Source(s, s.run_ids[0]) for s in stores]
    store = open_store(paths)
    ids = store.run_ids
    if len(ids) != 2:
        raise UsageError(f"{len(ids)} runs in {' '.join(paths)} ({_listing(ids)}): "
                         "name the two to compare with --a RUN --b RUN")
    first = open_store(paths[0]).run_ids
    run_a = first[0] if len(first) == 1 else ids[0]
    return store, [_series.Source(store, run_a), _series.Source(store, next(i for i in ids if i != run_a))]


def compare(a, b, reps_a, reps_b, params: Params) -> Divergence:
    """:func:`first_divergence` on resolved sources (``_series.Source``)."""
    _series.prefetch([a, b, *reps_a, *reps_b])
    pairs = _signal_pairs(a, b, params.signals, reps_a + reps_b)
    tensors = _bitwise(a, b, "tensor") if params.bitwise else None
    rng = _bitwise(a, b, "rng") if params.bitwise else None
    mode = params.mode
    if mode == "auto":
        mode = "statistical" if reps_a or reps_b else _auto_mode(a, b, tensors, rng)
    per_signal = replace(params, alpha=params.alpha / len(pairs))        # Bonferroni
    compared, curves = _compare_signals(a, b, pairs, per_signal, mode == "statistical" and
                                        not (reps_a or reps_b))
    if reps_a or reps_b:
        compared, curves = _replicas(a, b, reps_a, reps_b, pairs, compared, curves, per_signal)
    if mode == "statistical" and all(s.threshold is None for s in compared):
        n = max(s.common_steps for s in compared)
        raise RldkError(f"runs {a.label!r} and {b.label!r} differ from their first common step "
                        f"and share only {n} step(s): the statistical level needs at least "
                        f"{params.min_warmup}; compare values exactly with mode='exact' "
                        "(CLI: --mode exact)")
    headline = _headline_exact(compared, tensors, rng) if mode == "exact" else _headline_stat(compared)
    step, signal, level = headline
    plotted = _plotted(compared, signal)
    return Divergence(
        run_a=a.label, run_b=b.label, diverged=step is not None, step=step, signal=signal,
        level=level, mode=mode, verdict=_verdict(mode, headline, compared, tensors, rng),
        signals=tuple(compared), tensors=tensors, rng=rng,
        replicas_a=tuple(r.label for r in reps_a), replicas_b=tuple(r.label for r in reps_b),
        curve=dict(curves.get(plotted.signal, {}), signal=plotted.signal) if plotted else {})


# ------------------------------------------------------------------- signals
def _signal_pairs(a, b, signals, replicas) -> list[tuple[str, str, str, list[str]]]:
    """``(signal, name_a, name_b, replica names)`` for each signal to compare."""
    counts = {src: _series.metric_counts(src) for src in (a, b, *replicas)}
    for src, names in counts.items():
        if not names:
            raise MissingEvents(f"run {src.label!r} has no metric events: log scalars with "
                                "rldk.writer.log(step, ...) or import its logs with `rldk import`")
    if signals is None:
        common = sorted(n for n in counts[a]
                        if not TIMING.search(n) and semantics.resolve_name(n, counts[b]) is not None)
        if not common:
            raise MissingEvents(f"runs {a.label!r} and {b.label!r} share no metric name: "
                                f"{a.label!r} logs {_listing(counts[a])}; {b.label!r} logs "
                                f"{_listing(counts[b])}; pass signals that both log")
        signals = common
    out = []
    for signal in signals:
        names = [semantics.resolve_name(signal, counts[src]) for src in (a, b, *replicas)]
        for src, name in zip((a, b, *replicas), names):
            if name is None:
                raise UsageError(f"signal {signal!r} is not logged by run {src.label!r}; "
                                 f"its metrics: {_listing(counts[src])}")
        out.append((signal, names[0], names[1], names[2:]))
    return out


def _listing(names, limit: int = 12) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "") if names else "none"


def _load_pairs(a, b, pairs):
    """Yield ``(pair, series_a, series_b)``, loading in batches that bound memory."""
    for loaded_a in _series.iter_series(a, [p[1] for p in pairs]):
        chosen = [p for p in pairs if p[1] in loaded_a]
        loaded_b = _series.load_series(b, sorted({p[2] for p in chosen}))
        for pair in chosen:
            yield pair, loaded_a[pair[1]], loaded_b[pair[2]]


def _compare_signals(a, b, pairs, params, statistical: bool):
    """The exact level for every signal, and the statistical one (warm-up band) when asked."""
    out, curves = [], {}
    for (signal, name_a, name_b, _), sa, sb in _load_pairs(a, b, pairs):
        _check_numeric(a, sa, params.signals is not None)
        _check_numeric(b, sb, params.signals is not None)
        steps, va, vb = _series.align(sa, sb)
        result = _exact(signal, name_a, name_b, sa, sb, steps, va, vb)
        curve = None
        if not len(steps):
            result = replace(result, note=_no_common(a, b, sa, sb))
        elif statistical:
            result, curve = _warmup_signal(result, steps, va, vb, params)
        out.append(result)
        curves[signal] = curve or _curve(steps, va, vb, None)
    if not any(s.common_steps for s in out):
        shown = "; ".join(f"{s.signal}: {s.note.removeprefix('no common step: ')}" for s in out[:3])
        raise RldkError(f"runs {a.label!r} and {b.label!r} share no step ({shown}); steps are "
                        "aligned by number: log both runs with the same step counter")
    return out, curves


def _no_common(a, b, sa, sb) -> str:
    for src, s in ((a, sa), (b, sb)):
        if not len(s) and s.non_numeric:
            return f"no numeric value in {src.label!r} ({s.non_numeric} non-numeric)"
    return (f"no common step: {a.label!r} logs steps {_series.step_range(sa)}, "
            f"{b.label!r} {_series.step_range(sb)}")


def _check_numeric(src, series, explicit):
    if series.non_numeric and not len(series) and explicit:
        text = _series.first_text(src, series.name, series.first_non_numeric)
        raise RldkError(f"metric {series.name!r} of run {src.label!r} has no numeric values "
                        f"({series.non_numeric} non-numeric, e.g. {text!r} at step "
                        f"{series.first_non_numeric}): log numbers")


def _exact(signal, name_a, name_b, sa, sb, steps, va, vb) -> SignalDivergence:
    differ = ~((va == vb) | (np.isnan(va) & np.isnan(vb)))
    idx = np.flatnonzero(differ)
    first = int(idx[0]) if len(idx) else None
    n = len(steps)
    delta = np.abs(vb - va)
    delta = delta[np.isfinite(delta)]
    return SignalDivergence(
        signal=signal, name_a=name_a, name_b=name_b, common_steps=n,
        first_step=int(steps[0]) if n else None, last_step=int(steps[-1]) if n else None,
        only_a=len(sa) - n, only_b=len(sb) - n,
        exact_step=int(steps[first]) if first is not None else None,
        value_a=float(va[first]) if first is not None else None,
        value_b=float(vb[first]) if first is not None else None,
        max_abs_delta=float(delta.max()) if len(delta) else None,
        duplicates_a=sa.duplicates, duplicates_b=sb.duplicates,
        non_numeric_a=sa.non_numeric, non_numeric_b=sb.non_numeric)


def _auto_mode(a, b, tensors, rng) -> str:
    """"exact" when the runs start identical, else "statistical".

    They start identical when nothing differs where both begin: every metric both
    log (timings aside) has the same first value when both first log it at the
    same step, the first compared RNG digests and tensor checksums are equal, and
    their recorded seeds agree.
    """
    for ev in (tensors, rng):
        if ev is not None and ev.first_step is not None and ev.first_step == ev.first_common:
            return "statistical"
    seeds = [_seed(src) for src in (a, b)]
    if None not in seeds and seeds[0] != seeds[1]:
        return "statistical"
    return "statistical" if _first_values_differ(a, b) else "exact"


def _seed(src):
    return _series.run_facts(src).meta.get("seed")


def _first_values_differ(a, b) -> bool:
    """Whether a quantity both runs log differs at the first step both log it (names
    matched through :mod:`rldk.semantics`, so ``kl`` and ``train/kl`` are one quantity)."""
    index_a, index_b = _series.run_index(a), _series.run_index(b)
    first_a, first_b = _series.first_values(a), _series.first_values(b)
    for name_a in index_a:
        name_b = semantics.resolve_name(name_a, index_b)
        if name_b is None or TIMING.search(name_a) or name_a not in first_a or name_b not in first_b:
            continue
        if index_a[name_a].first_numeric_step != index_b[name_b].first_numeric_step:
            continue
        va, vb = first_a[name_a], first_b[name_b]
        if va != vb and not (math.isnan(va) and math.isnan(vb)):
            return True
    return False


# --------------------------------------------------------------- statistical
def _replicas(a, b, reps_a, reps_b, pairs, compared, curves, params):
    """The statistical level with the band from replicas, for every signal."""
    by_signal = {s.signal: s for s in compared}
    out, new_curves = [], dict(curves)
    for pair, sides in _load_replicas(a, b, reps_a, reps_b, pairs):
        result, curve = _replica_signal(by_signal[pair[0]], sides, params)
        out.append(result)
        new_curves[pair[0]] = curve or curves[pair[0]]
    return out, new_curves


def _warmup_signal(base: SignalDivergence, steps, va, vb, params):
    """Band from the first ``warmup`` common steps, then CUSUM over all of them."""
    n = len(steps)
    if n < params.min_warmup:
        return replace(base, note=_few_steps(n, params)), _curve(steps, va, vb, None)
    warm = params.warmup or min(max(n // 10, params.min_warmup), 500)
    band = warmup_band(vb[:warm] - va[:warm])
    h = params.h if params.h is not None else auto_threshold(n, params.alpha)
    z_up, z_down = standardize(va, vb, band.center, band.sigma, params.clip)
    alarm = cusum(z_up, z_down, params.k, h)
    lo, hi = va + band.center - 3 * band.sigma, va + band.center + 3 * band.sigma
    result = _with_alarm(base, steps, vb - va, band, h, alarm)
    return result, _curve(steps, va, vb, (lo, hi))


def _few_steps(n, params) -> str:
    return (f"only {n} common step(s): the statistical level needs at least "
            f"{params.min_warmup}")


def _with_alarm(base, steps, d, band, h, alarm: Alarm) -> SignalDivergence:
    if alarm.alarm is None:
        return replace(base, threshold=h, band=band)
    window = d[alarm.start:alarm.alarm + 1] - band.center
    window = window[np.isfinite(window)]
    magnitude = float(np.median(window)) if len(window) else None
    return replace(base, threshold=h, band=band, change_start=int(steps[alarm.start]),
                   alarm_step=int(steps[alarm.alarm]), direction=alarm.side,
                   magnitude=magnitude,
                   z=magnitude / band.sigma if magnitude is not None and band.sigma else None)


# ------------------------------------------------------------------ replicas
def _load_replicas(a, b, reps_a, reps_b, pairs):
    """Yield ``(pair, (matrix_a, matrix_b, steps))`` aligned on steps all runs logged."""
    for pair in pairs:
        signal, name_a, name_b, rep_names = pair
        side_a = [(a, name_a)] + list(zip(reps_a, rep_names[:len(reps_a)]))
        side_b = [(b, name_b)] + list(zip(reps_b, rep_names[len(reps_a):]))
        series = [_series.load_series(src, [name])[name] for src, name in side_a + side_b]
        steps = series[0].steps
        for s in series[1:]:
            steps = np.intersect1d(steps, s.steps, assume_unique=True)
        values = np.stack([s.values[np.searchsorted(s.steps, steps)] for s in series])
        yield pair, (values[:len(side_a)], values[len(side_a):], steps)


def _replica_signal(base, sides, params):
    side_a, side_b, steps = sides
    n = len(steps)
    if max(len(side_a), len(side_b)) < 2:
        raise UsageError("replicas need at least 2 runs on one side")
    if n < params.min_warmup:
        return replace(base, note=_few_steps(n, params)), {}
    sigma = replica_band(side_a, side_b, params.smooth)
    sigma = np.where(np.isfinite(sigma) & (sigma > 0), sigma, np.nan)
    fill = np.nanmedian(sigma) if np.isfinite(sigma).any() else floor_sigma(side_a.ravel())
    sigma = np.where(np.isnan(sigma), fill, sigma) * math.sqrt(2.0)   # scale of a difference
    center_a, center_b = np.median(side_a, axis=0), np.median(side_b, axis=0)
    null_peak = max((_null_peak(side, sigma, params) for side in (side_a, side_b)), default=0.0)
    h = params.h if params.h is not None else max(auto_threshold(n, params.alpha),
                                                  params.margin * null_peak)
    z_up, z_down = standardize(center_a, center_b, 0.0, sigma, params.clip)
    alarm = cusum(z_up, z_down, params.k, h)
    band = Band("replicas", 0.0, float(np.median(sigma)), n,
                f"{len(side_a)} run(s) A, {len(side_b)} run(s) B; replicas' own CUSUM peak "
                f"{null_peak:.3g}")
    result = _with_alarm(base, steps, center_b - center_a, band, h, alarm)
    curve = _curve(steps, center_a, center_b, (center_a - 3 * sigma, center_a + 3 * sigma))
    return result, curve


def _null_peak(side: np.ndarray, sigma, params) -> float:
    """Largest CUSUM statistic any two replicas of one side reach against each other."""
    peak = 0.0
    for i in range(len(side)):
        for j in range(i + 1, len(side)):
            z_up, z_down = standardize(side[i], side[j], 0.0, sigma, params.clip)
            peak = max(peak, cusum(z_up, z_down, params.k, math.inf).peak)
    return peak


# ------------------------------------------------------------------ bitwise
BITWISE_SQL = """
WITH a AS (
    SELECT rank, step, name, arg_max(digest, struct_pack(t := wall_time, s := seq)) AS digest,
           min(struct_pack(s := seq, r := file_row_number)) AS seq
    FROM read_parquet($files_a, union_by_name = true, file_row_number = true)
    WHERE kind = $kind AND run_id = $run_a AND step IS NOT NULL
    GROUP BY rank, step, name),
b AS (
    SELECT rank, step, name, arg_max(digest, struct_pack(t := wall_time, s := seq)) AS digest
    FROM read_parquet($files_b, union_by_name = true)
    WHERE kind = $kind AND run_id = $run_b AND step IS NOT NULL
    GROUP BY rank, step, name),
joined AS (
    SELECT coalesce(a.step, b.step) AS step, coalesce(a.name, b.name) AS name, a.seq,
           a.digest IS NOT NULL AND b.digest IS NOT NULL AS in_both,
           a.digest IS NULL AS only_b, b.digest IS NULL AS only_a,
           a.digest IS DISTINCT FROM b.digest AS differs
    FROM a FULL OUTER JOIN b USING (rank, step, name)),
first_step AS (SELECT min(step) AS step FROM joined WHERE in_both AND differs)
SELECT (SELECT count(*) FROM joined WHERE in_both) AS compared,
       (SELECT count(DISTINCT step) FROM joined WHERE in_both) AS steps,
       (SELECT min(step) FROM joined WHERE in_both) AS first_common,
       (SELECT count(*) FROM joined WHERE only_a) AS only_a,
       (SELECT count(*) FROM joined WHERE only_b) AS only_b,
       (SELECT step FROM first_step) AS first_step,
       (SELECT count(*) FROM joined WHERE in_both AND differs
         AND step = (SELECT step FROM first_step)) AS differing,
       (SELECT list(name ORDER BY seq, name)[1:20] FROM joined
         WHERE in_both AND differs AND step = (SELECT step FROM first_step)) AS names
"""


def _bitwise(a, b, kind: str) -> BitwiseEvidence | None:
    """Compare ``kind`` events (tensor checksums or RNG digests); None if a run has none."""
    if not (_has_kind(a, kind) and _has_kind(b, kind)):
        return None
    import duckdb

    con = duckdb.connect()
    row = con.execute(BITWISE_SQL, {"files_a": a.store.files, "files_b": b.store.files,
                                    "run_a": a.run_id, "run_b": b.run_id, "kind": kind}).fetchone()
    compared, steps, first_common, only_a, only_b, first, differing, names = row
    return BitwiseEvidence(kind, int(compared), int(steps), first_common, first, tuple(names or ()),
                           int(differing), int(only_a), int(only_b))


def _has_kind(src, kind: str) -> bool:
    return kind in _series.run_facts(src).kinds


# ------------------------------------------------------------------ headline
def _headline_exact(compared, tensors, rng):
    """Earliest bitwise or exact difference; ties go to tensors, then RNG, then signals."""
    found = []
    for rank, ev in enumerate((tensors, rng)):
        if ev is not None and ev.first_step is not None:
            found.append((ev.first_step, rank, f"{ev.kind}/{ev.first_name}", "bitwise"))
    for i, s in enumerate(compared):
        if s.exact_step is not None:
            found.append((s.exact_step, 2 + i, s.signal, "exact"))
    if not found:
        return None, None, None
    step, _, signal, level = min(found)
    return step, signal, level


def _headline_stat(compared):
    found = [(s.change_start, -abs(s.z or 0.0), i, s.signal) for i, s in enumerate(compared)
             if s.change_start is not None]
    if not found:
        return None, None, None
    step, _, _, signal = min(found)
    return step, signal, "statistical"


def _plotted(compared, signal):
    chosen = [s for s in compared if s.signal == signal] or [s for s in compared if s.common_steps]
    return chosen[0] if chosen else None


def _curve(steps, va, vb, band) -> dict:
    """The signal downsampled to at most ``_CURVE_POINTS`` points (JSON-ready lists)."""
    n = len(steps)
    idx = np.unique(np.linspace(0, n - 1, min(n, _CURVE_POINTS)).astype(int)) if n else np.array([], int)
    out = {"steps": steps[idx].tolist(), "a": _floats(va[idx]), "b": _floats(vb[idx])}
    if band is not None:
        out["band_low"], out["band_high"] = _floats(band[0][idx]), _floats(band[1][idx])
    return out


def _floats(x) -> list:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(x, dtype=float)]


# ------------------------------------------------------------------- verdict
def _verdict(mode, headline, compared, tensors, rng) -> str:
    step, signal, level = headline
    n = max((s.common_steps for s in compared), default=0)
    if step is None and mode == "exact":
        parts = [f"{len(compared)} signal(s) identical on all common steps (up to {n})"]
        parts += [f"{ev.kind} digests equal at {ev.steps} step(s)" for ev in (tensors, rng) if ev]
        return "runs are identical: " + "; ".join(parts)
    if step is None:
        return (f"no divergence: no signal leaves its noise band over {n} common steps "
                f"({len(compared)} signal(s))")
    if level == "bitwise":
        return _bitwise_verdict(step, tensors, rng, compared)
    s = next(x for x in compared if x.signal == signal)
    if level == "exact":
        return (f"runs diverge at step {step}: {signal} = {s.value_a!r} in A vs {s.value_b!r} "
                f"in B (identical before)")
    return (f"{signal} drifts {s.direction} from step {step} (CUSUM alarm at {s.alarm_step}, "
            f"shift {_num(s.magnitude)} = {_num(s.z)} sigma, band from {s.band.source})")


def _bitwise_verdict(step, tensors, rng, compared) -> str:
    parts = []
    if tensors is not None and tensors.first_step == step:
        more = f" (first of {tensors.differing})" if tensors.differing > 1 else ""
        parts.append(f"tensors diverged at step {step} in {tensors.first_name}{more}")
    if rng is not None:
        if rng.first_step == step:
            parts.append(f"RNG stream {rng.first_name} differs at step {step}")
        elif rng.first_step is None or rng.first_step > step:
            parts.append("RNG streams still equal")
    first_metric = min((s.exact_step for s in compared if s.exact_step is not None), default=None)
    if first_metric is not None:
        parts.append(f"first metric difference at step {first_metric}")
    return "; ".join(parts)


def _num(x) -> str:
    return "n/a" if x is None else f"{x:+.4g}"


# ---------------------------------------------------------- analyzer interface
def applies(store) -> bool:
    """The store has metrics (``run`` then says what else it needs: a baseline, a 2nd run)."""
    return not store.sql("SELECT 1 FROM metrics LIMIT 1").is_empty()


@dataclass(frozen=True)
class Result:
    """Every run compared against ``baseline`` (``rldk analyze --baseline``); runs that
    could not be compared are in ``errors`` as (run id, message)."""

    baseline: str
    comparisons: tuple[Divergence, ...]
    errors: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict:
        return {"baseline": self.baseline, "comparisons": [c.to_dict() for c in self.comparisons],
                "errors": [list(e) for e in self.errors]}

    def report(self):
        return card(list(self.comparisons), baseline=self.baseline, errors=self.errors)


def run(store, params: Params) -> Result:
    """Compare every run of ``store`` with ``params.baseline`` (required)."""
    if params.baseline is None:
        raise MissingEvents("first divergence needs a baseline run: pass --baseline RUN")
    base = _series.source_of(store.run(params.baseline), store)
    others = [rid for rid in store.run_ids if rid != base.run_id]
    if not others:
        raise MissingEvents(f"the store holds only the baseline run {base.run_id!r}: "
                            "nothing to compare it with")
    comparisons, errors = [], []
    for run_id in others:
        try:
            comparisons.append(compare(base, _series.Source(store, run_id), [], [], params))
        except RldkError as exc:
            errors.append((run_id, str(exc)))
    if not comparisons:
        raise RldkError(f"no run could be compared with {base.run_id!r}: " + "; ".join(
            f"{r}: {m}" for r, m in errors))
    return Result(base.run_id, tuple(comparisons), tuple(errors))


# ----------------------------------------------------------------- rendering
SIGNAL_COLUMNS = ("signal", "common_steps", "exact_step", "change_start", "alarm_step",
                  "direction", "magnitude", "z", "max_abs_delta", "band_sigma", "note")


def card(comparisons: list[Divergence], baseline: str | None = None, errors=()):
    """The drift card of one or more comparisons (Report: findings, per-signal tables)."""
    from rldk.core.report import Finding, Report

    diverged = [c for c in comparisons if c.diverged]
    if len(comparisons) == 1 and not errors:
        c = comparisons[0]
        title, summary = f"Drift card: {c.run_b} vs {c.run_a}", c.verdict
    else:
        title = f"Drift card: {len(comparisons)} runs vs baseline {baseline}"
        summary = (f"{len(diverged)} of {len(comparisons)} runs diverge from {baseline}: "
                   + ", ".join(f"{c.run_b} at step {c.step}" for c in diverged) if diverged
                   else f"no run diverges from {baseline}")
    findings = tuple(_finding(c) for c in diverged) + tuple(
        Finding("not_compared", "warning", f"{run_id} not compared with {baseline}: {message}",
                run_id=run_id, fix="See the message; compare the runs with `rldk diff`.")
        for run_id, message in errors)
    return Report(analyzer=NAME, title=title, status="problems" if findings else "ok",
                  summary=summary, findings=findings,
                  tables=tuple(_signal_table(c, len(comparisons) > 1) for c in comparisons),
                  details={"comparisons": [c.to_dict() for c in comparisons]})


def _finding(c: Divergence):
    from rldk.core.report import Finding

    statistical = c.level == "statistical"
    fix = ("Look at what changed around that step in run B (learning-rate schedule, data "
           "order, code or config); the two runs' start events hold their configs."
           if statistical else
           "The runs were identical before this step: diff their configs and code, then "
           "rerun with `rldk check-determinism` to tell a bug from nondeterminism.")
    evidence = {"level": c.level, "mode": c.mode, "run_a": c.run_a, "run_b": c.run_b}
    s = next((x for x in c.signals if x.signal == c.signal), None)
    if s is not None:
        evidence.update({k: v for k, v in s.to_dict().items()
                         if k in ("exact_step", "value_a", "value_b", "change_start", "alarm_step",
                                  "magnitude", "z", "threshold")})
    if c.tensors is not None and c.level == "bitwise":
        evidence["tensors"] = c.tensors.to_dict()
    return Finding(code="first_divergence", severity="warning" if statistical else "error",
                   title=c.verdict, run_id=c.run_b, metric=c.signal,
                   steps=(c.step, c.step), evidence=evidence, fix=fix)


def _signal_table(c: Divergence, several: bool):
    from rldk.core.report import ReportTable

    rows = tuple((s.signal, s.common_steps, s.exact_step, s.change_start, s.alarm_step,
                  s.direction, s.magnitude, s.z, s.max_abs_delta,
                  s.band.sigma if s.band else None, s.note) for s in c.signals)
    name = f"Signals: {c.run_b} vs {c.run_a}" if several else "Signals"
    return ReportTable(name, SIGNAL_COLUMNS, rows)


def plots(result, out_dir) -> dict[str, str]:
    """PNG of each comparison's plotted signal: both curves, the band, the divergence step."""
    from pathlib import Path

    from rldk.core.plots import divergence_plot

    comparisons = result.comparisons if isinstance(result, Result) else (result,)
    out = {}
    for c in comparisons:
        if not c.curve.get("steps"):
            continue
        path = Path(out_dir) / f"divergence-{c.run_b}.png"
        signal = c.curve["signal"]
        labels = [run if not reps else f"{run} + {len(reps)} replica(s): median"
                  for run, reps in ((c.run_a, c.replicas_a), (c.run_b, c.replicas_b))]
        out[f"{signal}: {c.run_b} vs {c.run_a}"] = divergence_plot(
            c.curve, path, title=f"{signal}: {c.run_b} vs {c.run_a}", labels=labels, step=c.step)
    return out


class DivergenceAnalyzer(Analyzer):
    """The ``divergence`` analysis (this module's ``run``) behind the one analyzer interface."""

    name = NAME
    title = "First divergence"
    consumes = CONSUMES
    Params = Params
    defines_verdict = True

    def applies(self, store) -> bool:
        return applies(store)

    def run(self, store, params=None):
        return run(store, params if params is not None else Params())

    def plots(self, result, out_dir) -> dict[str, str]:
        return plots(result, out_dir)
