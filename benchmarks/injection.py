"""Failures injected into real healthy logs, at a known step: found, and found there?

    python benchmarks/injection.py                   # the tuning half's healthy logs
    python benchmarks/injection.py --half report     # the report half: totals only
    python benchmarks/injection.py --log <short_name> -v
    python benchmarks/injection.py --at 0.15         # early failures (0.6 of the rows by default)

The labelled events of ``detection.py`` are few and their onsets are judgement calls. A
healthy real log with a failure written into it has the noise, cadence and shape of a
real run and an onset known to the step. Each healthy log of ``truth.json`` gets, one
at a time, every injection whose quantity it logs (the metric ``rldk.semantics``
resolves for it, the one the analyzers read), from the logged step at 60% of that metric's rows on:

=================  ==================  =====================================================
injection          quantity            from the onset on
=================  ==================  =====================================================
return_collapse    episode_return,     the run's early level (median of its first 10%)
                   reward              minus half its range, with the original row-to-row
                                       noise kept (deviations from a rolling median of 5);
                                       a success rate the log keeps goes back to its early
                                       level from the same step (a collapsed policy no
                                       longer succeeds; ``rules._success_held``)
entropy_collapse   entropy             2% of the value (not on a run that logs its actions'
                                       standard deviation: a Gaussian policy's differential
                                       entropy has no collapse to a share of it)
kl_blowup          kl_to_ref           20x the level before, at least 2 nats
grad_explosion     grad_norm           50x the value
loss_divergence    value_loss, loss    1000x the value (positive losses only)
nan                loss                NaN
reward_floor       reward              the reward's lowest value, constant (no signal left)
length_collapse    response_length     10% of the value
length_explosion   response_length     5x the value
truncation         truncation_ratio    0.9 with the series' own jitter (clipped to 0..1)
zero_std           zero_std_frac       0.9 with the series' own jitter (clipped to 0..1)
clip_blowup        clip_ratio          0.6 with the series' own jitter (clipped to 0..1)
return_slide       episode_return,     return_collapse's level reached in a straight line
                   reward              over a tenth of the rows (SLIDE_SHARE), the success
                                       rate failed as for return_collapse
loss_climb         value_loss, loss    x1000 reached log-linearly over a tenth of the rows
=================  ==================  =====================================================

The last two are gradual: most real events slide into their bad state over several logged
steps, and a detector that finds a jump at its step can still place a slide's onset late
(past the midpoint) or explain a climb away. They are scored under the onset protocol of
``benchmarks/data/real/README.md``, on the injected series itself (a loss on the log
scale): "exact" means anywhere from the first injected step to where the series is
clearly in the bad state (the first row past the midpoint between the level of the
PRIOR_ROWS rows before and the median from the onset on, whose next row is past it too and
from which 80% of the rows to the deepest point stay past it).

Scored as ``detection.py`` scores a step event (a gradual one: as it scores a gradual
event, above): **found** when a problem finding of the
injection's event family names the quantity, **exact** when its first step is the onset
(+-0). Not for entropy: every healthy log's entropy declines as the policy learns, and
the onset protocol (``benchmarks/data/real/README.md``) starts a collapse at the first
step of the sustained move that passes the midpoint between the prior and the collapsed
level, which that healthy decline already is; there only **found** is scored. A finding
of another family is counted as **other** (an injected failure may show in several
detectors; none is a false alarm here, the healthy log itself is scored by
``detection.py``). The report half prints totals only.

Known misses: a value loss whose x1000 stays under levels it held before (a critic
that had fit to 1e-4 and rises to 0.1, below its early 45) or keeps dipping back under
ten times them (grid treasure's loss dips to 1e-3), by design: a value loss must jump
over every level it held and stay there (``rules._unexplained_jump``), or climb to 100x
the lowest level it held and stay, past what its returns' growth explains
(``rules._unexplained_climb``, since session 21: tune 32 -> 40 of 42 found); a DQN TD loss
so heavy-tailed that a fifth of its points stay under 100x the lowest level even after
x1000, and whose highest rolling level before is within 100x of the new one (a healthy
DQN's TD loss itself grows ~100x from its first steps, so the line is not lowered for
it); an evaluation series too short and quantised for a level test.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import detection  # noqa: E402  (the benchmark beside this one: truth, scoring)
import robustness  # noqa: E402  (ingesting and rewriting a log)

ONSET_SHARE = 0.6


def _collapse(v):
    """The early level minus half the range, with the series' own row-to-row jitter (its
    deviations from a rolling median of 5: the noise, not the trend)."""
    from rldk.detectors.onsets import level_of

    head = v[: max(3, len(v) // 10)]
    return np.median(head) - 0.5 * (np.max(v) - np.min(v)) + (v - level_of(v))


def _kl(v, k):
    before = max(float(np.median(np.abs(v[:k]))), 1e-6)
    return np.maximum(v, 0) / max(float(np.median(np.maximum(v[k:], 0))), 1e-12) * max(20 * before, 2.0)


def _ratio_at(level):
    """A ratio held at ``level`` from the onset on, with the series' own row-to-row jitter."""
    from rldk.detectors.onsets import level_of

    return lambda v, k: np.clip(level + (v - level_of(v))[k:], 0.0, 1.0)


