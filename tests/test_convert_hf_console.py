"""Hugging Face Trainer console logs (``hf_console``): the metric dicts a TRL or
``transformers`` run prints between its progress bar's redraws."""
from __future__ import annotations

import json
import math

from click.testing import CliRunner

from rldk.cli import main
from rldk.converters import convert_path, detect_format, hf_console, verl
from rldk.core.store import open_store

START_UP = (
    "nohup: ignoring input\n"
    "[2025-03-30 17:15:30,373] [INFO] [config.py:1003:print]   aio_config ....... {'block_size': 1048576, "
    "'queue_depth': 8, 'thread_count': 1}\n"
    "{'train_batch_size': 64, 'gradient_accumulation_steps': 2}\n"
    "Map: 100%|##########| 500/500 [00:00<00:00, 5123.45 examples/s]\n"
)


def _bar(n: int, total: int) -> str:
    return f"\r {100 * n // total:3d}%|#         | {n}/{total} [00:{n:02d}<01:00, 25.35s/it]"


def _console(rows, total=6, summary=True) -> str:
    """A console as a GRPO run prints it: the bar's redraws (carriage returns, ANSI), a
    generation bar inside each step, a metric dict at every logged step, one evaluation."""
    out = [START_UP, _bar(0, total)]
    for step, row in rows:
        out.append("\rProcessed prompts: 100%|##########| 8/8 [00:02<00:00,  3.1it/s]\n")
        out.append(_bar(step, total) + "\n")
        out.append("\x1b[0m" + " " * 50 + "\r" + row + "\n")
        if step == 4:
            out.append(" 50%|#####     | 1/2 [00:01<00:01]\r100%|##########| 2/2 [00:02<00:00]\n")
            out.append("{'eval_loss': 0.5, 'eval_reward': 0.8, 'epoch': 0.67}\n")
    if summary:
        out.append("{'train_runtime': 321.5, 'train_samples_per_second': 1.2, 'train_steps_per_second': 0.02, "
                   "'train_loss': 0.01, 'epoch': 1.0}\n")
    return "".join(out)


ROWS = [
    (2, "{'loss': 0.0, 'grad_norm': 1.39, 'reward': 0.5, 'reward_std': 0.25, 'kl': 0.0, 'epoch': 0.33}"),
    (4, "{'loss': 0.001, 'grad_norm': nan, 'reward': 0.75, 'reward_std': 0.5, 'kl': tensor(0.02), 'epoch': 0.67}"),
    (6, "{'loss': 0.002, 'grad_norm': 2.5, 'reward': 1.0, 'reward_std': 0.0, 'kl': 0.04, 'note': 'clipped', "
        "'epoch': 1.0}"),
]


def test_a_trl_console_log_is_read_at_the_progress_bar_steps(tmp_path):
    f = tmp_path / "nohup.out"
    f.write_text(_console(ROWS))
    assert detect_format(f) == "hf_console" and not verl.detect(f)
    summary = convert_path(f, "auto", tmp_path / "s")
    assert summary.format == "hf_console"
    assert [str(s) for s in summary.skipped] == [f"{f}:line {_line_of(f, 'clipped')}: note: not a number: 'clipped'"]
    (run,) = open_store(tmp_path / "s").runs()
    assert run.id == "nohup"
    assert run.metric("reward").rows() == [(2, 0.5), (4, 0.75), (6, 1.0)]
    assert run.metric("kl").rows() == [(2, 0.0), (4, 0.02), (6, 0.04)]        # tensor(0.02) is 0.02
    assert math.isnan(run.metric("grad_norm")["value"][1])                    # nan stays NaN, not 0
    assert run.metric("eval_reward").rows() == [(4, 0.8)]                      # at the step it follows
    assert "train_runtime" not in run.metric_names()                          # the summary is no step
    assert run.status == "complete"


def test_a_console_cut_before_the_end_is_incomplete_and_says_what_it_read(tmp_path):
    f = tmp_path / "slurm-1234.out"
    f.write_text(_console(ROWS[:2], summary=False))
    convert_path(f, "hf_console", tmp_path / "s")
    (run,) = open_store(tmp_path / "s").runs()
    assert run.status == "incomplete"
    assert "progress bar at 4/6" in json.dumps(_imported(run))


def test_without_a_progress_bar_metric_lines_are_numbered(tmp_path):
    f = tmp_path / "train.log"
    f.write_text("".join(row + "\n" for _, row in ROWS[:2]))
    convert_path(f, "console", tmp_path / "s")
    (run,) = open_store(tmp_path / "s").runs()
    assert run.metric("reward").rows() == [(1, 0.5), (2, 0.75)]
    assert run.status == "unknown"
    assert "metric line number" in json.dumps(_imported(run))


def test_other_text_is_not_a_console_log(tmp_path):
    plain = tmp_path / "notes.log"
    plain.write_text(START_UP + "{'lr': 0.1, 'batch': 8}\n")      # dicts without 'epoch'
    assert not hf_console.detect(plain)
    result = CliRunner().invoke(main, ["import", "hf_console", str(plain), "--out-dir", str(tmp_path / "s")])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {plain}: no Hugging Face Trainer console log found (lines such as "
                                     "{'loss': 0.1, ..., 'epoch': 0.5} printed by a TRL or transformers run)")
    steps = tmp_path / "verl.log"
    steps.write_text("step:1 - critic/score/mean:0.5 - epoch:0\n")
    assert not hf_console.detect(steps) and detect_format(steps) == "verl"


def _line_of(f, text: str) -> int:
    """The 1-based number of the line (ended by a newline: a carriage return redraws it) holding ``text``."""
    return next(i for i, line in enumerate(f.read_bytes().split(b"\n"), 1) if text.encode() in line)


def _imported(run) -> dict:
    events = run.events("run")
    return json.loads(events.filter(events["name"] == "import")["attrs"][0])


def test_a_buffered_console_numbers_its_metric_lines_and_loses_none(tmp_path):
    """stdout flushed in blocks (a real TRL DPO console: 16 metric dicts come out at two
    redraws of the bar, the first on the same line as the bar): the bar's counter is no
    step for them, so they are numbered 1, 2, ... (no row lost to another at one step),
    the dict written after a bar on its line is read, and the import event says why."""
    rows = [f"{{'loss': {0.69 - i / 100}, 'rewards/margins': {i / 10}, 'epoch': {i / 8}}}" for i in range(1, 6)]
    f = tmp_path / "dpo.log"
    f.write_text(START_UP + _bar(2, 10) + _bar(4, 10) + rows[0] + "\n" + rows[1] + "\n" + rows[2] + "\n"
                 + _bar(8, 10) + "\n" + rows[3] + "\n" + rows[4] + "\n"
                 + "{'eval_loss': 0.5, 'epoch': 0.63}\n")
    summary = convert_path(f, "auto", tmp_path / "s")
    assert summary.format == "hf_console" and not summary.skipped
    (run,) = open_store(tmp_path / "s").runs()
    assert run.metric("loss").rows() == [(i, 0.69 - i / 100) for i in range(1, 6)]
    assert run.metric("eval_loss").rows() == [(5, 0.5)]
    assert "stdout was buffered" in _imported(run)["meta"]["step"]
