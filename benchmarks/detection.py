"""Detection benchmark on real public training logs (``benchmarks/data/real/``).

    python benchmarks/detection.py                    # both halves, a table per half
    python benchmarks/detection.py --half report --json out.json
    python benchmarks/detection.py --log <short_name> -v   # one log: findings vs truth

Every log listed in ``benchmarks/data/real/truth.json`` (and the project's shared
fixtures listed there under ``shared``) is imported through ``rldk.data.open_input``
and analysed by the default analyzers exactly as ``rldk analyze`` does. Each
warning/error finding is then matched against the truth, which was written by
reading the numbers, before and independently of the detectors:

A log whose metric names no framework table knows (a custom CSV logger) carries a
``metric_map`` in truth.json, exactly what its user would pass with ``--metric-map``,
and a ``field_map`` naming its step column, as ``rldk import --field-map`` takes it.

* a truth *event* is **found** when a problem finding names the same event code
  (``EVENT_CODES`` maps finding codes to event codes) for the same quantity
  (metrics resolved through ``rldk.semantics``; where a log has two such events one after
  the other, a run that collapsed twice, only findings starting after the earlier one's
  last step count for the later one; a finding whose stretch ended before the event
  began, a dip the run came back from earlier, reports something else); it is found
  **at the exact onset**
  when the finding's first step equals the event's original ``onset_step`` (+-0 steps),
  and **within the protocol window** when that step is the onset of a ``step`` event
  (+-0) or lies inside the ``onset_window`` of a ``gradual`` one (README "Onset protocol");
* a problem finding that matches no event and no listed benign (or ``ambiguous``:
  labelled neither way by the truth) feature is a **false alarm**; on a healthy log
  any problem finding that matches none is one;
* a healthy log **exits 3** when any problem finding remains (what ``rldk analyze``
  would do to a CI gate).

The truth was split once into a tuning half and a report half (``split`` in
truth.json, seeded); detectors are tuned on the tuning half only. Targets for the
report half (issue #14): >= 95% of events found, >= 85% at the exact onset step "(+-0
steps for step events)": scored under the onset protocol (a ``step`` event at +-0, a
``gradual`` one in its window; the original labels of gradual events are threshold
crossings inside the slide, printed beside it), <= 0.05 false alarms per healthy log,
<= 1 healthy log in 20 exiting 3.

The logs are analysed in parallel, one process per CPU (``RLDK_BENCH_WORKERS=1``: all in
this process); the results do not depend on how many.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "real"
SHARED = ROOT.parent / "shared" / "fixtures" / "real"

#: finding code -> truth event code (codes that are not problems of a run's training,
#: such as spikes explained by zero-std groups, are info and never counted). The reward
#: health check's KL over its target band (``kl_band_exceeded``, a warning while the
#: reward still rises) reports a KL-to-reference blow-up too.
EVENT_CODES = {
    "reward_collapse": "reward_collapse", "reward_constant": "reward_collapse",
    "reward_flat": "reward_collapse", "reward_plateau": "reward_plateau",
    "reward_degradation": "reward_degradation", "kl_blowup": "kl_blowup",
    "length_collapse": "length_collapse", "episode_length_collapse": "length_collapse",
    "length_explosion": "length_explosion",
    "truncation_onset": "truncation_onset", "truncation": "truncation_onset",
    "grad_norm_explosion": "grad_norm_explosion", "nan_onset": "nan_onset",
    "entropy_collapse": "entropy_collapse", "zero_std_onset": "zero_std_onset",
    "zero_std": "zero_std_onset", "zero_std_groups": "zero_std_onset",
    "clip_ratio_blowup": "clip_ratio_blowup", "spike": "loss_spike", "loss_divergence": "loss_spike",
    "loss_spike": "loss_spike", "kl_band_exceeded": "kl_blowup",
}
#: Event codes that name one failure under two labels: the truth's labellers drew the line
#: between a reward that "collapsed" and one that "degraded" differently (to the start
#: level, or to half the gain), so a finding of either matches an event of either.
FAMILIES = {"reward_collapse": "reward_lost", "reward_degradation": "reward_lost"}
TARGETS = {"found": 0.95, "exact": 0.85, "false_alarms_per_healthy": 0.05, "healthy_exit3_share": 1 / 20}
FORMATS = {"trl": "trl", "sb3": "sb3", "sb3_monitor": "sb3", "cleanrl": "csv", "verl": "verl", "hf_console": "hf_console",
           "llamafactory": "jsonl", "jsonl": "jsonl", "csv": "csv", "tensorboard": "tensorboard",
           "wandb": "wandb", "scalars_json": "scalars_json"}


@dataclass
class LogResult:
    """One log's outcome: truth events found / at onset, false alarms, exit code."""

    name: str
    split: str
    healthy: bool
    events: int = 0
    found: int = 0
    exact: int = 0
    in_window: int = 0
    false_alarms: list = field(default_factory=list)
    missed: list = field(default_factory=list)
    late: list = field(default_factory=list)
    exit3: bool = False
    exit3_on_errors: bool = False     # under ``rldk analyze --fail-on error``
    found_by_error: int = 0           # events found by an error finding
    problem_codes: list = field(default_factory=list)   # codes of its warning/error findings
    seconds: float = 0.0
    error: str | None = None


