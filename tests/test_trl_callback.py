"""RldkCallback on real TRL GRPO runs (reference/tiny_trl.py), and the runner's determinism."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import polars as pl
import pyarrow.parquet as pq
import pytest

from rldk.core.store import open_store

TIMING = ("step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second")
SUMMARY = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos",
           "epoch"}


def _events(store, kind):
    return store.sql("SELECT step, name, value, ivalue, digest, text, attrs FROM events "
                     "WHERE kind = $k ORDER BY step, name, seq", {"k": kind})


def test_metrics_equal_the_trainer_log_history(tiny_grpo):
    history = json.loads((tiny_grpo.out / "trainer_state.json").read_text())["log_history"]
    train_rows = [r for r in history if "train_runtime" not in r]
    assert [r["step"] for r in train_rows] == list(range(1, 9))
    expected = {(r["step"], k): float(v) for r in train_rows for k, v in r.items()
                if k != "step" and v is not None}
    stored = _events(open_store(tiny_grpo.store), "metric").filter(pl.col("step").is_not_null())
    got = {(s, n): v for s, n, v in stored.select("step", "name", "value").iter_rows()}
    assert stored.height == len(expected)          # one row per (step, name): nothing logged twice
    assert got == expected
    assert {"loss", "kl", "reward", "grad_norm", "learning_rate", "entropy"} <= {n for _, n in got}


def test_summary_row_is_stored_without_a_step(tiny_grpo):
    stored = _events(open_store(tiny_grpo.store), "metric").filter(pl.col("step").is_null())
    assert set(stored["name"]) == SUMMARY
    assert {json.dumps(json.loads(a), sort_keys=True) for a in stored["attrs"]} == \
        {'{"global_step": 8, "summary": true}'}
    history = json.loads((tiny_grpo.out / "trainer_state.json").read_text())["log_history"]
    train_loss = stored.filter(pl.col("name") == "train_loss")["value"][0]
    assert train_loss == history[-1]["train_loss"]


def test_run_metadata_and_status(tiny_grpo):
    store = open_store(tiny_grpo.store)
    run = store.run("grpo")
    assert run.status == "complete"
    assert run.meta["seed"] == 0
    assert run.meta["config"]["learning_rate"] == 1e-4 and run.meta["config"]["max_steps"] == 8
    trl = json.loads(_events(store, "run").filter(pl.col("name") == "trl")["attrs"][0])
    assert trl["max_steps"] == 8 and trl["start_step"] == 0
    assert trl["model_class"] == "GPT2LMHeadModel" and trl["model_config"]["n_layer"] == 2


def test_rng_tensor_memory_and_checkpoint_events(tiny_grpo):
    store = open_store(tiny_grpo.store)
    rng = _events(store, "rng")
    assert sorted(set(rng["step"])) == list(range(0, 9))
    assert {"python", "numpy", "torch"} <= set(rng["name"])
    tensors = _events(store, "tensor")
    params = tensors.filter(pl.col("name").str.starts_with("param/"))
    grads = tensors.filter(pl.col("name").str.starts_with("grad/"))
    n_params = params.filter(pl.col("step") == 0).height
    assert n_params > 10
    assert params.group_by("step").len().sort("step").rows() == [(s, n_params) for s in range(0, 9)]
    assert sorted(set(grads["step"])) == list(range(1, 9))
    # every update changes the weights: consecutive parameter checksums differ
    wte = params.filter(pl.col("name") == "param/transformer.wte.weight")["digest"].to_list()
    assert len(set(wte)) == 9
    assert sorted(set(_events(store, "memory")["step"])) == list(range(1, 9))
    ckpt = _events(store, "checkpoint")
    assert ckpt["step"].to_list() == [4, 8]
    assert ckpt["text"].to_list() == [str(tiny_grpo.out / "checkpoint-4"), str(tiny_grpo.out / "checkpoint-8")]
    files = json.loads(ckpt["attrs"][0])["files"]
    assert files["model.safetensors"] == (tiny_grpo.out / "checkpoint-4" / "model.safetensors").stat().st_size


def test_grpo_completions_become_samples(tiny_grpo):
    samples = _events(open_store(tiny_grpo.store), "sample")
    assert samples.group_by("step").len().sort("step").rows() == [(s, 4) for s in range(1, 9)]
    dump = pq.read_table(tiny_grpo.out / "completions" / "completions_00003.parquet").to_pylist()
    at3 = samples.filter(pl.col("step") == 3).sort(pl.col("attrs").str.json_path_match("$.index"))
    assert at3["text"].to_list() == [r["completion"] for r in dump]
    assert at3["value"].to_list() == [r["good_word_reward"] for r in dump]
    attrs = json.loads(at3["attrs"][0])
    assert attrs["prompt"] == dump[0]["prompt"] and attrs["advantage"] == dump[0]["advantage"]


# ----------------------------------------------------------- callback unit cases
class _Args(SimpleNamespace):
    seed = 3

    def to_dict(self):
        return {"seed": 3, "learning_rate": 0.5}


def _state(step, main=True):
    return SimpleNamespace(global_step=step, is_world_process_zero=main, max_steps=10, num_train_epochs=1,
                           train_batch_size=2, logging_steps=1)


def _callback(tmp_path, **kwargs):
    from rldk.integrations.trl import RldkCallback

    return RldkCallback(tmp_path / "store", "unit", writer_options={"capture_env": False}, **kwargs)


def test_repeated_values_at_a_step_are_logged_once(tmp_path):
    cb, args = _callback(tmp_path), _Args(output_dir=str(tmp_path))
    cb.on_train_begin(args, _state(0), None)
    cb.on_log(args, _state(2), None, logs={"loss": 1.5, "epoch": 0.2})
    cb.on_log(args, _state(2), None, logs={"eval_loss": 2.5, "epoch": 0.2})      # eval repeats epoch
    cb.on_log(args, _state(2), None, logs={"reward": None, "kl": math.nan})
    cb.on_log(args, _state(2), None, logs={"kl": math.nan})
    cb.on_train_end(args, _state(2), None)
    store = open_store(tmp_path / "store")
    rows = _events(store, "metric").select("step", "name").rows()
    assert sorted(rows) == [(2, "epoch"), (2, "eval_loss"), (2, "kl"), (2, "loss")]
    none = _events(store, "writer").filter(pl.col("name") == "trl/none_values")
    assert none["ivalue"].to_list() == [1] and json.loads(none["attrs"][0]) == {"by_name": {"reward": 1}}
    assert store.run("unit").meta["config"] == {"seed": 3, "learning_rate": 0.5}


def test_only_the_main_process_writes(tmp_path):
    cb, args = _callback(tmp_path), _Args(output_dir=str(tmp_path))
    cb.on_train_begin(args, _state(0, main=False), None)
    cb.on_log(args, _state(1, main=False), None, logs={"loss": 1.0})
    cb.on_train_end(args, _state(1, main=False), None)
    assert cb.writer is None and not (tmp_path / "store").exists()


def test_env_vars_redirect_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("RLDK_DIR", str(tmp_path / "harness"))
    monkeypatch.setenv("RLDK_RUN_ID", "replica-1")
    cb, args = _callback(tmp_path), _Args(output_dir=str(tmp_path))
    cb.on_train_begin(args, _state(0), None)
    cb.on_log(args, _state(1), None, logs={"loss": 1.0})
    cb.on_train_end(args, _state(1), None)
    assert open_store(tmp_path / "harness").run_ids == ["replica-1"]
    assert not (tmp_path / "store").exists()


# ----------------------------------------------------------- the runner itself
@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """Two clean runs with the same seed and one with the LR multiplied by 10 from step 4."""
    from reference.tiny_trl import run_grpo

    root = tmp_path_factory.mktemp("three")
    for name, extra in (("a", {}), ("b", {}), ("bug", {"lr_change_at": 4})):
        run_grpo(root / name, seed=1, steps=6, rldk_dir=root / "store", run_id=name,
                 rldk_callback_kwargs={"tensors_every": 1, "rng_every": 1}, **extra)
    return open_store(root / "store")


def _trace(store, run_id):
    return store.sql("SELECT kind, step, name, value, digest FROM events WHERE run_id = $r "
                     "AND kind IN ('metric', 'tensor', 'rng') AND step IS NOT NULL "
                     "AND name NOT IN ('step_time') ORDER BY kind, step, name", {"r": run_id})


def test_same_seed_runs_are_bitwise_identical(three_runs):
    a, b = _trace(three_runs, "a"), _trace(three_runs, "b")
    assert a.height > 300
    assert a.equals(b)


def test_lr_change_changes_weights_at_k_and_metrics_from_k_plus_1(three_runs):
    a, bug = _trace(three_runs, "a"), _trace(three_runs, "bug")
    joined = a.join(bug, on=["kind", "step", "name"], suffix="_bug")
    differs = joined.filter((pl.col("value") != pl.col("value_bug"))
                            | (pl.col("digest").fill_null("") != pl.col("digest_bug").fill_null("")))
    first = dict(differs.group_by("kind").agg(pl.col("step").min()).rows())
    assert first["tensor"] == 4                     # parameters after update 4 differ
    assert first["metric"] == 5                     # metrics computed from them: step 5
    assert "rng" not in first                       # the bug does not touch the RNG streams
    lr = joined.filter(pl.col("name") == "learning_rate")
    assert (lr["value"] == lr["value_bug"]).all()   # the change is silent in the logged LR
