"""check_determinism on real torch training (reference/determinism/train_tiny.py), the card,
the metric spread, the environment audit and the ranking of fixes."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rldk.analyzers import determinism as det
from rldk.analyzers.determinism import Params, check_determinism
from rldk.cli import main
from rldk.core.store import open_store
from rldk.writer import EventWriter

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "reference" / "determinism" / "train_tiny.py"
GPU_CHECK = ROOT / "reference" / "gpu_checks" / "scatter_add_determinism.py"
PY = sys.executable
STEPS, INJECT_AT = 8, 4


def train_cmd(*extra) -> list[str]:
    return [PY, str(TRAIN), "--steps", str(STEPS), *map(str, extra)]


# ------------------------------------------------------------------ real training
@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Two replicas of the deterministic loop, command given as a string (shlex)."""
    work = tmp_path_factory.mktemp("clean")
    return check_determinism(f"{PY} {TRAIN} --steps {STEPS}", replicas=2, workdir=work / "w")


def test_deterministic_loop_passes(clean):
    assert clean.passed and clean.verdict == "deterministic"
    assert clean.first_divergent_step is None and clean.first_tensor is None
    assert clean.steps_compared == STEPS
    assert clean.levels_compared == ("tensor", "rng", "metric")
    assert {s.metric: (s.steps, s.differing_steps, s.max_abs_diff) for s in clean.spread} == {
        "grad_norm": (STEPS, 0, 0.0), "loss": (STEPS, 0, 0.0), "lr": (STEPS, 0, 0.0)}
    assert not [f for f in clean.fixes if f.evidence != "unverified"]
    report = clean.report()
    assert report.status == "ok"
    assert report.summary == (f"Deterministic: 2 replicas are bit-identical over {STEPS} steps "
                              "(tensor, rng, metric compared).")


def test_environment_audit_comes_from_the_training_process(clean):
    audit = {row["setting"]: row for row in clean.environment}
    assert all(row["same"] for row in audit.values())
    assert audit["deterministic_algorithms"]["value"] == "off"
    assert audit["torch threads"]["value"] == 1                    # train_tiny sets 1, not ours
    assert audit["seed_everything"]["value"] == "seed 0"
    assert audit["dataloader seeding"]["value"] == "not recorded"
    assert audit["CUDA"]["value"] == "not used"
    assert audit["torch"]["value"].startswith("2.")


@pytest.mark.parametrize("inject", ["shuffle", "reduction"])        # dropout: the CLI test below
def test_injected_nondeterminism_is_found_at_its_step(inject, tmp_path):
    result = check_determinism(train_cmd("--inject", inject, "--inject-at", INJECT_AT),
                               replicas=2, workdir=tmp_path / "w")
    assert not result.passed and result.verdict == "nondeterministic"
    assert result.first_divergent_step == INJECT_AT
    assert result.first_tensor == "grad/emb.weight"      # first tensor logged at that step
    assert result.first_rng_source is None               # the unseeded generator is not logged
    tensor = next(d for d in result.divergences if d.level == "tensor")
    assert tensor.detail["differing"] >= 1 and tensor.detail["names"][0] == "grad/emb.weight"
    assert result.fixes[0].evidence == "observed"
    assert result.fixes[0].reason.startswith(f"tensor 'grad/emb.weight' differs first, at step "
                                             f"{INJECT_AT} (in the forward or backward pass); all "
                                             "logged RNG states still agree at that step")
    if inject == "shuffle":          # other examples: the loss of that step differs too
        assert result.first_metric == "grad_norm"
        assert next(s for s in result.spread if s.metric == "loss").first_diff_step == INJECT_AT