def load_truth() -> dict:
    truth = json.loads((DATA / "truth.json").read_text(encoding="utf-8"))
    logs = dict(truth["logs"])
    for name, entry in truth.get("shared", {}).items():
        if "split" in entry:                       # labelled (an unlabelled one is not scored)
            logs[name] = {**entry, "root": str(ROOT)}   # their paths are relative to the checkout
    return logs


#: the worker pools ``each_log`` started, by size (kept for the life of the process)
_POOL = {}


def workers() -> int:
    """Processes the benchmarks spread their logs over: RLDK_BENCH_WORKERS, or one per CPU."""
    return max(1, int(os.environ.get("RLDK_BENCH_WORKERS") or os.cpu_count() or 1))


def each_log(task, jobs: list) -> list:
    """``[task(*job) for job in jobs]``, in order, spread over ``workers()`` processes: one
    log's analysis shares nothing with another's. The processes are started once (spawned:
    a fork would copy DuckDB's and Polars' thread pools mid-flight) and kept, so what they
    imported and read stays with them; each job runs with this process's RLDK_CACHE_DIR
    (where the import cache is) as it is when the job is given."""
    n = min(workers(), len(jobs))
    if n <= 1:
        return [task(*job) for job in jobs]
    if n not in _POOL:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        here = str(Path(__file__).resolve().parent)   # the workers import the benchmarks by name
        if here not in sys.path:
            sys.path.insert(0, here)
        _POOL[n] = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
    cache = os.environ.get("RLDK_CACHE_DIR")
    return list(_POOL[n].map(_with_cache, [cache] * len(jobs), [task] * len(jobs), jobs))


def _with_cache(cache: str | None, task, job: tuple):
    if cache is None:
        os.environ.pop("RLDK_CACHE_DIR", None)
    else:
        os.environ["RLDK_CACHE_DIR"] = cache
    return task(*job)


def analyse(entry: dict, workdir: Path, name: str, maps: bool = True) -> LogResult:
    """Score the default analyzers' findings on one log (as ``rldk analyze`` runs them),
    with the log's metric map active while it is read and scored (``maps`` False: while
    it is scored only; the analysis sees the built-in table alone, as a user who passes
    no ``--metric-map``)."""
    from rldk import semantics
    from rldk.analyzers.suite import analyze

    semantics.use_metric_map(entry.get("metric_map") if maps else None)
    try:
        store = import_log(entry)
        analysis = analyze(store.files, out_dir=workdir, plots=False)
        semantics.use_metric_map(entry.get("metric_map"))  # a log's own names, as a user would map them
        return score(name, entry, analysis)
    finally:
        semantics.use_metric_map(None)


