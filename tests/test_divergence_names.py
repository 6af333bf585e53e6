"""Signal names through rldk.semantics in first_divergence and the determinism check,
float32 storage at the exact level, one-line results, drift-card wording, and the
check-determinism CLI (--out-dir, --keep, exit 4 when inconclusive). Fast: no torch."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from rldk import check_determinism, first_divergence
from rldk.analyzers import get
from rldk.analyzers.determinism import Params
from rldk.cli import main
from rldk.core.errors import EXIT_INCONCLUSIVE, EXIT_PROBLEMS
from rldk.core.store import open_store
from rldk.writer import EventWriter

PY = sys.executable
N = 12
STYLES = {"trl": ("reward", "kl", "loss"), "tensorboard": ("train/reward", "train/kl", "train/loss")}
VALUES = {"reward": np.linspace(0.1, 0.9, N) + 1e-3 / 3, "kl": np.linspace(0.0, 0.05, N) / 7,
          "loss": 1.0 / (np.arange(N) + 3.0)}


def write(directory, run_id, style="trl", rounded=False, change=None):
    """A run logging VALUES under the names of ``style``; ``rounded``: float32 values (as
    TensorBoard stores them); ``change``: (quantity, step, delta) added from that step."""
    with EventWriter(directory, run_id, capture_env=False, seed=1, config={"seed": 1}) as w:
        for step in range(N):
            row = {}
            for quantity, name in zip(("reward", "kl", "loss"), STYLES[style]):
                value = VALUES[quantity][step]
                if change and change[0] == quantity and step >= change[1]:
                    value += change[2]
                row[name] = float(np.float32(value)) if rounded else float(value)
            w.log(step, row)
    return directory


# ------------------------------------------------------------ canonical names
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("signal, logged", [("reward_mean", "reward"), ("reward", "reward"),
                                            ("kl", "kl"), ("kl_to_ref", "kl")])
def test_canonical_names_resolve_in_both_analyses(tmp_path, style, signal, logged):
    write(tmp_path, "a", style)
    write(tmp_path, "b", style, change=(logged, 5, 1.0))
    store = open_store(tmp_path)
    d = first_divergence("a", "b", [signal], store=store)
    expected_name = STYLES[style][("reward", "kl").index(logged)]
    assert (d.signals[0].signal, d.signals[0].name_a, d.signals[0].name_b) == (
        signal, expected_name, expected_name)
    assert (d.diverged, d.step, d.signal) == (True, 5, signal)
    result = get("determinism").run(store, Params(signals=(signal,)))
    assert [s.metric for s in result.spread] == [signal]
    assert (result.first_divergent_step, result.first_metric, result.status) == (5, signal, "problems")


def test_determinism_resolves_each_replica_on_its_own(tmp_path):
    write(tmp_path, "a", "trl")
    write(tmp_path, "b", "tensorboard")
    result = get("determinism").run(open_store(tmp_path), Params(signals=("reward_mean", "kl_to_ref")))
    assert result.passed and result.verdict == "deterministic"
    assert [s.metric for s in result.spread] == ["reward_mean", "kl_to_ref"]
    default = get("determinism").run(open_store(tmp_path))          # reference's own names
    assert default.passed and [s.metric for s in default.spread] == ["kl", "loss", "reward"]


def test_unknown_signal_in_determinism_is_one_line(tmp_path):
    write(tmp_path, "a")
    write(tmp_path, "b")
    from rldk.core.errors import UsageError

    with pytest.raises(UsageError) as err:
        get("determinism").run(open_store(tmp_path), Params(signals=("entropy",)))
    assert str(err.value) == "signal(s) entropy not logged by every replica; shared metrics: kl, loss, reward"


# --------------------------------------------- the same run under two names and precisions
@pytest.mark.parametrize("rounded", [False, True], ids=["same-values", "float32-tensorboard"])
def test_trainer_state_and_tensorboard_copies_of_one_run_do_not_diverge(tmp_path, rounded):
    write(tmp_path, "state", "trl")
    write(tmp_path, "tb", "tensorboard", rounded=rounded)
    d = first_divergence("state", "tb", store=open_store(tmp_path))
    assert (d.diverged, d.step, d.mode) == (False, None, "exact")
    assert {s.signal: (s.name_b, s.precision) for s in d.signals} == {
        name: (f"train/{name}", "float32" if rounded else "float64") for name in ("kl", "loss", "reward")}


def test_float32_copy_still_shows_a_real_difference(tmp_path):
    write(tmp_path, "state", "trl")
    write(tmp_path, "tb", "tensorboard", rounded=True, change=("kl", 7, 1e-4))
    d = first_divergence("state", "tb", store=open_store(tmp_path))
    assert (d.diverged, d.step, d.signal, d.level) == (True, 7, "kl", "exact")
    assert d.verdict.endswith("(identical before, compared at float32 precision)")


def test_same_precision_is_compared_exactly(tmp_path):
    write(tmp_path, "a", "trl", rounded=True)
    write(tmp_path, "b", "trl", rounded=True, change=("loss", 4, 1e-7))   # below float32 at 1/7
    d = first_divergence("a", "b", store=open_store(tmp_path))
    assert (d.step, d.signal, d.signals[1].precision) == (4, "loss", "float64")


# ----------------------------------------------------------- str and card wording
def test_str_is_one_line_naming_the_runs(tmp_path):
    write(tmp_path, "a")
    write(tmp_path, "b", change=("reward", 5, 1.0))
    write(tmp_path, "c")
    store = open_store(tmp_path)
    d = first_divergence("a", "b", ["reward_mean"], store=store)
    assert str(d) == "runs a and b diverge at step 5 on reward_mean (exact)"
    assert repr(d) == "<Divergence: runs a and b diverge at step 5 on reward_mean (exact)>"
    same = first_divergence("a", "c", store=store)
    assert str(same) == "runs a and c are identical over 12 common steps (3 signal(s))"


def test_card_names_runs_in_one_order(tmp_path):
    write(tmp_path, "a")
    write(tmp_path, "b", change=("reward", 5, 1.0))
    d = first_divergence("a", "b", ["reward"], store=open_store(tmp_path))
    report = d.report()
    assert report.title == "Drift card: a vs b"
    value_a, value_b = float(VALUES["reward"][5]), float(VALUES["reward"][5] + 1.0)
    assert report.summary == (f"runs a and b diverge at step 5: reward = {value_a!r} in a vs "
                              f"{value_b!r} in b (identical before)")
    assert report.status == "problems" and [c.name for c in report.checks] == ["exact", "tensor", "rng"]
    assert [c.status for c in report.checks] == ["ran", "skipped", "skipped"]
    assert report.checks[1].detail == ("not logged by both runs: log them with "
                                       "rldk.writer.log_tensors(step, model)")


def test_divergence_at_the_first_common_step_claims_nothing_before(tmp_path):
    write(tmp_path, "a")
    write(tmp_path, "b", change=("loss", 0, 1.0))
    d = first_divergence("a", "b", ["loss"], store=open_store(tmp_path), mode="exact")
    assert d.step == 0
    assert d.verdict.endswith("in b (their first common step)")
    assert "identical before" not in d.verdict
    assert d.report().findings[0].fix.startswith("The runs differ from their first common step")


# ----------------------------------------------------------------- the CLI
def test_diff_cli_out_dir_and_old_option(tmp_path):
    write(tmp_path / "s", "a")
    write(tmp_path / "s", "b", change=("reward", 5, 1.0))
    out = tmp_path / "card"
    result = CliRunner().invoke(main, ["diff", str(tmp_path / "s"), "--signals", "reward_mean",
                                       "--format", "json", "--out-dir", str(out)])
    assert result.exit_code == EXIT_PROBLEMS, result.output
    assert json.loads(result.stdout)["title"] == "Drift card: a vs b"
    assert json.loads((out / "divergence.json").read_text())["status"] == "problems"
    old = CliRunner().invoke(main, ["diff", str(tmp_path / "s"), "--out", str(out)])
    assert old.exit_code == 2 and old.stderr.splitlines()[-1] == (
        "Error: No such option '--out'. (Did you mean one of: '--format', '--out-dir', '--output'?)")


#: A training stand-in logging TRL names (and a timing), through the real writer.
TRL_LOGGER = ("import sys; from rldk.writer import EventWriter\n"
              "w = EventWriter(capture_env=False)\n"
              "for i in range(int(sys.argv[1])): w.log(i, reward=0.5 + i / 10, kl=i / 100, step_time=0.1)\n"
              "w.close()\n")
TIMING_ONLY = ("from rldk.writer import EventWriter\n"
               "w = EventWriter(capture_env=False)\n"
               "import time\n"
               "for i in range(3): w.log(i, step_time=time.perf_counter())\n"
               "w.close()\n")


def test_check_determinism_takes_canonical_names(tmp_path):
    result = check_determinism([PY, "-c", TRL_LOGGER, "4"], ["reward_mean", "kl_to_ref"],
                               workdir=tmp_path / "w")
    assert result.passed and result.levels_compared == ("metric",)
    assert [s.metric for s in result.spread] == ["reward_mean", "kl_to_ref"]


def test_nothing_comparable_is_inconclusive_and_exits_4(tmp_path):
    result = CliRunner().invoke(main, ["check-determinism", "--workdir", str(tmp_path / "w"),
                                       "--format", "json", "--", PY, "-c", TIMING_ONLY])
    assert result.exit_code == EXIT_INCONCLUSIVE, result.output
    card = json.loads(result.stdout)
    assert card["status"] == "inconclusive" and card["details"]["passed"] is False
    assert card["summary"] == (
        "Inconclusive: 2 replicas could not be compared at any level (not logged by both runs: log "
        "them with rldk.writer.log_tensors(step, model, 'grad') in every replica; not logged by both "
        "runs: log them with rldk.writer.log_rng(step) in every replica; no comparable metric (left "
        "out as clock/throughput/memory: step_time): log training metrics or name them with --signals).")
    assert {c["name"]: c["status"] for c in card["checks"]} == {
        "tensor": "skipped", "rng": "skipped", "metric": "skipped", "steps": "ran"}


@pytest.mark.parametrize("keep", [False, True])
def test_temporary_runs_are_removed_unless_kept(tmp_path, monkeypatch, keep):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    args = ["check-determinism", *(["--keep"] if keep else []), "--", PY, "-c", TRL_LOGGER, "3"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    left = sorted(p.name for p in tmp_path.glob("rldk-determinism-*"))
    if keep:
        assert len(left) == 1
        assert result.stderr == f"runs kept in {tmp_path / left[0]}\n"
        assert (tmp_path / left[0] / "logs" / "replica-1.log").is_file()
    else:
        assert left == [] and result.stderr == ""


def test_failed_replica_keeps_its_log(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(main, ["check-determinism", "--", PY, "-c", "raise SystemExit(3)"])
    assert result.exit_code == 1
    (kept,) = tmp_path.glob("rldk-determinism-*")
    assert result.stderr.endswith(f"(log: {kept / 'logs' / 'replica-0.log'})\n")
