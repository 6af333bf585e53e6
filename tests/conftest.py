"""Shared fixtures. Keep this file small: only what several test modules need.

``tiny_grpo``: one real TRL GRPOTrainer run of the tiny GPT-2 (reference/tiny_trl.py),
8 steps on the CPU with rldk's callback (RNG digests, tensor checksums and memory
every step), a checkpoint at steps 4 and 8, TensorBoard events and GRPO
completion dumps. Built once per test session (about 5 s).

``wait_for_wandb_exit``: waits until a wandb offline file is completely written.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest


@pytest.fixture(scope="session")
def tiny_grpo(tmp_path_factory):
    from reference.tiny_trl import run_grpo

    root = tmp_path_factory.mktemp("tiny_grpo")
    out = root / "out"
    store = root / "store"
    run_grpo(out, seed=0, steps=8, rldk_dir=store, run_id="grpo",
             rldk_callback_kwargs={"rng_every": 1, "tensors_every": 1, "memory_every": 1},
             save_steps=4, tensorboard=True, log_completions=True)
    return SimpleNamespace(out=out, store=store, run_id="grpo", steps=8)


@pytest.fixture(scope="session")
def wait_for_wandb_exit():
    """A function waiting until a .wandb file has its exit record: wandb's service may
    still be writing after ``run.finish()`` returns."""
    import time

    def wait(file, timeout=60.0):
        from wandb.proto import wandb_internal_pb2 as pb

        from rldk.converters.wandb_offline import records

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, data in records(file.read_bytes(), file, []):
                record = pb.Record()
                record.ParseFromString(data)
                if record.WhichOneof("record_type") == "exit":
                    return
            time.sleep(0.2)
        raise AssertionError(f"{file}: wandb never wrote its exit record")

    return wait
