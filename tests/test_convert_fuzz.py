"""Fuzz: mutated inputs to every converter raise nothing but ConvertError.

Each format starts from a small valid file; hypothesis truncates it, flips bytes,
inserts and deletes byte runs; the converter must then either import what is
valid (and its event tables must be writable) or raise ConvertError.
"""
from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rldk.converters import ConvertError, convert_path


def _tensorboard_bytes(tags=("train/loss", "train/kl")) -> bytes:
    from torch.utils.tensorboard import SummaryWriter

    with tempfile.TemporaryDirectory() as d:
        w = SummaryWriter(d)
        for step in range(4):
            for tag in tags:
                w.add_scalar(tag, step * 0.25, step)
        w.add_scalar("new", 1.5, 2, new_style=True)
        w.add_text("note", "hi", 1)
        w.close()
        return next(Path(d).glob("*tfevents*")).read_bytes()


def _mlflow_db() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        con = sqlite3.connect(Path(d) / "m.db")
        con.executescript("""
            CREATE TABLE experiments (experiment_id INTEGER, name TEXT);
            CREATE TABLE runs (run_uuid TEXT, name TEXT, experiment_id INTEGER, status TEXT);
            CREATE TABLE metrics (key TEXT, value FLOAT, timestamp BIGINT, run_uuid TEXT, step BIGINT, is_nan BOOLEAN);
            CREATE TABLE params (key TEXT, value TEXT, run_uuid TEXT);
            CREATE TABLE tags (key TEXT, value TEXT, run_uuid TEXT);
            INSERT INTO runs VALUES ('r1', 'x', 0, 'FINISHED');
            INSERT INTO metrics VALUES ('loss', 0.5, 1700000000000, 'r1', 1, 0), ('loss', 0.4, 1700000000001, 'r1', 2, 0);
        """)
        con.commit()
        con.close()
        return (Path(d) / "m.db").read_bytes()


STATE = json.dumps({"global_step": 3, "log_history": [
    {"loss": 1.0, "grad_norm": float("nan"), "step": 1}, {"loss": 0.5, "eval_loss": 0.7, "step": 2},
    {"train_runtime": 1.5, "train_loss": 0.75, "step": 3}]}).encode()

#: format -> (file name inside the case directory, valid content)
SEEDS = {
    "trl": ("trainer_state.json", STATE),
    "tensorboard": ("events.out.tfevents.1.host", None),
    "openrlhf": ("events.out.tfevents.1.host", None),
    "verl": ("verl.jsonl", b'{"step": 1, "data": {"actor/pg_loss": 0.1, "x": null}}\n'
                          b'{"step": 2, "data": {"actor/pg_loss": 0.2}}\n'),
    "verl-console": ("train.log", b"(TaskRunner pid=1) \x1b[36mstep:1 - a/b:np.float64(0.5) - c:nan\x1b[0m\n"
                                  b"step:2 - a/b:0.25 - c:1\n"),
    "sb3": ("progress.csv", b"rollout/ep_rew_mean,time/total_timesteps,train/loss\n1.5,100,\n2.5,200,0.3\n"),
    "sb3-monitor": ("0.monitor.csv", b'#{"t_start": 1.0, "env_id": "x"}\nr,l,t\n1.0,5,0.1\n2.0,6,0.2\n'),
    "mlflow": ("m.db", None),
    "wandb": ("run-x.wandb", None),
    "jsonl": ("log.jsonl", b'{"step": 1, "reward": 0.5, "response": "hi"}\n{"step": 2, "reward": "nan"}\n'),
    "csv": ("log.csv", b"step,loss,kl\n1,0.5,0.1\n2,0.4,\n"),
}
FORMAT_OF = {"verl-console": "verl", "sb3-monitor": "sb3"}


def _wandb_bytes(wait) -> bytes | None:
    try:
        import wandb
    except ImportError:
        return None
    import os

    with tempfile.TemporaryDirectory() as d:
        os.environ.setdefault("WANDB_SILENT", "true")
        run = wandb.init(project="p", mode="offline", dir=d, config={"lr": 0.1})
        for step in range(3):
            run.log({"train/kl": 0.1 * step}, step=step)
        run.finish()
        file = next(Path(d).glob("wandb/offline-run-*/*.wandb"))
        wait(file)
        return file.read_bytes()


@pytest.fixture(scope="module")
def seeds(wait_for_wandb_exit):
    tb = _tensorboard_bytes()
    out = dict(SEEDS)
    out["wandb"] = ("run-x.wandb", _wandb_bytes(wait_for_wandb_exit))          # None without the wandb package
    out["tensorboard"] = (SEEDS["tensorboard"][0], tb)
    out["openrlhf"] = (SEEDS["openrlhf"][0], _tensorboard_bytes(("train/policy_loss", "train/kl")))
    out["mlflow"] = (SEEDS["mlflow"][0], _mlflow_db())
    return out


def _mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for kind, where, blob in ops:
        pos = where % (len(buf) + 1)
        if kind == "truncate":
            del buf[pos:]
        elif kind == "flip" and buf:
            buf[pos % len(buf)] ^= (blob[0] if blob else 0xFF) or 0x01
        elif kind == "insert":
            buf[pos:pos] = blob
        elif kind == "delete":
            del buf[pos:pos + max(1, len(blob))]
    return bytes(buf)


#: byte runs that broke converters before (issue #15): integers beyond int64, deep nesting
NASTY = [b"99999999999999999999999", b"-9223372036854775809", b"1e400", b"[" * 5000, b'{"a":' * 5000,
         b"\x00", b'"step": 18446744073709551616,', b"\xff\xfe", b"NaN", b"\r\n\r"]
MUTATIONS = st.lists(st.one_of(
    st.tuples(st.sampled_from(["truncate", "flip", "insert", "delete"]), st.integers(0, 1 << 16),
              st.binary(max_size=12)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.sampled_from(NASTY))), min_size=1, max_size=3)
#: examples per format: 40 in the test suite (11 formats, ~440 inputs, well under 60 s);
#: benchmarks/faults.py sets RLDK_FUZZ_EXAMPLES=200 for over 2,000
EXAMPLES = int(os.environ.get("RLDK_FUZZ_EXAMPLES", "40"))


@pytest.mark.parametrize("case", sorted(SEEDS))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=MUTATIONS)
def test_mutated_input_raises_only_convert_error(seeds, case, ops):
    name, data = seeds[case]
    if data is None:
        pytest.skip("wandb not installed")
    fmt = FORMAT_OF.get(case, case)
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "src"
        src.mkdir()
        (src / name).write_bytes(_mutate(data, ops))
        try:
            summary = convert_path(src, fmt, Path(d) / "store")
        except ConvertError as exc:
            assert "\n" not in str(exc)               # one line
            return
        assert summary.format == fmt
        assert all(s.file and s.where and s.reason for s in summary.skipped)


@pytest.mark.parametrize("case", sorted(SEEDS))
def test_unmutated_seed_converts_cleanly(seeds, case, tmp_path):
    name, data = seeds[case]
    if data is None:
        pytest.skip("wandb not installed")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / name).write_bytes(data)
    summary = convert_path(tmp_path / "src", "auto", tmp_path / "store")
    assert summary.format == FORMAT_OF.get(case, case)
    assert summary.skipped == () and summary.rows > 0
