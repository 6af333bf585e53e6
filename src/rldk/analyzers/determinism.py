"""Determinism: run a training command N times and show whether, where and why it differs.

``check_determinism(cmd)`` runs ``cmd`` ``replicas`` times through
:mod:`rldk.harness`, each run writing its own store (``RLDK_DIR``/``RLDK_RUN_ID``),
with the same environment and arguments, then compares every replica with the
first through :func:`rldk.analyzers.divergence.first_divergence` at three levels:
tensor checksums (bitwise), RNG state digests (bitwise) and metrics (exact).

The card (``determinism.json`` / ``.md``) gives the verdict; the first
nondeterministic step with the first tensor, RNG source and metric that differ;
the spread of each metric across replicas; an audit of the training process's
determinism settings (read from the runs' ``run/start`` and ``run/seed`` events,
as the writer captured them inside the training process); and fixes ranked by
the evidence behind them.

As an analyzer (``run(store, params)``) it compares runs already in a store that
are replicas of one command (same argv, config and seed).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from rldk.core.errors import MissingEvents, UsageError

NAME = "determinism"
CONSUMES = ("tensor", "rng", "metric", "run")
LEVELS = ("tensor", "rng", "metric")
EVIDENCE = ("observed", "setting", "unverified")       # strongest first

STEPS_SQL = """
SELECT run_id, count(DISTINCT step) AS steps, min(step) AS first_step, max(step) AS last_step,
       count(*) FILTER (WHERE kind = 'tensor') AS tensor_events,
       count(*) FILTER (WHERE kind = 'rng') AS rng_events,
       count(*) FILTER (WHERE kind = 'metric') AS metric_events
