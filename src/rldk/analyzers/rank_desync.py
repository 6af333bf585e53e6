"""Rank desync: data-parallel ranks whose parameters stop being equal.

Under data parallelism (torch DDP, ZeRO-1/2, ...) every rank holds the same
parameters after each optimizer step: gradients are all-reduced, so the update is
the same everywhere. Each rank logs per-tensor checksums after the optimizer step
(``rldk.writer.log_tensors(step, model, kind="param")``; the writer takes the rank
from ``RANK``), and this analysis compares them, per run, step and tensor name:

* the **first step** where two ranks' checksums of one tensor differ is the desync
  (``rank_desync``, an error): which tensors differ there, which ranks left the
  others (ranks grouped by checksum; the largest group, ties broken by the lowest
  rank, is the reference), the last step where all agreed, and the tensors' norms
  per rank at that step;
* RNG digests (``log_rng``) that differ across ranks are **evidence, not a
  finding**: data-parallel ranks often seed differently on purpose (data order,
  dropout). Sources that differ at or before the desync step are listed in its
  evidence as possible causes; without a desync they are one info note.

Only steps that at least two ranks logged for a tensor are compared. The ranks are
assumed to be one data-parallel group: with tensor or pipeline parallelism (shards
differ by design) pass ``ranks`` to compare only replicas of the same shard.
Events: ``tensor`` (names ``<kind>/<tensor>``, checksum in ``digest``, norm in
``value``) and ``rng``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rldk.analyzers import _catalog
from rldk.analyzers.base import Analyzer
from rldk.core.errors import MissingEvents
from rldk.core.report import Check, Finding, Report, ReportTable, verdict
from rldk.core.result import Result, as_dict

HOW_TO_LOG = ("call rldk.writer.log_tensors(step, model, kind='param') after optimizer.step() "
              "on every rank")

#: Runs whose events come from more than one rank.
MULTI_RANK_SQL = """
SELECT run_id, list(DISTINCT rank ORDER BY rank) AS ranks
FROM events GROUP BY run_id HAVING count(DISTINCT rank) > 1 ORDER BY run_id
"""

#: Per step and tensor of one run: how many ranks logged it and how many distinct
#: checksums they logged (a tensor logged twice at a step keeps its last checksum).
STEPS_SQL = """
WITH last AS (
    SELECT step, name, rank, arg_max(digest, (wall_time, seq)) AS digest
    FROM tensors
    WHERE run_id = $run_id AND step IS NOT NULL AND digest IS NOT NULL
      AND list_contains($kinds, split_part(name, '/', 1))
      AND ($ranks IS NULL OR list_contains($ranks, rank))
    GROUP BY step, name, rank
)
SELECT step, name, count(*) AS ranks, count(DISTINCT digest) AS digests
FROM last GROUP BY step, name HAVING count(*) > 1 ORDER BY step, name
"""

#: Checksums and norms of every rank for the given tensors at one step.
AT_STEP_SQL = """
SELECT name, rank, arg_max(digest, (wall_time, seq)) AS digest, arg_max(value, (wall_time, seq)) AS norm
FROM tensors
WHERE run_id = $run_id AND step = $step AND list_contains($names, name)
  AND ($ranks IS NULL OR list_contains($ranks, rank))
