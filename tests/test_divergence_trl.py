"""Real TRL runs: a same-seed pair is identical; a learning-rate bug is found at its step.

Three tiny GRPO runs of the GPT-2-shaped model (reference/tiny_trl.py) on the CPU,
logged through rldk's TRL callback with parameter checksums and RNG digests every
step: the session's shared run (conftest ``tiny_grpo``) and two with its exact
arguments, each in its own store. Run "bug" multiplies the learning rate by 10
from optimizer update 5 on (silently: the logged learning_rate is unchanged), so
its parameters differ from step 5 and its metrics from step 6 (step 5's metrics
were computed before that update).
"""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rldk import first_divergence
from rldk.cli import main
from rldk.core.errors import EXIT_PROBLEMS

pytestmark = pytest.mark.slow
STEPS, BUG_AT = 8, 5          # STEPS: as conftest's tiny_grpo


@pytest.fixture(scope="module")
def trl_stores(tiny_grpo, tmp_path_factory):
    """Store directories by run: "clean" (tiny_grpo), "clean-again" and "bug"."""
    from reference.tiny_trl import run_grpo

    root = tmp_path_factory.mktemp("trl_divergence")
    stores = {"clean": str(tiny_grpo.store)}
    for run_id, bug in (("clean-again", None), ("bug", BUG_AT)):
        stores[run_id] = str(root / run_id / "store")
        run_grpo(root / run_id / "out", seed=0, steps=tiny_grpo.steps, lr_change_at=bug,
                 rldk_dir=stores[run_id], run_id=run_id,
                 rldk_callback_kwargs={"rng_every": 1, "tensors_every": 1, "memory_every": 1},
                 save_steps=4, tensorboard=True, log_completions=True)
    return stores


def test_same_seed_runs_are_identical(trl_stores):
    d = first_divergence(trl_stores["clean"], trl_stores["clean-again"])
    assert (d.diverged, d.step, d.mode) == (False, None, "exact")
    assert d.tensors.first_step is None and d.tensors.steps == STEPS + 1   # + on_train_begin
    assert d.rng.first_step is None
    assert all(s.exact_step is None and s.common_steps == STEPS for s in d.signals)


def test_lr_bug_found_at_its_step_in_params_then_metrics(trl_stores):
    from reference.tiny_trl import make_tiny_model

    clean, bug = trl_stores["clean"], trl_stores["bug"]
    d = first_divergence(clean, bug)
    assert (d.diverged, d.step, d.level, d.mode) == (True, BUG_AT, "bitwise", "exact")
    # every parameter moved with the bigger update; the first in logging order is named
    params = [f"param/{n}" for n, _ in make_tiny_model(0)[0].named_parameters()]
    assert d.signal == f"tensor/{params[0]}" == "tensor/param/transformer.wte.weight"
    assert d.tensors.differing == len(params) and d.tensors.names == tuple(params[:20])
    assert d.rng.first_step is None                        # sampling is unchanged: RNG equal
    assert d.verdict.startswith(f"runs grpo and bug diverge at step {BUG_AT}: tensor "
                                f"param/transformer.wte.weight differs (first of {len(params)}); "
                                "RNG streams still equal")
    metrics_only = first_divergence(clean, bug, ["loss", "reward"], bitwise=False)
    assert (metrics_only.step, metrics_only.level) == (BUG_AT + 1, "exact")
    assert first_divergence(clean, bug, "learning_rate", bitwise=False).step is None


def test_rldk_diff_cli_reports_the_step(trl_stores, tmp_path):
    runner = CliRunner()
    same = runner.invoke(main, ["diff", trl_stores["clean"], trl_stores["clean-again"]])
    assert same.exit_code == 0, same.output
    assert "runs grpo and clean-again are identical" in same.output
    out = tmp_path / "card"
    bug = runner.invoke(main, ["diff", trl_stores["clean"], trl_stores["bug"],
                               "--format", "json", "--out-dir", str(out)])
    assert bug.exit_code == EXIT_PROBLEMS, bug.output
    card = json.loads(bug.stdout)
    comparison = card["details"]["comparisons"][0]
    assert (comparison["step"], comparison["level"]) == (BUG_AT, "bitwise")
    assert card["findings"][0]["steps"] == [BUG_AT, BUG_AT]
    assert (out / "divergence.json").is_file() and (out / "divergence.md").is_file()
    assert (out / "divergence-bug.png").is_file()