FROM events
WHERE step IS NOT NULL AND kind IN ('metric', 'tensor', 'rng')
GROUP BY run_id
ORDER BY run_id
"""

RUN_META_SQL = """
SELECT run_id, name, attrs
FROM run_events
WHERE name IN ('start', 'seed', 'seed_dataloader')
ORDER BY run_id, wall_time, seq
"""


@dataclass(frozen=True)
class Params:
    """signals: metrics compared at the metric level (None: every metric the replicas share).
    steps: compare only the first ``steps`` distinct steps; each replica must log that many.
    runs: the replica run ids in the store (None: every run in it)."""

    signals: tuple[str, ...] | None = None
    steps: int | None = None
    runs: tuple[str, ...] | None = None


# ====================================================================== results
@dataclass(frozen=True)
class MetricSpread:
    """One metric across replicas, over the steps every replica logged.

    max_abs_diff: max over steps of (max - min) across replicas. max_rel_diff: the
    same divided by |mean| at that step. max_cv: max over steps of the coefficient
    of variation (sample std / |mean|; 0 where all agree, inf where the mean is 0).
    first_diff_step: first step whose values are not all bit-equal (None: never).
    """

    metric: str
    steps: int
    differing_steps: int
    first_diff_step: int | None
    max_abs_diff: float
    max_rel_diff: float
    max_cv: float

    def to_dict(self) -> dict:
        return {"metric": self.metric, "steps": self.steps, "differing_steps": self.differing_steps,
                "first_diff_step": self.first_diff_step, "max_abs_diff": self.max_abs_diff,
                "max_rel_diff": self.max_rel_diff, "max_cv": self.max_cv}


@dataclass(frozen=True)
class LevelDivergence:
    """The first difference between a replica and the reference replica at one level.

    level: tensor | rng | metric | steps (a step logged by one run only).
    step: first step that differs (None: none did). name: the first tensor / RNG
    source / metric that differs at that step (in logging order). detail: the
    evidence (every name differing there, how many entries were compared, the
    first step of the compared window).
    """

    replica: str
    level: str
    step: int | None
    name: str | None
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"replica": self.replica, "level": self.level, "step": self.step, "name": self.name,
                "detail": self.detail}


@dataclass(frozen=True)
class Fix:
    """One suggested fix. evidence: observed (the divergence points at it), setting
    (the audit shows a setting known to break determinism here) or unverified
    (rldk cannot see it; worth checking)."""

    action: str
    reason: str
    evidence: str

    def to_dict(self) -> dict:
        return {"action": self.action, "reason": self.reason, "evidence": self.evidence}


@dataclass(frozen=True)
class DeterminismResult:
    """What the determinism check found.

    passed: every replica equals the reference replica at every level compared.
    first_divergent_step: the earliest step any level differs (None when passed);
    first_tensor / first_rng_source / first_metric: what differs first at each level.
    divergences: per replica and level, a :class:`LevelDivergence`.
    spread: per metric, a :class:`MetricSpread`. environment: the audit (setting ->
    value per replica). fixes: ranked, strongest evidence first. commands: the
    harness's runs (empty when the replicas were already in a store).
    """

    replicas: tuple[str, ...]
    steps_compared: int
    levels_compared: tuple[str, ...]
    divergences: tuple[LevelDivergence, ...]
    spread: tuple[MetricSpread, ...]
    environment: tuple[dict, ...]
    fixes: tuple[Fix, ...]
    commands: tuple = ()
    store: str | None = None
    comparisons: tuple[dict, ...] = ()

    @property
    def passed(self) -> bool:
        return all(d.step is None for d in self.divergences)

    @property
    def verdict(self) -> str:
        return "deterministic" if self.passed else "nondeterministic"

    def _first(self, level=None):
        found = [d for d in self.divergences if d.step is not None and (level is None or d.level == level)]
        return min(found, key=lambda d: (d.step, _ORDER.index(d.level))) if found else None

    @property
    def first_divergent_step(self) -> int | None:
        first = self._first()
        return first.step if first else None

    @property
    def first_tensor(self) -> str | None:
        return _name(self._first("tensor"))

    @property
    def first_rng_source(self) -> str | None:
        return _name(self._first("rng"))

    @property
    def first_metric(self) -> str | None:
        return _name(self._first("metric"))

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "passed": self.passed, "replicas": list(self.replicas),
                "steps_compared": self.steps_compared, "levels_compared": list(self.levels_compared),
                "first_divergent_step": self.first_divergent_step, "first_tensor": self.first_tensor,
                "first_rng_source": self.first_rng_source, "first_metric": self.first_metric,
                "divergences": [d.to_dict() for d in self.divergences],
                "metric_spread": [s.to_dict() for s in self.spread],
                "environment": list(self.environment), "fixes": [f.to_dict() for f in self.fixes],
                "commands": [c.to_dict() for c in self.commands], "store": self.store,
                "comparisons": list(self.comparisons)}

    def report(self):
        from rldk.core.report import Report

        return Report(NAME, "Determinism check", "ok" if self.passed else "problems", _summary(self),
                      tuple(_findings(self)), _tables(self), self.to_dict())


def _name(d):
    return d.name if d is not None else None


# ====================================================================== harness
def check_determinism(cmd, signals=None, replicas: int = 2, steps: int | None = None, *,
                      timeout: float | None = None, shell: bool = False, workdir=None,
                      env: dict | None = None, cwd=None) -> DeterminismResult:
    """Run ``cmd`` ``replicas`` times and compare the runs (see the module doc).

    cmd: an argv list, or a string split with :func:`shlex.split` (``shell=True``
    runs it with ``/bin/sh -c`` instead). signals: metrics to compare (None: all).
    steps: each replica must log at least this many steps (``RLDK_MAX_STEPS`` tells
    the command); only those are compared. timeout: seconds per replica. workdir:
    where the replicas' stores and logs go (a fresh temporary directory by
    default; it must not hold event files). env: extra environment for every
    replica. Raises :class:`rldk.harness.CommandFailed` when a replica fails,
    hangs, writes no events or too few steps.
    """
    from rldk import harness

    argv = harness.split_command(cmd, shell)
    params = _check_args(replicas, steps, signals)
    root = harness.fresh_workdir(workdir, "rldk-determinism-")
    extra = dict(env or {})
    if steps is not None:
        extra[harness.ENV_MAX_STEPS] = str(steps)
    commands = []
    for i in range(replicas):
        commands.append(_run_replica(argv, root, i, extra, timeout, cwd, steps))
    from rldk.core.store import open_store

    store = open_store([str(root / f"replica-{i}") for i in range(replicas)])
    result = run(store, params)
    return _with(result, commands=tuple(commands), store=str(root))


def _check_args(replicas, steps, signals) -> Params:
    if not isinstance(replicas, int) or replicas < 2:
        raise UsageError(f"--replicas must be at least 2, got {replicas}")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise UsageError(f"--steps must be a positive integer, got {steps}")
    if isinstance(signals, str):
        signals = [s.strip() for s in signals.split(",") if s.strip()]
    return Params(tuple(signals) if signals else None, steps)


def _run_replica(argv, root: Path, i: int, extra: dict, timeout, cwd, steps):
    from rldk import harness

    store = root / f"replica-{i}"
    store.mkdir(parents=True, exist_ok=True)
    env = {**extra, harness.ENV_DIR: str(store.resolve()), harness.ENV_RUN_ID: f"replica-{i}"}
    result = harness.run_command(argv, root / "logs" / f"replica-{i}.log", env, timeout, cwd)
    label = f"replica {i} of `{' '.join(argv)}`"
    if result.problem():
        raise harness.CommandFailed(f"{label} {result.problem()} (log: {result.log})")
    _check_wrote(store, label, steps, result.log)
    return result


def _check_wrote(store: Path, label: str, steps, log: str) -> None:
    from rldk import harness
    from rldk.core.errors import StoreError
    from rldk.core.store import open_store

    try:
        counts = open_store(str(store)).sql(STEPS_SQL)
    except StoreError:
        counts = None
    if counts is None or counts.is_empty():
        raise harness.CommandFailed(
            f"{label} wrote no step events to RLDK_DIR={store}: it must log through rldk.writer "
            f"(or the TRL RldkCallback), which reads RLDK_DIR and RLDK_RUN_ID (log: {log})")
    if counts.height > 1:
        raise harness.CommandFailed(f"{label} wrote {counts.height} runs "
                                    f"({', '.join(counts['run_id'])}); one run per replica is expected")
    logged = int(counts["steps"][0])
    if steps is not None and logged < steps:
        raise harness.CommandFailed(f"{label} logged {logged} steps, fewer than the {steps} asked "
                                    f"(--steps; RLDK_MAX_STEPS={steps} was set) (log: {log})")


def _with(result: DeterminismResult, **changes) -> DeterminismResult:
    from dataclasses import replace

    return replace(result, **changes)


# ====================================================================== analyzer
def applies(store) -> bool:
    """True when the store holds at least two runs of the same argv, config and seed."""
    groups = {}
    for run_id, meta in _start_meta(store).items():
        key = json.dumps([meta.get("argv"), meta.get("config"), meta.get("seed")], sort_keys=True, default=str)
        groups.setdefault(key, []).append(run_id)
    return any(len(ids) >= 2 for ids in groups.values())


def run(store, params: Params = Params()) -> DeterminismResult:
    """Compare the replica runs in ``store`` (the first, by run id, is the reference)."""
    runs = _replica_runs(store, params)
    steps = _step_window(store, [r.id for r in runs], params.steps)
    levels, divergences, comparisons = _compare(store, runs, params, steps)
    spread = _metric_spread(store, [r.id for r in runs], params.signals, steps)
    audit = environment_audit(store, [r.id for r in runs])
    fixes = rank_fixes(divergences, audit, levels)
    return DeterminismResult(tuple(r.id for r in runs), len(steps), levels, tuple(divergences),
                             tuple(spread), tuple(audit), tuple(fixes), comparisons=tuple(comparisons))


def _replica_runs(store, params: Params):
    runs = [store.run(r) for r in params.runs] if params.runs else store.runs()
    if len(runs) < 2:
        raise UsageError(f"a determinism check needs at least 2 replica runs; the store has "
                         f"{len(runs)}: {', '.join(r.id for r in runs) or 'none'}")
    return runs


def _step_window(store, run_ids: list[str], steps: int | None) -> list[int]:
    """Steps logged by every replica, sorted; the first ``steps`` of them if given."""
    import polars as pl

    frame = (store.scan().filter(pl.col("run_id").is_in(run_ids) & pl.col("step").is_not_null()
                                 & pl.col("kind").is_in(list(LEVELS)))
             .select("run_id", "step").unique().collect())
    if frame.is_empty():
        raise MissingEvents(f"runs {', '.join(run_ids)} have no metric, tensor or rng events with a "
                            "step: log them with rldk.writer.log / log_tensors / log_rng")
    per_run = frame.group_by("step").agg(pl.col("run_id").n_unique().alias("n"))
    common = sorted(per_run.filter(pl.col("n") == len(run_ids))["step"].to_list())
    if not common:
        raise MissingEvents(f"runs {', '.join(run_ids)} share no step: nothing to compare")
    if steps is not None and len(common) < steps:
        raise MissingEvents(f"runs {', '.join(run_ids)} share {len(common)} steps, fewer than the "
                            f"{steps} asked (--steps)")
    return common[:steps] if steps is not None else common


# ====================================================================== metric spread
#: Metrics that measure the clock, throughput or memory differ between any two runs;
#: unless named in ``signals`` they are left out of the comparison (the card lists them).
VOLATILE_METRIC = r"(?i)(^|[/_.])(time|times|runtime|duration|secs?|seconds|elapsed|timestamp|" \
                  r"wall|throughput|speed|fps|sps|per_second|per_sec|mem|memory|rss|" \
                  r"samples_per_second|steps_per_second|tokens_per_second)([/_.]|$)"


def compared_metrics(store, run_ids: list[str], signals) -> tuple[list[str], list[str]]:
    """``(compared, skipped)``: metric names logged at a step by every replica; with
    no ``signals``, names matching :data:`VOLATILE_METRIC` are skipped (end-of-run
    summaries logged without a step are not compared)."""
    import polars as pl

    names = (store.scan("metric").filter(pl.col("run_id").is_in(run_ids) & pl.col("step").is_not_null())
             .group_by("name").agg(pl.col("run_id").n_unique().alias("n")).collect())
    shared = sorted(names.filter(pl.col("n") == len(run_ids))["name"].to_list())
    if signals:
        missing = [s for s in signals if s not in shared]
        if missing:
            raise UsageError(f"signal(s) {', '.join(missing)} not logged by every replica; "
                             f"shared metrics: {', '.join(shared) or 'none'}")
        return list(signals), []
    import re

    skipped = [n for n in shared if re.search(VOLATILE_METRIC, n)]
    return [n for n in shared if n not in skipped], skipped


def _metric_spread(store, run_ids, signals, steps) -> list[MetricSpread]:
    """Per metric: spread across replicas over ``steps`` (last value per step wins)."""
    import polars as pl

    names, _ = compared_metrics(store, run_ids, signals)
    if not names:
        return []
    values = (store.scan("metric")
              .filter(pl.col("run_id").is_in(run_ids) & pl.col("name").is_in(names)
                      & pl.col("step").is_in(steps))
              .sort(["wall_time", "seq"]).unique(["run_id", "name", "step"], keep="last")
              .select("run_id", "name", "step", "value").collect())
    per_step = (values.group_by("name", "step").agg(
        n=pl.len(), lo=pl.col("value").min(), hi=pl.col("value").max(),
        mean=pl.col("value").mean(), std=pl.col("value").std(ddof=1),
        distinct=pl.col("value").n_unique(), nulls=pl.col("value").null_count())
        .filter(pl.col("n") == len(run_ids)))
    return [_spread_row(name, per_step.filter(pl.col("name") == name)) for name in names]


def _spread_row(name: str, frame) -> MetricSpread:
    import polars as pl

    frame = frame.sort("step").with_columns(
        differs=(pl.col("distinct") > 1) | ((pl.col("nulls") > 0) & (pl.col("nulls") < pl.col("n"))),
        abs_diff=(pl.col("hi") - pl.col("lo")))
    differing = frame.filter(pl.col("differs"))
    max_abs = _fmax(differing["abs_diff"]) if differing.height else 0.0
    rel = [_ratio(a, m) for a, m in zip(differing["abs_diff"], differing["mean"])]
    cv = [_ratio(s, m) for s, m in zip(differing["std"], differing["mean"])]
    return MetricSpread(name, frame.height, differing.height,
                        int(differing["step"][0]) if differing.height else None,
                        max_abs, max(rel, default=0.0), max(cv, default=0.0))


def _fmax(series) -> float:
    vals = [v for v in series.to_list() if v is not None and not math.isnan(v)]
    return max(vals) if vals else math.nan


def _ratio(num, den) -> float:
    if num is None or den is None or math.isnan(num) or math.isnan(den):
        return math.nan
    if num == 0:
        return 0.0
    return num / abs(den) if den else math.inf


# ====================================================================== environment audit
#: (setting, how to read it from a run's merged metadata); ``t`` is the torch audit.
_AUDIT = (
    ("torch", lambda m, t: t.get("version")),
    ("CUDA", lambda m, t: t.get("cuda_version") if t.get("cuda_available") else "not used"),
    ("cuDNN", lambda m, t: (t.get("cudnn") or {}).get("version")),
    ("devices", lambda m, t: ", ".join(t.get("devices") or []) or "cpu"),
    ("deterministic_algorithms", lambda m, t: _det(t)),
    ("cudnn.deterministic", lambda m, t: (t.get("cudnn") or {}).get("deterministic")),
    ("cudnn.benchmark", lambda m, t: (t.get("cudnn") or {}).get("benchmark")),
    ("cudnn.allow_tf32", lambda m, t: (t.get("cudnn") or {}).get("allow_tf32")),
    ("cuda.matmul.allow_tf32", lambda m, t: t.get("cuda_matmul_allow_tf32")),
    ("float32_matmul_precision", lambda m, t: t.get("float32_matmul_precision")),
    ("CUBLAS_WORKSPACE_CONFIG", lambda m, t: _env(m, "CUBLAS_WORKSPACE_CONFIG")),
    ("PYTHONHASHSEED", lambda m, t: _hashseed(m)),
    ("TOKENIZERS_PARALLELISM", lambda m, t: _env(m, "TOKENIZERS_PARALLELISM")),
    ("seed", lambda m, t: m.get("seed")),
    ("seed_everything", lambda m, t: _seeding(m)),
    ("dataloader seeding", lambda m, t: _dataloader(m)),
    ("torch threads", lambda m, t: t.get("num_threads")),
    ("OMP_NUM_THREADS", lambda m, t: _env(m, "OMP_NUM_THREADS")),
    ("MKL_NUM_THREADS", lambda m, t: _env(m, "MKL_NUM_THREADS")),
    ("host", lambda m, t: (m.get("host") or {}).get("hostname")),
    ("packages", lambda m, t: ", ".join(f"{k} {v}" for k, v in sorted((m.get("packages") or {}).items()))),
)
_UNSET = "unset"


def _det(t):
    if "deterministic_algorithms" not in t:
        return None
    on = t["deterministic_algorithms"]
    return ("on (warn only)" if t.get("deterministic_warn_only") else "on") if on else "off"


def _env(meta, key):
    return (meta.get("env") or {}).get(key, _UNSET)


def _hashseed(meta):
    seeding = meta.get("seeding") or {}
    record = seeding.get("pythonhashseed")
    if record and record.get("this_process_randomized"):
        return "unset (random per process; seed_everything sets it for child processes only)"
    return _env(meta, "PYTHONHASHSEED")


def _seeding(meta):
    s = meta.get("seeding")
    if not s:
        return "not called"
    return f"seed {s.get('seed')}" + (", deterministic=True" if s.get("deterministic_requested") else "")


def _dataloader(meta):
    d = (meta.get("seeding") or {}).get("dataloader")
    if not d:
        return "not recorded"
    return f"generator seed {d.get('generator_seed')}, worker_init_fn {d.get('worker_init_fn')}"


def _start_meta(store) -> dict[str, dict]:
    """run id -> its start attrs, updated by later ``seed`` events (flags set after init)."""
    out: dict[str, dict] = {}
    for row in store.sql(RUN_META_SQL).iter_rows(named=True):
        attrs = json.loads(row["attrs"]) if row["attrs"] else {}
        meta = out.setdefault(row["run_id"], {})
        if row["name"] == "start":
            if not meta:
                meta.update(attrs)
            continue
        seeding = {**(meta.get("seeding") or {}), **{k: v for k, v in attrs.items() if k != "torch"}}
        meta["seeding"] = seeding
        if attrs.get("torch"):
            meta["torch"] = attrs["torch"]
    return out


def environment_audit(store, run_ids: list[str]) -> list[dict]:
    """One row per setting: ``{"setting", "value", "values", "same", "note"}``.

    ``value`` is the common value (None when replicas differ; ``values`` then maps
    each replica to its own). Read from each run's ``run/start`` event, so it is the
    training process's own state.
    """
    metas = _start_meta(store)
    rows = []
    for setting, read in _AUDIT:
        values = {}
        for rid in run_ids:
            meta = metas.get(rid, {})
            values[rid] = read(meta, meta.get("torch") or {}) if meta else None
        same = len({json.dumps(v, default=str) for v in values.values()}) == 1
        row = {"setting": setting, "value": next(iter(values.values())) if same else None,
               "values": values, "same": same}
        row["note"] = _audit_note(row, metas, run_ids)
        rows.append(row)
    return rows


def _cuda_used(audit: list[dict]) -> bool:
    row = _row(audit, "CUDA")
    return row is not None and any(v not in (None, "not used") for v in row["values"].values())


def _row(audit, setting):
    return next((r for r in audit if r["setting"] == setting), None)


def _audit_note(row, metas, run_ids) -> str:
    if not row["same"]:
        return "differs between replicas"
    if all(not metas.get(r) for r in run_ids):
        return "no run/start event"
    return ""


# ====================================================================== fixes
_DETERMINISTIC = ("call rldk.seed_everything(seed, deterministic=True) before building the model "
                  "(torch.use_deterministic_algorithms(True), cudnn.deterministic=True, "
                  "cudnn.benchmark=False, CUBLAS_WORKSPACE_CONFIG=:4096:8)")
_EMBEDDING_HINT = ("embedding gradients are accumulated with index_add_/scatter_add_-style atomic adds "
                   "on CUDA (embedding_dense_backward), nondeterministic unless deterministic "
                   "algorithms are on")


def setting_fixes(audit: list[dict]) -> list[tuple[str, Fix]]:
    """``(setting, fix)`` for audit values known to break determinism in this process."""
    out = []
    for row in audit:
        if not row["same"] and row["setting"] not in ("seed_everything",):
            out.append((row["setting"], Fix(
                f"run every replica with the same {row['setting']}",
                f"{row['setting']} differs between replicas: "
                + "; ".join(f"{k}: {v}" for k, v in row["values"].items()), "setting")))
    if not _cuda_used(audit):
        return out
    value = {r["setting"]: r["value"] for r in audit}
    if value.get("deterministic_algorithms") == "off":
        out.append(("deterministic_algorithms", Fix(
            _DETERMINISTIC, "torch.are_deterministic_algorithms_enabled() is False in a CUDA run: "
            "kernels with atomic adds (index_add_, scatter_add_, embedding backward, ...) may "
            "sum in a different order on each run", "setting")))
    elif value.get("deterministic_algorithms") == "on (warn only)":
        out.append(("deterministic_algorithms", Fix(
            "torch.use_deterministic_algorithms(True) without warn_only",
            "warn_only=True lets nondeterministic kernels run (with a warning)", "setting")))
    if value.get("CUBLAS_WORKSPACE_CONFIG") == _UNSET:
        out.append(("CUBLAS_WORKSPACE_CONFIG", Fix(
            "export CUBLAS_WORKSPACE_CONFIG=:4096:8 before the process starts",
            "cuBLAS may pick nondeterministic reduction strategies without a fixed workspace", "setting")))
    if value.get("cudnn.benchmark") is True:
        out.append(("cudnn.benchmark", Fix(
            "torch.backends.cudnn.benchmark = False",
            "benchmark mode picks convolution algorithms by timing, which varies between runs", "setting")))
    elif value.get("cudnn.deterministic") is False:
        out.append(("cudnn.deterministic", Fix(
            "torch.backends.cudnn.deterministic = True",
            "cuDNN may choose nondeterministic convolution algorithms", "setting")))
    return out


def unverified_fixes(audit: list[dict]) -> list[Fix]:
    """Things the writer cannot see inside the process; worth checking."""
    value = {r["setting"]: r["value"] for r in audit}
    out = []
    if str(value.get("PYTHONHASHSEED", "")).startswith("unset"):
        out.append(Fix("export PYTHONHASHSEED=0 (or any fixed value) before starting Python",
                       "with string hashing randomized, iterating a set of strings (or a dict "
                       "built from one) gives a different order in each process", "unverified"))
    if value.get("dataloader seeding") == "not recorded":
        out.append(Fix("DataLoader(..., **rldk.seeding.dataloader_kwargs(seed))",
                       "if the run uses a DataLoader with shuffle=True or workers, its generator "
                       "and worker seeds must be fixed; no seeding of it was recorded", "unverified"))
    if value.get("seed_everything") == "not called" and value.get("seed") is None:
        out.append(Fix("call rldk.seed_everything(seed) at the start of training",
                       "no seed was recorded for this run (config has no seed, "
                       "seed_everything was not called)", "unverified"))
    return out


def observed_fixes(first: LevelDivergence | None, at_step: list[LevelDivergence], audit,
                   levels, first_step: int | None) -> list[Fix]:
    """Fixes that the first divergence itself points at."""
    if first is None:
        return []
    by_level = {d.level: d for d in at_step}
    if "rng" in by_level:
        return [_rng_fix(by_level["rng"], first_step)]
    if "tensor" in by_level:
        return _tensor_fixes(by_level["tensor"], audit, levels, first_step)
    if "metric" in by_level:
        return [_metric_fix(by_level["metric"], levels)]
    return [Fix("make the command log the same steps on every run",
                f"replicas logged different steps from step {first.step}: {first.name}", "observed")]


def _rng_fix(d: LevelDivergence, first_step) -> Fix:
    if d.step == first_step:
        return Fix("seed every generator from one fixed seed: rldk.seed_everything(seed) before "
                   "building data and model, and seed each torch/numpy Generator you create",
                   f"RNG source '{d.name}' already differs at the first step compared ({d.step}): "
                   "it is seeded differently on each run (unseeded, or seeded from time/pid)",
                   "observed")
    return Fix(f"find what draws from '{d.name}' a varying number of times, or give that "
               "consumer its own seeded generator",
               f"RNG source '{d.name}' was in the same state until step {d.step} and then differs: "
               "something consumed a different number of random numbers at that step "
               "(a data-dependent loop, retries, a timing-dependent branch)", "observed")


def _tensor_fixes(d: LevelDivergence, audit, levels, first_step) -> list[Fix]:
    group = (d.name or "").split("/", 1)[0]
    rng_note = ("all logged RNG states still agree at that step" if "rng" in levels
                else "no RNG digests were logged (rldk.writer.log_rng) to rule RNG out")
    where = {"grad": "in the forward or backward pass", "param": "in the parameter update",
             "optimizer": "in the optimizer state", "buffer": "in a buffer update"}.get(group, "")
    reason = f"tensor '{d.name}' differs first, at step {d.step} ({where}); {rng_note}"
    if d.step == first_step and group == "param":
        return [Fix("seed before constructing the model (rldk.seed_everything(seed) first)",
                    f"parameters already differ at the first step compared ({d.step}): the "
                    "initialization is unseeded", "observed")]
    fixes = []
    if _cuda_used(audit):
        fixes.append(Fix(_DETERMINISTIC, reason + "; on CUDA the usual cause is a kernel with "
                         "atomic adds", "observed"))
        if any(k in (d.name or "").lower() for k in ("emb", "wte", "wpe", "lookup")):
            fixes.append(Fix("keep deterministic algorithms on for embedding layers",
                             f"'{d.name}': {_EMBEDDING_HINT}", "observed"))
    fixes.append(Fix("pass every generator you create to log_rng(step, {name: generator}) and seed "
                     "it; sum partial results (micro-batch gradients, all-reduce, atomics, "
                     "multi-threaded reductions) in a fixed order",
                     reason + ": an unseeded random source that is not logged (e.g. "
                     "torch.Generator().seed(), np.random.default_rng()) or a reduction whose "
                     "order varies changes the tensor while the logged RNGs agree", "observed"))
    return fixes


def _metric_fix(d: LevelDivergence, levels) -> Fix:
    if "tensor" in levels:
        return Fix(f"check how '{d.name}' is computed, or leave it out with --signals",
                   f"metric '{d.name}' differs at step {d.step} while every logged tensor and RNG "
                   "state agrees: the metric itself is computed nondeterministically (unordered "
                   "reduction, timing, host state)", "observed")
    return Fix("log tensors and RNG states every step (rldk.writer.log_tensors(step, model, "
               "'grad'), log_rng(step)) and rerun, to see which tensor or generator differs first",
               f"metric '{d.name}' differs at step {d.step}; only metrics were logged, so the "
               "cause cannot be narrowed down", "observed")


def rank_fixes(divergences, audit, levels) -> list[Fix]:
    """Observed fixes first, then settings, then unverified checks; duplicates dropped."""
    found = [d for d in divergences if d.step is not None]
    first = min(found, key=lambda d: (d.step, _ORDER.index(d.level)), default=None)
    at_step = sorted((d for d in found if d.step == first.step), key=lambda d: _ORDER.index(d.level)) \
        if first is not None else []
    first_step = _first_compared_step(divergences)
    fixes = observed_fixes(first, at_step, audit, levels, first_step)
    fixes += [f for _, f in setting_fixes(audit)] + unverified_fixes(audit)
    seen, out = set(), []
    for f in fixes:
        if f.action not in seen:
            seen.add(f.action)
            out.append(f)
    return out


def _first_compared_step(divergences) -> int | None:
    steps = [d.detail.get("first_step") for d in divergences if d.detail.get("first_step") is not None]
    return min(steps) if steps else None


# ====================================================================== card
def _summary(r: DeterminismResult) -> str:
    n = len(r.replicas)
    if r.passed:
        return (f"Deterministic: {n} replicas are bit-identical over {r.steps_compared} steps "
                f"({', '.join(r.levels_compared)} compared).")
    parts = [f"step {r.first_divergent_step}"]
    if r.first_tensor:
        parts.append(f"first tensor {r.first_tensor}")
    if r.first_rng_source:
        parts.append(f"RNG source {r.first_rng_source}")
    if r.first_metric:
        parts.append(f"metric {r.first_metric}")
    return (f"Nondeterministic: {n} replicas differ from {parts[0]} ({'; '.join(parts[1:]) or 'no detail'}). "
            f"Top fix: {r.fixes[0].action if r.fixes else 'none found'}.")


def _findings(r: DeterminismResult):
    from rldk.core.report import Finding

    out = []
    for d in r.divergences:
        if d.step is None:
            continue
        out.append(Finding(f"{d.level}_diverged", "error",
                           f"{d.level} '{d.name}' differs from step {d.step}", d.replica,
                           d.name if d.level == "metric" else None, (d.step, d.step), d.to_dict(),
                           r.fixes[0].action if r.fixes else ""))
    if "tensor" not in r.levels_compared:
        out.append(Finding("no_tensor_events", "info", "no tensor checksums logged: tensors were not "
                           "compared", fix="log them with rldk.writer.log_tensors(step, model, 'grad')"))
    if "rng" not in r.levels_compared:
        out.append(Finding("no_rng_events", "info", "no RNG digests logged: RNG states were not "
                           "compared", fix="log them with rldk.writer.log_rng(step)"))
    for f in r.fixes:
        if f.evidence == "setting":
            out.append(Finding("risky_setting", "warning" if not r.passed else "info", f.reason,
                               fix=f.action))
    return out


def _tables(r: DeterminismResult):
    from rldk.core.report import ReportTable

    div = ReportTable("first divergence per replica and level", ("replica", "level", "step", "first name"),
                      tuple((d.replica, d.level, d.step, d.name) for d in r.divergences))
    spread = ReportTable("metric spread across replicas",
                         ("metric", "steps", "differing steps", "first differing step",
                          "max abs diff", "max rel diff", "max CV"),
                         tuple((s.metric, s.steps, s.differing_steps, s.first_diff_step,
                                s.max_abs_diff, s.max_rel_diff, s.max_cv) for s in r.spread))
    env = ReportTable("environment audit (training process)", ("setting", "value", "note"),
                      tuple((e["setting"], _audit_value(e), e["note"]) for e in r.environment))
    fixes = ReportTable("fixes, ranked by evidence", ("rank", "evidence", "do", "why"),
                        tuple((i + 1, f.evidence, f.action, f.reason) for i, f in enumerate(r.fixes)))
    runs = ReportTable("replica runs", ("replica", "exit", "seconds", "log"),
                       tuple((f"replica-{i}", c.returncode, round(c.seconds, 2), c.log)
                             for i, c in enumerate(r.commands)))
    return (div, spread, env, fixes) + ((runs,) if r.commands else ())


def _audit_value(row):
    if row["same"]:
        return row["value"]
    return "; ".join(f"{k}: {v}" for k, v in row["values"].items())


# ====================================================================== comparison
#: tie order when several levels differ first at the same step
_ORDER = (*LEVELS, "steps")

STEP_SETS_SQL = """
SELECT run_id, list_sort(list(DISTINCT step)) AS steps
FROM events
WHERE step IS NOT NULL AND kind IN ('metric', 'tensor', 'rng') AND run_id IN (SELECT unnest($ids))
GROUP BY run_id
"""


def _compare(store, runs, params: Params, steps: list[int]):
    """Each replica against the first: ``(levels compared, divergences, comparisons)``."""
    levels, out, comparisons = set(), [], []
    for other in runs[1:]:
        window = (steps[0], steps[-1] if params.steps is not None else None)
        found, div = _pair(store, runs[0], other, params.signals, window, [r.id for r in runs])
        comparisons.append({k: v for k, v in div.to_dict().items() if k != "curve"})
        levels.update(d.level for d in found)
        out += found
    return tuple(lv for lv in LEVELS if lv in levels), out, comparisons


def compare_runs(store, reference, other, signals=None, window=(None, None)) -> list[LevelDivergence]:
    """``other`` against ``reference`` (Runs of ``store``) at every level they both log.

    One :class:`LevelDivergence` per level (tensor and rng only when both runs log
    them, metric, steps), restricted to steps within ``window`` (inclusive; None:
    open). Uses :func:`rldk.analyzers.divergence.first_divergence` in exact mode.
    """
    ids = [reference.id, other.id]
    sets = _step_sets(store, ids, (None, None))
    common = sorted(sets.get(ids[0], set()) & sets.get(ids[1], set()))
    if not common:
        raise MissingEvents(f"runs {ids[0]} and {ids[1]} share no step: nothing to compare")
    lo = window[0] if window[0] is not None else common[0]
    hi = window[1] if window[1] is not None else common[-1]
    return _pair(store, reference, other, signals, (lo, hi), ids)[0]


def _pair(store, reference, other, signals, window, ids):
    """``(divergences, Divergence)`` of one run against the reference over ``window``."""
    from rldk.analyzers.divergence import first_divergence

    names, skipped = compared_metrics(store, ids, signals)
    if not names:
        raise MissingEvents(f"runs {', '.join(ids)} share no comparable metric (left out as clock/"
                            f"throughput/memory: {', '.join(skipped) or 'none'}): log training "
                            "metrics or name them with --signals")
    div = first_divergence(reference, other, names, store=store, mode="exact")
    found = [_bitwise_level(other.id, level, ev, window)
             for level, ev in (("tensor", div.tensors), ("rng", div.rng)) if ev is not None]
    found.append(_metric_level(other.id, div.signals, window, skipped))
    sets = _step_sets(store, [reference.id, other.id], window)
    found.append(_steps_level(other.id, sets.get(reference.id, set()), sets.get(other.id, set()), window))
    return found, div


def _in_window(step, window) -> bool:
    return step is not None and window[0] <= step and (window[1] is None or step <= window[1])


def _bitwise_level(replica, level, ev, window) -> LevelDivergence:
    detail = {"first_step": window[0], "compared": ev.compared, "steps": ev.steps,
              "only_reference": ev.only_a, "only_replica": ev.only_b}
    if not _in_window(ev.first_step, window):
        return LevelDivergence(replica, level, None, None, detail)
    detail.update(differing=ev.differing, names=list(ev.names))
    return LevelDivergence(replica, level, ev.first_step, ev.first_name, detail)


def _metric_level(replica, signals, window, skipped) -> LevelDivergence:
    detail = {"first_step": window[0], "signals": len(signals), "left_out": list(skipped)}
    found = [s for s in signals if _in_window(s.exact_step, window)]
    if not found:
        return LevelDivergence(replica, "metric", None, None, detail)
    first = min(found, key=lambda s: s.exact_step)
    at = [s for s in found if s.exact_step == first.exact_step]
    detail.update(names=[s.signal for s in at], value_reference=first.value_a, value_replica=first.value_b)
    return LevelDivergence(replica, "metric", first.exact_step, first.signal, detail)


def _step_sets(store, ids, window) -> dict[str, set]:
    """run id -> the steps it logged metrics, tensors or RNG at, within ``window``."""
    lo, hi = window
    frame = store.sql(STEP_SETS_SQL, {"ids": ids})
    return {row["run_id"]: {s for s in row["steps"] if (lo is None or s >= lo) and (hi is None or s <= hi)}
            for row in frame.iter_rows(named=True)}


def _steps_level(replica, ref: set, other: set, window) -> LevelDivergence:
    only_ref, only_other = sorted(ref - other), sorted(other - ref)
    detail = {"first_step": window[0], "only_reference": only_ref[:20], "only_replica": only_other[:20]}
    if not only_ref and not only_other:
        return LevelDivergence(replica, "steps", None, None, detail)
    step = min(only_ref[:1] + only_other[:1])
    name = "step missing in replica" if only_ref and only_ref[0] == step else "extra step in replica"
    return LevelDivergence(replica, "steps", step, name, detail)