def import_log(entry: dict):
    """The store ``rldk import`` makes of one log of the truth (its field map applied)."""
    from rldk.converters import ingest

    source = Path(entry.get("root", DATA)) / entry["path"]
    fmt = FORMATS.get(entry["format"])
    # SB3 and TRL logs are read from their folder, as a user points at a run; a TRL state
    # saved under another name is named itself
    folder = fmt == "sb3" or (fmt == "trl" and source.name == "trainer_state.json")
    options = {"field_map": entry["field_map"]} if entry.get("field_map") else {}
    return ingest(str(source.parent if folder else source), adapter=fmt, **options)


def quantity_of(metric: str | None) -> str | None:
    from rldk import semantics

    if metric is None:
        return None
    q, _, _ = semantics.classify(metric)
    return q.name if q is not None else metric


def score(name: str, entry: dict, analysis) -> LogResult:
    """Match problem findings with the truth of one log."""
    result = LogResult(name, entry["split"], entry["healthy"], events=len(entry.get("events", [])))
    problems = [f for r in analysis.reports for f in r.findings if f.is_problem]
    used = set()
    events = entry.get("events", [])
    for event in events:
        family = FAMILIES.get(event["code"], event["code"])
        after = _previous_end(event, events)
        start = (event.get("onset_window") or [event["onset_step"]])[0]
        onsets = [_onset_of(f, event["quantity"]) for f in problems]
        hits = [i for i, f in enumerate(problems)
                if FAMILIES.get(EVENT_CODES.get(f.code), EVENT_CODES.get(f.code)) == family
                and onsets[i] is not False
                and (after is None or (f.steps and onsets[i] > after))
                and not (f.steps and f.steps[-1] < min(start, event["onset_step"]))
                and not _after_the_end(onsets[i], event)]
        if not hits:
            result.missed.append(event)
            continue
        result.found += 1
        result.found_by_error += any(problems[i].severity == "error" for i in hits)
        used.update(hits)
        first = min(onsets[i] for i in hits if onsets[i] is not None) \
            if any(onsets[i] is not None for i in hits) else None
        result.exact += first == event["onset_step"]
        in_window = within_window(first, event)
        result.in_window += in_window
        if not in_window:
            result.late.append({"event": event, "reported": first})
    for i, f in enumerate(problems):
        if i in used or _benign(f, entry.get("benign", []) + entry.get("ambiguous", [])):
            continue
        result.false_alarms.append({"code": f.code, "metric": f.metric, "steps": f.steps,
                                    "title": f.title})
    result.exit3 = bool(problems) and analysis.status == "problems"
    result.problem_codes = sorted({f.code for f in problems})
    result.exit3_on_errors = result.exit3 and any(f.severity == "error" for f in problems)
    return result


def _after_the_end(onset, event: dict) -> bool:
    """Whether a finding reported from ``onset`` starts after ``event`` was over (its
    ``last_step``): it saw something later (the run's next collapse), not this event."""
    return onset is not None and event.get("last_step") is not None and onset > event["last_step"]


def _onset_of(finding, quantity: str):
    """Where ``finding`` reports ``quantity`` going wrong: its first step when its metric is
    that quantity; for a NaN finding, which names every metric that went non-finite in
    order, that metric's own first non-finite step (``first_steps``); False when the
    finding does not report the quantity (None: it does, at no step)."""
    if quantity_of(finding.metric) == quantity:
        return finding.steps[0] if finding.steps else None
    for metric, step in (getattr(finding, "evidence", None) or {}).get("first_steps", {}).items():
        if quantity_of(metric) == quantity:
            return step
    return False


def _previous_end(event: dict, events: list) -> int | None:
    """The last step of the latest event of the same family and quantity that ends before
    ``event`` starts (a run that collapsed twice): only findings after it can be this
    event's, so each of the two is scored by its own finding. None when there is none."""
    family = FAMILIES.get(event["code"], event["code"])
    ends = [e["last_step"] for e in events if e is not event
            and FAMILIES.get(e["code"], e["code"]) == family and e["quantity"] == event["quantity"]
            and e["last_step"] < event["onset_step"]]
    return max(ends) if ends else None


