"""The reference suite's smoke test: real GRPO training, real injected bugs, caught by rldk.

    python smoke_tests/cpu_2min_test.py                 # cards into a fresh temporary directory
    python smoke_tests/cpu_2min_test.py --out DIR --workdir DIR --keep --plots
    python smoke_tests/cpu_2min_test.py --record        # rewrite reference/expected_outputs/

Trains the tiny GPT-2 (``reference/models.py``) with TRL's GRPOTrainer on the
CPU, clean and with each bug of ``reference/bugs.json`` injected through a flag
of ``reference/runner.py``, then runs rldk's public APIs on the runs and checks
each capability against the ground truth: it must catch its bug (at the
injected step where there is one) and stay silent on the clean run.

Independent jobs run two at a time (both cores): two worker processes that
train several runs each (one import of torch/transformers/TRL per process),
the determinism and resume harnesses (which start their own training
processes), and the bisection. The analyses then run in this process.

Every check is a detection with a negative twin: the capability must catch its
injected bug and stay silent on a clean input.

Prints a table (capability, bug, expected, found, ok, seconds), then the wall
time, the CPU time (this process and its children) and the peak RSS, and writes
every card (JSON and Markdown) and ``summary.json`` / ``summary.md`` under
``--out`` (default: a fresh temporary directory; ``--record`` writes
``reference/expected_outputs/``, compared with new runs by
``tests/test_smoke_outputs.py``). Paths in the cards are written as ``<out>``,
``<repo>``, ``<work>`` and ``<python>`` so that recorded cards do not depend on the machine.
Exit status: 0 when every check holds, 1 when a detector missed its bug or
fired on a clean run, 2 when a job could not run or the arguments are wrong.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RUNNER = ROOT / "reference" / "runner.py"
BUGS_JSON = ROOT / "reference" / "bugs.json"
RECORDED = ROOT / "reference" / "expected_outputs"
SAFETY, CODE = "refusal_safety", "code_fix_prompts"


@dataclass(frozen=True)
class Row:
    """One line of the result table."""

    capability: str
    bug: str
    expected: str
    found: str
    ok: bool
    seconds: float


# ----------------------------------------------------------------------------- plan
class Plan:
    """Where every run goes and which runner arguments make it (from bugs.json).

    overrides: RunSpec fields set on every run (model, model_path, device...);
    bug_overrides: bug id -> RunSpec fields for that bug's runs (e.g. a larger leak
    on a GPU); memory_series: the series the leak must show in; timeout: seconds
    a training process may take.
    """

    def __init__(self, manifest: dict, workdir: Path, overrides: dict | None = None,
                 bug_overrides: dict | None = None, memory_series: str | None = None,
                 timeout: float = 600):
        self.manifest, self.work, self.timeout = manifest, workdir, timeout
        self.overrides, self.bug_overrides = dict(overrides or {}), dict(bug_overrides or {})
        self.bugs = {b["id"]: self._override(b) for b in manifest["bugs"]}
        self.store_a, self.store_b = workdir / "runs-a", workdir / "runs-b"
        self.memory_series = memory_series or self.bugs["memory_leak"]["expected"]["series"]

    def _override(self, bug: dict) -> dict:
        if bug["run"] is None:
            return bug
        return {**bug, "run": {**bug["run"], **self.bug_overrides.get(bug["id"], {})}}

    def spec(self, run: dict, task: str, run_id: str, store: Path, keep: bool = False) -> dict:
        out = {"task": task, "run_id": run_id, "rldk_dir": str(store), **run, **self.overrides}
        if keep:
            out["output_dir"] = str(self.work / "out" / run_id)
        return out

    def worker_jobs(self) -> dict[str, list[dict]]:
        """The runs trained by the two worker processes (each a list of RunSpec dicts)."""
        b = self.bugs
        a = [self.spec(b[i]["run"], b[i]["task"], i, self.store_a)
             for i in ("kl_spike", "memory_leak", "saturation")]
        unsafe = b["unsafe_policy"]
        a += [self.spec(unsafe["run"], SAFETY, "unsafe_policy", self.store_a),
              self.spec(unsafe["clean_runs"]["safety_seed1"], SAFETY, "safety_seed1", self.store_a)]
        bb = [self.spec(b["hacking"]["run"], b["hacking"]["task"], "hacking", self.store_b),
              self.spec(b["leakage"]["run"], b["leakage"]["task"], "leakage", self.store_b, keep=True),
              self.spec({"steps": 12}, CODE, "code_clean", self.store_b, keep=True),
              self.spec(unsafe["clean_runs"]["safety_clean"], SAFETY, "safety_clean", self.store_b)]
        return {"a": a, "b": bb}

    def command(self, run: dict, task: str) -> list[str]:
        """The runner's argv for a harness (no run id or store: the harness sets them)."""
        argv = [sys.executable, str(RUNNER), "--task", task]
        for key, value in {**run, **self.overrides}.items():
            if key == "eval":
                argv += [] if value else ["--no-eval"]
            elif key != "steps":
                argv += [f"--{key.replace('_', '-')}", str(value)]
        return argv