#: Share of a metric's rows over which a gradual injection (``GRADUAL``) reaches its state.
SLIDE_SHARE = 0.1


def _ramp(v, k):
    """0 -> 1 in a straight line over SLIDE_SHARE of the rows of ``v`` from row ``k`` on
    (at least 2 rows; 1 from there), one weight per row from ``k``."""
    return np.minimum(1.0, np.arange(1, len(v) - k + 1) / max(2, int(SLIDE_SHARE * len(v))))


def _slide(v, k):
    """From the values into return_collapse's level (``_collapse``) in a straight line."""
    w = _ramp(v, k)
    return (1.0 - w) * v[k:] + w * _collapse(v)[k:]


def _climb(v, k):
    """The values times 1 -> 1000, log-linearly (a critic's loss diverging over updates)."""
    return v[k:] * 10.0 ** (3.0 * _ramp(v, k))


#: injection -> (quantities, event code, rewrite of the values from the onset on)
INJECTIONS = {
    "return_collapse": (("episode_return", "reward"), "reward_collapse", lambda v, k: _collapse(v)[k:]),
    "entropy_collapse": (("entropy",), "entropy_collapse", lambda v, k: 0.02 * v[k:]),
    "kl_blowup": (("kl_to_ref",), "kl_blowup", lambda v, k: _kl(v, k)[k:]),
    "grad_explosion": (("grad_norm",), "grad_norm_explosion", lambda v, k: 50 * v[k:]),
    "loss_divergence": (("value_loss", "loss"), "loss_spike", lambda v, k: 1000 * v[k:]),
    "nan": (("loss",), "nan_onset", lambda v, k: np.full(len(v) - k, np.nan)),
    "reward_floor": (("reward",), "reward_collapse", lambda v, k: np.full(len(v) - k, np.min(v))),
    "length_collapse": (("response_length",), "length_collapse", lambda v, k: 0.1 * v[k:]),
    "length_explosion": (("response_length",), "length_explosion", lambda v, k: 5 * v[k:]),
    "truncation": (("truncation_ratio",), "truncation_onset", _ratio_at(0.9)),
    "zero_std": (("zero_std_frac",), "zero_std_onset", _ratio_at(0.9)),
    "clip_blowup": (("clip_ratio",), "clip_ratio_blowup", _ratio_at(0.6)),
    "return_slide": (("episode_return", "reward"), "reward_collapse", _slide),
    "loss_climb": (("value_loss", "loss"), "loss_spike", _climb),
}
#: gradual injections -> the scale their onset window is read on (``_window_end``)
GRADUAL = {"return_slide": "signed", "loss_climb": "log"}
#: rows before the onset whose median is the prior level of a gradual injection's window
PRIOR_ROWS = 10
#: share of the rows from the window's end to the deepest point that stay past the midpoint
PAST_SHARE = 0.8
#: injections that only make sense on some series
APPLIES = {"entropy_collapse": lambda v: np.min(v) > 0, "loss_divergence": lambda v: np.min(v) >= 0,
           "loss_climb": lambda v: np.min(v) >= 0 and np.max(v) > 0,
           "grad_explosion": lambda v: np.max(v) > 0, "length_collapse": lambda v: np.min(v) > 0,
           "length_explosion": lambda v: np.min(v) > 0, "reward_floor": lambda v: np.ptp(v) > 0}
EVENT_OF = {**detection.EVENT_CODES, "nan_onset": "nan_onset"}
#: injections whose onset is not the injected step under the onset protocol (see above)
NO_EXACT = ("entropy_collapse",)


@dataclass
class Case:
    log: str
    injection: str
    metric: str
    onset: int
    window_end: int | None = None
    found: bool = False
    exact: bool | None = False
    reported: int | None = None
    other: tuple = ()
    error: str | None = None