GROUP BY name, rank ORDER BY name, rank
"""

#: Per RNG source of one run: the first step where ranks' digests differ.
RNG_SQL = """
WITH last AS (
    SELECT step, name, rank, arg_max(digest, (wall_time, seq)) AS digest
    FROM rng
    WHERE run_id = $run_id AND step IS NOT NULL AND ($ranks IS NULL OR list_contains($ranks, rank))
    GROUP BY step, name, rank
)
SELECT name AS source, min(step) AS step FROM (
    SELECT step, name FROM last GROUP BY step, name
    HAVING count(*) > 1 AND count(DISTINCT digest) > 1
) GROUP BY name ORDER BY step, name
"""


@dataclass(frozen=True)
class Params:
    """Parameters of the rank-desync analysis.

    kinds: tensor groups compared (the ``kind`` given to ``log_tensors``): ``param``
        by default; add ``buffer`` or ``optim`` when they are synchronised too
        (gradients are not: compare them only if logged after the all-reduce).
    ranks: compare only these ranks (None: every rank; one data-parallel group).
    max_tensors: tensors listed with their norms in a finding's evidence.
    """

    kinds: tuple[str, ...] = ("param",)
    ranks: tuple[int, ...] | None = None
    max_tensors: int = 8


@dataclass(frozen=True)
class RankRun:
    """One multi-rank run as compared: its ranks, the steps and tensors that at least
    two ranks logged (``steps`` 0: nothing to compare) and the step range."""

    run_id: str
    ranks: tuple[int, ...]
    steps: int
    tensors: int
    first_step: int | None = None
    last_step: int | None = None


@dataclass(frozen=True)
class RngSplit:
    """An RNG source whose digests differ across ranks from ``step`` on."""

    run_id: str
    source: str
    step: int


@dataclass(frozen=True)
class Desync:
    """The first step where ranks' checksums of a tensor differ, in one run.

    tensors: the tensors that differ at ``step`` (sorted). ranks: the ranks that left
    the reference group; reference: the ranks of the largest group of equal checksums
    (ties: the group holding the lowest rank). last_agreed: the last compared step
    before ``step`` (all equal then), or None. steps_differing / steps_after: compared
    steps from ``step`` on where some tensor differs / all compared steps from ``step``.
    tensors_ever: tensors that differ at some step. norms: ``{tensor: {rank: norm}}``
    at ``step`` for the first ``max_tensors`` tensors. rng: RNG sources that differ
    across ranks at or before ``step`` (possible causes).
    """

    run_id: str
    step: int
    tensors: tuple[str, ...]
    ranks: tuple[int, ...]
    reference: tuple[int, ...]
    last_agreed: int | None
    steps_differing: int
    steps_after: int
    tensors_ever: int
    norms: dict = field(default_factory=dict)
    rng: tuple[RngSplit, ...] = ()

    def describe(self) -> str:
        names = ", ".join(self.tensors[:3]) + (f" (+{len(self.tensors) - 3} more)" if len(self.tensors) > 3 else "")
        agreed = f" (all equal at step {self.last_agreed})" if self.last_agreed is not None else ""
        return (f"rank(s) {_ranks(self.ranks)} diverged from rank(s) {_ranks(self.reference)} at step "
                f"{self.step}{agreed}: {len(self.tensors)} tensor(s) differ: {names}")


@dataclass(frozen=True)
class RankDesyncResult(Result):
    """Every multi-rank run compared (``runs``), the desyncs found and the RNG sources
    that differ across ranks (``rng``, evidence only)."""

    params: Params
    runs: tuple[RankRun, ...]
    desyncs: tuple[Desync, ...]
    rng: tuple[RngSplit, ...] = ()

    @property
    def checks(self) -> tuple[Check, ...]:
        return tuple(Check("rank_params", "ran", f"ranks {_ranks(r.ranks)}: {r.tensors} tensor(s) at "
                           f"{r.steps} step(s) {r.first_step}-{r.last_step}", r.run_id)
                     if r.steps else
                     Check("rank_params", "skipped", f"ranks {_ranks(r.ranks)} logged no tensor checksum at "
                           f"a common step: {HOW_TO_LOG}", r.run_id) for r in self.runs)

    def report(self) -> Report:
        return _report(self)


class RankDesyncAnalyzer(Analyzer):
    """Parameters that should be equal across data-parallel ranks and are not (see the module)."""

    name = "rank_desync"
    title = "Rank desync"
    consumes = ("tensor",)
    Params = Params

    def applies(self, store) -> bool:
        """Some run has events from more than one rank."""
        catalog = _catalog.scanned(store)               # known when the store was scanned
        if catalog is not None and catalog.ranks <= {0, None}:
            return False
        return not store.sql("SELECT 1 FROM events WHERE rank <> 0 LIMIT 1").is_empty() and \
            bool(store.sql(MULTI_RANK_SQL).height)

    def run(self, store, params: Params | None = None) -> RankDesyncResult:
        """Compare the ranks of every multi-rank run of ``store``."""
        params = params or Params()
        multi = store.sql(MULTI_RANK_SQL)
        if multi.is_empty():
            raise MissingEvents(f"no run has events from more than one rank: {HOW_TO_LOG}")
        runs, desyncs, rng = [], [], []
        for run_id, ranks in multi.iter_rows():
            part = store.for_run(run_id)
            run, desync, splits = compare_ranks(part, run_id, tuple(ranks), params)
            runs.append(run)
            desyncs.extend([desync] if desync else [])
            rng.extend(splits)
        return RankDesyncResult(params, tuple(runs), tuple(desyncs), tuple(rng))


def compare_ranks(store, run_id: str, ranks: tuple[int, ...], params: Params):
    """``(RankRun, Desync | None, [RngSplit])`` for one run."""
    bound = {"run_id": run_id, "kinds": list(params.kinds),
             "ranks": list(params.ranks) if params.ranks is not None else None}
    steps = store.sql(STEPS_SQL, bound)
    rng_bound = {"run_id": run_id, "ranks": bound["ranks"]}
    splits = [RngSplit(run_id, source, int(step)) for source, step in store.sql(RNG_SQL, rng_bound).iter_rows()]
    shown = tuple(r for r in ranks if params.ranks is None or r in params.ranks)
    if steps.is_empty():
        return RankRun(run_id, shown, 0, 0), None, splits
    step_list = steps["step"].unique().sort()
    run = RankRun(run_id, shown, len(step_list), steps["name"].n_unique(), int(step_list[0]),
                  int(step_list[-1]))
    differ = steps.filter(steps["digests"] > 1)
    if differ.is_empty():
        return run, None, splits
    return run, _desync(store, run_id, steps, differ, bound, params, splits), splits


def _desync(store, run_id, steps, differ, bound, params: Params, splits) -> Desync:
    first = int(differ["step"].min())
    names = sorted(differ.filter(differ["step"] == first)["name"].to_list())
    rows = store.sql(AT_STEP_SQL, {"run_id": run_id, "ranks": bound["ranks"], "step": first, "names": names})
    ranks, reference = _split(rows)
    before = steps.filter(steps["step"] < first)["step"]
    after = steps.filter(steps["step"] >= first)
    norms: dict = {}
    for name, rank, _, norm in rows.filter(rows["name"].is_in(names[:params.max_tensors])).iter_rows():
        norms.setdefault(name, {})[str(rank)] = norm
    return Desync(run_id, first, tuple(names), ranks, reference,
                  int(before.max()) if len(before) else None, differ["step"].n_unique(),
                  after["step"].n_unique(), differ["name"].n_unique(), norms,
                  tuple(s for s in splits if s.step <= first))


def _split(rows) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(ranks that left, reference ranks): ranks grouped by their tuple of checksums
    over the differing tensors; the largest group (ties: lowest rank) is the reference."""
    by_rank: dict[int, list] = {}
    for name, rank, digest, _ in rows.iter_rows():
        by_rank.setdefault(rank, []).append((name, digest))
    groups: dict[tuple, list[int]] = {}
    for rank in sorted(by_rank):
        groups.setdefault(tuple(sorted(by_rank[rank])), []).append(rank)
    reference = max(groups.values(), key=lambda g: (len(g), -g[0]))
    return tuple(r for r in sorted(by_rank) if r not in reference), tuple(reference)


