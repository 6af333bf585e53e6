"""rldk.compat.wandb: the wandb call sequences of verl, OpenRLHF and transformers/TRL
(a real tiny GRPO run with report_to=["wandb"]) land in the rldk store."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest

import rldk.compat.wandb as stand_in
from rldk.compat import SHIM_PATH
from rldk.core.store import open_store
from rldk.writer import RldkWarning


@pytest.fixture
def wandb(tmp_path, monkeypatch):
    """The stand-in, writing to ``tmp_path/store``; no run is left active afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLDK_DIR", str(tmp_path / "store"))
    monkeypatch.delenv("RLDK_RUN_ID", raising=False)
    yield stand_in
    stand_in.finish()
    stand_in.uninstall()


def _metrics(store_dir, run_id=None) -> dict:
    """{(step, name): value} of the stepped metric events."""
    store = open_store(store_dir)
    rows = store.sql("SELECT run_id, step, name, value FROM metrics WHERE step IS NOT NULL")
    return {(s, n): v for r, s, n, v in rows.iter_rows() if run_id in (None, r)}


def _events(store_dir, kind):
    rows = open_store(store_dir).sql("SELECT step, name, value, text, attrs FROM events WHERE kind = $k "
                                     "ORDER BY seq", {"k": kind})
    return [(s, n, v, t, json.loads(a) if a else None) for s, n, v, t, a in rows.iter_rows()]


# ------------------------------------------------------------------ verl
def verl_metrics(step: int) -> dict:
    """Keys as verl's trainer logs them (one dict per training step)."""
    return {"actor/entropy": np.float32(2.0 - 0.25 * step), "actor/pg_loss": -0.01 * step,
            "actor/ppo_kl": 1e-4 * step, "actor/grad_norm": 0.5, "critic/score/mean": 0.1 * step,
            "critic/rewards/mean": 0.1 * step, "response_length/mean": 100.0 + step,
            "response_length/clip_ratio": 0.0, "timing_s/gen": 1.5, "training/global_step": step}


def test_verl_tracking_sequence(wandb, tmp_path):
    """verl's Tracking with the wandb backend: init(project, name, config, settings, id),
    log(data=..., step=...) each step, a validation-generations table re-logged with all
    its rows plus the new one (input_i/output_i/score_i columns), finish(exit_code=0)."""
    config = {"trainer": {"project_name": "gsm8k", "experiment_name": "qwen-grpo", "total_epochs": 1},
              "actor_rollout_ref": {"actor": {"optim": {"lr": 1e-6}}}}
    wandb.init(project="gsm8k", name="qwen-grpo", config=config, settings=None, id="gsm8k--qwen-grpo")
    columns = ["step", "input_1", "output_1", "score_1", "input_2", "output_2", "score_2"]
    table = None
    for step in range(1, 5):
        wandb.log(data=verl_metrics(step), step=step)
        if step % 2 == 0:
            table = wandb.Table(columns=columns, data=table.data if table is not None else [])
            table.add_data(step, "q1", f"a1-{step}", 1.0, "q2", f"a2-{step}", 0.0)
            wandb.log({"val/generations": table}, step=step)
    wandb.finish(exit_code=0)

    store = open_store(tmp_path / "store")
    assert store.run_ids == ["qwen-grpo"]
    run = store.run("qwen-grpo")
    assert run.status == "complete" and run.meta["config"] == config
    got = _metrics(tmp_path / "store")
    assert got == {(s, k): pytest.approx(float(v)) for s in range(1, 5) for k, v in verl_metrics(s).items()}
    assert run.metric("reward").rows() == [(s, pytest.approx(0.1 * s)) for s in range(1, 5)]
    assert run.metric("entropy")["value"].to_list() == [1.75, 1.5, 1.25, 1.0]
    assert run.metric("response_length")["value"].to_list() == [101.0, 102.0, 103.0, 104.0]
    assert run.metric("ppo_approx_kl")["step"].to_list() == [1, 2, 3, 4]
    samples = [(s, t, v, a["prompt"]) for s, _, v, t, a in _events(tmp_path / "store", "sample")]
    assert samples == [(2, "a1-2", 1.0, "q1"), (2, "a2-2", 0.0, "q2"),       # step 4 adds only its own row
                       (4, "a1-4", 1.0, "q1"), (4, "a2-4", 0.0, "q2")]


