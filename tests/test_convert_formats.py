"""Converters on files written by the real libraries, and on broken input."""
from __future__ import annotations

import json
import math
import shutil
import sqlite3

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from rldk.cli import main
from rldk.converters import ConvertError, convert_path, detect_format, ingest
from rldk.converters import verl
from rldk.core.store import open_store


def _metrics(store, run_id=None):
    """{(step, name): value} of a store's stepped metric events."""
    rows = store.sql("SELECT step, name, value FROM metrics WHERE step IS NOT NULL AND text IS NULL"
                     + (" AND run_id = $r" if run_id else ""), {"r": run_id} if run_id else None)
    return {(s, n): v for s, n, v in rows.iter_rows()}


def import_meta(run) -> dict:
    """The ``meta`` a converter wrote into ``run``'s import event."""
    return json.loads(run.events("run").filter(pl.col("name") == "import")["attrs"][0])["meta"]


def _same(a: dict, b: dict, rel=0.0) -> bool:
    if a.keys() != b.keys():
        return False
    return all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == pytest.approx(b[k], rel=rel) for k in a)


# ------------------------------------------------------------------ TRL
def test_trl_output_dir_equals_what_the_callback_recorded(tiny_grpo, tmp_path):
    summary = convert_path(tiny_grpo.out, "auto", tmp_path / "s")
    assert summary.format == "trl" and [r.run_id for r in summary.runs] == ["out"]
    converted, live = open_store(tmp_path / "s"), open_store(tiny_grpo.store)
    assert _same(_metrics(converted), _metrics(live))
    stepless = "SELECT name, value FROM metrics WHERE step IS NULL AND name <> 'train_runtime' ORDER BY name"
    assert converted.sql(stepless).equals(live.sql(stepless))
    samples = "SELECT step, text, value FROM samples ORDER BY step, text"
    assert converted.sql(samples).height == 32 and converted.sql(samples).equals(live.sql(samples))


def test_trl_newest_checkpoint_is_read(tiny_grpo, tmp_path):
    for n in (4, 8):
        (tmp_path / "run" / f"checkpoint-{n}").mkdir(parents=True)
        shutil.copy(tiny_grpo.out / f"checkpoint-{n}" / "trainer_state.json", tmp_path / "run" / f"checkpoint-{n}")
    runs = ingest(tmp_path / "run", "trl", store_dir=tmp_path / "s").runs()
    assert [r.id for r in runs] == ["run"]
    assert runs[0].metric("loss")["step"].to_list() == list(range(1, 9))
    only4 = ingest(tmp_path / "run" / "checkpoint-4", "trl", store_dir=tmp_path / "s4").runs()[0]
    assert only4.metric("loss")["step"].to_list() == [1, 2, 3, 4]


def test_trl_duplicate_steps_keep_the_last_value(tmp_path):
    history = [{"loss": 1.0, "step": 1}, {"loss": 2.0, "step": 2}, {"loss": 5.0, "step": 2},
               {"eval_loss": 3.0, "step": 2}]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history, "global_step": 2}))
    run = ingest(tmp_path, "trl", store_dir=tmp_path / "s").runs()[0]
    assert run.metric("loss").rows() == [(1, 1.0), (2, 5.0)]
    assert run.metric("eval_loss").rows() == [(2, 3.0)]


def test_a_trainer_state_saved_under_another_name_is_detected(tmp_path):
    """A trainer state copied as ``trainer_state_1000steps.json`` (as a real GRPO run's author
    committed it) is a TRL log for ``rldk analyze FILE``; a JSON file that is no log gets the
    one-line "no known logs" error, not one about Parquet files it does not hold."""
    from rldk.data import open_input

    history = [{"loss": 1.0 / s, "step": s} for s in range(1, 6)]
    state = json.dumps({"best_metric": None, "epoch": 1.0, "global_step": 5, "log_history": history},
                       indent=2)
    (tmp_path / "trainer_state_1000steps.json").write_text(state)
    assert detect_format(tmp_path / "trainer_state_1000steps.json") == "trl"
    (run,) = open_input(tmp_path / "trainer_state_1000steps.json").runs()
    assert run.metric("loss")["step"].to_list() == [1, 2, 3, 4, 5]
    (tmp_path / "config.json").write_text('{"lr": 0.1, "log_history_note": "none"}')
    with pytest.raises(ConvertError, match=r"config\.json: no known logs in this file") as err:
        open_input(tmp_path / "config.json")
    assert "Parquet" not in str(err.value)


# ------------------------------------------------------------------ TensorBoard
def _accumulator_scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {(e.step, tag): e.value for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}


def test_trl_train_and_eval_rows_mixed(tmp_path):
    """Train and eval rows alternate (each key set a run of its own once); the columns are
    built over all rows: a value logged again at a step keeps the later one, None values
    are counted, text is skipped at its row, and a row with no integer step is skipped."""
    history = [{"loss": 1.0, "epoch": 0.1, "step": 1}, {"eval_loss": 3.0, "epoch": 0.15, "step": 1},
               {"loss": None, "epoch": 0.2, "step": 2}, {"loss": "oops", "epoch": 0.3, "step": 3},
               {"eval_loss": 2.5, "epoch": 0.35, "step": 3}, {"loss": 0.5, "step": "4"},
               {"loss": 0.25, "epoch": True, "step": 4}]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history, "global_step": 4}))
    summary = convert_path(tmp_path, "trl", tmp_path / "s")
    assert [str(s) for s in summary.skipped] == [
        f"{tmp_path / 'trainer_state.json'}:log_history[3]: 'loss' is not a number: 'oops'",
        f"{tmp_path / 'trainer_state.json'}:log_history[5]: row has no integer 'step'"]
    run = open_store(tmp_path / "s").runs()[0]
    assert run.metric("loss").rows() == [(1, 1.0), (4, 0.25)]
    assert run.metric("eval_loss").rows() == [(1, 3.0), (3, 2.5)]
    assert run.metric("epoch").rows() == [(1, 0.15), (2, 0.2), (3, 0.35), (4, 1.0)]
    meta = import_meta(run)
    assert meta["null_values"] == {"loss": 1}