def test_cli_card_for_nondeterministic_run(tmp_path):
    out = tmp_path / "cards"
    result = CliRunner().invoke(main, ["check-determinism", "--out-dir", str(out), "--format", "json",
                                       "--workdir", str(tmp_path / "w"), "--",
                                       *train_cmd("--inject", "dropout", "--inject-at", INJECT_AT)])
    assert result.exit_code == 3, result.output
    card = json.loads((out / "determinism.json").read_text())
    assert card["status"] == "problems"
    details = card["details"]
    assert details["first_divergent_step"] == INJECT_AT
    assert details["first_tensor"] == "grad/emb.weight"
    assert details["verdict"] == "nondeterministic"
    assert details["first_rng_source"] is None          # the unseeded generator is not logged
    assert details["fixes"][0]["evidence"] == "observed"
    md = (out / "determinism.md").read_text()
    assert f"Nondeterministic: 2 replicas differ from step {INJECT_AT} (first tensor grad/emb.weight" in \
        md.replace("\\", "")
    assert "## environment audit (training process)" in md.replace("\\", "")
    assert json.loads(result.stdout)["details"]["first_divergent_step"] == INJECT_AT


def test_steps_option_limits_the_run(tmp_path):
    result = CliRunner().invoke(main, ["check-determinism", "--steps", "3", "--workdir",
                                       str(tmp_path / "w"), "--out-dir", str(tmp_path / "c"), "--",
                                       *train_cmd("--inject", "shuffle", "--inject-at", INJECT_AT)])
    # RLDK_MAX_STEPS=3 makes the loop stop before the injection at step 4
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "c" / "determinism.json").read_text())["details"]["steps_compared"] == 3


