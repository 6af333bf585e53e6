"""Every converter records how the run ended and how long it trained, from the logs' own
words and clock (``rldk.core.run_facts``), never from the import's clock."""
from __future__ import annotations

import json
import sqlite3
import struct
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from rldk.cli import main
from rldk.converters import ingest

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "real"
if not REAL.is_dir():                               # a checkout beside shared/ (CI) or under /work
    REAL = Path("/work/shared/fixtures/real")
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="shared/fixtures/real not present")


def facts(path, fmt, tmp_path) -> list[tuple]:
    """(run id, status, evidence, wall seconds) of each run imported from ``path``."""
    store = ingest(path, fmt, store_dir=tmp_path / "store")
    rows = store.summary().select("run_id", "status", "status_evidence", "wall_seconds").rows()
    for run_id, status, *_ in rows:
        assert store.run(run_id).status == status
    return rows


# ------------------------------------------------------------------ TRL
@needs_real
@pytest.mark.parametrize("name, status, evidence, seconds", [
    ("trl_dpo_nan_gradnorm", "incomplete", "global_step 75 of max_steps 100", None),
    ("trl_grpo_zero_std", "incomplete", "global_step 100 of max_steps 200", None),
    ("trl_grpo_truncation", "complete", "global_step 200 of max_steps 200", None),
    ("trl_orpo_old_format", "complete", "global_step 336 of max_steps 336", 789.838),
])
def test_trl_fixtures(name, status, evidence, seconds, tmp_path):
    assert facts(REAL / name, "trl", tmp_path) == [(name, status, f"trainer_state.json: {evidence}", seconds)]


def _state(tmp_path, **state):
    folder = tmp_path / "out"
    folder.mkdir()
    history = [{"loss": 1.0, "step": 1}, {"loss": 0.5, "step": 2}]
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": history, "global_step": 2, **state}))
    return folder


@pytest.mark.parametrize("state, status, evidence", [
    ({"stateful_callbacks": {"TrainerControl": {"args": {"should_training_stop": True}}}},
     "complete", "should_training_stop true (no max_steps)"),
    ({"max_steps": 0, "should_training_stop": True}, "complete", "should_training_stop true (no max_steps)"),
    ({"stateful_callbacks": {"TrainerControl": {"args": {"should_training_stop": False}}}},
     "unknown", "no max_steps and training not stopped"),
    ({"max_steps": 5}, "incomplete", "global_step 2 of max_steps 5"),
])
def test_trl_without_max_steps(state, status, evidence, tmp_path):
    assert facts(_state(tmp_path, **state), "trl", tmp_path) == [("out", status, f"trainer_state.json: {evidence}", None)]


# ------------------------------------------------------------------ MLflow
@needs_real
def test_mlflow_file_store_fixture(tmp_path):
    assert facts(REAL / "mlflow_file_store", "mlflow", tmp_path) == [
        ("0-0d8653353e3e43beb89442a8bca1a94d", "complete", "MLflow status FINISHED", 1.615)]


