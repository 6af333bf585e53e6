"""The ranked fix list: what actually differed first (an RNG that explains it, then the
outcome that differs), then risky settings, then things rldk cannot see from inside
the run (``EVIDENCE`` order). An RNG whose state differs while every outcome is equal
asks for no fix (the card notes it as harmless)."""
from __future__ import annotations

from rldk.analyzers.determinism.environment import UNSET, cuda_used
from rldk.analyzers.determinism.result import ORDER, Fix, LevelDivergence
from rldk.analyzers.determinism.rng import OUTCOMES, RngRole, likely_cause

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
    if not cuda_used(audit):
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
    if value.get("CUBLAS_WORKSPACE_CONFIG") == UNSET:
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


def observed_fixes(first: LevelDivergence | None, at_step: list[LevelDivergence], cause: RngRole | None,
                   audit, levels, first_step: int | None) -> list[Fix]:
    """Fixes that the first outcome divergence, and the RNG that explains it, point at."""
    if first is None:
        return []
    out = [_rng_fix(cause, first_step)] if cause is not None else []
    by_level = {d.level: d for d in at_step}
    if "tensor" in by_level:
        return out + _tensor_fixes(by_level["tensor"], audit, levels, first_step, cause)
    if "metric" in by_level:
        return out + [_metric_fix(by_level["metric"], levels, cause)]
    return out + [Fix("make the command log the same steps on every run",
                      f"replicas logged different steps from step {first.step}: {first.name}", "observed")]


def _rng_fix(cause: RngRole, first_step) -> Fix:
    outcome = f"; the outcomes differ from step {cause.outcome_step}"
    if cause.step == first_step:
        return Fix("seed every generator from one fixed seed: rldk.seed_everything(seed) before "
                   "building data and model, and seed each torch/numpy Generator you create",
                   f"RNG source '{cause.source}' already differs at the first step compared "
                   f"({cause.step}): it is seeded differently on each run (unseeded, or seeded "
                   f"from time/pid){outcome}", "observed")
    return Fix(f"find what draws from '{cause.source}' a varying number of times, or give that "
               "consumer its own seeded generator",
               f"RNG source '{cause.source}' was in the same state until step {cause.step} and then "
               "differs: something consumed a different number of random numbers at that step "
               f"(a data-dependent loop, retries, a timing-dependent branch){outcome}", "observed")


def _tensor_fixes(d: LevelDivergence, audit, levels, first_step, cause=None) -> list[Fix]:
    group = (d.name or "").split("/", 1)[0]
    rng_note = _rng_note(levels, cause)
    where = {"grad": "in the forward or backward pass", "param": "in the parameter update",
             "optimizer": "in the optimizer state", "buffer": "in a buffer update"}.get(group, "")
    reason = f"tensor '{d.name}' differs first, at step {d.step} ({where}); {rng_note}"
    if d.step == first_step and group == "param":
        return [Fix("seed before constructing the model (rldk.seed_everything(seed) first)",
                    f"parameters already differ at the first step compared ({d.step}): the "
                    "initialization is unseeded", "observed")]
    fixes = []
    if cuda_used(audit):
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


def _rng_note(levels, cause) -> str:
    if cause is not None:
        return f"RNG source '{cause.source}' differs from step {cause.step}"
    if "rng" in levels:
        return "all logged RNG states still agree at that step"
    return "no RNG digests were logged (rldk.writer.log_rng) to rule RNG out"


def _metric_fix(d: LevelDivergence, levels, cause=None) -> Fix:
    if "tensor" in levels:
        agree = "every logged tensor agrees" + (f" ({_rng_note(levels, cause)})" if cause else
                                                " and every RNG state agrees")
        return Fix(f"check how '{d.name}' is computed, or leave it out with --signals",
                   f"metric '{d.name}' differs at step {d.step} while {agree}: the metric itself "
                   "is computed nondeterministically (unordered reduction, timing, host state, "
                   "a random draw)", "observed")
    return Fix("log tensors and RNG states every step (rldk.writer.log_tensors(step, model, "
               "'grad'), log_rng(step)) and rerun, to see which tensor or generator differs first",
               f"metric '{d.name}' differs at step {d.step}; only metrics were logged, so the "
               "cause cannot be narrowed down", "observed")


def rank_fixes(divergences, audit, levels) -> list[Fix]:
    """Observed fixes first (ranked by what differed), then settings, then unverified
    checks; duplicates dropped."""
    found = [d for d in divergences if d.step is not None and d.level in OUTCOMES]
    first = min(found, key=lambda d: (d.step, ORDER.index(d.level)), default=None)
    at_step = sorted((d for d in found if d.step == first.step), key=lambda d: ORDER.index(d.level)) \
        if first is not None else []
    first_step = _first_compared_step(divergences)
    fixes = observed_fixes(first, at_step, likely_cause(divergences), audit, levels, first_step)
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