def within_window(step, event: dict) -> bool:
    """Whether a reported onset step is right under the onset protocol: the onset itself
    for a ``step`` event, anywhere in ``onset_window`` for a ``gradual`` one."""
    if step is None:
        return False
    lo, hi = event.get("onset_window") or (event["onset_step"], event["onset_step"])
    return lo <= step <= hi


def _benign(finding, benign: list) -> bool:
    q = quantity_of(finding.metric)
    for b in benign:
        if b.get("quantity") != q:
            continue
        lo, hi = b.get("steps") or (None, None)
        if finding.steps is None or lo is None or lo <= finding.steps[0] <= hi:
            return True
    return False


def run(halves, only: str | None = None, verbose: bool = False, maps: bool = True) -> dict:
    logs = [(name, entry) for name, entry in sorted(load_truth().items())
            if entry["split"] in halves and not (only and name != only)]
    with tempfile.TemporaryDirectory(prefix="rldk-detection-") as tmp:
        results = each_log(_analyse_one, [(name, entry, str(Path(tmp) / name), maps) for name, entry in logs])
    out = {r.name: r for r in results}
    if verbose:
        for r in out.values():
            print(json.dumps(r.__dict__, default=str, indent=1))
    return out


def _analyse_one(name: str, entry: dict, workdir: str, maps: bool) -> LogResult:
    """``analyse`` of log ``name``, timed; a log that cannot be read counts as missed."""
    start = time.perf_counter()
    try:
        r = analyse(entry, Path(workdir), name, maps)
    except Exception as exc:
        r = unreadable(name, entry, exc)
    r.seconds = time.perf_counter() - start
    return r


def unreadable(name: str, entry: dict, exc: Exception) -> LogResult:
    """The result of a log that could not be read or analysed: every event missed, and why."""
    r = LogResult(name, entry["split"], entry["healthy"], events=len(entry.get("events", [])),
                  error=f"{type(exc).__name__}: {exc}")
    r.missed = entry.get("events", [])
    return r


def summary(results: dict, half: str) -> dict:
    rs = [r for r in results.values() if r.split == half]
    events = sum(r.events for r in rs)
    healthy = [r for r in rs if r.healthy]
    return {"half": half, "logs": len(rs), "healthy_logs": len(healthy), "events": events,
            "found": sum(r.found for r in rs), "exact": sum(r.exact for r in rs),
            "found_share": sum(r.found for r in rs) / events if events else None,
            "exact_share": sum(r.exact for r in rs) / events if events else None,
            "in_window": sum(r.in_window for r in rs),
            "in_window_share": sum(r.in_window for r in rs) / events if events else None,
            "false_alarms": sum(len(r.false_alarms) for r in rs),
            "false_alarms_per_healthy": (sum(len(r.false_alarms) for r in healthy) / len(healthy)
                                         if healthy else None),
            "false_alarms_on_problem_logs": sum(len(r.false_alarms) for r in rs if not r.healthy),
            "healthy_exit3": sum(r.exit3 for r in healthy),
            "healthy_exit3_share": sum(r.exit3 for r in healthy) / len(healthy) if healthy else None,
            "found_by_error": sum(r.found_by_error for r in rs),
            "healthy_exit3_on_errors": sum(r.exit3_on_errors for r in healthy),
            # which findings make healthy logs exit (a log counts once under each code it has):
            # what a reader needs to know of the report half without its per-log lines
            "healthy_exit3_by_code": dict(Counter(c for r in healthy if r.exit3 for c in r.problem_codes)
                                          .most_common()),
            "errors": [r.name for r in rs if r.error]}


def meets_targets(s: dict) -> bool:
    """Every target met; False when one cannot be measured (no events, or no healthy
    log: one log given with ``--log``)."""
    if None in (s["found_share"], s["false_alarms_per_healthy"]):
        return False
    return (s["found_share"] >= TARGETS["found"]
            and s["in_window_share"] >= TARGETS["exact"]
            and s["false_alarms_per_healthy"] <= TARGETS["false_alarms_per_healthy"]
            and s["healthy_exit3_share"] <= TARGETS["healthy_exit3_share"])


