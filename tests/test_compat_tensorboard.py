"""rldk.compat.tensorboard.SummaryWriter: TensorBoard's writer API into the rldk store."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

from rldk.compat.tensorboard import SummaryWriter
from rldk.core.store import open_store
from rldk.writer import RldkWarning


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RLDK_DIR", raising=False)
    monkeypatch.delenv("RLDK_RUN_ID", raising=False)


def _rows(store_dir, kind="metric"):
    rows = open_store(store_dir).sql("SELECT step, name, value, text, attrs, epoch(wall_time) AS wall FROM events "
                                     "WHERE kind = $k ORDER BY seq", {"k": kind})
    return [(s, n, v, t, json.loads(a) if a else None, w) for s, n, v, t, a, w in rows.iter_rows()]


def test_log_dir_is_a_run_in_a_store_of_runs(tmp_path):
    """OpenRLHF's and verl's TensorBoard use: SummaryWriter(<root>/<run name>), add_scalar per key
    and step, close."""
    logs = {1: {"train/policy_loss": 0.5, "train/kl": 0.01}, 2: {"train/policy_loss": 0.4, "train/kl": 0.02}}
    writer = SummaryWriter(log_dir=str(tmp_path / "tensorboard_log" / "proj" / "exp:1"))
    for step, values in logs.items():
        for key, value in values.items():
            writer.add_scalar(key, value, step)
    writer.close()
    store = open_store(tmp_path / "tensorboard_log" / "proj")
    assert store.run_ids == ["exp-1"] and store.run("exp-1").status == "complete"
    assert [(s, n, v) for s, n, v, *_ in _rows(tmp_path / "tensorboard_log" / "proj")] == [
        (1, "train/policy_loss", 0.5), (1, "train/kl", 0.01), (2, "train/policy_loss", 0.4), (2, "train/kl", 0.02)]
    assert store.run("exp-1").metric("kl_to_ref").rows() == [(1, 0.01), (2, 0.02)]


def test_default_log_dir_and_overrides(tmp_path, monkeypatch):
    with SummaryWriter(comment="-lr0.1") as writer:
        writer.add_scalar("a", 1.0, 0)
    (run_id,) = open_store(tmp_path / "runs").run_ids
    assert run_id.endswith("-lr0.1") and writer.get_logdir() == f"runs/{run_id}"
    monkeypatch.setenv("RLDK_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("RLDK_RUN_ID", "forced")
    with SummaryWriter("tb/x") as writer:
        writer.add_scalar("a", 1.0, 0)
    assert open_store(tmp_path / "elsewhere").run_ids == ["forced"]


def test_scalars_text_and_steps(tmp_path):
    with SummaryWriter("tb/run") as writer:
        writer.add_scalar("loss", torch.tensor(0.25), global_step=3)
        writer.add_scalar("lr", np.float32(0.5))                          # no step: the last one, 3
        writer.add_scalars("reward", {"mean": 1.0, "max": 2}, 4)
        writer.add_text("sample", "the cat is happy", 4)
        writer.add_scalar("t", 7.0, 5, walltime=1000.5)
    rows = [(s, n, v, t) for s, n, v, t, _, _ in _rows(tmp_path / "tb")]
    assert rows == [(3, "loss", 0.25, None), (3, "lr", 0.5, None), (4, "reward/mean", 1.0, None),
                    (4, "reward/max", 2.0, None), (4, "sample", None, "the cat is happy"), (5, "t", 7.0, None)]
    assert _rows(tmp_path / "tb")[-1][5] == 1000.5


def test_histograms_are_summary_statistics(tmp_path):
    with SummaryWriter("tb/run") as writer:
        writer.add_histogram("w", torch.tensor([[1.0, 2.0], [3.0, 4.0]]), 1)
        writer.add_histogram("g", np.array([1.0, np.nan, 3.0, np.inf]), 2)
        writer.add_histogram_raw("h", min=0.0, max=4.0, num=4, sum=10.0, sum_squares=30.0,
                                 bucket_limits=[1, 2, 3, 4], bucket_counts=[1, 1, 1, 1], global_step=3)
    got = {(s, n): v for s, n, v, *_ in _rows(tmp_path / "tb")}
    assert got == {(1, "w/count"): 4.0, (1, "w/min"): 1.0, (1, "w/max"): 4.0, (1, "w/mean"): 2.5,
                   (1, "w/std"): pytest.approx(math.sqrt(1.25)),
                   (2, "g/count"): 4.0, (2, "g/min"): 1.0, (2, "g/max"): 3.0, (2, "g/mean"): 2.0, (2, "g/std"): 1.0,
                   (2, "g/nonfinite"): 2.0,
                   (3, "h/min"): 0.0, (3, "h/max"): 4.0, (3, "h/count"): 4.0, (3, "h/mean"): 2.5,
                   (3, "h/std"): pytest.approx(math.sqrt(1.25))}


def test_hparams_and_unsupported_methods(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with SummaryWriter("tb/run") as writer:
            writer.add_hparams({"lr": 0.1, "bs": 8}, {"hparam/reward": 0.9}, global_step=2)
            writer.add_image("img", np.zeros((3, 4, 4)), 1)
            writer.add_image("img", np.zeros((3, 4, 4)), 2)
            writer.add_graph(object())
            writer.add_histogram("bad", ["a", "b"], 1)
            writer.add_scalar("s", "not a number", 1)
            writer.flush()
    messages = [str(w.message) for w in caught if issubclass(w.category, RldkWarning)]
    assert messages.count("rldk.compat.tensorboard: SummaryWriter.add_image is counted, not stored, by rldk") == 1
    assert "rldk.compat.tensorboard: add_histogram('bad'): values are not numbers; not stored" in messages
    hparams = [a for _, n, _, _, a, _ in _rows(tmp_path / "tb", "run") if n == "hparams"]
    assert hparams == [{"hparams": {"lr": 0.1, "bs": 8}, "run_name": None}]
    assert [(s, n, v, t) for s, n, v, t, *_ in _rows(tmp_path / "tb")] == [
        (2, "hparam/reward", 0.9, None), (1, "s", None, "not a number")]
    not_stored = [a for _, n, _, _, a, _ in _rows(tmp_path / "tb", "writer") if n == "tensorboard/not_stored"]
    assert not_stored == [{"by_method": {"add_image": 2, "add_graph": 1}}]
    with pytest.raises(AttributeError, match="SummaryWriter has no attribute 'nothing'"):
        writer.nothing


def test_closed_twice_and_exception_in_the_block(tmp_path):
    with pytest.raises(RuntimeError):
        with SummaryWriter("tb/run") as writer:
            writer.add_scalar("a", 1.0, 0)
            raise RuntimeError("training failed")
    writer.close()                                              # closing again does nothing
    assert open_store(tmp_path / "tb").run("run").status == "failed"
