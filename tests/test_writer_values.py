"""What the writer records for every kind of value, step and run id it is given."""
from __future__ import annotations

import json
import math
import os
import struct
import warnings

import numpy as np
import pytest

import rldk.writer as w
from rldk.core.errors import InvalidRunId, StoreError
from rldk.core.store import open_store
from rldk.writer import EventWriter, RldkWarning


def write(tmp_path, calls, run_id="r", **options):
    """Log ``calls`` [(step, {name: value})] through a real writer; return the metrics frame."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RldkWarning)
        with EventWriter(tmp_path, run_id, capture_env=False, **options) as writer:
            for step, values in calls:
                writer.log(step, values)
    store = open_store(tmp_path)
    return store.sql("SELECT step, name, value, ivalue, text FROM metrics ORDER BY seq, name")


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def test_floats_round_trip_bit_for_bit(tmp_path):
    values = [0.1, -0.0, 1e-310, 1.7976931348623157e308, math.inf, -math.inf, math.nan,
              struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]]   # a NaN with a payload
    frame = write(tmp_path, [(i, {"x": v}) for i, v in enumerate(values)])
    assert [bits(v) for v in frame["value"]] == [bits(v) for v in values]


def test_nan_and_inf_are_stored_and_counted(tmp_path):
    with EventWriter(tmp_path, "r", capture_env=False) as writer:
        writer.log(0, loss=math.nan, kl=1.0)
        writer.log(1, loss=math.inf, kl=2.0)
    end = json.loads(open_store(tmp_path).sql(
        "SELECT attrs FROM run_events WHERE name = 'end'")["attrs"][0])
    assert end["counters"]["nonfinite"] == {"loss": 2}


@pytest.mark.parametrize("value, expected", [
    (3, (3.0, 3, None)),
    (True, (1.0, 1, None)),
    (2**63 - 1, (float(2**63 - 1), 2**63 - 1, None)),
    (np.float32(0.5), (0.5, None, None)),
    (np.int64(7), (7.0, 7, None)),
    (np.array(2.5), (2.5, None, None)),
    (np.array([4.0]), (4.0, None, None)),
    (None, (None, None, None)),
    ("high", (None, None, "high")),
    (2**70, (float(2**70), None, str(2**70))),
    (10**400, (math.inf, None, str(10**400))),
    (np.zeros((2, 3)), (None, None, "<ndarray shape=(2, 3)>")),
    ([1, 2], (None, None, "[1, 2]")),
])
def test_non_float_values_are_recorded_never_raised(tmp_path, value, expected):
    frame = write(tmp_path, [(0, {"m": value, "ok": 1.0})])
    row = frame.filter(frame["name"] == "m").row(0)
    assert row[2:] == expected


def test_a_bad_value_warns_once_per_name(tmp_path):
    with pytest.warns(RldkWarning, match="metric 'm': not a number: str") as record:
        with EventWriter(tmp_path, "r", capture_env=False) as writer:
            for step in range(5):
                writer.log(step, m="x")
    assert sum("'m'" in str(r.message) for r in record) == 1


def test_torch_scalars_are_read_at_log_time(tmp_path):
    torch = pytest.importorskip("torch")
    t = torch.tensor(1.5)
    with EventWriter(tmp_path, "r", capture_env=False) as writer:
        writer.log(0, loss=t)
        t.add_(10.0)                       # changed in place after logging
        writer.log(1, loss=torch.tensor([2.5]), big=torch.ones(3))
    frame = open_store(tmp_path).sql("SELECT step, name, value, text FROM metrics ORDER BY step, name")
    assert frame.rows() == [(0, "loss", 1.5, None), (1, "big", None, "<Tensor shape=(3,)>"),
                            (1, "loss", 2.5, None)]


def test_strict_mode_raises_in_the_caller(tmp_path):
    with EventWriter(tmp_path, "r", strict=True, capture_env=False) as writer:
        writer.log(0, loss=math.nan)                     # NaN is data, not an error
        with pytest.raises(ValueError, match="metric 'm': not a number: str"):
            writer.log(1, m="x")
        with pytest.raises(ValueError, match="step 1.5 is not an integer"):
            writer.log(1.5, loss=1.0)


def test_unicode_and_very_long_names(tmp_path):
    long_name = "policy/" + "λ" * 5000
    frame = write(tmp_path, [(0, {long_name: 1.0, "奖励/均值": 2.0, "": 3.0})])
    assert sorted(frame["name"]) == sorted([long_name, "奖励/均值", ""])


def test_steps_negative_decreasing_duplicate_and_invalid(tmp_path):
    calls = [(5, {"x": 1.0}), (3, {"x": 2.0}), (3, {"x": 3.0}), (-1, {"x": 4.0}),
             (2.0, {"x": 5.0}), ("7", {"x": 6.0}), (None, {"x": 7.0})]
    frame = write(tmp_path, calls)
    assert frame["step"].to_list() == [5, 3, 3, -1, 2, None, None]
    assert frame["value"].to_list() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]   # nothing dropped
    end = json.loads(open_store(tmp_path).sql("SELECT attrs FROM run_events WHERE name='end'")["attrs"][0])
    assert end["counters"]["backward_steps"] == 2          # 5 -> 3, 3 -> -1
    assert end["counters"]["negative_steps"] == 1
    assert end["counters"]["bad_steps"] == 1               # "7"; None is a step-less event


def test_duplicate_steps_keep_every_row_and_metric_takes_the_last(tmp_path):
    write(tmp_path, [(1, {"x": 1.0}), (2, {"x": 2.0}), (2, {"x": 9.0})])
    run = open_store(tmp_path).runs()[0]
    assert run.metric("x").rows() == [(1, 1.0), (2, 9.0)]
    assert open_store(tmp_path).sql("SELECT count(*) FROM metrics")[0, 0] == 3


def test_caller_may_reuse_its_dict(tmp_path):
    stats = {}
    with EventWriter(tmp_path, "r", capture_env=False) as writer:
        for step in range(3):
            stats["loss"] = float(step)
            writer.log(step, stats)
            stats["loss"] = -1.0                     # mutated right after the call
    assert open_store(tmp_path).runs()[0].metric("loss")["value"].to_list() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("run_id", ["../escape", "a/b", "/abs", "..", ".hidden", "", "a\\b",
                                    "x" * 201, "a\x00b", 5])
def test_run_ids_that_could_escape_the_store_are_refused(tmp_path, run_id):
    with pytest.raises(InvalidRunId, match="invalid run id"):
        EventWriter(tmp_path / "store", run_id, capture_env=False)
    assert not any(p for p in tmp_path.rglob("*") if p.is_file())


def test_env_vars_override_code(tmp_path, monkeypatch):
    monkeypatch.setenv("RLDK_DIR", str(tmp_path / "from_env"))
    monkeypatch.setenv("RLDK_RUN_ID", "env-run")
    with EventWriter(tmp_path / "from_code", "code-run", capture_env=False) as writer:
        writer.log(0, x=1.0)
    assert open_store(tmp_path / "from_env").run_ids == ["env-run"]
    assert not (tmp_path / "from_code").exists()


def test_unwritable_store_fails_clearly_at_init(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match=r"cannot write the event store at .*file.*pass a writable directory"):
        EventWriter(blocker, "r", capture_env=False)


def test_logging_after_close_warns_and_counts(tmp_path):
    writer = EventWriter(tmp_path, "r", capture_env=False)
    writer.close()
    with pytest.warns(RldkWarning, match="is closed"):
        writer.log(0, x=1.0)
    assert writer.stats["calls_after_close"] == 1


def test_module_level_api(tmp_path):
    w.init(tmp_path, run_id="mod", config={"lr": 1e-5, "seed": 1}, capture_env=True)
    try:
        w.log(0, reward_mean=0.5, kl=0.01)
        w.log(1, {"objective/kl": 0.02})
        with w.span("rollout"):
            pass
        w.log_samples(1, ["p"], ["r"], [1.0])
        w.log_memory(1)
        w.log_rng(1)
    finally:
        w.close()
    store = open_store(tmp_path)
    run = store.run("mod")
    assert run.meta["config"] == {"lr": 1e-5, "seed": 1} and run.meta["seed"] == 1
    assert run.meta["argv"] and "packages" in run.meta and run.status == "complete"
    kinds = dict(store.sql("SELECT kind, count(*) FROM events GROUP BY 1").rows())
    assert kinds["metric"] == 3 and kinds["span"] == 1 and kinds["sample"] == 1
    assert kinds["memory"] >= 1 and kinds["rng"] >= 2
    span = store.sql("SELECT step, value FROM spans").row(0)
    assert span[0] == 1 and 0 <= span[1] < 1.0        # the last logged step; seconds


def test_log_without_init_writes_to_env_dir_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("RLDK_DIR", str(tmp_path))
    monkeypatch.setenv("RLDK_RUN_ID", "auto")
    w.close()
    with pytest.warns(RldkWarning, match="init\\(\\) was not called: writing run 'auto'"):
        w.log(0, x=1.0)
    w.close()
    assert open_store(tmp_path).run("auto").metric("x")["value"].to_list() == [1.0]


def test_samples(tmp_path):
    with EventWriter(tmp_path, "r", capture_env=False) as writer:
        writer.log_samples(3, ["p1", "p2"], ["r1", b"r2\xff"], [0.5, "bad"], source=["a", "b"])
    rows = open_store(tmp_path).sql("SELECT step, text, value, attrs FROM samples ORDER BY seq, attrs").rows()
    assert [(r[0], r[1], r[2]) for r in rows] == [(3, "r1", 0.5), (3, "r2\ufffd", None)]
    assert json.loads(rows[0][3]) == {"prompt": "p1", "index": 0, "source": "a"}


def test_close_is_idempotent_and_files_are_complete(tmp_path):
    writer = EventWriter(tmp_path, "r", capture_env=False)
    writer.log(0, x=1.0)
    writer.close()
    writer.close()
    # no temporaries left: the only hidden file is the store's (empty) merge lock
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".rldk.lock"]
    assert os.listdir(tmp_path)
