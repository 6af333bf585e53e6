"""The writer benchmark's one-process realistic loop (``--blocks``) runs and measures each
logger's own cost: a smoke run, so that the figures in the README stay reproducible."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "writer_overhead.py"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the encoder's CPU is read from /proc")
def test_blocks_reports_each_loggers_direct_cost():
    proc = subprocess.run([sys.executable, str(BENCH), "--blocks", "2", "--block-steps", "40"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {m["logger"]: {k: float(v) for k, v in m.groupdict().items() if k != "logger"}
            for m in re.finditer(r"^  (?P<logger>jsonl|rldk)\s+calls\s+(?P<calls>\S+)\s+flush\s+(?P<flush>\S+)\s+"
                                 r"\(CPU\s+(?P<flush_cpu>\S+)\)\s+off-CPU\s+(?P<off>\S+)\s+background\s+"
                                 r"(?P<background>\S+)\s+loop thread\s+(?P<thread>\S+)\s+\(\s*(?P<unflushed>\S+) "
                                 r"without the flush's wait\)\s+no spare core\s+(?P<bound>\S+)$", proc.stdout, re.M)}
    assert set(rows) == {"jsonl", "rldk"}, proc.stdout
    for row in rows.values():
        assert row["calls"] > 0 and 0 <= row["flush_cpu"] <= row["flush"] + 0.01
    assert rows["jsonl"]["background"] == 0.0          # JSONL has no thread of its own
    assert rows["rldk"]["background"] > 0.0            # the encoder wrote the block's segment
    # the flush's wait is the encoder writing: counted once, in background (2 cycles: the
    # median of the sums is the sum of the medians)
    assert rows["rldk"]["bound"] == pytest.approx(rows["rldk"]["calls"] + rows["rldk"]["flush_cpu"]
                                                  + rows["rldk"]["background"], abs=0.02)
    # without the block's flush wait (which a training loop pays once, at close): the flush's
    # wall time less its CPU comes off the loop thread's figure
    for row in rows.values():
        assert row["unflushed"] == pytest.approx(row["thread"] - (row["flush"] - row["flush_cpu"]), abs=0.03)
    # the loop thread's figure may be below 0 in so short a run: the off-CPU noise of a 40-step block
    assert re.search(r"rldk / JSONL: loop thread -?\d+\.\d\dx \(-?\d+\.\d\dx without the block's flush wait, "
                     r"which a training loop pays once, at close\), no spare core \d+\.\d\dx", proc.stdout)
