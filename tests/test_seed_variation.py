"""Divergence across seeds on real TRL GRPO training: clean seeds of one config never
diverge once replicas give the band; an injected LR bug still diverges at its step.

Four clean seeds and one run with the learning-rate bug of ``reference/tiny_trl.py``
(x30 from update ``BUG_AT``: its metrics can differ from step ``BUG_AT + 1``) are
trained once per module, 12 steps each on the CPU (about 15 s in all). The larger
measurement (5 seeds, every pair, SB3 PPO too) is ``benchmarks/seed_pairs.py``.
"""
from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from rldk import first_divergence
from rldk.cli import main
from rldk.data import open_input

STEPS, BUG_AT = 12, 6
SEEDS = ("seed0", "seed1", "seed2", "seed3")
SIGNALS = ["reward", "loss", "kl_to_ref", "entropy"]


@pytest.fixture(scope="module")
def grpo(tmp_path_factory):
    from reference.tiny_trl import run_grpo

    root = tmp_path_factory.mktemp("seeds")
    store = root / "store"
    for i, run_id in enumerate(SEEDS):
        run_grpo(root / run_id, seed=i, steps=STEPS, rldk_dir=store, run_id=run_id)
    run_grpo(root / "bug", seed=len(SEEDS), steps=STEPS, rldk_dir=store, run_id="lr-bug",
             lr_change_at=BUG_AT, lr_factor=30.0)
    return SimpleNamespace(path=store, store=open_input(str(store)))


@pytest.mark.parametrize("a, b", list(itertools.combinations(SEEDS, 2)))
def test_clean_seed_pairs_do_not_diverge_with_replicas(grpo, a, b):
    rest = [r for r in SEEDS if r not in (a, b)]
    for reps_a, reps_b in ((rest, []), (rest[:1], rest[1:])):
        d = first_divergence(a, b, SIGNALS, store=grpo.store, replicas_a=reps_a, replicas_b=reps_b)
        assert not d.diverged and not d.weak, d.verdict
        assert {s.band.source for s in d.signals} == {"replicas"}


def test_lr_bug_diverges_at_its_step_against_the_seed_band(grpo):
    d = first_divergence("seed0", "lr-bug", SIGNALS, store=grpo.store, replicas_a=list(SEEDS[1:]))
    assert (d.diverged, d.step, d.signal, d.level) == (True, BUG_AT + 1, "kl_to_ref", "statistical")
    assert not d.weak and d.signals[SIGNALS.index("kl_to_ref")].direction == "up"


def test_without_replicas_the_verdict_is_weak(grpo):
    d = first_divergence("seed0", "seed1", SIGNALS, store=grpo.store)
    assert d.mode == "statistical" and d.weak
    assert d.verdict.endswith("(weak verdict: no replicas, so the band does not cover "
                              "seed-to-seed variation)")
    weak = [f for f in d.report().findings if f.code == "weak_verdict"]
    assert len(weak) == 1 and weak[0].severity == "info" and "--replicas-a" in weak[0].fix
    assert d.to_dict()["weak"] is True


def test_cli_diff_with_replicas_exits_0_and_without_says_weak(grpo):
    base = ["diff", str(grpo.path), "--a", "seed0", "--b", "seed1", "--signals", ",".join(SIGNALS),
            "--format", "json"]
    done = CliRunner().invoke(main, base + ["--replicas-a", "seed2", "--replicas-b", "seed3"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["status"] == "ok"
    assert not [f for f in report["findings"] if f["code"] == "weak_verdict"]
    alone = CliRunner().invoke(main, base)
    codes = {f["code"] for f in json.loads(alone.output)["findings"]}
    assert "weak_verdict" in codes
