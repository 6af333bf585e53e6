"""TRL GRPO completion dumps (real ones, from the tiny GRPO run) -> sample events, and
the column recognition shared with the wandb stand-in and the trackio converter."""
from __future__ import annotations

import json
import math
import shutil

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rldk.analyzers import get
from rldk.cli import main
from rldk.converters import ConvertError, convert_path, detect_format
from rldk.converters.trl_completions import samples_table
from rldk.core.store import open_store


def _samples(store):
    rows = store.sql("SELECT step, text, value, attrs FROM samples ORDER BY step, seq")
    return [(s, t, v, json.loads(a)) for s, t, v, a in rows.iter_rows()]


def _dump_rows(folder):
    """Every row of every dump, in step and row order, as TRL wrote it."""
    return [r for f in sorted(folder.glob("completions_*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_trl_dump_columns_are_what_the_converter_expects(tiny_grpo):
    """The installed TRL writes step, prompt, completion, <reward fn>, advantage."""
    names = pq.read_schema(next((tiny_grpo.out / "completions").glob("*.parquet"))).names
    assert names == ["step", "prompt", "completion", "good_word_reward", "advantage"]


def test_completions_folder_becomes_one_sample_per_row(tiny_grpo, tmp_path):
    folder = tiny_grpo.out / "completions"
    assert detect_format(folder) == "trl_completions"
    summary = convert_path(folder, "auto", tmp_path / "s")
    assert [(r.run_id, r.samples, r.rows) for r in summary.runs] == [("out", 32, 32)]
    got = _samples(open_store(tmp_path / "s"))
    want = _dump_rows(folder)
    assert len(got) == len(want) == 32
    for (step, text, value, attrs), row in zip(got, want):
        assert (step, text, value) == (row["step"], row["completion"], row["good_word_reward"])
        assert attrs["prompt"] == row["prompt"] and attrs["rewards"] == {"good_word_reward": row["good_word_reward"]}
        assert attrs["advantage"] == row["advantage"] and attrs["source"].startswith("completions_")


def test_same_samples_as_the_trl_format_and_the_live_callback(tiny_grpo, tmp_path):
    convert_path(tiny_grpo.out / "completions", "trl_completions", tmp_path / "s")
    query = "SELECT step, text, value, attrs FROM samples ORDER BY step, text"
    assert open_store(tmp_path / "s").sql(query).equals(open_store(tiny_grpo.store).sql(query))


def test_one_dump_file_and_an_output_dir_without_trainer_state(tiny_grpo, tmp_path):
    one = sorted((tiny_grpo.out / "completions").glob("*.parquet"))[2]
    assert detect_format(one) == "trl_completions"
    summary = convert_path(one, "auto", tmp_path / "s1")
    assert [(r.run_id, r.samples, r.first_step) for r in summary.runs] == [("out", 4, None)]
    assert {s for s, *_ in _samples(open_store(tmp_path / "s1"))} == {3}
    shutil.copytree(tiny_grpo.out / "completions", tmp_path / "running" / "completions")
    assert detect_format(tmp_path / "running") == "trl_completions"
    assert [r.run_id for r in convert_path(tmp_path / "running", "auto", tmp_path / "s2").runs] == ["running"]


def test_several_output_dirs_are_several_runs(tiny_grpo, tmp_path):
    for name in ("a", "b"):
        shutil.copytree(tiny_grpo.out / "completions", tmp_path / "root" / name / "completions")
    summary = convert_path(tmp_path / "root", "trl_completions", tmp_path / "s")
    assert [(r.run_id, r.samples) for r in summary.runs] == [("a", 32), ("b", 32)]


def test_a_damaged_dump_is_skipped_and_strict_refuses_it(tiny_grpo, tmp_path):
    folder = tmp_path / "out" / "completions"
    shutil.copytree(tiny_grpo.out / "completions", folder)
    bad = folder / "completions_00009.parquet"
    bad.write_bytes(b"PAR1 not parquet")
    summary = convert_path(folder, "auto", tmp_path / "s")
    assert summary.runs[0].samples == 32
    assert [(s.file, s.where) for s in summary.skipped] == [(str(bad), "file")]
    assert summary.skipped[0].reason.startswith("cannot read the completions parquet")
    result = CliRunner().invoke(main, ["import", "trl_completions", str(folder), "--out-dir", str(tmp_path / "s2"),
                                       "--strict"])
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"Error: {bad}:file: cannot read the completions parquet (")
    assert line.endswith("); delete or re-dump it; --strict refuses to skip input: fix the file or drop --strict")


def test_no_dumps_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConvertError, match=r"empty: no TRL completion dumps .*log_completions=True\)$"):
        convert_path(tmp_path / "empty", "trl_completions", tmp_path / "s")
    result = CliRunner().invoke(main, ["import", "trl_completions", str(tmp_path / "empty"), "--out-dir",
                                       str(tmp_path / "s")])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {tmp_path / 'empty'}: no TRL completion dumps "
                                     "(completions/completions_<step>.parquet) found; "
                                     "train with GRPOConfig(log_completions=True)")


