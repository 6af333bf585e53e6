"""Converter input that broke rldk before (issue #15): one-line errors or skipped lines, never a
traceback; a streamed import holds bounded memory."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from rldk.cli import main
from rldk.converters import convert_path

BIG = 2 ** 70
DEEP = "[" * 5000 + "]" * 5000

#: (format, file name, content, what must hold: "skip" a line, or "error" one line)
CASES = [
    ("jsonl", "a.jsonl", f'{{"step": {BIG}, "x": 1}}\n{{"step": 1, "x": 2}}\n', "skip"),
    ("jsonl", "a.jsonl", f'{{"step": 0, "x": {DEEP}}}\n{{"step": 1, "x": 2}}\n', "skip"),
    ("jsonl", "a.jsonl", '{"step": 0, "x": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}\n{\"step\": 1, \"x\": 2}\n", "ok"),
    ("csv", "a.csv", f"step,x\n{BIG},1\n1,2\n", "skip"),
    ("csv", "a.csv", f"step,x\n{-BIG},1\n1,2\n", "skip"),
    ("verl", "verl.jsonl", f'{{"step": {BIG}, "data": {{"actor/pg_loss": 0.1}}}}\n', "any"),
    ("verl", "train.log", f"step:{BIG} - a/b:0.5\nstep:2 - a/b:0.25\n", "any"),
    ("sb3", "progress.csv", f"rollout/ep_rew_mean,time/total_timesteps\n1.5,{BIG}\n2.5,200\n", "any"),
    ("trl", "trainer_state.json", json.dumps({"global_step": BIG, "log_history": [{"step": BIG, "loss": 1.0}]}), "any"),
    ("trl", "trainer_state.json", '{"global_step": 1, "log_history": ' + DEEP + "}", "any"),
]


@pytest.mark.parametrize(("fmt", "name", "content", "expect"), CASES)
def test_hand_made_inputs_give_a_summary_or_one_line(tmp_path, fmt, name, content, expect):
    src = tmp_path / "src"
    src.mkdir()
    (src / name).write_text(content)
    result = CliRunner().invoke(main, ["import", fmt, str(src), "--out-dir", str(tmp_path / "out")])
    assert "Traceback" not in result.output and not isinstance(result.exception, (RecursionError, OverflowError))
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 1:
        assert expect in ("any", "error")
        assert len(result.output.strip().splitlines()) == 1 and str(src) in result.output
    if expect == "skip":
        assert result.exit_code == 0
        summary = convert_path(src, fmt, tmp_path / "again")
        assert len(summary.skipped) == 1 and summary.rows >= 1
        assert "64-bit" in summary.skipped[0].reason or "nested" in summary.skipped[0].reason


# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork and exec, so a
# child of a big pytest process reports the parent's size; VmHWM is the new process's own
MEASURE = r"""
import sys
from rldk.converters import convert_path
summary = convert_path(sys.argv[1], "jsonl", sys.argv[2])
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(summary.rows, hwm // 1024, flush=True)
"""


def test_a_50_mb_jsonl_imports_in_bounded_memory(tmp_path):
    src = tmp_path / "big.jsonl"
    line = '{"step": %d, "reward": 0.5, "kl": 0.01, "loss": 1.25, "entropy": 2.5, "lr": 1e-05, "len": 120}\n'
    with open(src, "w") as f:
        step = 0
        while f.tell() < 50 << 20:
            f.write("".join(line % (step + i) for i in range(10_000)))
            step += 10_000
    out = subprocess.run([sys.executable, "-c", MEASURE, str(src), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows, peak_mb = map(int, out.stdout.split())
    assert rows >= step * 6
    # was ~8x the file (400+ MB here); now one stream of 4 MB blocks: the libraries' own
    # ~100 MB, the blocks in flight and the writer's summaries of each segment (~300 MB)
    assert peak_mb < 350, peak_mb
    assert os.listdir(tmp_path / "out")