# ------------------------------------------------------------------ OpenRLHF
def openrlhf_training(wandb, args, steps=4, eval_every=2):
    """OpenRLHF's trainers with --use_wandb: login unless a key is set, init(..., reinit=True),
    train/* against train/global_step and eval/* against eval/global_step, one log
    call per step without step=, finish()."""
    if not wandb.api.api_key:
        wandb.login(key=args.use_wandb)
    wandb.init(entity=None, project=args.wandb_project, group=None, name=args.wandb_run_name,
               config=args.__dict__, reinit=True)
    wandb.define_metric("train/global_step")
    wandb.define_metric("train/*", step_metric="train/global_step", step_sync=True)
    wandb.define_metric("eval/global_step")
    wandb.define_metric("eval/*", step_metric="eval/global_step", step_sync=True)
    for global_step in range(1, steps + 1):
        status = {"policy_loss": 0.5 / global_step, "kl": 0.01 * global_step, "reward": 0.2 * global_step,
                  "response_length": 50.0 + global_step, "actor_lr": 5e-7}
        wandb.log({f"train/{k}": v for k, v in {**status, "global_step": global_step}.items()})
        if global_step % eval_every == 0:
            wandb.log({f"eval/{k}": v for k, v in {"loss": 1.0 / global_step, "global_step": global_step}.items()})
    wandb.finish()


OPENRLHF_ARGS = argparse.Namespace(use_wandb="key", wandb_project="openrlhf_train_ppo",
                                   wandb_run_name="ppo_0101T10:00", actor_learning_rate=5e-7)


def _check_openrlhf_store(store_dir):
    store = open_store(store_dir)
    assert store.run_ids == ["ppo_0101T10-00"]                 # ':' is not allowed in a run id
    run = store.run("ppo_0101T10-00")
    assert run.meta["config"]["actor_learning_rate"] == 5e-7 and run.status == "complete"
    got = _metrics(store_dir)
    assert sorted({s for s, n in got if n.startswith("train/")}) == [1, 2, 3, 4]   # global_step, not wandb's 0..
    assert "train/global_step" not in {n for _, n in got} and "eval/global_step" not in {n for _, n in got}
    assert run.metric("kl_to_ref").rows() == [(s, pytest.approx(0.01 * s)) for s in range(1, 5)]
    assert run.metric("reward").rows() == [(s, pytest.approx(0.2 * s)) for s in range(1, 5)]
    assert run.metric("eval/loss").rows() == [(2, 0.5), (4, 0.25)]


def test_openrlhf_sequence_after_install(wandb, tmp_path):
    wandb.install()
    import wandb as imported  # what OpenRLHF's trainers do

    assert imported is stand_in
    openrlhf_training(imported, OPENRLHF_ARGS)
    _check_openrlhf_store(tmp_path / "store")