def test_reward_health_and_safety_read_the_converted_completions(tiny_grpo, tmp_path):
    convert_path(tiny_grpo.out / "completions", "trl_completions", tmp_path / "s")
    store = open_store(tmp_path / "s")
    safety = get("safety")
    assert safety.run(store, safety.params()).to_dict()["samples"] == 32
    health = get("reward_health")
    checks = health.run(store, health.params()).to_dict()["checks"]
    ran = {c.get("detector", c.get("name")) for c in checks if c["status"] == "ran"}
    assert {"saturation", "zero_std_groups"} <= ran          # both computed from the sample rewards


# ------------------------------------------------------------ column recognition
@pytest.mark.parametrize("columns, row, expected", [
    (["prompt", "completion", "reward"], ["p", "c", 0.5], (None, "c", 0.5, {"prompt": "p", "index": 0})),
    (["Query", "Response", "Score", "len"], ["p", "c", 2, 3], (None, "c", 2.0, {"prompt": "p", "index": 0, "len": 3})),
    (["step", "prompt", "completion", "fn_a", "fn_b", "advantage"], [7, "p", "c", 0.25, 0.5, -1.0],
     (7, "c", 0.75, {"prompt": "p", "index": 0, "rewards": {"fn_a": 0.25, "fn_b": 0.5}, "advantage": -1.0})),
    (["input", "output"], ["p", [{"role": "assistant", "content": "hi"}]], (None, "hi", None,
                                                                               {"prompt": "p", "index": 0})),
    (["global_step", "question", "answer", "reward"], [3.0, "p", "c", float("nan")],
     (3, "c", math.nan, {"prompt": "p", "index": 0})),
])
def test_columns_are_recognised_by_name(columns, row, expected):
    table = samples_table(columns, [row])
    got = table.to_pylist()[0]
    step, text, value, attrs = expected
    assert (got["step"], got["text"]) == (step, text)
    assert (got["value"] is None and value is None) or got["value"] == value or \
        (math.isnan(got["value"]) and math.isnan(value))
    assert json.loads(got["attrs"]) == attrs


def test_verl_validation_table_gives_one_sample_per_triple():
    columns = ["step", "input_1", "output_1", "score_1", "input_2", "output_2", "score_2"]
    table = samples_table(columns, [[5, "q1", "a1", 1.0, "q2", "a2", 0.0]], step=99)
    assert [(r["step"], r["text"], r["value"], json.loads(r["attrs"])) for r in table.to_pylist()] == [
        (5, "a1", 1.0, {"prompt": "q1", "index": 0}), (5, "a2", 0.0, {"prompt": "q2", "index": 1})]


def test_a_table_without_completions_is_not_samples():
    assert samples_table(["prompt", "reward"], [["p", 1.0]]) is None
