"""CSV import: the columnar (Polars) blocks give exactly what the row path gives."""
from __future__ import annotations

import pytest
from test_convert_jsonl_columnar import _same  # the same comparison of two imports

from rldk.converters import convert_path, csvlog
from rldk.core.store import open_store


def _events(store_dir):
    rows = open_store(store_dir).sql(
        "SELECT step, name, value, epoch_ms(wall_time) AS wall FROM metrics ORDER BY seq").rows()
    return sorted(rows, key=lambda r: (r[0], r[1], str(r[2]), str(r[3])))


def _both(tmp_path, monkeypatch, text: str, batch_bytes: int = 4 << 20, **options):
    """Import ``text`` as shipped (columnar blocks) and with every block forced through
    the row path; returns both (summary, events) and how many blocks went columnar."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "log.csv"
    src.write_bytes(text.encode())
    monkeypatch.setattr(csvlog, "BATCH_BYTES", batch_bytes)
    calls = {"n": 0}
    real = csvlog._columnar

    def counting(rows, state, block):
        tables = real(rows, state, block)
        calls["n"] += tables is not None
        return tables

    monkeypatch.setattr(csvlog, "_columnar", counting)
    fast = convert_path(src, "csv", tmp_path / "fast", **options)
    monkeypatch.setattr(csvlog, "_columnar", lambda rows, state, block: None)
    slow = convert_path(src, "csv", tmp_path / "slow", **options)
    return (fast, _events(tmp_path / "fast")), (slow, _events(tmp_path / "slow")), calls["n"]


@pytest.mark.parametrize("end", ["\n", "\r\n"])
def test_regular_logs_import_columnar_with_the_same_events(tmp_path, monkeypatch, end):
    lines = ["step,loss,kl,lr,wall_time"]
    lines += [f"{i},{1 / (i + 1)},{'' if i % 7 else 0.01 * i},{'nan' if i % 11 == 0 else 1e-4},{1.7e9 + i}"
              for i in range(3000)]
    fast, slow, blocks = _both(tmp_path, monkeypatch, end.join(lines) + end, batch_bytes=10_000)
    assert blocks > 5
    _same(fast, slow)
    assert fast[0].metrics == ("kl", "loss", "lr")


def test_irregular_blocks_fall_back_and_name_their_lines(tmp_path, monkeypatch):
    lines = ["step,reward,kl"] + [f"{i},{0.5 * i},{0.1}" for i in range(800)]
    lines[100] = "99,0.5"                                  # ragged
    lines[300] = "299,high,0.1"                            # text among numbers
    lines[400] = "399, 1_000 ,inf"                         # Python reads it, Polars does not
    lines[500] = f"{2 ** 70},1.0,0.1"                      # a step beyond int64
    lines[600] = "step,reward,kl,entropy"                  # a rewritten header, one column more
    lines[601:] = [f"{600 + i},{0.5},{0.1},{1.5}" for i in range(200)]
    fast, slow, blocks = _both(tmp_path, monkeypatch, "\n".join(lines), batch_bytes=1500)
    _same(fast, slow)
    assert blocks >= 3
    assert [s.where for s in fast[0].skipped] == ["line 101", "line 501", "line 301"]
    assert "entropy" in fast[0].metrics


@pytest.mark.parametrize("text", [
    '\ufeffstep,x\n1,2\n2,3\n',                             # a byte order mark
    'step,x\r\n1,2\r\n2,3\r\n',                             # Windows line ends
    'step,x\r\n1,2\r\n\r\n2,x\r\n3,4\r\n',                  # ... with a blank line and text
    'step,x\r\n1,2\r\n2,3\r4\r\n5,6\r\n',                    # a lone carriage return splits a row
    'loss\r\n1\r\n\r\n2\r\n',                              # one column, a blank line
    'step,x,note\n1,2,a\n2,3,"b, quoted\nover two lines"\n3,4,c\n',   # quotes: the csv module decides
    'step,x\n1,2\n\n2,3\n',                                 # a blank line
    'loss\n1\n2\n\n3\n',                                    # a blank line, one column
    'step,x,x\n1,2,3\n',                                    # a repeated column name
    'step,x,response\n1,2,hi\n2,3,\n',                      # text makes samples
    'step,x\n1, \n2,3\n',                                   # a cell of spaces
    '1,2\n1,2\n3,4\n',                                      # numbers as the header, repeated
    'step,x\n1,2\n3,4,5\n6\n7,8\n',                          # a long and a short row: commas add up
    'step,x\n1,2\n2,3',                                      # no line end at the end
])
def test_edge_cases_match_the_row_path(tmp_path, monkeypatch, text):
    fast, slow, _ = _both(tmp_path / "case", monkeypatch, text)
    _same(fast, slow)


def test_field_map_and_line_numbers_after_quoted_rows(tmp_path, monkeypatch):
    lines = ["it,r,x"] + [f"{i},{float(i)},{i / 2}" for i in range(400)]
    fast, slow, blocks = _both(tmp_path, monkeypatch, "\n".join(lines) + "\n", batch_bytes=800,
                               field_map="step=it,reward=r")
    _same(fast, slow)
    assert blocks > 5 and "reward" in fast[0].metrics and "it" not in fast[0].metrics
    lines[50] = '49,"1.5",0.5'                             # quoted from here on: the csv module reads
    lines[300] = "299,0.5"
    fast, slow, _ = _both(tmp_path / "quoted", monkeypatch, "\n".join(lines) + "\n", batch_bytes=800)
    _same(fast, slow)
    assert [s.where for s in fast[0].skipped] == ["line 301"]


def test_imported_segments_keep_the_statistics_readers_use(tmp_path):
    """Imports write their own Parquet options; the footer facts the readers take from
    statistics (one run, kind and rank; no null step or value) must still be there."""
    from rldk.core.files import _metadata, no_nulls, single_values

    src = tmp_path / "log.csv"
    # rows enough for a segment of metrics alone (the last one holds the run events too)
    src.write_text("step,loss,kl\n" + "".join(f"{i},{i / 7},{i % 3}\n" for i in range(300_000)))
    convert_path(src, "csv", tmp_path / "store")
    metas = [_metadata(str(f)) for f in sorted((tmp_path / "store").glob("*.parquet"))]
    metrics = [m for m in metas if single_values(m, ("kind",)) == {"kind": "metric"}]
    assert len(metrics) >= 1
    assert single_values(metrics[0], ("run_id", "kind", "rank")) == {"run_id": "log", "kind": "metric", "rank": 0}
    assert no_nulls(metrics[0], "step") and no_nulls(metrics[0], "value")