# ----------------------------------------------------------------------------- jobs
def run_workers(plan: Plan, name: str, specs: list[dict]) -> dict:
    """Train ``specs`` in one runner process (``--jobs``); its log goes to the workdir."""
    from rldk import harness

    jobs = plan.work / f"jobs-{name}.json"
    jobs.write_text(json.dumps(specs, indent=1), encoding="utf-8")
    result = harness.run_command([sys.executable, str(RUNNER), "--jobs", str(jobs)],
                                 plan.work / "logs" / f"worker-{name}.log", timeout=plan.timeout * len(specs))
    if result.problem():
        raise RuntimeError(f"worker {name} {result.problem()} (log: {result.log})")
    return {"specs": specs}


def run_determinism(plan: Plan, which: str):
    from rldk import check_determinism

    clean = plan.manifest["clean"]
    run, steps = (clean["run"], clean["run"]["steps"]) if which == "clean" else \
        (plan.bugs["nondeterminism"]["run"], plan.bugs["nondeterminism"]["steps"])
    task = clean["task"] if which == "clean" else plan.bugs["nondeterminism"]["task"]
    return check_determinism(plan.command(run, task), replicas=clean["replicas"], steps=steps,
                             workdir=plan.work / f"determinism-{which}", timeout=plan.timeout)


def run_resume(plan: Plan, which: str):
    from rldk.analyzers.checkpoint import resume_check

    bug = plan.bugs["bad_resume"]
    run = bug["run"] if which == "bug" else {k: v for k, v in bug["run"].items() if k != "bug"}
    return resume_check(plan.command(run, bug["task"]), at=bug["at"], to=bug["to"],
                        workdir=plan.work / f"resume-{which}", timeout=plan.timeout)


def run_bisect(plan: Plan):
    from rldk.analyzers.bisect import Predicate, bisect
    from reference.bisect_repo.make_repo import make_repo

    commits = make_repo(plan.work / "bisect-repo")
    p = plan.bugs["regression_commit"]["predicate"]
    predicate = Predicate(op=p["op"], threshold=p["threshold"], metric=p["metric"], reduce=p["reduce"])
    result = bisect(plan.work / "bisect-repo", commits["c0"], commits["c7"],
                    [sys.executable, "train.py"], predicate, timeout=120)
    return {"commits": commits, "result": result}


