"""JSON Lines import: the columnar (Polars) batches give exactly what the row path gives."""
from __future__ import annotations

import json
import math

import pytest

from rldk.converters import convert_path, jsonl
from rldk.core.store import open_store


def _events(store_dir):
    rows = open_store(store_dir).sql(
        "SELECT step, name, value, epoch_ms(wall_time) AS wall FROM metrics ORDER BY seq").rows()
    return sorted(rows, key=lambda r: (r[0], r[1], str(r[2]), str(r[3])))


def _both(tmp_path, monkeypatch, text: str, batch_bytes: int = 4 << 20, **options):
    """Import ``text`` twice: as shipped (columnar batches), and with every batch forced
    through the row path; returns both (summary, events)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "log.jsonl"
    src.write_text(text)
    monkeypatch.setattr(jsonl, "BATCH_BYTES", batch_bytes)
    fast = convert_path(src, "jsonl", tmp_path / "fast", **options)
    calls = {"n": 0}
    real = jsonl._columnar

    def counting(rows, batch):
        tables = real(rows, batch)
        calls["n"] += tables is not None         # batches that went columnar
        return tables

    monkeypatch.setattr(jsonl, "_columnar", counting)
    convert_path(src, "jsonl", tmp_path / "fast2", **options)
    monkeypatch.setattr(jsonl, "_columnar", lambda rows, batch: None)
    slow = convert_path(src, "jsonl", tmp_path / "slow", **options)
    return (fast, _events(tmp_path / "fast")), (slow, _events(tmp_path / "slow")), calls["n"]


def _same(a, b):
    (sa, ea), (sb, eb) = a, b
    assert len(ea) == len(eb)
    for x, y in zip(ea, eb):
        assert x[:2] == y[:2] and x[3] == y[3]
        assert x[2] == y[2] or (math.isnan(x[2]) and math.isnan(y[2]))
    assert sa.rows == sb.rows and [str(s) for s in sa.skipped] == [str(s) for s in sb.skipped]
    assert sa.runs[0].steps == sb.runs[0].steps and sa.metrics == sb.metrics


def test_regular_logs_import_columnar_with_the_same_events(tmp_path, monkeypatch):
    lines = [{"step": i, "loss": 1.0 / (i + 1), "ok": i % 2 == 0, "n": i * 3, "lr": None if i % 5 else 1e-4,
              "data": {"actor": {"kl": 0.01 * i}}, "hist": [1, 2], "wall_time": 1700000000.5 + i}
             for i in range(3000)]
    fast, slow, batches = _both(tmp_path, monkeypatch, "".join(json.dumps(r) + "\n" for r in lines),
                                batch_bytes=20_000)
    assert batches > 5
    _same(fast, slow)
    assert "data/actor/kl" in fast[0].metrics and "hist" not in fast[0].metrics


def test_irregular_batches_fall_back_and_name_their_lines(tmp_path, monkeypatch):
    lines = [json.dumps({"global_step": i, "reward": 0.5 * i}) for i in range(400)]
    lines[3] = "{not json"                                  # a bad line in the first batch
    lines[250] = json.dumps({"global_step": 250, "reward": "high"})   # a text value mid-file
    lines[300] = "[1, 2]"                                   # not an object
    lines[350] = json.dumps({"global_step": 2 ** 70, "reward": 1.0})  # a step beyond int64
    lines.insert(100, "")
    fast, slow, columnar = _both(tmp_path, monkeypatch, "\n".join(lines) + "\n", batch_bytes=3000)
    _same(fast, slow)
    assert columnar > 0
    where = [s.where for s in fast[0].skipped]
    assert where == ["line 4", "line 252", "line 302", "line 352"]   # 252: the text value, counted
    assert fast[0].runs[0].rows == slow[0].runs[0].rows


def test_field_map_and_row_number_steps(tmp_path, monkeypatch):
    text = "".join(json.dumps({"it": i, "r": float(i), "x": i / 2}) + "\n" for i in range(500))
    fast, slow, columnar = _both(tmp_path, monkeypatch, text, batch_bytes=2000, field_map="step=it,reward=r")
    _same(fast, slow)
    assert columnar > 5
    assert "reward" in fast[0].metrics and "it" not in fast[0].metrics
    text = "".join(json.dumps({"a": float(i)}) + "\n" for i in range(500))
    fast, slow, _ = _both(tmp_path / "rownum", monkeypatch, text, batch_bytes=2000)
    _same(fast, slow)
    assert fast[1][0][0] == 0 and fast[1][-1][0] == 499


@pytest.mark.parametrize("text", [
    '{"step": 1, "x": 1}\n{"step": 2, "x": true}\n',          # bool after int: Polars refuses
    '{"step": 1, "x": NaN}\n{"step": 2, "x": Infinity}\n',   # bare NaN tokens
    '{"step": 1.5, "x": 1}\n{"step": 2, "x": 2}\n',           # a step that is not an integer
    '{"step": 1, "x": 1, "x/y": 2, "x2": {"y": 3}}\n',        # nested names
    '{"step": 1, "x": "oops"}\n{"step": 2, "x": 3}\n',       # text, then numbers: reported
    '{"step": 0, "x": 1}\n{"step": 2.5, "x": 2}\n{"step": null, "x": 3}\n{"step": 4.0, "x": 4}\n'
    '{"step": -9223372036854775808, "x": 5}\n{"step": 9223372036854774784, "x": 6}\n',  # int64's ends
    '{"step": 0, "x": 1}\n{"step": -9223372036854775808, "x": 2}\n{"step": 9223372036854774784, "x": 3}\n'
    '{"step": 3.0, "x": 4}\n',                                # the same, every step an integer
    '{"step": 1, "x": 1}\n{"step": 1e300, "x": 2}\n{"step": 3, "x": 3}\n',    # a step beyond int64
])
def test_edge_cases_match_the_row_path(tmp_path, monkeypatch, text):
    fast, slow, _ = _both(tmp_path / "case", monkeypatch, text)
    _same(fast, slow)


def test_keys_new_in_a_later_batch_are_never_dropped(tmp_path, monkeypatch):
    """A batch is first read with the previous batch's schema (which would drop keys it
    lacks): a new key, one with no space after its colon, one beside nulls, and one
    nested in a known object must all arrive."""
    lines = [json.dumps({"step": i, "loss": 0.5, "data": {"kl": 0.1}}) for i in range(900)]
    lines[400] = json.dumps({"step": 400, "loss": 0.5, "data": {"kl": 0.1}, "new": 1.5})
    lines[500] = '{"step":500,"loss":null,"data":{"kl":0.1,"deep":2.5},"lr":null}'
    lines[600] = '{"step": 600, "loss" : 0.5, "data": {"kl": 0.1}, "late" :3}'
    fast, slow, columnar = _both(tmp_path, monkeypatch, "\n".join(lines) + "\n", batch_bytes=4000)
    _same(fast, slow)
    assert columnar > 8
    assert {"new", "data/deep", "late"} <= set(fast[0].metrics)
    assert [e[:3] for e in fast[1] if e[1] in ("new", "data/deep", "late")] == [
        (400, "new", 1.5), (500, "data/deep", 2.5), (600, "late", 3.0)]


@pytest.mark.parametrize("size", [1, 7, 70_000, 1 << 22])
def test_line_blocks_are_whole_lines_that_add_up_to_the_file(tmp_path, size):
    from rldk.converters.tabular import line_blocks

    text = b"".join(b"x" * n + b"\n" for n in (0, 3, 100_000, 5, 0, 200_000)) + b"no end"
    (tmp_path / "f").write_bytes(text)
    with open(tmp_path / "f", "rb") as handle:
        blocks = list(line_blocks(handle, size))
    assert b"".join(blocks) == text
    assert all(b.endswith(b"\n") for b in blocks[:-1]) and all(b for b in blocks)
    assert all(len(b) >= size or b is blocks[-1] for b in blocks)
