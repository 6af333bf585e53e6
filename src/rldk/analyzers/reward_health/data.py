"""What reward health reads: per-step metric series and sample events, one run at a time.

Every metric name goes through :mod:`rldk.semantics`: the reward is the
``reward`` quantity only (an SB3 ``rollout/ep_rew_mean`` is an episode return,
DPO's ``rewards/margins`` a margin), the KL is ``kl_to_ref`` only (verl's
``actor/ppo_kl`` is the PPO update's old-to-new KL, not the KL to the reference).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rldk import semantics
from rldk.analyzers import _series

#: Quantities read, as (canonical name, splits tried in order).
REWARD = ("reward", ("train",))
KL = ("kl_to_ref", ("train",))
LENGTH = ("response_length", ("train",))
GOLD = ("gold_reward", ("train", "eval"))
VAL_REWARD = ("reward", ("eval",))
ZERO_STD = ("zero_std_frac", ("train",))
REWARD_STD = ("reward_std", ("train",))
#: Sample splits that are validation data (attrs.split, lower-cased).
VAL_SPLITS = frozenset(("val", "valid", "validation", "eval", "test", "heldout"))

SAMPLES_SQL = """
SELECT step, seq, text AS response, value AS reward,
       json_extract_string(attrs, '$.prompt') AS prompt,
       lower(coalesce(json_extract_string(attrs, '$.split'), name)) AS split,
       json_extract_string(attrs, '$.pair') AS pair,
       json_extract_string(attrs, '$.preferred') AS preferred
FROM samples
WHERE run_id = $run
ORDER BY rank, step, seq
"""


@dataclass(frozen=True)
class Series:
    """One metric of one run: ``steps`` (int64) and ``values`` (float64), by step."""

    name: str
    steps: np.ndarray
    values: np.ndarray

    def finite(self) -> "Series":
        ok = np.isfinite(self.values)
        if ok.all():                           # nothing to drop: no copy
            return self
        return Series(self.name, self.steps[ok], self.values[ok])


@dataclass(frozen=True)
class Samples:
    """A run's sample events as columns (arrays of equal length, in logging order)."""

    step: np.ndarray
    reward: np.ndarray          # float, NaN where no reward was logged
    response: list
    prompt: list
    split: list
    pair: list
    preferred: list

    def __len__(self) -> int:
        return len(self.response)

    def select(self, mask: np.ndarray) -> "Samples":
        idx = np.flatnonzero(mask)
        pick = lambda xs: [xs[i] for i in idx]      # noqa: E731
        return Samples(self.step[idx], self.reward[idx], pick(self.response), pick(self.prompt),
                       pick(self.split), pick(self.pair), pick(self.preferred))

    def rewarded(self) -> "Samples":
        """The samples that carry a finite reward."""
        return self.select(np.isfinite(self.reward)) if len(self) else self

    @cached_property
    def lengths(self) -> np.ndarray:
        """Response lengths in words (whitespace-separated); in characters when the
        texts have no spaces (median word count <= 1: code, CJK, tokens glued)."""
        words = np.array([len(r.split()) for r in self.response], dtype=float)
        if words.size and np.median(words) <= 1:
            return np.array([len(r) for r in self.response], dtype=float)
        return words


def metric_names(run) -> list[str]:
    """The metrics ``run`` logs with a step, sorted (from the shared series index)."""
    return sorted(_series.run_index(_series.Source(run.store, run.id)))


def load_many(run, names) -> dict[str, Series]:
    """The metrics ``names`` of ``run`` that are logged, by name: read through the shared
    series loader, so every detector (and every other analyzer) reads the run once."""
    loaded = _series.load_series(_series.Source(run.store, run.id), list(names))
    return {n: Series(n, s.steps, s.values) for n, s in loaded.items()}


def load_series(run, name: str | None) -> Series | None:
    """The metric ``name`` of ``run`` as a Series, or None when it is not logged."""
    return None if name is None else load_many(run, [name]).get(name)


def load_samples(run) -> Samples:
    """The sample events of ``run`` (possibly none; no query when the run has none)."""
    if "sample" not in _series.run_facts(_series.Source(run.store, run.id)).kinds:
        return Samples(np.empty(0, np.int64), np.empty(0), [], [], [], [], [])
    frame = run.store.for_run(run.id).sql(SAMPLES_SQL, {"run": run.id})
    if not frame.height:
        return Samples(np.empty(0, np.int64), np.empty(0), [], [], [], [], [])
    col = lambda c: [v if v is not None else "" for v in frame[c].to_list()]    # noqa: E731
    return Samples(frame["step"].fill_null(-1).to_numpy().astype(np.int64),
                   frame["reward"].to_numpy().astype(float), col("response"), col("prompt"),
                   [s or "train" for s in col("split")], frame["pair"].to_list(),
                   frame["preferred"].to_list())


def pick_name(names: list[str], wanted: str | None, quantity) -> str | None:
    """The metric of ``names`` to use: ``wanted`` (a run's name or a canonical one,
    resolved through ``rldk.semantics``) or, with ``wanted=None``, the metric that
    logs ``quantity`` = (canonical name, splits tried in order). None if absent."""
    if wanted is not None:
        return semantics.resolve_name(wanted, names)
    canonical, splits = quantity
    return next((n for split in splits
                 if (n := semantics.resolve_name(canonical, names, split)) is not None), None)


def names_of(canonical: str, count: int = 4) -> str:
    """The first ``count`` framework names of a quantity, for "log one of ..." hints."""
    return ", ".join(semantics.quantity(canonical).names[:count])