def cases_of(name: str, entry: dict, only: str | None = None):
    """Every (injection, metric) the healthy log ``name`` can take: the metric that
    ``rldk.semantics`` resolves for the injection's quantity (the one the analyzers read)."""
    from rldk import semantics

    store = robustness_store(entry)
    names = [n for n in store.sql("SELECT DISTINCT name FROM metrics ORDER BY name")["name"].to_list()]
    for injection, (quantities, _, _) in INJECTIONS.items():
        if only and injection != only:
            continue
        metric = next((m.metric for q in quantities if (m := semantics.resolve(q, names)) is not None), None)
        if injection == "entropy_collapse" and semantics.resolve("action_std", names) is not None:
            continue    # a Gaussian policy's differential entropy: a share of it is no collapse
        if metric is not None:
            yield injection, metric, store


def robustness_store(entry: dict):
    """The store ``rldk import`` makes of one log (as the detection benchmark imports it)."""
    return detection.import_log(entry)


def inject(store, metric: str, injection: str, at: float = ONSET_SHARE):
    """The store's events with ``injection`` written into ``metric`` (a pyarrow Table), the
    onset step and the last step of its onset window (the onset itself but for a gradual
    injection), or None when the series does not take it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from rldk import semantics

    table = store.arrow("SELECT * FROM events ORDER BY run_id, seq")
    rows = np.flatnonzero(pc.fill_null(pc.and_(pc.equal(table["kind"], "metric"),
                                                pc.equal(table["name"], metric)), False).to_numpy(
        zero_copy_only=False))
    sign = semantics.classify(metric)[2]            # SB3's entropy_loss is minus the entropy
    values = sign * table["value"].to_numpy(zero_copy_only=False)[rows].astype(float)
    steps = table["step"].to_numpy(zero_copy_only=False)[rows]
    finite = np.isfinite(values)
    rows, values, steps = rows[finite], values[finite], steps[finite]
    if len(values) < 12 or not APPLIES.get(injection, lambda v: True)(values):
        return None
    k = max(1, int(at * len(values)))
    new = table["value"].to_numpy(zero_copy_only=False).astype(float).copy()
    written = INJECTIONS[injection][2](values, k)
    new[rows[k:]] = sign * written
    if injection in ("return_collapse", "return_slide"):
        _fail_the_task(table, new, int(steps[k]))
    end = k
    if injection in GRADUAL:
        injected = np.concatenate([values[:k], written])
        if GRADUAL[injection] == "log":       # exact zeros at the smallest positive value
            injected = np.log10(np.maximum(injected, np.min(injected[injected > 0])))
        end = _window_end(injected, k)
    # the rows that had no value (a text summary's, a non-numeric one) stay without one; a
    # NaN written by the injection, or logged, is a value
    empty = table["value"].is_null().to_numpy(zero_copy_only=False)
    column = table.schema.get_field_index("value")
    return table.set_column(column, "value", pa.array(new, mask=empty)), int(steps[k]), int(steps[end])


def _window_end(y: np.ndarray, k: int) -> int:
    """Where series ``y``, which moves away from its level from row ``k`` on, is clearly in
    its bad state (the onset protocol's window end): the first row from ``k`` past the
    midpoint between the median of the PRIOR_ROWS rows before ``k`` and the median from
    ``k`` on, whose next row is past it too, and from which PAST_SHARE of the rows up to
    the deepest point stay past it; the last row when none is."""
    prior, bad = float(np.median(y[max(0, k - PRIOR_ROWS):k])), float(np.median(y[k:]))
    past = (y < (prior + bad) / 2) if bad < prior else (y > (prior + bad) / 2)
    deepest = k + int(np.argmin(y[k:]) if bad < prior else np.argmax(y[k:]))
    for i in range(k, len(y) - 1):
        if past[i] and past[i + 1] and past[i:max(i, deepest) + 1].mean() >= PAST_SHARE:
            return i
    return len(y) - 1


def _fail_the_task(table, new: np.ndarray, onset: int) -> None:
    """With a collapsed return, the log's success rate (the metric ``rldk.semantics``
    resolves for ``success_rate``) back at its early level (median of its first 10%) from
    step ``onset`` on, with its own row-to-row jitter, in ``new`` (the value column)."""
    import pyarrow.compute as pc

    from rldk import semantics

    names = sorted(set(pc.filter(table["name"], pc.equal(table["kind"], "metric")).to_pylist()))
    success = semantics.resolve("success_rate", names)
    if success is None:
        return
    rows = np.flatnonzero(pc.fill_null(pc.and_(pc.equal(table["kind"], "metric"),
                                                pc.equal(table["name"], success.metric)), False).to_numpy(
        zero_copy_only=False))
    values = new[rows]
    keep = np.isfinite(values)
    rows, values = rows[keep], values[keep]
    if len(values) < 3:
        return
    steps = table["step"].to_numpy(zero_copy_only=False)[rows]
    k = int(np.searchsorted(steps, onset))
    early = float(np.median(values[:max(3, len(values) // 10)]))
    new[rows[k:]] = _ratio_at(early)(values, k)


def score(case: Case, entry: dict, workdir: Path, store, at: float = ONSET_SHARE) -> Case:
    import pyarrow.parquet as pq

    from rldk.analyzers.suite import analyze
    from rldk.data import open_input

    made = inject(store, case.metric, case.injection, at)
    if made is None:
        return None
    table, case.onset, case.window_end = made
    folder = workdir / "store"
    folder.mkdir(parents=True)
    pq.write_table(table.cast(robustness._schema_of(table)), folder / "events.parquet")
    out = analyze(open_input(str(folder)).files, out_dir=workdir / "cards", plots=False)
    quantity = detection.quantity_of(case.metric)
    family = detection.FAMILIES.get(INJECTIONS[case.injection][1], INJECTIONS[case.injection][1])
    problems = [f for r in out.reports for f in r.findings if f.is_problem]
    hits = [f for f in problems if detection.quantity_of(f.metric) == quantity
            and detection.FAMILIES.get(EVENT_OF.get(f.code), EVENT_OF.get(f.code)) == family]
    firsts = [f.steps[0] for f in hits if f.steps]
    case.found = bool(hits)
    case.reported = min(firsts) if firsts else None
    case.exact = (None if case.injection in NO_EXACT else
                  case.reported is not None and case.onset <= case.reported <= case.window_end)
    case.other = tuple(sorted({f.code for f in problems} - {f.code for f in hits}))
    return case


def run(half: str, only_log: str | None = None, only_injection: str | None = None,
        at: float = ONSET_SHARE) -> list[Case]:
    logs = [(name, entry) for name, entry in sorted(detection.load_truth().items())
            if entry["split"] == half and entry["healthy"] and not (only_log and name != only_log)]
    with tempfile.TemporaryDirectory(prefix="rldk-injection-") as tmp:
        cases = detection.each_log(_cases_of_one, [(name, entry, str(Path(tmp) / name), only_injection, at)
                                                   for name, entry in logs])
    return [case for one in cases for case in one]


def _cases_of_one(name: str, entry: dict, workdir: str, only_injection: str | None, at: float) -> list[Case]:
    """Every injection healthy log ``name`` takes, scored; one that fails counts as not
    found, with why."""
    from rldk import semantics

    out = []
    semantics.use_metric_map(entry.get("metric_map"))
    try:
        for injection, metric, store in cases_of(name, entry, only_injection):
            case = Case(name, injection, metric, -1)
            try:
                case = score(case, entry, Path(workdir) / injection, store, at)
            except Exception as exc:
                case.error = f"{type(exc).__name__}: {exc}"
            if case is not None:
                out.append(case)
    finally:
        semantics.use_metric_map(None)
    return out


def table(cases: list[Case], half: str) -> None:
    print(f"| {half}: injection | cases | found | exact onset (+-0; a slide or climb: in its window) |")
    print("|---|---|---|---|")
    for injection in [*INJECTIONS, "all"]:
        cs = [c for c in cases if injection in (c.injection, "all")]
        if cs:
            found = sum(c.found for c in cs)
            timed = [c for c in cs if c.exact is not None]
            exact = sum(c.exact for c in timed)
            print(f"| {injection} | {len(cs)} | {found} ({100 * found / len(cs):.0f}%) | "
                  + (f"{exact} of {len(timed)} ({100 * exact / len(timed):.0f}%) |" if timed else "not scored |"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", choices=["tune", "report"], default="tune")
    parser.add_argument("--log", default=None, help="Only this healthy log (tuning half).")
    parser.add_argument("--injection", choices=list(INJECTIONS), default=None)
    parser.add_argument("--at", type=float, default=ONSET_SHARE,
                        help="Inject from the row at this share of the metric's rows (default 0.6; "
                             "0.1-0.2 puts the failure where round 1's baselines assumed health).")
    parser.add_argument("-v", "--verbose", action="store_true", help="Per-case lines (tuning half only).")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if not 0.0 < args.at < 1.0:
        parser.error("--at must be between 0 and 1")
    cases = run(args.half, args.log, args.injection, args.at)
    if args.half == "tune" and args.verbose:
        for c in cases:
            mark = "exact" if c.exact else "found" if c.found and c.exact is None else "late " if c.found else "MISS "
            window = f"..{c.window_end}" if c.window_end != c.onset else ""
            print(f"{mark} {c.log}: {c.injection} on {c.metric} at {c.onset}{window}, reported {c.reported}"
                  + (f"; also {', '.join(c.other)}" if c.other else "") + (f"; {c.error}" if c.error else ""))
    table(cases, args.half)
    print(f"({len(cases)} cases in {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