def test_tensorboard_from_the_trl_run_matches_event_accumulator(tiny_grpo, tmp_path):
    (tb_dir,) = {p.parent for p in (tiny_grpo.out / "runs").rglob("*tfevents*")}
    summary = convert_path(tiny_grpo.out / "runs", "tensorboard", tmp_path / "s")
    assert summary.skipped == () and len(summary.runs) == 1
    got = _metrics(open_store(tmp_path / "s"))
    assert _same(got, _accumulator_scalars(tb_dir))
    live = _metrics(open_store(tiny_grpo.store))
    assert got[(3, "train/kl")] == pytest.approx(live[(3, "kl")], rel=1e-6)   # float32 in TensorBoard


@pytest.fixture(scope="module")
def summary_writer_dir(tmp_path_factory):
    """A SummaryWriter file: 50 steps x 3 scalars, a new-style scalar, text, a histogram."""
    from torch.utils.tensorboard import SummaryWriter

    d = tmp_path_factory.mktemp("tb")
    w = SummaryWriter(str(d))
    for step in range(50):
        for j in range(3):
            w.add_scalar(f"train/m{j}", step * 0.5 + j, step)
    w.add_scalar("eval/new", 2.25, 7, new_style=True)
    w.add_text("notes", "hello <b>world</b>", 3)
    w.add_histogram("weights", np.arange(10.0), 1)
    w.close()
    return d


def test_summary_writer_file(summary_writer_dir, tmp_path):
    summary = convert_path(summary_writer_dir, "auto", tmp_path / "s")
    assert summary.format == "tensorboard"
    store = open_store(tmp_path / "s")
    got = _metrics(store)
    assert len(got) == 151 and got[(49, "train/m2")] == 26.5 and got[(7, "eval/new")] == 2.25
    # EventAccumulator files new-style scalars under tensors, not scalars
    assert _same({k: v for k, v in got.items() if k[1] != "eval/new"}, _accumulator_scalars(summary_writer_dir))
    text = store.sql("SELECT step, name, text FROM metrics WHERE text IS NOT NULL").rows()
    assert text == [(3, "notes/text_summary", "hello <b>world</b>")]
    meta = json.loads(store.sql("SELECT attrs FROM run_events WHERE name = 'import'")["attrs"][0])["meta"]
    assert meta["ignored"] == {"histogram summaries": 1}


def _event_file(folder):
    return next(folder.glob("*tfevents*"))


def _record_offsets(buf):
    import struct

    pos, out = 0, []
    while pos < len(buf):
        out.append(pos)
        pos += 16 + struct.unpack_from("<Q", buf, pos)[0]
    return out


def test_tensorboard_file_cut_mid_record(summary_writer_dir, tmp_path):
    buf = _event_file(summary_writer_dir).read_bytes()
    offsets = _record_offsets(buf)
    cut = tmp_path / "cut" / "events.out.tfevents.1.host"
    cut.parent.mkdir()
    cut.write_bytes(buf[:offsets[31] + 20])           # record 31: its 12-byte header and 8 data bytes
    summary = convert_path(cut.parent, "tensorboard", tmp_path / "s")
    (skip,) = summary.skipped
    assert skip.where == "record 31"
    assert str(skip) == (f"{cut}:record 31: data cut: record says {offsets[32] - offsets[31] - 16} bytes, "
                         f"8 present (file ends at byte {offsets[31] + 20}) at byte {offsets[31]}; "
                         "the 31 records before it were imported")
    assert len(_metrics(open_store(tmp_path / "s"))) == 30    # record 0 is the file-version record
    with pytest.raises(ConvertError, match=r"record 31: data cut.*--strict refuses to skip input"):
        convert_path(cut.parent, "tensorboard", tmp_path / "s2", strict=True)
    assert not (tmp_path / "s2").exists()


def test_tensorboard_corrupt_length_is_not_called_a_cut(summary_writer_dir, tmp_path):
    buf = bytearray(_event_file(summary_writer_dir).read_bytes())
    offsets = _record_offsets(bytes(buf))
    buf[offsets[40] + 5] = 0x7F                       # a huge length; its header CRC no longer holds
    bad = tmp_path / "bad" / "events.out.tfevents.1.host"
    bad.parent.mkdir()
    bad.write_bytes(bytes(buf))
    (skip,) = convert_path(bad.parent, "tensorboard", tmp_path / "s").skipped
    assert str(skip) == (f"{bad}:record 40: length checksum mismatch (corrupt header); records after it "
                         f"cannot be located at byte {offsets[40]}; the 40 records before it were imported")


def test_tensorboard_bad_checksum_skips_that_record(summary_writer_dir, tmp_path):
    buf = bytearray(_event_file(summary_writer_dir).read_bytes())
    offsets = _record_offsets(bytes(buf))
    buf[offsets[5] + 14] ^= 0xFF                       # a byte of record 5's wall time
    bad = tmp_path / "bad" / "events.out.tfevents.1.host"
    bad.parent.mkdir()
    bad.write_bytes(bytes(buf))
    summary = convert_path(bad.parent, "tensorboard", tmp_path / "s")
    assert [str(s) for s in summary.skipped] == [f"{bad}:record 5: data checksum (CRC32C) mismatch: record skipped"]
    assert len(_metrics(open_store(tmp_path / "s"))) == 150


