"""Comparing two runs: ``first_divergence``, ``diff`` and the level that gives the verdict.

Which level gives the verdict (``mode="auto"``): replicas given -> statistical;
otherwise, if every signal is equal at the runs' first common step, the runs are
taken as meant to be identical and the earliest bitwise/exact difference is the
divergence; else statistical. The other levels are still reported as evidence.
"""
from __future__ import annotations

from dataclasses import replace
from functools import partial

from rldk.analyzers import _series
from rldk.analyzers.divergence.bitwise import compare_digests
from rldk.analyzers.divergence.card import curve, verdict_text
from rldk.analyzers.divergence.exact import auto_mode, exact_signal, headline_exact
from rldk.analyzers.divergence.params import Params
from rldk.analyzers.divergence.result import Divergence
from rldk.analyzers.divergence.signals import (
    check_numeric,
    load_pairs,
    no_common_note,
    signal_pairs,
)
from rldk.analyzers.divergence.statistical import (
    headline_stat,
    warmup_signal,
    with_replicas,
)
from rldk.core.errors import RldkError, UsageError
from rldk.data import open_input


def first_divergence(run_a, run_b, signals=None, *, store=None, replicas_a=(), replicas_b=(),
                     mode: str | None = None, params: Params | None = None, **options) -> Divergence:
    """The first step where ``run_b`` stops agreeing with ``run_a``.

    run_a, run_b, replicas_*: :class:`rldk.core.store.Run` objects, run ids in
    ``store`` (a Store), or paths/globs holding one run each. signals: a metric
    name (canonical, alias or as logged), a comma-separated string or list of them,
    or None (see :class:`Params`). ``mode`` and other ``options`` override fields of
    ``params``. Raises :class:`UsageError` for a signal a run does not log,
    :class:`MissingEvents` for a run without metrics, :class:`RldkError` when the
    runs share no step.
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
    paths = [str(p) for p in ([paths] if isinstance(paths, (str, bytes)) else paths)]
    if (run_a is None) != (run_b is None):
        raise UsageError("pass both --a and --b, or neither")
    if run_a is not None:
        store = open_input(paths)
        sides = [_series.source_of(store.run(r), store) for r in (run_a, run_b)]
    else:
        store, sides = _two_sides(paths)
    reps = [[_series.source_of(r, store) for r in group] for group in (replicas_a, replicas_b)]
    return first_divergence(*sides, signals, replicas_a=reps[0], replicas_b=reps[1], **options)


def _two_sides(paths):
    if len(paths) == 2:
        stores = [open_input(p) for p in paths]
        if all(len(s.run_ids) == 1 for s in stores):
            return open_input(paths), [_series.Source(s, s.run_ids[0]) for s in stores]
    store = open_input(paths)
    ids = store.run_ids
    if len(ids) != 2:
        raise UsageError(f"{len(ids)} runs in {' '.join(paths)} ({', '.join(ids) or 'none'}): "
                         "name the two to compare with --a RUN --b RUN")
    first = open_input(paths[0]).run_ids
    run_a = first[0] if len(first) == 1 else ids[0]
    return store, [_series.Source(store, run_a), _series.Source(store, next(i for i in ids if i != run_a))]


def compare(a, b, reps_a, reps_b, params: Params) -> Divergence:
    """:func:`first_divergence` on resolved sources (``_series.Source``)."""
    _series.prefetch([a, b, *reps_a, *reps_b])
    pairs = signal_pairs(a, b, params.signals, reps_a + reps_b)
    tensors = compare_digests(a, b, "tensor") if params.bitwise else None
    rng = compare_digests(a, b, "rng") if params.bitwise else None
    mode = params.mode
    if mode == "auto":
        mode = "statistical" if reps_a or reps_b else auto_mode(a, b, tensors, rng)
    per_signal = replace(params, alpha=params.alpha / len(pairs))        # Bonferroni
    warmup = mode == "statistical" and not (reps_a or reps_b)
    compared, curves = compare_signals(a, b, pairs, per_signal, warmup)
    if reps_a or reps_b:
        compared, curves = with_replicas(a, b, reps_a, reps_b, pairs, compared, curves, per_signal)
    if mode == "statistical" and all(s.threshold is None for s in compared):
        n = max(s.common_steps for s in compared)
        raise RldkError(f"runs {a.label!r} and {b.label!r} differ from their first common step "
                        f"and share only {n} step(s): the statistical level needs at least "
                        f"{params.min_warmup}; compare values exactly with mode='exact' "
                        "(CLI: --mode exact)")
    headline = headline_exact(compared, tensors, rng) if mode == "exact" else headline_stat(compared)
    step, signal, level = headline
    plotted = _plotted(compared, signal)
    weak = mode == "statistical" and not (reps_a or reps_b)
    return Divergence(
        run_a=a.label, run_b=b.label, diverged=step is not None, step=step, signal=signal,
        level=level, mode=mode,
        verdict=verdict_text(a.label, b.label, mode, headline, compared, tensors, rng, weak),
        signals=tuple(compared), tensors=tensors, rng=rng,
        replicas_a=tuple(r.label for r in reps_a), replicas_b=tuple(r.label for r in reps_b),
        curve=dict(curves[plotted.signal](), signal=plotted.signal) if plotted else {},
        weak=weak)


def compare_signals(a, b, pairs, params, warmup: bool):
    """The exact level for every signal, and the statistical one (warm-up band) when asked:
    ``(signals, {signal: plot})``, ``plot()`` returning the signal's curve."""
    out, curves = [], {}
    for pair, sa, sb in load_pairs(a, b, pairs):
        check_numeric(a, sa, params.signals is not None)
        check_numeric(b, sb, params.signals is not None)
        steps, va, vb = _series.align(sa, sb)
        result = exact_signal(pair, sa, sb, steps, va, vb)
        plotted = None
        if not len(steps):
            result = replace(result, note=no_common_note(a, b, sa, sb))
        elif warmup:
            result, plotted = warmup_signal(result, steps, va, vb, params)
        out.append(result)
        curves[pair.signal] = plotted or partial(curve, steps, va, vb, None)
    if not any(s.common_steps for s in out):
        shown = "; ".join(f"{s.signal}: {s.note.removeprefix('no common step: ')}" for s in out[:3])
        raise RldkError(f"runs {a.label!r} and {b.label!r} share no step ({shown}); steps are "
                        "aligned by number: log both runs with the same step counter")
    return out, curves


def _plotted(compared, signal):
    chosen = [s for s in compared if s.signal == signal] or [s for s in compared if s.common_steps]
    return chosen[0] if chosen else None