def print_table(summaries: list[dict]) -> None:
    print("| half | logs | healthy | events | found | exact onset (original label, +-0) "
          "| onset within the protocol window (the target's) | false alarms / healthy log "
          "| healthy logs exiting 3 | targets met |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in summaries:
        pct = lambda x: "n/a" if x is None else f"{100 * x:.0f}%"    # noqa: E731
        print(f"| {s['half']} | {s['logs']} | {s['healthy_logs']} | {s['events']} | "
              f"{s['found']} ({pct(s['found_share'])}) | {s['exact']} ({pct(s['exact_share'])}) | "
              f"{s['in_window']} ({pct(s['in_window_share'])}) | "
              f"{s['false_alarms_per_healthy'] if s['false_alarms_per_healthy'] is None else round(s['false_alarms_per_healthy'], 3)} | "
              f"{s['healthy_exit3']} of {s['healthy_logs']} | {'yes' if meets_targets(s) else 'no'} |")
    # a CI gate on errors only (``rldk analyze --fail-on error``): not the targets' measure
    # (they count every warning), what a user who gates on errors gets
    for s in summaries:
        print(f"{s['half']}, gated on errors only (`rldk analyze --fail-on error`): healthy logs exiting 3: "
              f"{s['healthy_exit3_on_errors']} of {s['healthy_logs']}; events found by an error finding: "
              f"{s['found_by_error']} of {s['events']}")
        if s["healthy_exit3_by_code"]:
            print(f"{s['half']}, healthy logs exiting 3 by finding code (a log under each code it has): "
                  + ", ".join(f"{c} {n}" for c, n in s["healthy_exit3_by_code"].items()))


def print_details(results: dict, prefix: str = "") -> None:
    """One line per false alarm, missed event, onset outside its window and error."""
    for r in results.values():
        for fa in r.false_alarms:
            print(f"{prefix}false alarm  {r.name}: {fa['code']} {fa['metric']} {fa['steps']}: {fa['title']}")
        for m in r.missed:
            print(f"{prefix}missed       {r.name}: {m['code']} {m['quantity']} at {m['onset_step']}")
        for late in r.late:
            e = late["event"]
            window = e.get("onset_window") or [e["onset_step"], e["onset_step"]]
            print(f"{prefix}onset off    {r.name}: {e['code']} {e['quantity']} truth {e['onset_step']} "
                  f"({e.get('onset_kind', 'step')}, window {window[0]}..{window[1]}), "
                  f"reported {late['reported']}")
        if r.error:
            print(f"{prefix}error        {r.name}: {r.error}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", choices=["tune", "report", "both"], default="both")
    parser.add_argument("--log", default=None, help="Only this log (short name).")
    parser.add_argument("--json", default=None, help="Also write the per-log results here.")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--no-metric-maps", action="store_true",
                        help="Analyse every log with the built-in names only (the logs' metric maps "
                             "still say what the truth's quantities are when findings are scored): "
                             "what a user who passes no --metric-map gets.")
    args = parser.parse_args(argv)
    halves = ("tune", "report") if args.half == "both" else (args.half,)
    results = run(halves, args.log, args.verbose, maps=not args.no_metric_maps)
    summaries = [summary(results, h) for h in halves]
    print_table(summaries)
    # per-log lines for the tuning half only: the report half is the honest measure of
    # what the tuning generalises to, so its misses are not put in front of whoever tunes
    print_details({k: r for k, r in results.items() if r.split == "tune" or args.log})
    if args.json:
        Path(args.json).write_text(json.dumps({"summaries": summaries,
                                               "logs": {k: v.__dict__ for k, v in results.items()}},
                                              default=str, indent=1), encoding="utf-8")
    return 0 if all(meets_targets(s) for s in summaries if s["half"] == "report") else 1


if __name__ == "__main__":
    sys.exit(main())