def test_crc32c_known_values():
    from rldk.converters.tfrecord import crc32c

    assert crc32c(b"123456789") == 0xE3069283       # the CRC-32C check value
    assert crc32c(b"") == 0 and crc32c(b"\0" * 32) == 0x8A9136AA


# ------------------------------------------------------------------ OpenRLHF
def test_openrlhf_tensorboard_is_detected_and_names_resolve(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "logs" / "ppo_run"))
    for step in range(1, 6):
        w.add_scalar("train/policy_loss", 0.1 * step, step)
        w.add_scalar("train/kl", 0.01 * step, step)
        w.add_scalar("train/reward", 1.0 + step, step)
        w.add_scalar("train/actor_lr", 1e-6, step)
    w.add_scalar("eval/reward", 4.5, 5)
    w.close()
    assert detect_format(tmp_path / "logs") == "openrlhf"
    (run,) = ingest(tmp_path / "logs", store_dir=tmp_path / "s").runs()
    assert run.id == "ppo_run"
    assert run.metric("kl")["value"].to_list() == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05])
    assert run.metric("reward_mean")["value"].to_list() == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert run.metric("eval/reward").rows() == [(5, 4.5)]


def test_sb3_tensorboard_with_a_critic_loss_is_not_openrlhf(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "logs" / "TD3_1"))          # SB3's TD3/SAC/TQC tags
    for step in range(1, 4):
        w.add_scalar("train/critic_loss", 0.5 / step, 1000 * step)
        w.add_scalar("train/actor_loss", -1.0 * step, 1000 * step)
        w.add_scalar("rollout/ep_rew_mean", 10.0 * step, 1000 * step)
        w.add_scalar("time/fps", 300.0, 1000 * step)
    w.close()
    assert detect_format(tmp_path / "logs") == "tensorboard"


# ------------------------------------------------------------------ wandb offline
def test_wandb_offline_run(tmp_path, monkeypatch, wait_for_wandb_exit):
    wandb = pytest.importorskip("wandb")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(project="p", mode="offline", dir=str(tmp_path), config={"actor_learning_rate": 5e-7})
    for step in range(1, 4):
        run.log({"train/policy_loss": 0.5 / step, "train/kl": 0.01 * step}, step=step)
    run.finish()
    wait_for_wandb_exit(next(tmp_path.glob("wandb/offline-run-*/*.wandb")))
    assert detect_format(tmp_path / "wandb") == "wandb"
    (imported,) = ingest(tmp_path / "wandb", store_dir=tmp_path / "s").runs()   # latest-run link not doubled
    assert imported.id.startswith("offline-run-")
    assert imported.metric("kl").rows() == [(1, 0.01), (2, 0.02), (3, 0.03)]
    assert imported.metric("loss")["value"].to_list() == [0.5, 0.25, 0.5 / 3]
    assert imported.meta["config"]["actor_learning_rate"] == 5e-7


def test_wandb_file_with_a_bad_record(tmp_path):
    from rldk.converters.wandb_offline import records

    good = b"\x08\x01"
    import struct
    import zlib

    def frame(kind, data, crc=None):
        crc = zlib.crc32(data, zlib.crc32(bytes([kind]))) if crc is None else crc
        return struct.pack("<IHB", crc, len(data), kind) + data

    buf = b":W&B" + struct.pack("<HB", 0xBEE1, 0) + frame(1, good) + frame(1, good, crc=7) + frame(2, b"ab") \
        + frame(4, b"cd") + frame(1, b"xyz")[:9]
    skipped = []
    assert list(records(buf, tmp_path / "r.wandb", skipped)) == [(0, good), (3, b"abcd")]
    assert [str(s) for s in skipped] == [f"{tmp_path / 'r.wandb'}:record 1: CRC32 mismatch: record skipped",
                                         f"{tmp_path / 'r.wandb'}:record 4: cut: 2 of 3 bytes present"]


# ------------------------------------------------------------------ verl
def test_verl_jsonl_with_null_as_nan_and_a_corrupt_line(tmp_path):
    lines = [json.dumps({"step": s, "data": {"actor/pg_loss": 0.5 / s, "critic/score/mean": None if s == 2 else s}})
             for s in (1, 2, 3)]
    lines.insert(2, '{"step": 9, "data": {"actor/pg_')          # a line cut by a crash, mid-file
    f = tmp_path / "verl.jsonl"
    f.write_text("\n".join(lines) + "\n")
    summary = convert_path(f, "auto", tmp_path / "s")
    assert summary.format == "verl"
    assert [str(s) for s in summary.skipped] == [
        f"{f}:line 3: invalid JSON (Unterminated string starting at: line 1 column 22 (char 21)); line skipped"]
    (run,) = open_store(tmp_path / "s").runs()
    score = run.metric("reward_mean")                           # critic/score/mean
    assert score["step"].to_list() == [1, 2, 3] and math.isnan(score["value"][1])
    assert run.metric("loss")["value"].to_list() == [0.5, 0.25, 0.5 / 3]


def test_verl_console_log(tmp_path):
    f = tmp_path / "train.log"
    f.write_text(
        "(TaskRunner pid=4242) Training from scratch\n"
        "(TaskRunner pid=4242) \x1b[36mstep:1 - actor/pg_loss:np.float64(0.25) - critic/score/mean:0.5"
        " - actor/entropy:nan - timing_s/step:12.5\x1b[0m\n"
        "(TaskRunner pid=4242, ip=10.0.0.2) step:2 - actor/pg_loss:0.125 - critic/score/mean:np.float64(0.75)"
        " - note:hello\n"
        "some other line with step:3 but no pairs\n")
    summary = convert_path(f, "auto", tmp_path / "s")
    assert summary.format == "verl"
    assert [str(s) for s in summary.skipped] == [f"{f}:line 3: note: not a number: 'hello'"]
    (run,) = open_store(tmp_path / "s").runs()
    assert run.metric("actor/pg_loss").rows() == [(1, 0.25), (2, 0.125)]
    assert run.metric("reward_mean").rows() == [(1, 0.5), (2, 0.75)]
    assert math.isnan(run.metric("entropy")["value"][0]) and run.metric("step_time").rows() == [(1, 12.5)]