def test_openrlhf_sequence_in_a_process_with_the_shim_on_pythonpath(tmp_path):
    """docs/openrlhf.md's line: PYTHONPATH="$(python -m rldk.compat shim-path):$PYTHONPATH"."""
    printed = subprocess.run([sys.executable, "-m", "rldk.compat", "shim-path"], capture_output=True, text=True,
                             check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert printed.stdout.strip() == SHIM_PATH
    script = textwrap.dedent("""
        import wandb
        assert wandb.__name__ == "rldk.compat.wandb", wandb.__name__
        from tests.test_compat_wandb import OPENRLHF_ARGS, openrlhf_training
        openrlhf_training(wandb, OPENRLHF_ARGS)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SHIM_PATH, *sys.path]), "RLDK_DIR": str(tmp_path / "s")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr
    _check_openrlhf_store(tmp_path / "s")


# ------------------------------------------------------------------ steps
def _log_all(wandb, calls):
    wandb.init(name="steps")
    for data, kwargs in calls:
        wandb.log(data, **kwargs)
    wandb.finish()


@pytest.mark.parametrize("calls, expected", [
    ([({"a": 1.0}, {}), ({"a": 2.0}, {})], {(0, "a"): 1.0, (1, "a"): 2.0}),
    ([({"a": 1.0}, {"commit": False}), ({"b": 2.0}, {}), ({"a": 3.0}, {})],
     {(0, "a"): 1.0, (0, "b"): 2.0, (1, "a"): 3.0}),
    ([({"a": 1.0}, {"step": 5}), ({"b": 2.0}, {}), ({"c": 3.0}, {})], {(5, "a"): 1.0, (5, "b"): 2.0, (6, "c"): 3.0}),
    ([({"a": 1.0}, {"step": 2, "commit": True}), ({"b": 1.0}, {})], {(2, "a"): 1.0, (3, "b"): 1.0}),
    ([({"a": 1.0, "train/global_step": 7}, {}), ({"b": 2.0}, {})], {(7, "a"): 1.0, (1, "b"): 2.0}),
    ([({"a": np.float64(0.5), "n": np.int64(3), "t": 2}, {})], {(0, "a"): 0.5, (0, "n"): 3.0, (0, "t"): 2.0}),
    ([({"outer": {"inner": 1.0}}, {})], {(0, "outer/inner"): 1.0}),
])
def test_wandb_step_rules(wandb, tmp_path, calls, expected):
    _log_all(wandb, calls)
    assert _metrics(tmp_path / "store") == expected


def test_a_step_below_the_current_one_is_dropped_with_a_warning(wandb, tmp_path):
    wandb.init(name="back")
    wandb.log({"a": 1.0}, step=5)
    with pytest.warns(RldkWarning, match=r"step 3 is below the current step 5; dropped, as wandb drops it"):
        wandb.log({"a": 2.0}, step=3)
    wandb.finish()
    assert _metrics(tmp_path / "store") == {(5, "a"): 1.0}


def test_step_metrics_exact_before_glob_and_last_value_synced(wandb, tmp_path):
    wandb.init(name="defs")
    wandb.define_metric("*", step_metric="train/global_step")
    wandb.define_metric("eval/*", step_metric="epoch")
    wandb.define_metric("eval/special", step_metric="train/global_step")
    wandb.log({"loss": 1.0, "train/global_step": 10})
    wandb.log({"eval/acc": 0.5, "eval/special": 2.0, "epoch": 3})
    wandb.log({"late": 4.0})                                    # no step metric: its last value, 10
    wandb.finish()
    assert _metrics(tmp_path / "store") == {(10, "loss"): 1.0, (3, "eval/acc"): 0.5, (10, "eval/special"): 2.0,
                                            (10, "late"): 4.0}


# ------------------------------------------------------------------ values
def test_histograms_sequences_and_tables(wandb, tmp_path):
    wandb.init(name="values")
    wandb.log({"h": wandb.Histogram([1, 2, 3, 4]), "seq": [1.0, float("nan"), 3.0],
               "arr": np.array([[0.0, 2.0], [4.0, 6.0]])}, step=1)
    wandb.log({"b": wandb.Histogram(np_histogram=([1, 0, 3], [0.0, 1.0, 2.0, 3.0]))}, step=2)
    table = wandb.Table(columns=["prompt", "completion", "reward", "judge"], data=[["p", "c", 0.5, "ok"]])
    wandb.log({"samples": table}, step=3)
    wandb.finish()
    got = _metrics(tmp_path / "store")
    assert {n: v for (s, n), v in got.items() if n.startswith("h/")} == {
        "h/min": 1.0, "h/max": 4.0, "h/mean": 2.5, "h/std": pytest.approx(math.sqrt(1.25)), "h/count": 4.0}
    assert {n: v for (s, n), v in got.items() if n.startswith("seq/")} == {
        "seq/min": 1.0, "seq/max": 3.0, "seq/mean": 2.0, "seq/std": 1.0, "seq/count": 3.0, "seq/nonfinite": 1.0}
    assert got[(1, "arr/mean")] == 3.0 and got[(1, "arr/count")] == 4.0
    assert got[(2, "b/mean")] == 2.0 and got[(2, "b/count")] == 4.0
    assert [(s, t, v, a) for s, _, v, t, a in _events(tmp_path / "store", "sample")] == [
        (3, "c", 0.5, {"prompt": "p", "index": 0, "judge": "ok", "source": "samples"})]


def test_bad_values_never_raise(wandb, tmp_path):
    wandb.init(name="bad")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wandb.log({"s": "text", "none": None, "img": wandb.Image(np.zeros((2, 2)))}, step=1)
        wandb.log({"samples": wandb.Table(columns=["a", "b"], data=[[1, 2]])}, step=1)
        wandb.log("not a dict")
        wandb.log({"x": 1.0}, step="seven")
        wandb.watch(object())
        wandb.watch(object())
        wandb.finish()
        wandb.init(name="bad2")
        wandb.run.finish()
        wandb.run.log({"late": 1.0})
    messages = [str(w.message) for w in caught if issubclass(w.category, RldkWarning)]
    assert "rldk.compat.wandb: wandb.Image values are counted, not stored, by rldk" in messages
    assert ("rldk.compat.wandb: wandb.Table 'samples' has no completion column (columns: a, b); not stored "
            "as samples. Name the column completion, response or output") in messages
    assert "rldk.compat.wandb: wandb.log takes a dict, got str; not recorded" in messages
    assert sum("wandb.watch does nothing" in m for m in messages) == 1
    assert "rldk.compat.wandb: run 'bad2' is finished; wandb.log after finish() is not recorded" in messages
    metrics = _events(tmp_path / "store", "metric")
    assert [(s, n, v, t) for s, n, v, t, _ in metrics] == [(1, "s", None, "text"), (1, "none", None, None),
                                                           (1, "x", 1.0, None)]
    not_stored = [a for _, n, _, _, a in _events(tmp_path / "store", "writer") if n == "wandb/not_stored"]
    assert not_stored == [{"by_type": {"Image": 1, "Table": 1}}]


# ------------------------------------------------------------------ config, summary, runs
def test_config_and_summary(wandb, tmp_path):
    run = wandb.init(project="p", name="cfg", config=argparse.Namespace(lr=0.1, seed=3))
    assert wandb.run is run and wandb.config.lr == 0.1 and wandb.config["seed"] == 3
    wandb.config.update({"batch": 8}, allow_val_change=True)
    wandb.config.extra = "x"
    wandb.log({"loss": 2.0}, step=4)
    assert wandb.summary["loss"] == 2.0
    wandb.summary["best"] = 0.9
    wandb.run.summary.update({"train_runtime": 12.5})
    wandb.finish()
    assert wandb.run is None
    store = open_store(tmp_path / "store")
    assert store.run("cfg").meta["config"] == {"lr": 0.1, "seed": 3} and store.run("cfg").meta["seed"] == 3
    runs = [(n, a) for _, n, _, _, a in _events(tmp_path / "store", "run") if n in ("config", "wandb")]
    assert runs == [("wandb", {"name": "cfg", "project": "p", "group": None, "tags": [], "notes": None,
                               "job_type": None, "entity": None}),
                    ("config", {"batch": 8}), ("config", {"extra": "x"})]
    summary = [(s, n, v, a) for s, n, v, _, a in _events(tmp_path / "store", "metric") if s is None]
    assert summary == [(None, "best", 0.9, {"summary": True, "global_step": 4}),
                       (None, "train_runtime", 12.5, {"summary": True, "global_step": 4})]


def test_run_ids_reinit_and_log_before_init(wandb, tmp_path, monkeypatch):
    first = wandb.init(name="exp 1/a")
    assert first.id == "exp-1-a"
    assert wandb.init(name="other") is first                    # wandb returns the active run
    second = wandb.init(id="proj--exp", reinit=True)
    assert second.id == "proj--exp" and second is not first
    wandb.finish()
    monkeypatch.setenv("RLDK_RUN_ID", "forced")
    assert wandb.init(name="ignored").id == "forced"
    wandb.finish()
    monkeypatch.delenv("RLDK_RUN_ID")
    with pytest.warns(RldkWarning, match=r"wandb.init\(\) was not called: writing run '.+' to .*store"):
        wandb.log({"a": 1.0})
    assert wandb.run is not None
    wandb.finish()
    assert open_store(tmp_path / "store").run("exp-1-a").status == "complete"


def test_install_and_uninstall(wandb):
    before = sys.modules.get("wandb")
    wandb.install()
    import wandb as imported
    from wandb.sdk.lib.config_util import ConfigError

    assert imported is stand_in and importlib.util.find_spec("wandb") is not None
    assert issubclass(ConfigError, stand_in.Error)
    wandb.uninstall()
    assert sys.modules.get("wandb") is before
    if before is None:
        assert "wandb.sdk.lib.config_util" not in sys.modules


# ------------------------------------------------------------------ transformers / TRL
def test_tiny_trl_grpo_run_with_report_to_wandb(wandb, tmp_path):
    """TRL's GRPOTrainer with report_to=["wandb"] after install(): transformers' WandbCallback
    and GRPO's completion table log through the stand-in into the rldk store."""
    wandb.install()
    grpo = importlib.import_module("trl.trainer.grpo_trainer")
    # a process that installs before importing trl gets the stand-in there too; this test
    # process may have imported trl already (other tests), so point it at the stand-in
    previous = getattr(grpo, "wandb", None)
    grpo.wandb = stand_in
    try:
        from reference.tiny_trl import run_grpo

        out = run_grpo(tmp_path / "out", seed=0, steps=3, report_to=["wandb"], run_name="tiny-wandb",
                       log_completions=True, beta=0.0)
        wandb.finish()
    finally:
        if previous is None:
            del grpo.wandb
        else:
            grpo.wandb = previous
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    store = open_store(tmp_path / "store")
    run = store.run("tiny-wandb")
    assert run.status == "complete" and run.meta["config"] == {}
    got = _metrics(tmp_path / "store")
    expected = {(r["step"], f"train/{k}"): float(v) for r in history if "train_runtime" not in r
                for k, v in r.items() if k != "step" and v is not None}
    timings = {k: v for k, v in got.items() if k[1].startswith("profiling/Time taken: ")}   # TRL logs these itself
    assert {k: v for k, v in got.items() if k not in timings} == pytest.approx(expected, nan_ok=True)
    assert {s for s, _ in timings} == {0, 1, 2} and "profiling/Time taken: GRPOTrainer.compute_loss" in \
        {n for _, n in timings}
    assert run.metric("reward")["step"].to_list() == [1, 2, 3]
    config = {k: v for _, n, _, _, a in _events(tmp_path / "store", "run") if n == "config" for k, v in a.items()}
    assert config["learning_rate"] == 1e-4 and config["model/num_parameters"] > 0
    summary = {n: a for s, n, _, _, a in _events(tmp_path / "store", "metric") if s is None}
    assert set(summary) == {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss",
                            "total_flos"}
    assert summary["train_loss"] == {"summary": True, "global_step": 3}
    samples = _events(tmp_path / "store", "sample")
    dumps = [r for f in sorted((tmp_path / "out" / "completions").glob("*.parquet"))
             for r in pq.read_table(f).to_pylist()]
    assert [(s, t, v) for s, _, v, t, _ in samples] == [(r["step"], r["completion"], r["good_word_reward"])
                                                       for r in dumps]
    assert out == str(tmp_path / "out")
