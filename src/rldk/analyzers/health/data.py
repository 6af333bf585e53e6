"""What the health rules see of one run: its series by quantity, resolved through
``rldk.semantics`` (a negated form such as SB3's ``entropy_loss`` comes back with its
sign restored), its own metric names, and its config."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from rldk import semantics
from rldk.analyzers import _series
from rldk.detectors import ratios


@dataclass(frozen=True)
class RunData:
    """One run as the rules see it: series and names by canonical quantity, config."""

    run_id: str
    series: dict
    names: dict          # canonical -> metric name as logged
    config: dict
    signs: dict = field(default_factory=dict)    # canonical -> -1 where logged negated
    #: canonical -> the run's names the table does not know that look like it
    #: (``semantics.looks_like``): what a "not logged" line suggests mapping
    lookalikes: dict = field(default_factory=dict)
    #: canonical -> how a series the run does not log was read off one it does (``TIED``)
    derived: dict = field(default_factory=dict)

    def get(self, canonical):
        return self.series.get(canonical)


#: Prefix of the quantities read from the eval split (``eval/episode_return``: SB3's
#: ``eval/mean_reward``), a separate series from the train split's.
EVAL = "eval/"


def how_to_log(canonical: str, lookalikes=()) -> str:
    """``entropy (log it as entropy, objective/entropy or actor/entropy)``: what enables a
    rule; with the run's ``lookalikes`` of it, the metric map that would read them as it."""
    if canonical.startswith(EVAL):
        return f"{canonical} (an evaluation {how_to_log(canonical[len(EVAL):])})"
    q = semantics.quantity(canonical)
    names = [n for n in (q.names if q else ()) if not n.startswith("-")][:3]
    if not names:
        return canonical
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    if not lookalikes:
        return f"{canonical} (log it as {listed})"
    these = ", ".join(lookalikes)
    example = json.dumps({canonical: list(lookalikes)})
    return (f"{canonical} (log it as {listed}; this run's {these} "
            f"look{'s' if len(lookalikes) == 1 else ''} like it: {semantics.MAP_HINT} {example})")


def lookalikes(available) -> dict:
    """canonical -> the names of ``available`` the table does not know that look like it
    (train-split names only: a mapped name is read whole, as the training split's)."""
    out: dict = {}
    for name in sorted(available):
        q = semantics.looks_like(name)
        if q is not None and semantics.split_name(name)[0] == "train":
            out.setdefault(q.name, []).append(name)
    return out


def curve_of(data: RunData, canonical: str, f) -> dict:
    label = f"-{f.metric}" if data.signs.get(canonical, 1) == -1 else f.metric
    return curve(data.series[canonical], label)


def load_run(source, wanted) -> RunData:
    """Resolve and load the quantities ``wanted`` for one run (a ``_series.Source``)."""
    available = _series.metric_counts(source)
    found = {c: r for c in wanted if (r := _resolve(c, available)) is not None}
    loaded = _series.load_series(source, sorted({r.metric for r in found.values()}))
    series = {}
    for c, r in found.items():
        s = loaded[r.metric]
        series[c] = s if r.sign == 1 else _series.Series(s.name, s.steps, -s.values, s.duplicates,
                                                          s.non_numeric, s.first_non_numeric)
    names = {c: r.metric for c, r in found.items()}
    signs = {c: r.sign for c, r in found.items()}
    derived = {}
    if "zero_std_frac" in wanted and "zero_std_frac" not in found \
            and (spread := _resolve("reward_std", available)) is not None:
        s = _series.load_series(source, [spread.metric])[spread.metric]
        series["zero_std_frac"] = _series.Series(s.name, s.steps, ratios.tied(s.values), s.duplicates,
                                                 s.non_numeric, s.first_non_numeric)
        names["zero_std_frac"] = spread.metric
        derived["zero_std_frac"] = ratios.TIED.format(metric=spread.metric)
    return RunData(source.run_id, series, names, _series.run_facts(source).meta.get("config") or {},
                   signs, {c: alike for c, alike in lookalikes(available).items() if c not in found},
                   derived)


def _resolve(canonical: str, available):
    if canonical.startswith(EVAL):
        return semantics.resolve(canonical[len(EVAL):], available, split="eval")
    return semantics.resolve(canonical, available)


def curve(series, metric, points: int = 400) -> dict:
    n = len(series)
    idx = np.unique(np.linspace(0, n - 1, min(n, points)).astype(int)) if n else np.array([], int)
    return {"metric": metric, "steps": series.steps[idx].tolist(),
            "values": [float(v) if np.isfinite(v) else None for v in series.values[idx]]}