def test_verl_console_log_after_a_long_start_up(tmp_path):
    """A real console log opens with Ray's start-up output and the resolved config: verl's
    own GPG baseline logs print ~100-130 KiB before the first step line. It is found and
    read by ``auto`` all the same; a text file with no step line stays unrecognised."""
    f = tmp_path / "qwen2-7b_math.log"
    config = "".join(f"(TaskRunner pid=7) {{'actor_rollout_ref': {{'key_{i}': 'a value of the config'}}}}\n"
                     for i in range(3000))
    f.write_text(config + "(TaskRunner pid=7) Total training steps: 2\n"
                 + "".join(f"(TaskRunner pid=7) step:{i} - critic/score/mean:{i / 4} - response_length/mean:200\n"
                           for i in (1, 2)))
    assert f.stat().st_size > 2 * 65536
    summary = convert_path(f, "auto", tmp_path / "s")
    assert summary.format == "verl"
    (run,) = open_store(tmp_path / "s").runs()
    assert run.metric("reward_mean").rows() == [(1, 0.25), (2, 0.5)]
    other = tmp_path / "other" / "notes.log"
    other.parent.mkdir()
    other.write_text(config)
    assert not verl.detect(other)


def test_verl_console_lines_cut_by_wandb(tmp_path):
    """wandb's output.log keeps 4,096 characters of a console line: the last pair of such a
    line may be a cut number, so it is skipped and reported; a line that ends on the " -"
    separator keeps its last (complete) value."""
    pairs = " - ".join(f"val/metric_{i}:0.{i:04d}" for i in range(400))
    cut = ("step:1 - critic/score/mean:0.5 - " + pairs)[:4096]
    assert len(cut) == 4096 and not cut.endswith(")")
    f = tmp_path / "output.log"
    f.write_text(cut + "\nstep:2 - critic/score/mean:np.float64(0.75) - actor/entropy:0.3 -\n")
    summary = convert_path(f, "verl", tmp_path / "s")
    last = cut.rsplit(" - ", 1)[1].partition(":")[0]
    assert [str(s) for s in summary.skipped] == [
        f"{f}:line 1: {last}: the line is cut at 4096 characters (wandb's console limit); "
        "its last value is not read"]
    (run,) = open_store(tmp_path / "s").runs()
    assert run.metric("reward_mean").rows() == [(1, 0.5), (2, 0.75)]
    assert run.metric("entropy").rows() == [(2, 0.3)]
    assert last not in run.metric_names()


# ------------------------------------------------------------------ SB3 monitor, MLflow sqlite
def test_sb3_monitor_csv(tmp_path):
    f = tmp_path / "0.monitor.csv"
    f.write_text('#{"t_start": 1700000000.0, "env_id": "CartPole-v1"}\nr,l,t\n10.0,10,0.5\n25.0,25,1.25\n')
    (run,) = ingest(f, store_dir=tmp_path / "s").runs()
    assert run.metric("episode/reward").rows() == [(10, 10.0), (35, 25.0)]
    assert run.metric("episode/length").rows() == [(10, 10.0), (35, 25.0)]
    # what SB3's logger reports from the same episodes: the mean of the last 100
    assert run.metric("rollout/ep_rew_mean").rows() == [(10, 10.0), (35, 17.5)]


def test_openai_baselines_monitor_header_is_read(tmp_path):
    f = tmp_path / "0.monitor.csv"          # Baselines writes '# {json} ' (a space, a trailing space)
    f.write_text('# {"t_start": 1700000000.0, "env_id": "Hopper-v2"} \nr,l,t\n10.0,10,0.5\n25.0,25,1.25\n')
    assert detect_format(f) == "sb3"
    (run,) = ingest(f, store_dir=tmp_path / "s").runs()
    assert run.metric("episode/reward").rows() == [(10, 10.0), (35, 25.0)]


def test_sb3_monitor_means_cover_the_last_hundred_episodes(tmp_path):
    f = tmp_path / "0.monitor.csv"
    rows = "".join(f"{float(i)},1,{i}.0\n" for i in range(150))
    f.write_text('#{"t_start": 0.0, "env_id": "X"}\nr,l,t\n' + rows)
    (run,) = ingest(f, store_dir=tmp_path / "s").runs()
    means = [v for _, v in run.metric("rollout/ep_rew_mean").rows()]
    assert means[99] == pytest.approx(49.5) and means[149] == pytest.approx(99.5)   # episodes 50-149
    assert [v for _, v in run.metric("rollout/ep_len_mean").rows()][-1] == 1.0


