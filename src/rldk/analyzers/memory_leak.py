"""Memory-leak detection from ``memory`` events (bytes per step).

For each memory series of a run (``host/rss``, ``cuda:N/allocated``,
``cuda:N/reserved``; one reading per step, the last one logged), after a warm-up:

* a robust trend: the Theil-Sen slope in bytes per step with its confidence
  interval (``scipy.stats.theilslopes``);
* the step the growth began: a hinge fit (flat, then linear) over the steps;
* the growth rate ("2.1x over 1,000 steps"): the fitted level at the last step
  over the fitted level where the growth began;
* the projected step of out-of-memory, given the memory limit of the device;
* ``cuda:N/alloc_retries`` rising: the caching allocator had to free its cache
  and retry a cudaMalloc, a sign of memory pressure or fragmentation.

A series is a **leak** when the slope's lower confidence bound is above zero,
the growth continues over the last third of the steps (so a one-off jump is not
a leak), and the fitted growth reaches ``min_growth_bytes`` and
``min_growth_fraction`` of the starting level.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from rldk.analyzers.base import Analyzer, has_events
from rldk.core.errors import MissingEvents
from rldk.core.naming import safe_file_stem
from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import Result, as_dict

MIB = 1 << 20

MEMORY_SQL = """
SELECT rank, name, step, arg_max(value, (wall_time, seq)) AS value
FROM memory
WHERE run_id = ? AND step IS NOT NULL AND value IS NOT NULL
GROUP BY rank, name, step
ORDER BY rank, name, step
"""

RUNS_WITH_MEMORY_SQL = "SELECT DISTINCT run_id FROM memory ORDER BY run_id"

#: series whose growth is expected or counted elsewhere
_NOT_LEVELS = ("/peak_allocated", "/alloc_retries")


@dataclass(frozen=True)
class Params:
    """Parameters of the memory-leak analysis.

    run_id: analyse this run only (None: every run with memory events).
    warmup_steps: readings before this many steps from the first are ignored
        (None: the first ``warmup_fraction`` of the steps).
    warmup_fraction: share of the steps treated as warm-up when ``warmup_steps`` is None.
    min_points: fewest readings after warm-up needed to judge a series.
    min_growth_bytes, min_growth_fraction: growth below either is not a leak.
    confidence: level of the Theil-Sen slope interval.
    device_limit_bytes: memory of one accelerator, for the OOM projection of
        ``cuda:N/*`` series (None: no projection).
    host_limit_bytes: the same for ``host/rss``.
    max_points: series longer than this are thinned evenly before Theil-Sen (O(n^2)).
    """

    run_id: str | None = None
    warmup_steps: int | None = None
    warmup_fraction: float = 0.1
    min_points: int = 12
    min_growth_bytes: float = 32 * MIB
    min_growth_fraction: float = 0.10
    confidence: float = 0.95
    device_limit_bytes: float | None = None
    host_limit_bytes: float | None = None
    max_points: int = 2000


@dataclass(frozen=True)
class Trend:
    """The trend of one memory series of one run after warm-up.

    series: the memory event name (prefixed ``rank<N>/`` for ranks other than 0).
    first_step, last_step, points: the readings analysed (after warm-up).
    slope, slope_low, slope_high: Theil-Sen bytes per step over the growth
        segment, with the ``confidence`` interval.
    onset_step: step the growth began (the first analysed step if it grew throughout).
    start_bytes, end_bytes: fitted levels at ``onset_step`` and ``last_step``.
    growth: end_bytes / start_bytes. leak: see the module docstring.
    limit_bytes, oom_step: the memory limit used and the projected step at which
        the fitted line reaches it (None without a limit or without growth).
    curve: ``{"steps": [...], "bytes": [...]}`` all readings, for plots (not in ``to_dict``).
    """

    run_id: str
    series: str
    first_step: int
    last_step: int
    points: int
    slope: float
    slope_low: float
    slope_high: float
    onset_step: int
    start_bytes: float
    end_bytes: float
    growth: float
    leak: bool
    limit_bytes: float | None = None
    oom_step: int | None = None
    curve: dict = field(default_factory=dict, repr=False, compare=False)

    def describe(self) -> str:
        steps = self.last_step - self.onset_step
        text = (f"{self.series} grew {self.growth:.2f}x over {steps:,} steps from step {self.onset_step} "
                f"({self.start_bytes / MIB:,.0f} MiB -> {self.end_bytes / MIB:,.0f} MiB, "
                f"{self.slope / MIB:+.2f} MiB/step)")
        if self.oom_step is not None:
            text += f"; at this rate it reaches {self.limit_bytes / MIB:,.0f} MiB at step {self.oom_step:,}"
        return text


@dataclass(frozen=True)
class Retries:
    """Allocator retries (``cuda:N/alloc_retries``) that rose during a run."""

    run_id: str
    series: str
    first_step: int
    last_step: int
    count: int


HOW_TO_LOG = "call rldk.writer.log_memory(step) every step"


@dataclass(frozen=True)
class MemoryLeakResult(Result):
    """Trends of every memory series, allocator retries, and the series with too few
    readings after warm-up to judge: ``short`` holds (run, series, readings)."""

    params: Params
    trends: tuple[Trend, ...]
    retries: tuple[Retries, ...]
    short: tuple[tuple[str, str, int], ...]

    @property
    def leaks(self) -> list[Trend]:
        return [t for t in self.trends if t.leak]

    @property
    def checks(self) -> tuple[Check, ...]:
        """One per memory series: its trend judged, or too few readings (and what to log)."""
        need = self.params.min_points
        return (tuple(Check("memory_trend", "ran", t.series, t.run_id) for t in self.trends)
                + tuple(Check("memory_trend", "skipped",
                              f"{series}: {n} reading(s), {need} after warm-up needed: {HOW_TO_LOG}",
                              run_id) for run_id, series, n in self.short))

    def report(self) -> Report:
        return _report(self)


class MemoryLeakAnalyzer(Analyzer):
    """Memory growth per series from ``memory`` events (see the module docstring)."""

    name = "memory_leak"
    title = "Memory leaks"
    consumes = ("memory",)
    Params = Params

    def applies(self, store) -> bool:
        return has_events(store, self.consumes)

    def run(self, store, params: Params | None = None) -> MemoryLeakResult:
        """Analyse the memory series of ``params.run_id`` (or of every run with memory events)."""
        params = params or Params()
        if params.run_id:
            store.run(params.run_id)              # unknown run id: a UsageError naming the runs
        run_ids = [params.run_id] if params.run_id else store.sql(RUNS_WITH_MEMORY_SQL)["run_id"].to_list()
        if not run_ids:
            raise MissingEvents(f"no memory events in the store: {HOW_TO_LOG}")
        trends, retries, short = [], [], []
        for run_id in run_ids:
            frame = store.sql(MEMORY_SQL, [run_id])
            if frame.is_empty():
                raise MissingEvents(f"run {run_id!r} has no memory events: {HOW_TO_LOG} (host RSS, and "
                                    "CUDA allocated/reserved/retries when CUDA is used)")
            for (rank, name), part in frame.group_by(["rank", "name"], maintain_order=True):
                series = name if rank == 0 else f"rank{rank}/{name}"
                steps, values = part["step"].to_numpy(), part["value"].to_numpy()
                if name.endswith("/alloc_retries"):
                    rise = _retries(run_id, series, steps, values, params)
                    retries.extend([rise] if rise else [])
                elif not name.endswith(_NOT_LEVELS):
                    trend = analyse_series(run_id, series, steps, values, params)
                    if trend is None:
                        short.append((run_id, series, int(len(steps))))
                    else:
                        trends.append(trend)
        return MemoryLeakResult(params, tuple(trends), tuple(retries), tuple(short))

    def plots(self, result: MemoryLeakResult, out_dir) -> dict[str, str]:
        """One PNG per memory series (leaks first, at most 12): MiB per step, onset marked."""
        from rldk.core.plots import metric_plot

        out = {}
        for t in sorted(result.trends, key=lambda t: not t.leak)[:12]:
            marks = [(t.onset_step, f"growth from step {t.onset_step}")] if t.leak else []
            hline = (t.limit_bytes / MIB, "limit") if t.limit_bytes else None
            safe = re.sub(r"[^A-Za-z0-9._-]+", "_", t.series)
            title = f"{t.run_id}: {t.series} (MiB)".replace("$", r"\$")
            out[f"{t.run_id}: {t.series}"] = metric_plot(
                t.curve["steps"], [b / MIB for b in t.curve["bytes"]],
                Path(out_dir) / f"memory-{safe_file_stem(t.run_id)}-{safe}.png", title=title, marks=marks, hline=hline)
        return out


def _after_warmup(steps, params: Params):
    """Boolean mask of the readings after warm-up."""
    if params.warmup_steps is not None:
        return steps >= steps[0] + params.warmup_steps
    span = steps[-1] - steps[0]
    return steps >= steps[0] + max(1, int(round(span * params.warmup_fraction)))


def analyse_series(run_id: str, series: str, steps, values, params: Params = Params()) -> Trend | None:
    """The :class:`Trend` of one series (``steps`` ascending, ``values`` bytes), or None
    when fewer than ``params.min_points`` readings remain after warm-up."""
    import numpy as np

    keep = _after_warmup(steps, params)
    x, y = steps[keep].astype(float), values[keep].astype(float)
    if len(x) < params.min_points:
        return None
    x, y = _thin(x, params.max_points), _thin(y, params.max_points)
    slope, low, high = theil_sen(x, y, params.confidence)
    onset = hinge_onset(x, y)
    seg = x >= onset
    if seg.sum() >= params.min_points // 2 and onset > x[0]:
        slope, low, high = theil_sen(x[seg], y[seg], params.confidence)
    intercept = float(np.median(y[seg] - slope * x[seg]))
    start = intercept + slope * onset
    end = intercept + slope * x[-1]
    tail = x >= x[0] + (x[-1] - x[0]) * 2 / 3
    tail_low = theil_sen(x[tail], y[tail], params.confidence)[1] if tail.sum() >= 4 else float("nan")
    growth_bytes = end - start
    leak = bool(low > 0 and tail_low > 0 and growth_bytes >= params.min_growth_bytes
                and growth_bytes >= params.min_growth_fraction * max(start, 1.0))
    limit = params.host_limit_bytes if _is_host(series) else params.device_limit_bytes
    return Trend(run_id, series, int(x[0]), int(x[-1]), int(keep.sum()), float(slope), float(low),
                 float(high), int(onset), float(start), float(end),
                 float(end / start) if start > 0 else float("inf"), leak, limit,
                 _oom_step(limit, end, slope, int(x[-1])),
                 {"steps": _thin(steps, params.max_points).tolist(),
                  "bytes": _thin(values, params.max_points).tolist()})


def _is_host(series: str) -> bool:
    return series.split("/")[-2] == "host" if "/" in series else False


def theil_sen(x, y, confidence: float = 0.95) -> tuple[float, float, float]:
    """Theil-Sen slope of y on x with its ``confidence`` interval: (slope, low, high)."""
    from scipy.stats import theilslopes

    res = theilslopes(y, x, alpha=confidence)
    return float(res[0]), float(res[2]), float(res[3])


def hinge_onset(x, y) -> float:
    """The x where y turns from flat to linear growth: least squares over candidate
    knots of ``y = a + b * max(0, x - knot)`` (the first x when it grows throughout)."""
    import numpy as np

    candidates = np.unique(x[: max(1, len(x) - 3)])
    if len(candidates) > 400:
        candidates = candidates[np.linspace(0, len(candidates) - 1, 400).astype(int)]
    z = np.maximum(0.0, x[None, :] - candidates[:, None])           # knots x points
    zc = z - z.mean(axis=1, keepdims=True)
    yc = y - y.mean()
    var = (zc * zc).sum(axis=1)
    b = np.divide(zc @ yc, var, out=np.zeros_like(var), where=var > 0)
    if not (b > 0).any():
        return float(x[0])                     # not growing anywhere: no onset to place
    sse = ((yc[None, :] - b[:, None] * zc) ** 2).sum(axis=1)
    sse[b <= 0] = np.inf
    return float(candidates[int(np.argmin(sse))])


def _thin(a, max_points: int):
    import numpy as np

    if len(a) <= max_points:
        return a
    return a[np.linspace(0, len(a) - 1, max_points).astype(int)]


def _oom_step(limit, end: float, slope: float, last_step: int) -> int | None:
    if limit is None or slope <= 0:
        return None
    if end >= limit:
        return last_step
    return int(last_step + (limit - end) / slope)


def _retries(run_id, series, steps, values, params: Params) -> Retries | None:
    keep = _after_warmup(steps, params)
    if keep.sum() < 2:
        return None
    v = values[keep]
    rise = int(v[-1] - v[0])
    if rise <= 0:
        return None
    return Retries(run_id, series, int(steps[keep][0]), int(steps[keep][-1]), rise)


# ------------------------------------------------------------------------- report
def _report(result: MemoryLeakResult) -> Report:
    findings = [_leak_finding(t) for t in result.leaks]
    findings += [Finding("memory_growth", "info", t.describe(), t.run_id, t.series,
                         (t.onset_step, t.last_step), as_dict(t))
                 for t in result.trends if not t.leak and t.slope_low > 0]
    findings += [Finding("alloc_retries", "warning",
                         f"{r.series}: the CUDA caching allocator retried {r.count:,} allocations "
                         f"between steps {r.first_step} and {r.last_step}", r.run_id, r.series,
                         (r.first_step, r.last_step), as_dict(r),
                         "memory is near the limit or fragmented: lower the batch or sequence length, or "
                         "set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True")
                 for r in result.retries]
    problems = [f for f in findings if f.is_problem]
    judged = len(result.trends)
    if problems:
        summary = "; ".join(f.title for f in problems)
    else:
        summary = f"no memory leak in {judged} series after warm-up"
    if result.short:
        summary += f"; {len(result.short)} series had too few readings after warm-up to judge"
    if not judged and not problems:
        summary = (f"too few memory readings to judge ({result.params.min_points} after warm-up "
                   f"needed): {HOW_TO_LOG}")
    return Report(MemoryLeakAnalyzer.name, MemoryLeakAnalyzer.title,
                  verdict(findings, result.checks), summary, tuple(findings),
                  (_trend_table(result),), result.to_dict(), result.checks)


def _leak_finding(t: Trend) -> Finding:
    return Finding("memory_leak", "error" if t.oom_step is not None else "warning", t.describe(),
                   t.run_id, t.series, (t.onset_step, t.last_step), as_dict(t),
                   f"something retains memory every step from step {t.onset_step}: look for tensors or "
                   "outputs appended to a list, dict or buffer that is never cleared (and keep "
                   "loss.item(), not loss, for logging)")


def _trend_table(result: MemoryLeakResult) -> ReportTable:
    rows = tuple((t.run_id, t.series, f"{t.first_step}-{t.last_step}", t.onset_step,
                  round(t.slope / MIB, 4), f"[{t.slope_low / MIB:.4f}, {t.slope_high / MIB:.4f}]",
                  round(t.start_bytes / MIB, 1), round(t.end_bytes / MIB, 1), round(t.growth, 3),
                  t.oom_step, "leak" if t.leak else "") for t in result.trends)
    return ReportTable("Memory trends after warm-up", ("run", "series", "steps", "growth from step",
                       "MiB/step", "CI", "start MiB", "end MiB", "growth", "OOM step", "verdict"), rows)