def run_jobs(plan: Plan, jobs: dict, slots: int = 2) -> dict:
    """Run ``jobs`` (name -> callable) ``slots`` at a time; name -> (result or exception, seconds)."""
    def timed(fn):
        t = time.perf_counter()
        try:
            return fn(), time.perf_counter() - t
        except Exception as exc:            # reported per job; the others still run
            return exc, time.perf_counter() - t

    with ThreadPoolExecutor(max_workers=slots) as pool:
        futures = {name: pool.submit(timed, fn) for name, fn in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


# --------------------------------------------------------------------------- checks
class Checker:
    """Runs rldk on the finished runs, compares with bugs.json, writes the cards."""

    def __init__(self, plan: Plan, results: dict, out: Path, plots: bool):
        self.plan, self.results, self.out, self.plots = plan, results, out, plots
        self.rows: list[Row] = []

    def result(self, name: str):
        value, _ = self.results[name]
        if isinstance(value, Exception):
            raise value
        return value

    def add(self, capability, bug, expected, found, ok, t0):
        self.rows.append(Row(capability, bug, expected, found, bool(ok), round(time.perf_counter() - t0, 2)))

    def card(self, report, subdir: str, plots: dict | None = None) -> None:
        from rldk.core.report import write_report

        write_report(report, self.out / subdir, plots)

    def store(self):
        """One store over the clean replicas and both workers' runs."""
        from rldk.core.store import open_store

        det = self.plan.work / "determinism-clean"
        return open_store([str(det / "replica-0"), str(det / "replica-1"),
                           str(self.plan.store_a), str(self.plan.store_b)])

    # each check_* appends its rows; an exception becomes a failed row (see run_checks)
    def check_lineage(self):
        """A row edited after its manifest was written must be caught; committed data verifies."""
        from rldk.analyzers.lineage import verify
        from reference.tasks import SPLITS, TASKS, dataset_path

        t0 = time.perf_counter()
        results = [verify(dataset_path(t, s)) for t in TASKS for s in SPLITS]
        bad = [r for r in results if r.status != "ok"]
        tampered = verify(tamper(dataset_path(SAFETY, "validation"), self.plan.work / "tampered"))
        (self.out / "lineage").mkdir(parents=True, exist_ok=True)
        (self.out / "lineage" / "manifests.json").write_text(json.dumps(
            {"committed": [r.to_dict() for r in results], "tampered": tampered.to_dict()},
            indent=2, sort_keys=True, default=str) + "\n")
        self.add("lineage: dataset manifests", f"{SAFETY}/validation.jsonl: one row relabelled after "
                 "its manifest was written", "changed", tampered.status, tampered.status == "changed", t0)
        self.add("lineage: dataset manifests", "committed data", f"{len(results)} manifests ok",
                 f"{len(results) - len(bad)} ok" + (f", not ok: {[r.data for r in bad]}" if bad else ""),
                 not bad, t0)

    def check_divergence(self, store):
        from rldk import first_divergence
        from rldk.analyzers.divergence import card

        bug, t0 = self.plan.bugs["kl_spike"], time.perf_counter()
        d = first_divergence(store.run("replica-0"), store.run("kl_spike"), ["kl"])
        clean = first_divergence(store.run("replica-0"), store.run("replica-1"), ["kl"])
        self.card(card([d, clean], baseline="replica-0"), "divergence")
        self.add("first divergence", bug["bug"], f"step {bug['expected']['step']}",
                 f"step {d.step} ({d.signal})" if d.diverged else "no divergence",
                 d.diverged and d.step == bug["expected"]["step"], t0)
        self.add("first divergence", "clean vs clean replica", "no divergence",
                 f"step {clean.step} ({clean.signal})" if clean.diverged else "no divergence",
                 not clean.diverged, t0)

    def check_determinism(self):
        bug = self.plan.bugs["nondeterminism"]
        for which, label in (("bug", bug["bug"]), ("clean", "clean run")):
            t0 = time.perf_counter()
            r = self.result(f"determinism-{which}")
            self.card(r.report(), f"determinism/{'nondeterminism' if which == 'bug' else 'clean'}")
            expected = (f"fails at step {bug['expected']['first_divergent_step']}" if which == "bug"
                        else "passes")
            found = "passes" if r.passed else f"fails at step {r.first_divergent_step}" + \
                (f" ({r.first_tensor or r.first_metric})" if which == "bug" else "")
            ok = (not r.passed and r.first_divergent_step == bug["expected"]["first_divergent_step"]) \
                if which == "bug" else r.passed
            self.add("determinism check", label, expected, found, ok, t0)

    def check_reward_health(self, store):
        from rldk.analyzers import reward_health as rh

        t0 = time.perf_counter()
        runs = ["replica-0", "saturation", "hacking", "leakage", "code_clean"]
        result = rh.run(store, rh.Params(), run_ids=runs)
        rh.write_card(result, self.out / "reward_health")
        codes = {rid: {f.code for f in result.findings if f.run_id == rid and f.is_problem} for rid in runs}
        for bug_id, clean_id in (("saturation", "replica-0"), ("hacking", "replica-0"),
                                 ("leakage", "code_clean")):
            bug = self.plan.bugs[bug_id]
            want = bug["expected"]["finding"]
            self.add(bug["capability"], bug["bug"], want, ", ".join(sorted(codes[bug_id])) or "nothing",
                     want in codes[bug_id], t0)
            self.add(bug["capability"], f"clean {bug['task']} run", f"no {want}",
                     ", ".join(sorted(codes[clean_id])) or "nothing", want not in codes[clean_id], t0)

    def check_overlap(self):
        from rldk.analyzers.lineage import load_table, overlap
        from reference.tasks import dataset_path

        bug, t0 = self.plan.bugs["leakage"], time.perf_counter()
        val = load_table(dataset_path(CODE, "validation"))
        found = {}
        for run_id in ("leakage", "code_clean"):
            train = load_table(self.plan.work / "out" / run_id / "data" / "train.jsonl")
            found[run_id] = overlap(train, val, columns=["prompt", "tests"])
        (self.out / "lineage" / "overlap.json").write_text(json.dumps(
            {k: v.to_dict() for k, v in found.items()}, indent=2, sort_keys=True) + "\n")
        n_bug, n_clean = found["leakage"].shared_rows, found["code_clean"].shared_rows
        self.add("lineage: train/val overlap", bug["bug"], f"{bug['expected']['overlap_rows']} rows",
                 f"{n_bug} rows", n_bug == bug["expected"]["overlap_rows"], t0)
        self.add("lineage: train/val overlap", f"clean {CODE} run", "0 rows", f"{n_clean} rows",
                 n_clean == 0, t0)

    def check_memory(self, store):
        from rldk.analyzers import memory_leak

        bug, t0 = self.plan.bugs["memory_leak"], time.perf_counter()
        for run_id, label in (("memory_leak", bug["bug"]), ("replica-0", "clean run")):
            r = memory_leak.MemoryLeakAnalyzer().run(store, memory_leak.Params(run_id=run_id))
            self.card(r.report(), f"memory_leak/{'leak' if run_id == 'memory_leak' else 'clean'}")
            rss = [t for t in r.trends if t.series == self.plan.memory_series]
            found = ", ".join(f"{t.series}: {'leak' if t.leak else 'no leak'} (onset step {t.onset_step}, "
                              f"x{t.growth:.2f}, {t.slope / 2**20:.1f} MiB/step)" for t in rss) or "no readings"
            ok = bool(rss) and rss[0].leak == (run_id == "memory_leak")
            expected = f"leak from step {bug['injected_step']}" if run_id == "memory_leak" else "no leak"
            self.add("memory leak", label, expected, found, ok, t0)

    def check_resume(self):
        bug = self.plan.bugs["bad_resume"]
        for which, label in (("bug", bug["bug"]), ("clean", "clean checkpoint")):
            t0 = time.perf_counter()
            r = self.result(f"resume-{which}")
            self.card(r.report(), f"resume/{'bad_resume' if which == 'bug' else 'clean'}")
            missing = [m.part for m in r.missing]
            found = "exact" if r.exact else f"departs at step {r.departs_at}, missing {', '.join(missing) or '?'}"
            if which == "bug":
                e = bug["expected"]
                ok = not r.exact and r.departs_at == e["departs_at"] and missing[:1] == [e["missing"]]
                expected = f"departs at step {e['departs_at']}, missing {e['missing']}"
            else:
                ok, expected = r.exact, "exact"
            self.add("resume check", label, expected, found, ok, t0)

    def check_bisect(self):
        bug, t0 = self.plan.bugs["regression_commit"], time.perf_counter()
        out = self.result("bisect")
        commits, r = out["commits"], out["result"]
        label = {v: k for k, v in commits.items()}
        (self.out / "bisect").mkdir(parents=True, exist_ok=True)
        (self.out / "bisect" / "bisect.json").write_text(json.dumps(
            {"commits": commits, "result": r.to_dict()}, indent=2, sort_keys=True, default=str) + "\n")
        want = bug["expected"]["first_bad"]
        self.add("bisect", bug["bug"], f"{want} ({commits[want][:8]})",
                 f"{label.get(r.first_bad, '?')} ({(r.first_bad or 'none')[:8]}) after {len(r.probes)} probes",
                 r.first_bad == commits[want], t0)
        before = [p for p in r.probes if label.get(p.commit, "~") < want]     # c0 .. c4 sort before c5
        wrong = [label.get(p.commit, "?") for p in before if p.verdict == "bad"]
        self.add("bisect", f"clean commits before {want}", "none judged bad",
                 f"{len(before)} probed, bad: {', '.join(wrong) or 'none'}", before and not wrong, t0)

    def check_eval(self, store):
        """The unsafe policy's validation reward must be lower than the clean policy's
        (95% interval of the mean difference above 0); two clean seeds must not differ."""
        from rldk.analyzers.eval_compare import compare

        t0, bug = time.perf_counter(), self.plan.bugs["unsafe_policy"]
        paths = {}
        for run_id in ("safety_clean", "unsafe_policy", "safety_seed1"):
            paths[run_id] = self.out / "eval" / f"{run_id}_validation_scores.csv"
            write_scores(store, run_id, paths[run_id])
        diffs = {}
        for other, subdir in (("unsafe_policy", "eval"), ("safety_seed1", "eval/seeds")):
            c = compare([str(paths["safety_clean"])], [str(paths[other])], labels=("safety_clean", other))
            self.card(c.report(), subdir)
            diffs[other] = mean_difference_ci(c.a.scores, c.b.scores)
        (self.out / "eval" / "mean_difference.json").write_text(
            json.dumps(diffs, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        bad, twin = diffs["unsafe_policy"], diffs["safety_seed1"]
        self.add("eval statistics", bug["bug"], "clean - unsafe_policy > 0 (95% CI above 0)",
                 f"clean - unsafe_policy {_diff(bad)}", bad["lower"] > 0, t0)
        self.add("eval statistics", "two clean seeds (safety_clean vs safety_seed1)", "95% CI contains 0",
                 f"seed 0 - seed 1 {_diff(twin)}", twin["lower"] <= 0 <= twin["upper"], t0)

    def check_safety(self, store):
        """The unsafe policy must be flagged ``under_refusal``; the clean one must not."""
        from rldk.analyzers import safety

        bug = self.plan.bugs["unsafe_policy"]
        params, want = safety.Params(**bug["params"]), bug["expected"]["finding"]
        for run_id, label in (("unsafe_policy", bug["bug"]), ("safety_clean", f"clean {SAFETY} run")):
            t0 = time.perf_counter()
            r = safety.evaluate(store.run(run_id), params)
            out = self.out / "safety" / run_id
            safety.write_card(r, out) if self.plots else self.card(r.report(), f"safety/{run_id}")
            codes = sorted({f.code for f in r.findings})
            found = f"harmful refused {_rate(r.rates.get('refusal_harmful'))}; {', '.join(codes) or 'nothing'}"
            self.add("safety card", label, want if run_id == "unsafe_policy" else f"no {want}", found,
                     (want in codes) == (run_id == "unsafe_policy"), t0)


def write_scores(store, run_id: str, path: Path) -> None:
    """``task,run,score`` rows of a run's validation samples (a CSV for ``rldk eval
    compare``): task = ``val<k>``, the k-th validation prompt (in prompt order); run =
    the sample's rank among that prompt's samples by score (the samples of one
    ``log_samples`` call share a ``seq``, so their logging order is not stored)."""
    import csv

    frame = store.sql(VAL_SAMPLES_SQL, {"run": run_id})
    tasks: dict = {}
    seen: dict = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["task", "run", "score"])
        for prompt, score in zip(frame["prompt"].to_list(), frame["value"].to_list()):
            task = tasks.setdefault(prompt, f"val{len(tasks):02d}")
            seen[task] = seen.get(task, -1) + 1
            out.writerow([task, seen[task], score])


VAL_SAMPLES_SQL = """
SELECT json_extract_string(attrs, '$.prompt') AS prompt, value
FROM samples
WHERE run_id = $run AND json_extract_string(attrs, '$.split') = 'val'
ORDER BY seq, prompt, value
"""


def mean_difference_ci(a, b, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Mean score of ``a`` minus that of ``b`` (both (runs, tasks) matrices of rewards) with a
    percentile interval from independent stratified bootstraps of the two sides (rldk.stats)."""
    from rldk import stats

    dist = stats.bootstrap_distribution(a, "mean", reps, seed) - \
        stats.bootstrap_distribution(b, "mean", reps, seed + 1)
    lower, upper = stats.percentile_interval(dist, confidence)
    return {"point": float(a.mean() - b.mean()), "lower": float(lower), "upper": float(upper),
            "confidence": confidence, "reps": reps}


def tamper(data: Path, workdir: Path) -> Path:
    """A copy of ``data`` (and its manifest) under ``workdir`` whose first row's label is
    flipped after the manifest was written: the injected lineage bug."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(f"{data}.rldk.json", workdir / f"{data.name}.rldk.json")
    lines = data.read_text(encoding="utf-8").splitlines(keepends=True)
    row = json.loads(lines[0])
    row["label"] = "benign" if row["label"] == "harmful" else "harmful"
    lines[0] = json.dumps(row, sort_keys=True) + "\n"
    (workdir / data.name).write_text("".join(lines), encoding="utf-8")
    return workdir / data.name


def _diff(d: dict) -> str:
    return f"{d['point']:+.3f} [{d['lower']:+.3f}, {d['upper']:+.3f}]"


def _rate(r) -> str:
    if not r or not r.total:
        return "n/a"
    return f"{r.count}/{r.total} = {r.count / r.total:.2f} [{r.lower:.2f}, {r.upper:.2f}]"


def make_portable(out: Path, work: Path) -> None:
    """Rewrite every text file under ``out``: the cards folder itself, the workdir, this
    checkout and this interpreter become ``<out>``, ``<work>``, ``<repo>`` and ``<python>``
    (longest first), so that a card naming a file written beside it reads the same
    whether the cards went to a temporary folder or were recorded into the checkout."""
    names = {str(out): "<out>", str(out.resolve()): "<out>", str(work): "<work>",
             str(work.resolve()): "<work>", str(ROOT): "<repo>", sys.executable: "<python>"}
    for path in sorted(out.rglob("*")):
        if path.suffix not in (".json", ".md", ".csv"):
            continue
        text = original = path.read_text(encoding="utf-8")
        for name in sorted(names, key=len, reverse=True):
            text = text.replace(name, names[name])
        if text != original:
            path.write_text(text, encoding="utf-8")


def run_checks(checker: Checker) -> None:
    """Every capability check; one that raises becomes a failed row with the error."""
    store = None
    checks = [("lineage: dataset manifests", checker.check_lineage, False),
              ("first divergence", checker.check_divergence, True),
              ("determinism check", checker.check_determinism, False),
              ("reward health", checker.check_reward_health, True),
              ("lineage: train/val overlap", checker.check_overlap, False),
              ("memory leak", checker.check_memory, True),
              ("resume check", checker.check_resume, False),
              ("bisect", checker.check_bisect, False),
              ("eval statistics", checker.check_eval, True),
              ("safety card", checker.check_safety, True)]
    for name, fn, needs_store in checks:
        t0 = time.perf_counter()
        try:
            if needs_store and store is None:
                store = checker.store()
            fn(store) if needs_store else fn()
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            checker.add(name, "(could not run)", "a verdict", detail, False, t0)
            traceback.print_exc(file=sys.stderr)


# --------------------------------------------------------------------------- output
def usage() -> dict:
    """CPU seconds (this process and every finished child) and the largest peak RSS of a child."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    scale = 1 if sys.platform == "darwin" else 1024          # ru_maxrss: KiB on Linux, bytes on macOS
    return {"cpu_seconds": round(me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, 1),
            "peak_child_rss_mib": round(kids.ru_maxrss * scale / 2**20, 1),
            "own_peak_rss_mib": round(me.ru_maxrss * scale / 2**20, 1)}


def render(rows: list[Row], seconds: float, jobs: dict) -> str:
    """The Markdown table of ``rows`` plus the job timings."""
    from rldk.core.render import escape_markdown

    lines = ["| capability | bug | expected | found | ok | s |", "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [escape_markdown(str(c)) for c in (r.capability, r.bug, r.expected, r.found)]
        lines.append(f"| {' | '.join(cells)} | {'yes' if r.ok else '**NO**'} | {r.seconds:.1f} |")
    lines += ["", "| job | seconds |", "|---|---|"]
    lines += [f"| {name} | {sec:.1f} |" for name, sec in jobs.items()]
    passed, use = sum(r.ok for r in rows), usage()
    peak = max(use["peak_child_rss_mib"], use["own_peak_rss_mib"])
    lines += ["", f"{passed}/{len(rows)} checks hold; wall time {seconds:.1f} s, CPU time "
              f"{use['cpu_seconds']:.1f} s (this process and its children), largest process peak RSS "
              f"{peak:.0f} MiB."]
    return "\n".join(lines) + "\n"


def write_summary(out: Path, rows, seconds: float, jobs: dict) -> str:
    text = render(rows, seconds, jobs)
    (out / "summary.md").write_text("# Reference suite: smoke test results\n\n" + text, encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(
        {"schema_version": 1, "passed": all(r.ok for r in rows), "wall_seconds": round(seconds, 1),
         **usage(),
         "jobs": {k: round(v, 1) for k, v in jobs.items()}, "rows": [asdict(r) for r in rows]},
        indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return text


def parser(description: str) -> argparse.ArgumentParser:
    """The options both smoke tests share."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", type=Path, default=None,
                   help="where the cards go, absent or empty [a fresh temporary directory]")
    p.add_argument("--record", action="store_true",
                   help=f"write the cards to {RECORDED.relative_to(ROOT)}/ (replacing it) instead")
    p.add_argument("--workdir", type=Path, default=None, help="runs and logs [a temporary directory]")
    p.add_argument("--keep", action="store_true", help="keep the workdir")
    p.add_argument("--plots", action="store_true", help="also draw the cards' PNG plots")
    return p


def run_suite(args, overrides=None, bug_overrides=None, memory_series=None, slots: int = 2,
              timeout: float = 600) -> int:
    """Train, check, write the cards and the summary; the exit status (see module doc)."""
    start = time.perf_counter()
    out, problem = output_dir(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rldk-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    plan = Plan(json.loads(BUGS_JSON.read_text(encoding="utf-8")), work, overrides, bug_overrides,
                memory_series, timeout)
    results = run_jobs(plan, jobs_of(plan), slots)
    if args.record:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    checker = Checker(plan, results, out, args.plots)
    run_checks(checker)
    seconds = time.perf_counter() - start
    print(write_summary(out, checker.rows, seconds, {k: v[1] for k, v in results.items()}))
    make_portable(out, work)
    print(f"cards written to {out}", file=sys.stderr)
    failed_jobs = [name for name, (value, _) in results.items() if isinstance(value, Exception)]
    for name in failed_jobs:
        print(f"job {name} failed: {results[name][0]}", file=sys.stderr)
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"runs and logs kept in {work}", file=sys.stderr)
    return 0 if all(r.ok for r in checker.rows) else (2 if failed_jobs else 1)


def output_dir(args) -> tuple[Path, str | None]:
    """Where the cards go, and why not (None when fine): ``--record`` replaces the recorded
    cards; ``--out`` must be absent or empty (nothing of the user's is ever deleted)."""
    if args.record and args.out is not None:
        return args.out, "--record writes reference/expected_outputs/: leave out --out"
    if args.record:
        return RECORDED, None
    if args.out is None:
        return Path(tempfile.mkdtemp(prefix="rldk-smoke-cards-")), None
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        return args.out, f"--out {args.out} is not an empty directory: give a new or empty one"
    return args.out, None


def jobs_of(plan: Plan) -> dict:
    """The independent jobs, longest first (they run ``slots`` at a time)."""
    workers = plan.worker_jobs()
    return {"resume-bug": lambda: run_resume(plan, "bug"),
            "resume-clean": lambda: run_resume(plan, "clean"),
            "determinism-clean": lambda: run_determinism(plan, "clean"),
            "worker-b": lambda: run_workers(plan, "b", workers["b"]),
            "determinism-bug": lambda: run_determinism(plan, "bug"),
            "worker-a": lambda: run_workers(plan, "a", workers["a"]),
            "bisect": lambda: run_bisect(plan)}


def main(argv=None) -> int:
    return run_suite(parser(__doc__.split("\n\n")[0]).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