def test_mlflow_sqlite_backend(tmp_path):
    db = tmp_path / "mlflow.db"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE experiments (experiment_id INTEGER, name TEXT);
        CREATE TABLE runs (run_uuid TEXT, name TEXT, experiment_id INTEGER, status TEXT);
        CREATE TABLE metrics (key TEXT, value FLOAT, timestamp BIGINT, run_uuid TEXT, step BIGINT, is_nan BOOLEAN);
        CREATE TABLE params (key TEXT, value TEXT, run_uuid TEXT);
        CREATE TABLE tags (key TEXT, value TEXT, run_uuid TEXT);
        INSERT INTO experiments VALUES (1, 'ppo');
        INSERT INTO runs VALUES ('abc', 'quiet-fox', 1, 'FINISHED');
        INSERT INTO metrics VALUES ('reward', 1.5, 1700000000000, 'abc', 0, 0), ('reward', 0, 1700000001000, 'abc', 1, 1);
        INSERT INTO params VALUES ('lr', '0.001', 'abc');
    """)
    con.commit()
    con.close()
    assert detect_format(db) == "mlflow"
    (run,) = ingest(db, store_dir=tmp_path / "s").runs()
    assert run.id == "1-abc" and run.meta["config"] == {"lr": "0.001"}
    rows = run.metric("reward").rows()
    assert rows[0] == (0, 1.5) and rows[1][0] == 1 and math.isnan(rows[1][1])


# ------------------------------------------------------------------ generic JSONL / CSV
def test_jsonl_field_map_and_samples(tmp_path):
    f = tmp_path / "logs.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"global_step": 10, "reward_scalar": 0.5, "prompt": "2+2?", "response": "4", "tag": "a"},
        {"global_step": 20, "reward_scalar": "nan", "prompt": "3+3?", "response": "7", "tag": "b"},
    ]) + "\n")
    summary = convert_path(f, "jsonl", tmp_path / "s", field_map="step=global_step,reward=reward_scalar")
    (run,) = open_store(tmp_path / "s").runs()
    rows = run.metric("reward").rows()
    assert rows[0] == (10, 0.5) and rows[1][0] == 20 and math.isnan(rows[1][1])
    samples = run.events("sample").select("step", "text", "value").rows()
    assert samples[0] == (10, "4", 0.5) and samples[1][:2] == (20, "7")
    assert summary.runs[0].samples == 2
    meta = import_meta(run)
    assert meta["ignored_fields"] == {"tag": 2} and meta["step_field"] == "step"


def test_llama_factory_trainer_log_steps_from_current_steps(tmp_path):
    """LLaMA-Factory's LogCallback writes trainer_log.jsonl: one row per logging step
    (logging_steps=5 here) and one per evaluation, at the Trainer's global step."""
    rows = [{"current_steps": 5, "total_steps": 20, "loss": 2.3011, "lr": 4.8e-05, "epoch": 0.25,
             "percentage": 25.0, "elapsed_time": "0:00:07", "remaining_time": "0:00:21"},
            {"current_steps": 10, "total_steps": 20, "loss": 1.9874, "lr": 3.5e-05, "epoch": 0.5,
             "percentage": 50.0, "elapsed_time": "0:00:14", "remaining_time": "0:00:14"},
            {"current_steps": 10, "total_steps": 20, "eval_loss": 2.0412, "epoch": 0.5,
             "percentage": 50.0, "elapsed_time": "0:00:16", "remaining_time": "0:00:16"},
            {"current_steps": 15, "total_steps": 20, "loss": 1.7602, "lr": 1.5e-05, "epoch": 0.75,
             "percentage": 75.0, "elapsed_time": "0:00:21", "remaining_time": "0:00:07"}]
    f = tmp_path / "trainer_log.jsonl"
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    convert_path(f, "jsonl", tmp_path / "s")
    (run,) = open_store(tmp_path / "s").runs()
    assert run.metric("loss").rows() == [(5, 2.3011), (10, 1.9874), (15, 1.7602)]
    assert run.metric("lr").rows() == [(5, 4.8e-05), (10, 3.5e-05), (15, 1.5e-05)]
    assert run.metric("eval_loss").rows() == [(10, 2.0412)]
    meta = import_meta(run)
    assert meta["step_field"] == "current_steps"
    assert meta["ignored_fields"] == {"elapsed_time": 4, "remaining_time": 4}


def test_roll_metrics_jsonl_steps_from_system_step(tmp_path):
    """ROLL writes one JSON object per pipeline step with the step as ``system/step``."""
    rows = [{"system/step": 1, "actor/entropy": None, "actor_train/grad_norm": 0.41},
            {"system/step": 2, "actor/entropy": 0.66, "actor_train/grad_norm": 0.38}]
    f = tmp_path / "metrics.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    convert_path(f, "jsonl", tmp_path / "s")
    (run,) = open_store(tmp_path / "s").runs()
    assert run.metric("grad_norm").rows() == [(1, 0.41), (2, 0.38)]
    assert run.metric("entropy").rows() == [(2, 0.66)]
    meta = import_meta(run)
    assert meta["step_field"] == "system/step"