def test_gpu_check_dry_run_on_cpu(tmp_path):
    """The GPU script's CPU path: the harness, the figures and the summary it prints."""
    import subprocess

    proc = subprocess.run([PY, str(GPU_CHECK), "--device", "cpu", "--replicas", "2", "--steps", "2",
                           "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout.split("FIGURES ", 1)[1])
    assert [f["mode"] for f in figures] == ["default", "deterministic"]
    for f in figures:        # CPU index_add_/scatter_add_ on one thread are deterministic
        assert f["verdict"] == "deterministic" and f["max_distinct_grad_checksums"] == 1
        assert f["grad_tensor_steps"] == 2 * 4       # 4 grads (table, emb, head w/b) x 2 steps
    assert (tmp_path / "deterministic" / "card" / "determinism.md").exists()


def test_gpu_check_refuses_without_cuda():
    import subprocess

    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    proc = subprocess.run([PY, str(GPU_CHECK)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("scatter_add_determinism: CUDA is not available in this process: "
                                   "this check needs a CUDA GPU (use --device cpu for a dry run of "
                                   "the harness)")


# ------------------------------------------------------------------ spread and levels, by hand
def _write(store, run_id, series: dict, argv=("train.py",), extra=None):
    """A run whose metrics are ``series`` ({name: [values by step]})."""
    with EventWriter(store, run_id, config={"seed": 1}, seed=1, capture_env=False) as w:
        steps = len(next(iter(series.values())))
        for step in range(steps):
            w.log(step, {name: values[step] for name, values in series.items()})
        if extra:
            extra(w)


def test_metric_spread_exact_values(tmp_path):
    _write(tmp_path, "a", {"loss": [1.0, 2.0, 3.0], "acc": [0.5, 0.5, 0.5], "time/step": [0.1, 0.2, 0.3]})
    _write(tmp_path, "b", {"loss": [1.0, 2.0, 3.5], "acc": [0.5, 0.5, 0.5], "time/step": [0.3, 0.1, 0.2]})
    result = det.DeterminismAnalyzer().run(open_store(tmp_path), Params())
    spread = {s.metric: s for s in result.spread}
    assert set(spread) == {"acc", "loss"}                  # time/step is clock: left out
    loss = spread["loss"]
    assert (loss.steps, loss.differing_steps, loss.first_diff_step) == (3, 1, 2)
    assert loss.max_abs_diff == 0.5
    assert loss.max_rel_diff == pytest.approx(0.5 / 3.25)
    assert loss.max_cv == pytest.approx((0.5 / math.sqrt(2)) / 3.25)
    assert spread["acc"].max_cv == 0.0 and spread["acc"].first_diff_step is None
    assert result.first_divergent_step == 2 and result.first_metric == "loss"
    metric = next(d for d in result.divergences if d.level == "metric")
    assert metric.detail["left_out"] == ["time/step"]
    assert metric.detail["value_reference"] == 3.0 and metric.detail["value_replica"] == 3.5
    assert result.fixes[0].action.startswith("log tensors and RNG states every step")


def test_missing_step_in_one_replica_is_a_difference(tmp_path):
    _write(tmp_path, "a", {"loss": [1.0, 2.0, 3.0]})
    _write(tmp_path, "b", {"loss": [1.0, 2.0]})
    result = det.DeterminismAnalyzer().run(open_store(tmp_path), Params())
    assert not result.passed
    steps = next(d for d in result.divergences if d.level == "steps")
    assert (steps.step, steps.name) == (2, "step missing in replica")


def test_steps_beyond_what_the_replicas_share_is_refused(tmp_path):
    _write(tmp_path, "a", {"loss": [1.0, 2.0, 3.0]})
    _write(tmp_path, "b", {"loss": [1.0, 2.0]})
    assert det.DeterminismAnalyzer().run(open_store(tmp_path), Params(steps=2)).passed     # the first 2 steps agree
    from rldk.core.errors import MissingEvents

    with pytest.raises(MissingEvents) as err:
        det.DeterminismAnalyzer().run(open_store(tmp_path), Params(steps=3))
    assert str(err.value) == "runs a, b share 2 steps, fewer than the 3 asked (--steps)"


def test_signals_select_metrics_and_unknown_signal_is_refused(tmp_path):
    _write(tmp_path, "a", {"loss": [1.0, 2.0], "kl": [0.1, 0.2]})
    _write(tmp_path, "b", {"loss": [1.0, 2.0], "kl": [0.1, 0.3]})
    assert det.DeterminismAnalyzer().run(open_store(tmp_path), Params(signals=("loss",))).passed
    from rldk.core.errors import UsageError

    with pytest.raises(UsageError) as err:
        det.DeterminismAnalyzer().run(open_store(tmp_path), Params(signals=("reward",)))
    assert str(err.value) == "signal(s) reward not logged by every replica; shared metrics: kl, loss"


def test_one_run_is_not_enough(tmp_path):
    _write(tmp_path, "a", {"loss": [1.0]})
    from rldk.core.errors import UsageError

    with pytest.raises(UsageError) as err:
        det.DeterminismAnalyzer().run(open_store(tmp_path), Params())
    assert str(err.value) == "a determinism check needs at least 2 replica runs; the store has 1: a"


def test_applies_needs_two_runs_of_the_same_command(tmp_path):
    _write(tmp_path, "a", {"loss": [1.0]})
    assert not det.DeterminismAnalyzer().applies(open_store(tmp_path))
    _write(tmp_path, "b", {"loss": [1.0]})
    assert det.DeterminismAnalyzer().applies(open_store(tmp_path))


# ------------------------------------------------------------------ fixes ranked by evidence
CUDA_TORCH = {"version": "2.5.1+cu124", "deterministic_algorithms": False, "deterministic_warn_only": False,
              "num_threads": 8, "float32_matmul_precision": "highest", "cuda_available": True,
              "cuda_version": "12.4", "cudnn": {"version": 90100, "deterministic": False,
                                                 "benchmark": True, "allow_tf32": True},
              "cuda_matmul_allow_tf32": False, "devices": ["NVIDIA H100 80GB HBM3"]}


def _cuda_run(store, run_id, checksum, threads=8):
    def extra(w):
        w.log_event("run", "seed", attrs={"seed": 1, "torch": {**CUDA_TORCH, "num_threads": threads}})
        for step in range(2):
            w.log_event("tensor", "grad/wte.weight", step, ivalue=checksum if step else 7,
                        digest=f"{(checksum if step else 7):016x}", attrs={})
    _write(store, run_id, {"loss": [1.0, 1.0]}, extra=extra)


def test_cuda_divergence_ranks_observed_then_settings(tmp_path):
    _cuda_run(tmp_path, "a", 11)
    _cuda_run(tmp_path, "b", 12, threads=4)
    result = det.DeterminismAnalyzer().run(open_store(tmp_path), Params())
    assert result.first_divergent_step == 1 and result.first_tensor == "grad/wte.weight"
    actions = [(f.evidence, f.action.split(" (")[0]) for f in result.fixes]
    assert actions[:3] == [
        ("observed", "call rldk.seed_everything(seed, deterministic=True) before building the model"),
        ("observed", "keep deterministic algorithms on for embedding layers"),
        ("observed", "pass every generator you create to log_rng(step, {name: generator}) and seed it; "
                     "sum partial results"),
    ]
    settings = [f.action for f in result.fixes if f.evidence == "setting"]
    assert settings == ["run every replica with the same torch threads",
                        "export CUBLAS_WORKSPACE_CONFIG=:4096:8 before the process starts",
                        "torch.backends.cudnn.benchmark = False"]   # deterministic fix: already above
    threads = next(r for r in result.environment if r["setting"] == "torch threads")
    assert threads["values"] == {"a": 8, "b": 4} and threads["note"] == "differs between replicas"
    evidence = [f.evidence for f in result.fixes]
    assert evidence == sorted(evidence, key=det.EVIDENCE.index)


def test_rng_differing_at_first_step_means_unseeded(tmp_path):
    for run_id, loss in (("a", 1.0), ("b", 1.5)):
        _write(tmp_path, run_id, {"loss": [loss, loss]},
               extra=lambda w, r=run_id: [w.log_event("rng", "torch", s, digest=f"{r}{s}") for s in range(2)])
    result = det.DeterminismAnalyzer().run(open_store(tmp_path), Params())
    assert result.first_divergent_step == 0 and result.first_rng_source == "torch"
    assert result.fixes[0].action.startswith("seed every generator from one fixed seed")
    assert result.fixes[0].reason == ("RNG source 'torch' already differs at the first step compared (0): "
                                      "it is seeded differently on each run (unseeded, or seeded from "
                                      "time/pid); the outcomes differ from step 0")


@pytest.mark.parametrize("rng_step, loss_b, role, status", [
    (0, [1.0, 1.0, 1.0], "unused", "ok"),            # outcomes equal: harmless
    (1, [1.0, 1.0, 2.0], "cause", "problems"),       # RNG first, outcome later: likely cause
    (2, [1.0, 2.0, 2.0], "after", "problems"),       # outcome first: a consequence
])
def test_rng_role_decided_by_outcomes(tmp_path, rng_step, loss_b, role, status):
    for run_id, loss in (("a", [1.0] * 3), ("b", loss_b)):
        _write(tmp_path, run_id, {"loss": loss}, extra=lambda w, r=run_id: [
            w.log_event("rng", "numpy", s, digest=f"{r if s >= rng_step else ''}{s}") for s in range(3)])
    result = det.DeterminismAnalyzer().run(open_store(tmp_path), Params())
    assert result.status == status and result.first_rng_source == "numpy"
    assert [(x.source, x.step, x.role) for x in result.rng_roles] == [("numpy", rng_step, role)]
    code = {"unused": "rng_unused", "cause": "rng_cause", "after": "rng_after"}[role]
    finding = next(f for f in result.report().findings if f.code == code)
    assert finding.severity == ("warning" if role == "cause" else "info")
    observed = [f.action for f in result.fixes if f.evidence == "observed"]
    if role == "cause":
        assert observed[0].startswith("find what draws from 'numpy' a varying number of times")
    else:
        assert not any("numpy" in a for a in observed)


# ------------------------------------------------------------------ real scripts, unseeded numpy
RNG_SCRIPT = """
import random
import sys

import numpy as np

from rldk.writer import EventWriter

random.seed(0)                       # python's RNG seeded; numpy's global RNG is not
use_from = int(sys.argv[1])          # the step from which numpy draws change the loss (-1: never)
with EventWriter(capture_env=False) as w:
    for step in range(6):
        noise = np.random.rand() if 0 <= use_from <= step else 0.0
        w.log(step, {"loss": 1.0 / (step + 1) + noise, "lr": 0.1})
        w.log_rng(step)
"""


@pytest.fixture(scope="module")
def rng_script(tmp_path_factory):
    path = tmp_path_factory.mktemp("rng") / "train_rng.py"
    path.write_text(RNG_SCRIPT)
    return path


def test_unseeded_unused_numpy_passes_with_a_note(rng_script, tmp_path):
    result = check_determinism([PY, str(rng_script), "-1"], replicas=2, workdir=tmp_path / "w")
    assert result.passed and result.status == "ok" and result.first_divergent_step is None
    assert result.first_rng_source == "numpy"
    assert [(x.source, x.step, x.role) for x in result.rng_roles] == [("numpy", 0, "unused")]
    note = next(f for f in result.report().findings if f.code == "rng_unused")
    assert note.severity == "info"
    assert note.title == ("RNG source 'numpy' differs from step 0, but every metric and tensor is "
                          "equal: an unused RNG, harmless")
    assert result.report().summary == (
        "Deterministic: 2 replicas give identical outcomes over 6 steps (metric compared); RNG "
        "source(s) numpy differ but were not used: harmless.")
    assert not [f for f in result.fixes if f.evidence == "observed"]


def test_unseeded_used_numpy_is_the_cause(rng_script, tmp_path):
    result = check_determinism([PY, str(rng_script), "3"], replicas=2, workdir=tmp_path / "w")
    assert not result.passed and result.verdict == "nondeterministic"
    assert result.first_divergent_step == 3 and result.first_metric == "loss"
    assert [(x.source, x.step, x.role, x.outcome_step) for x in result.rng_roles] == [
        ("numpy", 0, "cause", 3)]
    assert result.fixes[0].action.startswith("seed every generator from one fixed seed")
    assert "RNG source 'numpy' already differs at the first step compared (0)" in result.fixes[0].reason
    summary = result.report().summary
    assert summary.startswith("Nondeterministic: 2 replicas differ from step 3 (metric loss). "
                              "Likely cause: RNG source 'numpy', which differs from step 0.")
    done = CliRunner().invoke(main, ["check-determinism", "--workdir", str(tmp_path / "cli"),
                                     "--format", "json", "--", PY, str(rng_script), "3"])
    assert done.exit_code == 3, done.output
    codes = {f["code"] for f in json.loads(done.output)["findings"]}
    assert {"metric_diverged", "rng_cause"} <= codes


# ------------------------------------------------------------------ a tiny real TRL run
def test_tiny_trl_grpo_run_is_deterministic_on_cpu(tmp_path):
    """Two GRPO runs of reference/tiny_trl.py (GPT-2, CPU) through the RldkCallback, with
    tensor and RNG events every step, are bit-identical; step_time is left out."""
    cmd = [PY, "-m", "reference.tiny_trl", str(tmp_path / "out"), "--steps", "2",
           "--tensors-every", "1", "--rng-every", "1"]
    result = check_determinism(cmd, replicas=2, workdir=tmp_path / "w", cwd=ROOT)
    assert result.passed, result.to_dict()["divergences"]
    assert result.levels_compared == ("tensor", "rng", "metric")
    tensor = next(d for d in result.divergences if d.level == "tensor")
    assert tensor.detail["compared"] > 0 and tensor.detail["only_reference"] == 0
    metric = next(d for d in result.divergences if d.level == "metric")
    assert "step_time" in metric.detail["left_out"]
    assert {"loss", "reward", "kl"} <= {s.metric for s in result.spread}
