"""Responses that run to the generation cap are a length explosion (issue #14).

A mean length that rises to the cap cannot rise 3x over a level it held when the cap is
under 3x that level: a real NeMo-RL GRPO run of the tuning half went from 551 tokens at
step 1 to 997-1024 of its 1024-token cap from step 2 on, and no rule said so (its
truncation share was not logged). ``rules.length_at_cap`` reads the cap from the run's
config or the longest response it logged, only when the run logs no truncation share.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rldk.analyzers.health.data import RunData
from rldk.analyzers.health.onset import _length_cap
from rldk.analyzers.suite import analyze
from rldk.analyzers._series import Series
from rldk.converters import ingest
from rldk.detectors import rules

REAL = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "real"


def climb_to_cap(start: float, cap: float = 1024.0, n: int = 60, seed: int = 0):
    """``start`` tokens (+-3%) for 20 rows, a climb over 5 rows, the cap (a few rows a
    little under it) to the end."""
    rng = np.random.default_rng(seed)
    v = start * (1 + 0.03 * rng.normal(size=n))
    v[20:25] = np.linspace(start, cap, 7)[1:-1]
    v[25:] = cap - np.where(rng.random(n - 25) < 0.2, 0.03 * cap, 0.0)
    return np.arange(1, n + 1) * 10, v


def test_a_length_that_runs_to_the_cap_is_an_explosion_from_its_climb():
    steps, v = climb_to_cap(600.0)
    assert rules.length_change("response_length/mean", steps, v) is None     # under 3x
    event = rules.length_change("response_length/mean", steps, v, cap=1024.0)
    assert event.code == "length_explosion" and event.severity == "warning"
    assert event.onset == steps[20] and event.last == steps[-1]
    assert event.evidence["cap"] == 1024.0 and "generation cap" in event.title


def test_near_the_cap_from_the_start_or_never_at_it_is_not_an_explosion():
    steps, v = climb_to_cap(600.0)
    # at the cap from the first row: a run set up with a short cap
    assert rules.length_at_cap("l", steps, np.full(len(v), 1020.0), 1024.0) is None
    # from 90% of the cap: most responses were already cut
    assert rules.length_at_cap("l", *climb_to_cap(930.0), 1024.0) is None
    # a cap the length never reaches, and no cap
    assert rules.length_at_cap("l", steps, v, 2048.0) is None
    assert rules.length_at_cap("l", steps, v, None) is None
    # a climb to the cap that the run leaves again is no state
    left = v.copy()
    left[-10:] = 600.0
    assert rules.length_at_cap("l", steps, left, 1024.0) is None


def _run(config=None, **series):
    made = {q: Series(q, np.arange(len(v)), np.asarray(v, float)) for q, v in series.items()}
    return RunData("r", made, {q: q for q in series}, config or {})


def test_the_cap_comes_from_the_config_then_the_longest_response_unless_truncation_is_logged():
    length = [500.0, 900.0, 1000.0]
    assert _length_cap(_run({"data": {"max_response_length": 2048}}, response_length=length)) == 2048.0
    assert _length_cap(_run({"generate_max_len": "1024"}, response_length=length)) == 1024.0
    assert _length_cap(_run(response_length=length, response_length_max=[700.0, 1024.0, np.nan])) == 1024.0
    assert _length_cap(_run(response_length=length)) is None
    # the truncation share says it directly: its rule judges it
    assert _length_cap(_run({"max_completion_length": 1024}, response_length=length,
                            truncation_ratio=[0.0, 0.5, 0.9])) is None


def test_a_real_grpo_run_whose_responses_ran_to_the_cap_at_step_2():
    store = ingest(str(REAL / "nemorl_grpo_qwen25_7b_sglang_weight_sync_collapse" / "metrics.json"),
                   adapter="scalars_json")
    analysis = analyze(store.files, plots=False)
    (found,) = [f for r in analysis.reports for f in r.findings if f.code == "length_explosion"]
    assert found.metric == "train/mean_gen_tokens_per_sample" and found.steps[0] == 2
    assert found.evidence["cap"] == 1024.0        # train/max_gen_tokens_per_sample