@pytest.mark.parametrize("status, end, expected, seconds", [
    ("FINISHED", 1700000090500, "complete", 90.5),
    ("RUNNING", None, "incomplete", None),
    ("SCHEDULED", None, "incomplete", None),
    ("FAILED", 1700000001000, "failed", 1.0),
    ("KILLED", 1700000002000, "killed", 2.0),
])
def test_mlflow_sqlite_status_and_times(status, end, expected, seconds, tmp_path):
    db = tmp_path / "mlflow.db"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE experiments (experiment_id INTEGER, name TEXT);
        CREATE TABLE runs (run_uuid TEXT, name TEXT, experiment_id INTEGER, status TEXT,
                           start_time BIGINT, end_time BIGINT);
        CREATE TABLE metrics (key TEXT, value FLOAT, timestamp BIGINT, run_uuid TEXT, step BIGINT, is_nan BOOLEAN);
        CREATE TABLE params (key TEXT, value TEXT, run_uuid TEXT);
        CREATE TABLE tags (key TEXT, value TEXT, run_uuid TEXT);
        INSERT INTO experiments VALUES (1, 'ppo');
        INSERT INTO metrics VALUES ('reward', 1.5, 1700000000000, 'abc', 0, 0);
    """)
    con.execute("INSERT INTO runs VALUES ('abc', 'fox', 1, ?, 1700000000000, ?)", (status, end))
    con.commit()
    con.close()
    assert facts(db, "mlflow", tmp_path) == [("1-abc", expected, f"MLflow status {status}", seconds)]


# ------------------------------------------------------------------ W&B offline
def _wandb_file(path: Path, exit_code=None, runtime=None, exit_runtime=0) -> Path:
    """A run-<id>.wandb file as wandb writes it: header, then one full-fragment record each."""
    pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")
    records = []
    for step in range(3):
        r = pb.Record()
        r.history.step.num = step
        item = r.history.item.add()
        item.key, item.value_json = "train/loss", json.dumps(1.0 / (step + 1))
        item = r.history.item.add()
        item.key, item.value_json = "_runtime", json.dumps(1000.0 + step)    # not the summary's
        records.append(r)
    if runtime is not None:
        r = pb.Record()
        item = r.summary.update.add()
        item.key, item.value_json = "_runtime", json.dumps(runtime)
        records.append(r)
    if exit_code is not None:
        r = pb.Record()
        r.exit.exit_code, r.exit.runtime = exit_code, exit_runtime
        records.append(r)
    buf = bytearray(struct.pack("<4sHB", b":W&B", 0xBEE1, 0))
    for r in records:
        data = r.SerializeToString()
        buf += struct.pack("<IHB", zlib.crc32(data, zlib.crc32(bytes([1]))) & 0xFFFFFFFF, len(data), 1) + data
    path.parent.mkdir(parents=True)
    path.write_bytes(bytes(buf))
    return path


@pytest.mark.parametrize("exit_code, runtime, exit_runtime, status, evidence, seconds", [
    (0, 12.5, 13, "complete", "wandb exit record: exit_code 0", 12.5),
    (1, 4.25, 5, "failed", "wandb exit record: exit_code 1", 4.25),
    (0, None, 7, "complete", "wandb exit record: exit_code 0", 7.0),
    (None, 3.5, 0, "unknown", "wandb run file: no exit record (still running, or the process died)", 3.5),
    (None, None, 0, "unknown", "wandb run file: no exit record (still running, or the process died)", None),
])
def test_wandb_exit_record_and_runtime(exit_code, runtime, exit_runtime, status, evidence, seconds, tmp_path):
    _wandb_file(tmp_path / "wandb" / "offline-run-1" / "run-x.wandb", exit_code, runtime, exit_runtime)
    assert facts(tmp_path / "wandb", "wandb", tmp_path) == [("offline-run-1", status, evidence, seconds)]


# ------------------------------------------------------------------ TensorBoard / OpenRLHF
def _event_file(folder: Path, tags, walls=(100.0, 101.5, 130.25)) -> Path:
    writer_mod = pytest.importorskip("tensorboard.summary.writer.event_file_writer")
    from tensorboard.compat.proto import event_pb2, summary_pb2

    folder.mkdir(parents=True)
    writer = writer_mod.EventFileWriter(str(folder))
    for step, wall in enumerate(walls, 1):
        values = [summary_pb2.Summary.Value(tag=t, simple_value=0.1 * step) for t in tags]
        writer.add_event(event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(value=values)))
    writer.close()
    return folder


@pytest.mark.parametrize("fmt, tags, evidence", [
    ("tensorboard", ["loss"], "TensorBoard event files record no planned length"),
    ("openrlhf", ["train/policy_loss", "train/kl"], "TensorBoard event files record no planned length"),
])
def test_tensorboard_span_of_event_times(fmt, tags, evidence, tmp_path):
    _event_file(tmp_path / "logs" / "run1", tags)
    (row,) = facts(tmp_path / "logs", fmt, tmp_path)
    assert row == ("run1", "unknown", evidence, 30.25)


# ------------------------------------------------------------------ verl
CONSOLE = """\
(TaskRunner pid=1) {'trainer': {'total_training_steps': None, 'total_epochs': 1}}
(TaskRunner pid=1) Total training steps: {total}
(TaskRunner pid=1) step:1 - actor/pg_loss:0.5 - timing_s/step:np.float64(10.25)
(TaskRunner pid=1) step:2 - actor/pg_loss:0.4 - timing_s/step:np.float64(11.5)
"""


@pytest.mark.parametrize("total, status, last", [(2, "complete", 2), (10, "incomplete", 2)])
def test_verl_console_against_total_training_steps(total, status, last, tmp_path):
    log = tmp_path / "train.log"
    log.write_text(CONSOLE.replace("{total}", str(total)))
    assert facts(log, "verl", tmp_path) == [
        ("train", status, f"verl log: last step {last} of Total training steps: {total}", 21.75)]


def test_verl_config_line_and_file_logger(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("{'trainer': {'total_training_steps': 3}}\nstep:3 - actor/pg_loss:0.5\n")
    assert facts(log, "verl", tmp_path) == [
        ("run", "complete", "verl log: last step 3 of 'total_training_steps': 3", None)]
    jsonl = tmp_path / "j" / "metrics.jsonl"
    jsonl.parent.mkdir()
    jsonl.write_text("".join(json.dumps({"step": s, "data": {"timing_s/step": 2.5, "x": 1}}) + "\n" for s in (1, 2)))
    assert facts(jsonl, "verl", tmp_path / "j") == [("metrics", "unknown", "verl log: no total_training_steps stated", 5.0)]


# ------------------------------------------------------------------ SB3
@needs_real
@pytest.mark.parametrize("name, seconds", [("sb3_ppo_healthy", 58.0), ("sb3_ppo_entropy_collapse", 82.0)])
def test_sb3_progress_last_time_elapsed(name, seconds, tmp_path):
    assert facts(REAL / name, "sb3", tmp_path) == [
        (name, "unknown", "progress.csv: SB3 logs do not record the planned total_timesteps", seconds)]


def test_sb3_monitor_last_episode_time(tmp_path):
    log = tmp_path / "monitor.csv"
    log.write_text('#{"t_start": 1700000000.0, "env_id": "CartPole-v1"}\nr,l,t\n10.0,10,0.5\n20.0,20,1.75\n')
    assert facts(log, "sb3", tmp_path) == [
        ("monitor", "unknown", "monitor.csv: SB3 logs do not record the planned total_timesteps", 1.75)]


# ------------------------------------------------------------------ trackio, TRL completions
def test_trackio_span_of_row_timestamps(tmp_path):
    db = tmp_path / "proj.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_id TEXT, timestamp TEXT, run_name TEXT, "
                "step INTEGER, metrics TEXT)")
    con.execute("CREATE TABLE configs (id INTEGER PRIMARY KEY, run_id TEXT, run_name TEXT, config TEXT, "
                "created_at TEXT)")
    for step, ts in ((0, "2026-01-02T03:04:05.500000+00:00"), (1, "2026-01-02T03:05:06.000000+00:00")):
        con.execute("INSERT INTO metrics (run_id, timestamp, run_name, step, metrics) VALUES ('id1', ?, 'r', ?, ?)",
                    (ts, step, json.dumps({"loss": 1.0})))
    con.commit()
    con.close()
    assert facts(db, "trackio", tmp_path) == [("r", "unknown", "trackio records no planned length or end of a run", 60.5)]


def test_trl_completion_dumps_have_no_times(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "out" / "completions"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"step": [1], "prompt": ["p"], "completion": ["c"], "acc": [1.0], "advantage": [0.0]}),
                   folder / "completions_00001.parquet")
    assert facts(tmp_path / "out", "trl_completions", tmp_path) == [
        ("out", "unknown", "TRL completion dumps record no planned length or times", None)]


# ------------------------------------------------------------------ the runs command
@needs_real
def test_rldk_runs_shows_the_logs_facts(tmp_path):
    runner = CliRunner()
    for fmt, name in (("trl", "trl_dpo_nan_gradnorm"), ("trl", "trl_orpo_old_format"), ("mlflow", "mlflow_file_store")):
        result = runner.invoke(main, ["import", fmt, str(REAL / name), "--out-dir", str(tmp_path / "s")])
        assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["runs", str(tmp_path / "s"), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["run_id"]: (r["status"], r["status_evidence"], r["wall_seconds"]) for r in json.loads(result.output)}
    assert rows == {
        "trl_dpo_nan_gradnorm": ("incomplete", "trainer_state.json: global_step 75 of max_steps 100", None),
        "trl_orpo_old_format": ("complete", "trainer_state.json: global_step 336 of max_steps 336", 789.838),
        "0-0d8653353e3e43beb89442a8bca1a94d": ("complete", "MLflow status FINISHED", 1.615),
    }
    table = runner.invoke(main, ["runs", str(tmp_path / "s")]).output
    assert "incomplete" in table and "13m10s" in table and "1.6s" in table
