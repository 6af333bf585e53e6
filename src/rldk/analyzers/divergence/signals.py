"""Which signals two runs are compared on: names resolved through :mod:`rldk.semantics`.

A signal is asked for by a canonical name (``reward_mean``, ``kl``, ``kl_to_ref``),
an alias or a run's own name; each run's metric for it is found by
:func:`rldk.semantics.resolve_name`, so ``reward`` (TRL), ``train/reward``
(TensorBoard) and ``reward_mean`` are one signal. Without signals, every quantity
both runs log is compared, wall-clock timings aside.
"""
from __future__ import annotations

from dataclasses import dataclass

from rldk import semantics
from rldk.analyzers import _series
from rldk.analyzers.divergence.params import TIMING
from rldk.core.errors import MissingEvents, RldkError, UsageError


@dataclass(frozen=True)
class SignalPair:
    """signal: the name asked for (or run A's name); name_a, name_b: each run's metric;
    replicas: the metric in each replica run (A's replicas first)."""

    signal: str
    name_a: str
    name_b: str
    replicas: tuple[str, ...] = ()


def signal_pairs(a, b, signals, replicas=()) -> list[SignalPair]:
    """The pair of metric names for each signal (sources: ``_series.Source``).

    Raises :class:`MissingEvents` for a run without metrics or two runs sharing no
    quantity, :class:`UsageError` for a signal a run does not log.
    """
    sources = (a, b, *replicas)
    counts = {src: _series.metric_counts(src) for src in sources}
    for src, names in counts.items():
        if not names:
            raise MissingEvents(f"run {src.label!r} has no metric events: log scalars with "
                                "rldk.writer.log(step, ...) or import its logs with `rldk import`")
    if signals is None:
        signals = default_signals(a, b, counts[a], counts[b])
    out = []
    for signal in signals:
        names = [semantics.resolve_name(signal, counts[src]) for src in sources]
        for src, name in zip(sources, names):
            if name is None:
                raise UsageError(f"signal {signal!r} is not logged by run {src.label!r}; "
                                 f"its metrics: {listing(counts[src])}")
        out.append(SignalPair(signal, names[0], names[1], tuple(names[2:])))
    return out


def default_signals(a, b, names_a, names_b) -> list[str]:
    """Run A's metrics whose quantity run B logs too (under any name), timings aside."""
    common = sorted(n for n in names_a
                    if not TIMING.search(n) and semantics.resolve_name(n, names_b) is not None)
    if not common:
        raise MissingEvents(f"runs {a.label!r} and {b.label!r} share no metric name: "
                            f"{a.label!r} logs {listing(names_a)}; {b.label!r} logs "
                            f"{listing(names_b)}; pass signals that both log")
    return common


def listing(names, limit: int = 12) -> str:
    """``"a, b, c (+3 more)"`` (or ``"none"``) for messages."""
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "") if names else "none"


def load_pairs(a, b, pairs: list[SignalPair]):
    """Yield ``(pair, series_a, series_b)``, loading in batches that bound memory."""
    for loaded_a in _series.iter_series(a, [p.name_a for p in pairs]):
        chosen = [p for p in pairs if p.name_a in loaded_a]
        loaded_b = _series.load_series(b, sorted({p.name_b for p in chosen}))
        for pair in chosen:
            yield pair, loaded_a[pair.name_a], loaded_b[pair.name_b]


def check_numeric(src, series, explicit: bool) -> None:
    """Raise when a signal the user named has no numeric value at all in ``src``."""
    if series.non_numeric and not len(series) and explicit:
        text = _series.first_text(src, series.name, series.first_non_numeric)
        raise RldkError(f"metric {series.name!r} of run {src.label!r} has no numeric values "
                        f"({series.non_numeric} non-numeric, e.g. {text!r} at step "
                        f"{series.first_non_numeric}): log numbers")


def no_common_note(a, b, sa, sb) -> str:
    """Why a signal has no common step (for the signal's note and the error)."""
    for src, s in ((a, sa), (b, sb)):
        if not len(s) and s.non_numeric:
            return f"no numeric value in {src.label!r} ({s.non_numeric} non-numeric)"
    return (f"no common step: {a.label!r} logs steps {_series.step_range(sa)}, "
            f"{b.label!r} {_series.step_range(sb)}")
