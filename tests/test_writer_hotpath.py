"""The writer's compiled hot path (rldk.writer._hotpath) against its pure-Python twin:
the same calls must leave the same events, in the same order, with the same counts."""
from __future__ import annotations

import json
import math
import threading
import warnings

import duckdb
import numpy as np
import pytest

from rldk.writer import EventWriter, RldkWarning

hotpath = pytest.importorskip("rldk.writer._hotpath", reason="the compiled hot path is not built "
                              "(pip install -e . needs a C compiler)")


def _script(writer) -> None:
    """Every kind of call, interleaved: the compiled path's floats (dicts and keywords,
    names changing back and forth), the fallback's values and steps, and other events."""
    a, b = {"loss": 0.5, "kl": 0.01}, {"lr": 1e-4}
    for step in range(300):
        writer.log(step, a)
        writer.log(step, b)                                  # names alternate every call
        writer.log(step, reward=float(step), nan=math.nan if step % 7 == 0 else 1.0)
        if step % 10 == 0:
            with writer.span("rollout"):
                pass
            writer.log(step, {"epoch": step // 10})          # an int: the Python path
        if step % 25 == 0:
            writer.log_samples(step, ["p"], ["r"], [0.5])
            writer.log(np.int64(step), {"loss": np.float32(0.25), "text": "hi", "none": None})
            writer.log(step - 1000, {"loss": -1.0})          # negative and backward
            writer.log(step, {})
        if step == 150:
            writer.flush()
    writer.log(301, {("not", "a", "str"): 1.0})


def _events(path):
    rows = duckdb.sql(f"SELECT kind, name, step, seq, value, ivalue, text FROM '{path}/*.parquet' "
                      "ORDER BY seq, name").fetchall()
    end = duckdb.sql(f"SELECT attrs FROM '{path}/*.parquet' WHERE kind = 'run' AND name = 'end'").fetchall()
    counters = json.loads(end[0][0])["counters"]
    rows = [r[:4] + (None,) + r[5:] if r[0] == "span" else r for r in rows]     # durations differ
    return [tuple("nan" if isinstance(x, float) and math.isnan(x) else x for x in r) for r in rows], counters


@pytest.mark.parametrize("flush_secs", [5.0, 0.005])
def test_compiled_and_python_paths_store_the_same_events(tmp_path, monkeypatch, flush_secs):
    stores = {}
    for mode in ("compiled", "python"):
        monkeypatch.setenv("RLDK_PURE_PYTHON", "1" if mode == "python" else "0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RldkWarning)
            with EventWriter(tmp_path / mode, "r", capture_env=False, flush_secs=flush_secs) as writer:
                assert (type(writer.log).__name__ == "builtin_function_or_method") == (mode == "compiled")
                _script(writer)
        stores[mode] = _events(tmp_path / mode)
    rows, counters = stores["compiled"]
    assert rows == stores["python"][0]
    assert counters == stores["python"][1]
    assert counters["nonfinite"] == {"nan": 43} and counters["backward_steps"] > 0
    spans = [r for r in rows if r[0] == "span"]
    assert [s[2] for s in spans] == list(range(0, 300, 10))   # a span takes the last logged step


def test_threads_logging_at_once_lose_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RLDK_PURE_PYTHON", "0")
    with EventWriter(tmp_path, "r", capture_env=False, flush_secs=0.05) as writer:
        def worker(name):
            for step in range(20_000):
                writer.log(step, {name: float(step)})
                if step % 1000 == 0:
                    writer.log_event("dataset", name, step)
        threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    counts = duckdb.sql(f"SELECT name, count(*), count(DISTINCT seq), sum(step) FROM '{tmp_path}/*.parquet' "
                        "WHERE kind = 'metric' GROUP BY name ORDER BY name").fetchall()
    assert counts == [(f"t{i}", 20_000, 20_000, sum(range(20_000))) for i in range(4)]
    seqs = duckdb.sql(f"SELECT count(*) = count(DISTINCT seq) FROM '{tmp_path}/*.parquet'").fetchall()
    assert seqs == [(True,)]


def test_recorder_takes_floats_and_hands_everything_else_on():
    other, woken = [], []
    rec = hotpath.Recorder(lambda *a, **kw: other.append((a, kw)), lambda: woken.append(rec.values), 3)
    rec.log(1, {"a": 1.0, "b": 2.0})
    rec.log(2, a=3.0, b=4.0)                   # same names by keyword: one names entry
    rec.log(3, None, c=5.0)
    for call in [(4, {"a": 1}), (5.0, {"a": 1.0}), (2**70, {"a": 1.0}), (6,), (7, {}), (8, {"a": 1.0}, )]:
        rec.log(*call[:1], *call[1:]) if len(call) > 1 else rec.log(*call)
    names, ids, steps, walls, values = rec.take()
    assert names == [("a", "b"), ("c",), ("a",)]
    assert np.frombuffer(ids, np.int32).tolist() == [0, 0, 1, 2]
    assert np.frombuffer(steps, np.int64).tolist() == [1, 2, 3, 8]
    assert np.frombuffer(values, np.float64).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 1.0]
    assert np.all(np.abs(np.frombuffer(walls, np.float64) - __import__("time").time()) < 60)
    assert [a[0] for a, _ in other] == [4, 5.0, 2**70, 6, 7]
    assert woken == [4, 5, 6] and rec.last_step == 8 and len(rec) == 0 and rec.take() is None
    rec.closed = 1
    rec.log(9, {"a": 1.0})
    assert other[-1] == ((9, {"a": 1.0}), {}) and len(rec) == 0