def _ranks(ranks) -> str:
    return ", ".join(map(str, ranks))


# ------------------------------------------------------------------------- report
FIX = ("something changed rank {ranks}'s parameters outside the gradient all-reduce between steps "
       "{agreed} and {step}: a rank-dependent update after optimizer.step() (a perturbation, EMA or "
       "clipping on local gradients, a branch on the rank), a step skipped on one rank (NaN/inf guard, "
       "a different gradient-accumulation count) or buffers not broadcast (broadcast_buffers=False); "
       "look at what runs between backward and the next forward on that rank, and re-broadcast "
       "from rank {ref} (torch.distributed.broadcast) to recover")


def _report(result: RankDesyncResult) -> Report:
    findings = [_desync_finding(d) for d in result.desyncs]
    quiet = {r.run_id for r in result.runs} - {d.run_id for d in result.desyncs}
    findings += [Finding("rank_rng_differs", "info",
                         f"RNG {s.source} differs across ranks from step {s.step}; parameters stay equal, "
                         "so it is harmless (ranks often seed differently on purpose)",
                         s.run_id, None, (s.step, s.step), as_dict(s)) for s in result.rng if s.run_id in quiet]
    checks = result.checks
    compared = [r for r in result.runs if r.steps]
    if result.desyncs:
        summary = "; ".join(f"{d.run_id}: {d.describe()}" for d in result.desyncs)
    elif compared:
        summary = (f"parameters equal across ranks at every compared step in {len(compared)} run(s) "
                   f"({', '.join(r.run_id for r in compared)})")
    else:
        summary = f"no tensor checksums from two ranks at one step: {HOW_TO_LOG}"
    rows = tuple((r.run_id, _ranks(r.ranks), r.steps, r.tensors,
                  next((d.step for d in result.desyncs if d.run_id == r.run_id), None)) for r in result.runs)
    table = ReportTable("Ranks compared", ("run", "ranks", "steps", "tensors", "first desync step"), rows)
    return Report(RankDesyncAnalyzer.name, RankDesyncAnalyzer.title, verdict(findings, checks), summary,
                  tuple(findings), (table,), result.to_dict(), checks)


def _desync_finding(d: Desync) -> Finding:
    title = d.describe()
    if d.rng:
        title += "; RNG differing across ranks by then: " + ", ".join(f"{s.source} (step {s.step})" for s in d.rng)
    fix = FIX.format(ranks=_ranks(d.ranks), agreed=d.last_agreed if d.last_agreed is not None else "start",
                     step=d.step, ref=d.reference[0])
    return Finding("rank_desync", "error", title, d.run_id, None, (d.step, d.step), as_dict(d), fix)
