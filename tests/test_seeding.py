"""rldk.seed_everything: what it seeds, the flags it sets, and the record it leaves in the run."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

import rldk
from rldk import seeding
from rldk.core.store import open_store
from rldk.writer import EventWriter


@pytest.fixture(autouse=True)
def restore_state(monkeypatch):
    """seed_everything changes process-wide state: put it back after each test."""
    for var in ("PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    flags = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    saved = dict(seeding._RECORD)
    yield
    torch.use_deterministic_algorithms(flags[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[1], flags[2]
    seeding._RECORD.clear()
    seeding._RECORD.update(saved)


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_same_seed_same_draws_and_record():
    record = rldk.seed_everything(123)
    first = _draws()
    rldk.seed_everything(123)
    assert _draws() == first
    rldk.seed_everything(124)
    assert _draws() != first
    assert record["seed"] == 123 and record["seeded"][:3] == ["python", "numpy", "torch"]
    assert record["deterministic_requested"] is False and "deterministic_flags" not in record
    assert record["pythonhashseed"] == {"before": None, "set_for_children": "123",
                                        "this_process_randomized": True}
    assert record["dataloader"] is None


def test_deterministic_flags():
    record = rldk.seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic is True and torch.backends.cudnn.benchmark is False
    assert record["deterministic_flags"] == {"CUBLAS_WORKSPACE_CONFIG": ":4096:8",
                                             "use_deterministic_algorithms": True,
                                             "cudnn.deterministic": True, "cudnn.benchmark": False}
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


@pytest.mark.parametrize("seed, message", [
    (-1, "seed must be in [0, 2**32), got -1 (numpy's limit)"),
    (2**32, "seed must be in [0, 2**32), got 4294967296 (numpy's limit)"),
    (1.5, "seed must be an integer, not float"),
    ("1", "seed must be an integer, not str"),
    (True, "seed must be an integer, not bool"),
])
def test_bad_seeds(seed, message):
    with pytest.raises(ValueError) as err:
        rldk.seed_everything(seed)
    assert str(err.value) == message


def test_record_reaches_the_run(tmp_path):
    rldk.seed_everything(7)                                   # before the writer: start event
    with EventWriter(tmp_path, "run", capture_env=True) as w:
        kwargs = seeding.dataloader_kwargs(7)                 # after: a run event
        rldk.seed_everything(8, deterministic=True, writer=w)
    events = open_store(tmp_path).sql(
        "SELECT name, attrs FROM run_events WHERE name <> 'end' ORDER BY seq")
    by_name = {n: json.loads(a) for n, a in events.iter_rows()}
    assert by_name["start"]["seeding"]["seed"] == 7
    assert by_name["seed_dataloader"]["dataloader"] == {"generator_seed": 7,
                                                        "worker_init_fn": "rldk.seeding.seed_worker"}
    assert by_name["seed"]["seed"] == 8 and by_name["seed"]["torch"]["deterministic_algorithms"] is True
    assert by_name["seed"]["dataloader"]["generator_seed"] == 7    # the record keeps the loader seeding
    assert kwargs["worker_init_fn"] is seeding.seed_worker


def test_dataloader_kwargs_give_a_reproducible_order():
    data = torch.arange(20)

    def order():
        loader = torch.utils.data.DataLoader(data, batch_size=5, shuffle=True,
                                             **seeding.dataloader_kwargs(3))
        return [b.tolist() for b in loader]

    assert order() == order()
    assert sorted(sum(order(), [])) == list(range(20))