def test_rllib_result_json_is_json_lines_stepped_by_env_steps(tmp_path):
    """Ray Tune / RLlib write ``result.json``: one nested result object a line (a ``.json``
    file of JSON Lines), each with the env steps so far (``timesteps_total``). It is found
    by ``auto``, stepped by those env steps, and its learner stats resolve by RLlib's names;
    a pretty-printed ``params.json`` beside it is not taken for JSON Lines."""
    rows = [{"episode_reward_mean": 10.0 * it, "episode_len_mean": 20.0 + it, "training_iteration": it,
             "timesteps_total": 4000 * it, "done": False,
             "info": {"learner": {"default_policy": {"learner_stats": {"entropy": 1.0 - 0.1 * it, "kl": 0.01,
                                                                       "vf_loss": 3.0}}}},
             "config": {"lr": 5e-5, "model": {"fcnet_hiddens": [64, 64]}}} for it in (1, 2, 3)]
    trial = tmp_path / "PPO_CartPole-v1_0"
    trial.mkdir()
    (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (trial / "params.json").write_text(json.dumps({"lr": 5e-5, "gamma": 0.99}, indent=2))
    assert detect_format(trial / "result.json") == "jsonl"
    convert_path(trial / "result.json", "auto", tmp_path / "s")
    (run,) = open_store(tmp_path / "s").runs()
    assert run.metric("episode_return").rows() == [(4000, 10.0), (8000, 20.0), (12000, 30.0)]
    assert run.metric("entropy").rows()[-1] == (12000, 0.7)
    assert run.metric("ppo_approx_kl").rows()[0] == (4000, 0.01)
    meta = import_meta(run)
    assert meta["step_field"] == "timesteps_total"
    from rldk.converters import jsonl
    assert jsonl.files(trial) == [trial / "result.json"]


def test_wandb_chart_csv_export_is_one_run_per_run_name(tmp_path):
    """A chart exported with "Download CSV" on the wandb web page: ``Step``, then
    ``<run name> - <metric>`` and its ``__MIN``/``__MAX`` bounds, for each run shown. Each
    run becomes a run of its own, its metric under the metric's name (verl's validation
    score reads as the eval reward); the bounds are not metrics, an empty cell is no value."""
    head = ["Step"]
    for run in ("grpo-seed1", "grpo-seed2"):
        head += [f"{run} - val-core/openai/gsm8k/acc/mean@1", f"{run} - val-core/openai/gsm8k/acc/mean@1__MIN",
                 f"{run} - val-core/openai/gsm8k/acc/mean@1__MAX"]
    rows = [["0", "0.50", "0.50", "0.50", "0.48", "0.48", "0.48"],
            ["5", "0.55", "0.55", "0.55", "", "", ""],
            ["10", "0.61", "0.60", "0.62", "0.58", "0.58", "0.58"]]
    f = tmp_path / "wandb_export_2026-01-01.csv"
    f.write_text("\n".join(",".join(f'"{c}"' for c in r) for r in [head, *rows]) + "\n")
    assert detect_format(f) == "csv"
    convert_path(f, "auto", tmp_path / "s")
    runs = {r.id: r for r in open_store(tmp_path / "s").runs()}
    assert sorted(runs) == ["wandb_export_2026-01-01-grpo-seed1", "wandb_export_2026-01-01-grpo-seed2"]
    one, two = runs["wandb_export_2026-01-01-grpo-seed1"], runs["wandb_export_2026-01-01-grpo-seed2"]
    assert one.metric_names() == ["val-core/openai/gsm8k/acc/mean@1"]
    assert one.metric("val-core/openai/gsm8k/acc/mean@1").rows() == [(0, 0.5), (5, 0.55), (10, 0.61)]
    assert two.metric("val-core/openai/gsm8k/acc/mean@1").rows() == [(0, 0.48), (10, 0.58)]
    from rldk import semantics
    assert semantics.resolve("reward", one.metric_names(), split="eval").metric == \
        "val-core/openai/gsm8k/acc/mean@1"


def test_a_wandb_chart_export_reports_its_bad_cells(tmp_path):
    """A cell that is not a number, or a Step that is not an integer, is reported with its
    line (never dropped in silence, never a traceback); the rest is imported."""
    f = tmp_path / "export.csv"
    f.write_text('"Step","r1 - reward","r1 - reward__MIN","r1 - reward__MAX"\n'
                 '"1","0.5","0.5","0.5"\n"inf","0.6","0.6","0.6"\n"3","oops","",""\n"4","0.7","0.7","0.7"\n')
    summary = convert_path(f, "csv", tmp_path / "s")
    (run,) = open_store(tmp_path / "s").runs()
    assert run.metric("reward").rows() == [(1, 0.5), (4, 0.7)]
    where = sorted(s.where for s in summary.runs[0].skipped)
    assert where == ["line 3", "line 4"], summary.runs[0].skipped


def test_tensorboard_csv_download_is_the_scalar_its_file_names(tmp_path):
    """TensorBoard's "Download CSV" of one scalar: ``Wall time,Step,Value`` in a file named
    ``run-<run>-tag-<tag>.csv`` with the tag's ``/`` written ``_``. The value is imported
    as that tag, the ``/`` put back where the semantics table then knows the name."""
    f = tmp_path / "run-PPO_1-tag-rollout_ep_rew_mean.csv"
    f.write_text("Wall time,Step,Value\n1700000000.5,2048,-180.5\n1700000003.25,4096,-150.0\n")
    convert_path(f, "auto", tmp_path / "s")
    (run,) = open_store(tmp_path / "s").runs()
    assert run.metric_names() == ["rollout/ep_rew_mean"]
    assert run.metric("episode_return").rows() == [(2048, -180.5), (4096, -150.0)]
    g = tmp_path / "other" / "run-x-tag-my_custom_thing.csv"
    g.parent.mkdir()
    g.write_text("Wall time,Step,Value\n1.0,1,2.0\n")
    convert_path(g, "auto", tmp_path / "t")
    (run,) = open_store(tmp_path / "t").runs()
    assert run.metric_names() == ["my_custom_thing"]


def test_a_pandas_index_column_is_no_metric(tmp_path):
    """``DataFrame.to_csv`` writes its index as a first column with no header (a traffic-
    signal paper's training curves): it is no metric named "", it is counted with the
    fields left out, and the step column still gives the steps."""
    f = tmp_path / "train_reward.csv"
    f.write_text(",step,avg_reward,agent\n0,720,-121.5,iqld\n1,1440,-118.0,iqld\n")
    convert_path(f, "csv", tmp_path / "s")
    (run,) = open_store(tmp_path / "s").runs()
    assert run.metric_names() == ["avg_reward"]
    assert run.metric("avg_reward").rows() == [(720, -121.5), (1440, -118.0)]
    meta = import_meta(run)
    assert meta["ignored_fields"] == {"(no header)": 2, "agent": 2} and meta["step_field"] == "step"
    # a large all-number file, read a block at a time through Polars: the same
    f = tmp_path / "big.csv"
    f.write_text(",step,avg_reward\n" + "".join(f"{i},{720 * (i + 1)},{i % 7}\n" for i in range(30000)))
    convert_path(f, "csv", tmp_path / "big")
    (run,) = open_store(tmp_path / "big").runs()
    assert run.metric_names() == ["avg_reward"] and run.metric("avg_reward").rows()[-1] == (21600000, 4.0)
    meta = import_meta(run)
    assert meta["ignored_fields"] == {"(no header)": 30000}


def test_a_torchbeast_log_reads_without_its_comment_mark(tmp_path):
    """TorchBeast's ``FileWriter`` (DouZero, RLCard's DMC) writes its header as
    ``# _tick,_time,frames,...``: the first column is ``_tick``, not ``# _tick``; ``_time``
    (``time.time()``) is the wall time, no metric; ``frames`` is the step. Both paths:
    the row path, and the Polars block path a large file takes."""
    header = "# _tick,_time,frames,mean_episode_return_landlord\n"
    for rows in (2, 30000):
        f = tmp_path / f"logs{rows}.csv"
        f.write_text(header + "".join(f"{i},{1777702414.25 + i},{1600 * i},{-(5 + i % 3) / 100}\n"
                                      for i in range(rows)))
        convert_path(f, "csv", tmp_path / f"s{rows}")
        (run,) = open_store(tmp_path / f"s{rows}").runs()
        assert run.metric_names() == ["_tick", "mean_episode_return_landlord"], rows
        assert run.metric("mean_episode_return_landlord").rows()[1] == (1600, -0.06)
        walls = run.events("metric").filter(pl.col("name") == "_tick")["wall_time"]
        assert walls.dt.epoch("ms").to_list()[:2] == [1777702414250, 1777702415250], rows


def test_csv_ragged_rows_are_skipped_and_reported(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("step,loss,kl\n1,0.5,0.1\n2,0.4\n3,0.3,0.2,9\n4,,0.3\n")
    summary = convert_path(f, "csv", tmp_path / "s")
    assert [str(s) for s in summary.skipped] == [
        f"{f}:line 3: row has 2 cells, the header has 3; row skipped",
        f"{f}:line 4: row has 4 cells, the header has 3; row skipped"]
    (run,) = open_store(tmp_path / "s").runs()
    assert run.metric("loss").rows() == [(1, 0.5)]                      # the empty cell stays missing
    assert run.metric("kl").rows() == [(1, 0.1), (4, 0.3)]


# ------------------------------------------------------------------ bad input: one line each
@pytest.mark.parametrize("name, content, fmt, message", [
    ("trainer_state.json", '{"log_history": [{"loss": 1.0, "step": 1}', "trl",
     "{f}:1:42: invalid JSON (Expecting ',' delimiter); the file is truncated or corrupt: use an earlier "
     "checkpoint's copy"),
    ("empty.jsonl", "", "jsonl", "{f}: empty file: no rows to import"),
    ("blob.csv", "\x00\x01\x02garbage", "csv", "{f}: binary file (NUL bytes), not CSV"),
    ("blob.jsonl", "\x00\x01\x02garbage\n", "jsonl", "{f}: binary file (NUL bytes), not JSON Lines"),
    ("bad.jsonl", "not json\n[1, 2]\n", "jsonl",
     "{f}:line 1: invalid JSON (Expecting value: line 1 column 1 (char 0)); line skipped (and 1 more); "
     "no valid rows in the file"),
])
def test_bad_files_give_one_line(tmp_path, name, content, fmt, message):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(ConvertError) as info:
        convert_path(f, fmt, tmp_path / "s")
    assert str(info.value) == message.format(f=f)


def test_directory_with_no_logs(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing to see\n")
    with pytest.raises(ConvertError) as info:
        detect_format(tmp_path)
    assert str(info.value) == (f"{tmp_path}: no known logs in this directory (looked for trl, trl_completions, "
                               "mlflow, trackio, sb3, verl, hf_console, wandb, openrlhf, tensorboard, scalars_json, jsonl, csv); name the "
                               "format: rldk import FORMAT PATH")


# ------------------------------------------------------------------ CLI
def test_cli_import_prints_a_summary(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("step,loss\n1,0.5\n2,0.4,9\n")
    result = CliRunner().invoke(main, ["import", "auto", str(f), "--out-dir", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (f"imported {f} (detected as csv) into {tmp_path / 's'}: "
                                             "1 run, 1 event, 1 skipped")
    assert f"skipped {f}:line 3: row has 3 cells, the header has 2; row skipped" in result.output
    result = CliRunner().invoke(main, ["import", "csv", str(f), "--out-dir", str(tmp_path / "s"), "--format", "json"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {tmp_path / 's'}: already holds run 'log'; importing again would duplicate its events: "
        "pass --run-id NEW_ID or another --out-dir directory")
    result = CliRunner().invoke(main, ["import", "csv", str(f), "--out-dir", str(tmp_path / "s"), "--run-id", "log2",
                                       "--format", "json"])
    assert result.exit_code == 0 and json.loads(result.output)["runs"][0]["run_id"] == "log2"


def test_cli_strict_and_usage_errors(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("step,loss\n1,0.5\n2,0.4,9\n")
    result = CliRunner().invoke(main, ["import", "csv", str(f), "--out-dir", str(tmp_path / "s"), "--strict"])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {f}:line 3: row has 3 cells, the header has 2; row skipped; "
                                     "--strict refuses to skip input: fix the file or drop --strict")
    result = CliRunner().invoke(main, ["import", "comet", str(f)])
    assert result.exit_code == 2
    assert result.output.strip() == ("Error: unknown format 'comet': one of auto, trl, trl_completions, "
                                     "mlflow, trackio, sb3, verl, hf_console, wandb, openrlhf, tensorboard, scalars_json, jsonl, csv")
    result = CliRunner().invoke(main, ["import", "jsonl", str(f), "--field-map", "step"])
    assert result.exit_code == 2
    assert result.output.strip() == ("Error: bad --field-map entry 'step': use target=source, "
                                     "e.g. step=global_step,reward=reward_scalar")


def test_convert_into_an_open_writer(tmp_path):
    from rldk.converters import csvlog
    from rldk.writer import EventWriter

    f = tmp_path / "log.csv"
    f.write_text("step,loss\n1,0.5\n2,0.25\n")
    with EventWriter(tmp_path / "s", "live", capture_env=False) as writer:
        writer.log(0, loss=1.0)
        summary = csvlog.convert(f, writer)
    assert summary.store is None and summary.runs[0].rows == 2
    assert open_store(tmp_path / "s").run("live").metric("loss").rows() == [(0, 1.0), (1, 0.5), (2, 0.25)]
    (tmp_path / "two").mkdir()
    for name in ("a.csv", "b.csv"):
        (tmp_path / "two" / name).write_text("step,loss\n1,0.5\n")
    with EventWriter(tmp_path / "s2", "one", capture_env=False) as writer, pytest.raises(ConvertError) as info:
        csvlog.convert(tmp_path / "two", writer)
    assert str(info.value) == f"{tmp_path / 'two'}: holds 2 runs but one writer was given; pass a store directory instead"


def test_logs_with_nothing_to_import_are_an_error(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "tb"))
    w.add_histogram("weights", np.arange(4.0), 1)
    w.close()
    with pytest.raises(ConvertError) as info:
        convert_path(tmp_path / "tb", "tensorboard", tmp_path / "s")
    assert str(info.value) == (f"{tmp_path / 'tb'}: nothing to import: no metrics, samples or text in the logs "
                               "(ignored: 1 histogram summaries)")
    (tmp_path / "trl").mkdir()
    (tmp_path / "trl" / "trainer_state.json").write_text('{"log_history": [], "global_step": 0}')
    with pytest.raises(ConvertError, match="nothing to import"):
        convert_path(tmp_path / "trl", "trl", tmp_path / "s")


def test_a_non_numeric_value_in_a_numeric_column_is_counted_not_dropped(tmp_path):
    """A JSONL value "oops" among rewards is left out of the metric and reported as a skip."""
    f = tmp_path / "log.jsonl"
    f.write_text('{"step": 0, "reward": 1.0}\n{"step": 1, "reward": "oops"}\n{"step": 2, "reward": 2.0}\n')
    summary = convert_path(f, "jsonl", tmp_path / "s")
    assert [str(s) for s in summary.skipped] == [
        f"{f}:line 2: reward: 1 non-numeric value(s) left out of the metric (first 'oops'); "
        "the rest of the row was imported"]
    run = open_store(tmp_path / "s").runs()[0]
    assert run.metric("reward").rows() == [(0, 1.0), (2, 2.0)]


def _scalar_dump(path, series):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({tag: {str(s): v for s, v in values.items()} for tag, values in series.items()}))
    return path


def test_a_scalar_dump_is_detected_and_read_with_what_it_left_out(tmp_path):
    # NeMo-RL's test suites dump a run's TensorBoard scalars as {tag: {step: value}}
    dump = _scalar_dump(tmp_path / "grpo-7b" / "metrics.json", {
        "train/reward": {s: (0.594 if s == 1 else 0.0) for s in range(1, 31)},
        "train/mean_gen_tokens_per_sample": {1: 551.0, 2: "NaN", 3: 1017.0},
        "train/loss": {1: 0.1, 2: None}})
    dump.write_text(dump.read_text()[:-1] + ', "train/odd": {"1": 1.0, "first": 2.0}}')
    assert detect_format(dump) == detect_format(dump.parent) == "scalars_json"
    store = ingest(dump, store_dir=tmp_path / "store")
    assert store.run_ids == ["grpo-7b"]              # metrics.json says nothing: its folder's name
    df = pl.read_parquet([str(f) for f in store.files]).filter(pl.col("kind") == "metric")
    reward = df.filter(pl.col("name") == "train/reward").sort("step")
    assert reward["step"].to_list() == list(range(1, 31)) and reward["value"][0] == pytest.approx(0.594)
    length = df.filter(pl.col("name") == "train/mean_gen_tokens_per_sample").sort("step")["value"].to_list()
    assert length[0] == 551.0 and math.isnan(length[1]) and length[2] == 1017.0
    # the null and the step that is no integer are left out, and said so
    assert df.filter(pl.col("name") == "train/loss")["step"].to_list() == [1]
    assert df.filter(pl.col("name") == "train/odd")["step"].to_list() == [1]
    result = CliRunner().invoke(main, ["analyze", str(dump), "--out-dir", str(tmp_path / "cards")])
    assert result.exit_code == 3, result.output
    assert "train/reward collapsed to 0 from step 2" in result.output
    said = " ".join(result.output.replace("│", " ").split())
    assert "2 record(s) of" in said and "were skipped on import" in said, said


@pytest.mark.parametrize("text", ['{"lr": 0.1, "seed": 3}', '{"model": {"hidden": 64, "layers": 2}}', "[1, 2]"])
def test_json_that_is_no_scalar_dump_is_not_taken_for_one(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text)
    from rldk.converters import scalars_json

    assert not scalars_json.detect(path)
