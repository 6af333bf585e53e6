"""Detection under another logging cadence: the real logs of ``detection.py``, thinned.

    python benchmarks/robustness.py                 # the tuning half, every variant
    python benchmarks/robustness.py --half report   # the report half: totals only
    python benchmarks/robustness.py --variant every3 --log <short_name> -v

A run logged every 3rd step, or looked at from a later step on, is the same run: a
detector that finds its failure only at the cadence of the log it was tuned on, or
only when the log starts healthy, is fitted to that log. Each variant rewrites every
imported log and scores the default analyzers as ``detection.py`` does, with the
truth carried over:

* ``everyK``: each metric keeps every K-th of its logged steps (its 1st, K+1st...).
  An event's onset becomes the first step at or after it that its quantity's
  metrics kept; a gradual event's window, the kept steps inside it (or that first
  step when none is).
* ``late``: the first 10% of the run's steps are gone (a resumed run, a log
  started late). Events whose window ends in the part cut away are left out.
* ``stopped``: the run was stopped soon after it broke, as broken runs are: a problem
  log ends 5% of its step span after its first event's onset window (the events that
  start later are left out); a healthy log ends at 70% of its span (a run stopped
  early, or still going, must stay quiet).

Healthy logs must stay quiet under every variant. The report half prints its
totals only (never per log): detectors are tuned on the tuning half.

``--cuts`` reads every log through five windows of its step span instead (a run stopped
at half or 85% of its steps, a log kept from 20% or 35% of them on, the middle 60%:
``CUTS``) and prints how many healthy logs exit 3 under each, by finding code: what a user
who watches a healthy run live, or analyses a resumed one, would be told. A problem log's
truth is cut with it, as ``late`` and ``stopped`` cut it: an event whose onset window ends
before the window's first step of its quantity, or starts after its last, is left out
(a problem log with none left is not scored), so the events found are those a user who
analysed that stretch of the run could have been told of.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import detection  # noqa: E402  (the benchmark beside this one: truth, scoring, tables)

VARIANTS = ("every2", "every3", "late", "stopped")
#: ``--cuts``: name -> (first, last) share of a log's step span that it keeps
CUTS = {"first50": (0.0, 0.5), "first85": (0.0, 0.85), "from20": (0.2, 1.0), "from35": (0.35, 1.0),
        "middle60": (0.2, 0.8)}
LATE_CUT = 0.10
STOPPED_AFTER = 0.05
STOPPED_HEALTHY = 0.70


def stop_step(entry: dict, lo: float, hi: float) -> float:
    """The last step a ``stopped`` log keeps (``lo``, ``hi``: its first and last metric step)."""
    events = entry.get("events", [])
    if not events:
        return lo + STOPPED_HEALTHY * (hi - lo)
    first = min(events, key=lambda e: (e.get("onset_window") or [e["onset_step"]])[0])
    end = max((first.get("onset_window") or [first["onset_step"]] * 2)[-1], first["onset_step"])
    return end + STOPPED_AFTER * (hi - lo)


#: name -> the imported log's events (a pyarrow Table): each log is imported and read once
#: per process, whatever the number of variants
_EVENTS: dict = {}


def events_of(name: str, entry: dict):
    """The events of log ``name`` as ``rldk import`` stores them, ordered."""
    if name not in _EVENTS:
        store = detection.import_log(entry)
        _EVENTS[name] = store.arrow("SELECT * FROM events ORDER BY run_id, seq")
    return _EVENTS[name]


def thinned(table, variant: str, entry: dict | None = None):
    """The events (a pyarrow Table) under ``variant`` and, per metric name, the
    steps it kept (sorted numpy arrays). ``entry``: the log's truth (``stopped`` cuts
    where its first event starts)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    is_metric = pc.fill_null(pc.equal(table["kind"], "metric"), False)
    steps = table["step"].to_numpy(zero_copy_only=False)
    names = table["name"].to_pylist()
    keep = np.ones(table.num_rows, dtype=bool)
    metric_rows = np.flatnonzero(is_metric.to_numpy(zero_copy_only=False))
    if variant == "late":
        logged = steps[metric_rows]
        lo, hi = np.nanmin(logged), np.nanmax(logged)
        cut = lo + LATE_CUT * (hi - lo)
        keep[metric_rows] = logged >= cut
    elif variant == "stopped":
        logged = steps[metric_rows]
        keep[metric_rows] = logged <= stop_step(entry or {}, np.nanmin(logged), np.nanmax(logged))
    elif variant in CUTS:
        logged = steps[metric_rows]
        lo, hi = np.nanmin(logged), np.nanmax(logged)
        first, last = CUTS[variant]
        keep[metric_rows] = (logged >= lo + first * (hi - lo)) & (logged <= lo + last * (hi - lo))
    else:
        k = int(variant.removeprefix("every"))
        by_name: dict[str, list[int]] = {}
        for row in metric_rows:
            by_name.setdefault(names[row], []).append(row)
        for rows in by_name.values():
            rows = np.asarray(rows)
            distinct = np.unique(steps[rows])
            kept_steps = distinct[::k]
            keep[rows] = np.isin(steps[rows], kept_steps)
    kept = table.filter(pa.array(keep))
    kept_steps = {}
    for name, step in zip(kept["name"].to_pylist(), kept["step"].to_pylist()):
        if step is not None:
            kept_steps.setdefault(name, set()).add(step)
    return kept, {n: np.array(sorted(s)) for n, s in kept_steps.items()}


def carried_truth(entry: dict, kept_steps: dict, variant: str) -> dict | None:
    """``entry`` with its events' onsets moved to the steps the variant kept; None when
    no event is left to score on a problem log. A cut keeps the events whose onset window
    overlaps its window (``late`` and ``stopped`` at once)."""
    cut = variant in CUTS
    if cut and entry.get("healthy"):
        return {**entry, "events": []}
    events = []
    for event in entry.get("events", []):
        steps = _quantity_steps(event["quantity"], kept_steps)
        if steps.size == 0:
            continue
        lo, hi = event.get("onset_window") or (event["onset_step"], event["onset_step"])
        if (variant == "late" or cut) and hi < steps[0]:
            continue                                   # the onset was cut away
        if (variant == "stopped" or cut) and lo > steps[-1]:
            continue                                   # it starts after the run was stopped
        onset = _first_at_or_after(steps, event["onset_step"])
        start = _first_at_or_after(steps, lo)
        if onset is None or start is None:
            continue
        inside = steps[(steps >= lo) & (steps <= hi)]
        window = [int(inside[0]), int(inside[-1])] if inside.size else [start, start]
        events.append({**event, "onset_step": onset, "onset_window": window})
    if entry.get("events") and not events:
        return None
    return {**entry, "events": events}


def _quantity_steps(quantity: str, kept_steps: dict):
    import numpy as np

    found = [s for name, s in kept_steps.items() if detection.quantity_of(name) == quantity]
    return np.unique(np.concatenate(found)) if found else np.array([], dtype=np.int64)


def _first_at_or_after(steps, step) -> int | None:
    import numpy as np

    i = int(np.searchsorted(steps, step))
    return int(steps[i]) if i < steps.size else None


def analyse(entry: dict, workdir: Path, name: str, variant: str):
    """Score one log under ``variant`` (None when none of its events survive it)."""
    import pyarrow.parquet as pq

    from rldk import semantics
    from rldk.analyzers.suite import analyze
    from rldk.data import open_input

    semantics.use_metric_map(entry.get("metric_map"))
    try:
        table, kept_steps = thinned(events_of(name, entry), variant, entry)
        truth = carried_truth(entry, kept_steps, variant)
        if truth is None:
            return None
        folder = workdir / "store"
        folder.mkdir(parents=True)
        pq.write_table(table.cast(_schema_of(table)), folder / "events.parquet")
        out = analyze(open_input(str(folder)).files, out_dir=workdir / "cards", plots=False)
        return detection.score(name, truth, out)
    finally:
        semantics.use_metric_map(None)


def _schema_of(table):
    """The store's event schema for the columns of ``table`` (DuckDB hands timestamps back in µs)."""
    import pyarrow as pa

    from rldk.schemas import arrow_schema

    schema = arrow_schema()
    return pa.schema([schema.field(n) if n in schema.names else table.schema.field(n)
                      for n in table.column_names])


def run(halves, variant: str, only: str | None = None) -> dict:
    logs = [(name, entry) for name, entry in sorted(detection.load_truth().items())
            if entry["split"] in halves and not (only and name != only)]
    with tempfile.TemporaryDirectory(prefix="rldk-robustness-") as tmp:
        results = detection.each_log(_analyse_one, [(name, entry, str(Path(tmp) / variant / name), variant)
                                                    for name, entry in logs])
    return {r.name: r for r in results if r is not None}


def _analyse_one(name: str, entry: dict, workdir: str, variant: str):
    """``analyse`` of log ``name`` under ``variant``, timed; a log that cannot be read
    counts as missed."""
    start = time.perf_counter()
    try:
        r = analyse(entry, Path(workdir), name, variant)
    except Exception as exc:
        r = detection.unreadable(name, entry, exc)
    if r is not None:
        r.seconds = time.perf_counter() - start
    return r


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", choices=["tune", "report"], default="tune")
    parser.add_argument("--variant", choices=VARIANTS + tuple(CUTS), action="append")
    parser.add_argument("--log", default=None, help="Only this log (short name; tuning half).")
    parser.add_argument("-v", "--verbose", action="store_true", help="Per-log lines (tuning half only).")
    parser.add_argument("--cuts", action="store_true",
                        help="Every log read through the windows of its span in CUTS (problem logs with their truth cut).")
    args = parser.parse_args(argv)
    rows = []
    for variant in args.variant or (tuple(CUTS) if args.cuts else VARIANTS):
        results = run((args.half,), variant, args.log)
        rows.append({**detection.summary(results, args.half), "half": f"{args.half}, {variant}"})
        if args.half == "tune" and args.verbose:
            detection.print_details(results, prefix=f"{variant}: ")
            for r in results.values():
                if r.healthy and r.exit3:
                    print(f"{variant}: exits 3      {r.name}: {', '.join(r.problem_codes)}")
    detection.print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
