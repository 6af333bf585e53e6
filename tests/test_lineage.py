"""Dataset lineage: content hashes, events, graph, manifests, verify, overlap (API and CLI)."""
from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from rldk.analyzers import lineage as L
from rldk.cli import main
from rldk.core import hashing as H
from rldk.core.errors import MissingEvents, UsageError
from rldk.core.store import open_store
from rldk.writer import EventWriter
from rldk.writer import lineage as W


def sample_table(n: int = 20_000) -> pa.Table:
    """A table with every layout the hash must see through: strings, nulls, lists, structs."""
    rng = np.random.default_rng(0)
    score = rng.normal(size=n)
    return pa.table({
        "id": np.arange(n),
        "prompt": [f"prompt {i} " * (i % 4) for i in range(n)],
        "reward": rng.normal(size=n),
        "score": pa.array(score, mask=np.arange(n) % 7 == 0),
        "tokens": pa.array([list(range(i % 5)) if i % 11 else None for i in range(n)], pa.list_(pa.int32())),
        "meta": pa.array([{"source": f"s{i % 3}", "len": i % 9} for i in range(n)]),
        "flag": pa.array([bool(i % 2) if i % 13 else None for i in range(n)]),
    })


@pytest.fixture(scope="module")
def table():
    return sample_table()


@pytest.fixture(scope="module")
def digest(table):
    return H.hash_table(table).digest


# ----------------------------------------------------------------- invariance
def test_digest_is_32_hex_and_counts_rows(table):
    h = H.hash_table(table)
    assert len(h.digest) == 32 and int(h.digest, 16) >= 0
    assert h.rows == 20_000
    assert [name for name, _ in h.schema] == sorted(table.column_names)
    assert len(h.blocks) == math.ceil(20_000 / H.BLOCK_ROWS)


@pytest.mark.parametrize("relayout", [
    "rechunk", "combine", "one_row_chunks_head", "large_string", "dictionary", "string_view",
    "column_order", "batches", "large_list",
])
def test_hash_ignores_layout(table, digest, relayout):
    t = table
    if relayout == "rechunk":
        t = pa.concat_tables([t.slice(0, 1), t.slice(1, 4999), t.slice(5000, 8192), t.slice(13192)])
    elif relayout == "combine":
        t = pa.concat_tables([t.slice(0, 7), t.slice(7)]).combine_chunks()
    elif relayout == "one_row_chunks_head":
        t = pa.concat_tables([t.slice(i, 1) for i in range(50)] + [t.slice(50)])
    elif relayout == "large_string":
        t = t.set_column(1, "prompt", t["prompt"].cast(pa.large_string()))
    elif relayout == "dictionary":
        t = t.set_column(1, "prompt", t["prompt"].dictionary_encode())
    elif relayout == "string_view":
        t = t.set_column(1, "prompt", t["prompt"].cast(pa.string_view()))
    elif relayout == "column_order":
        t = t.select(list(reversed(t.column_names)))
    elif relayout == "batches":
        t = pa.Table.from_batches(t.to_batches(max_chunksize=333))
    elif relayout == "large_list":
        t = t.set_column(4, "tokens", t["tokens"].cast(pa.large_list(pa.int32())))
    assert H.hash_table(t).digest == digest


def test_hash_ignores_bytes_under_nulls_and_nan_payloads():
    # same logical values: [1.5, null, nan]; different bytes under the null and in the NaN
    a = pa.Array.from_buffers(pa.float64(), 3, [pa.py_buffer(np.packbits([1, 0, 1], bitorder="little")),
                                                pa.py_buffer(np.array([1.5, 7.0, np.nan]).tobytes())])
    weird_nan = np.array([0x7FF8_0000_0000_0001], dtype=np.uint64).view(np.float64)[0]
    b = pa.Array.from_buffers(pa.float64(), 3, [pa.py_buffer(np.packbits([1, 0, 1], bitorder="little")),
                                                pa.py_buffer(np.array([1.5, -3.0, weird_nan]).tobytes())])
    assert H.hash_table(pa.table({"x": a})).digest == H.hash_table(pa.table({"x": b})).digest


def test_parquet_file_hash_ignores_row_groups_and_compression(table, digest, tmp_path):
    for i, (rg, codec) in enumerate([(1000, "zstd"), (7777, "snappy"), (50_000, "none")]):
        path = tmp_path / f"t{i}.parquet"
        pq.write_table(table, path, row_group_size=rg, compression=codec)
        assert H.hash_path(path).digest == digest


def test_same_content_from_every_container(table, digest, tmp_path):
    import polars as pl

    datasets = pytest.importorskip("datasets")          # the [trl] extra

    assert H.hash_data(pl.from_arrow(table)).digest == digest
    records = [{"a": i, "b": f"x{i}"} for i in range(100)]
    from_records = H.hash_data(records).digest
    assert H.hash_data(pa.Table.from_pylist(records)).digest == from_records
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    assert H.hash_path(path).digest == from_records
    ds = datasets.Dataset.from_list(records)
    assert H.hash_data(ds).digest == from_records
    # a selection (indices mapping) hashes as the rows it selects
    picked = ds.select([5, 3, 9])
    assert H.hash_data(picked).digest == H.hash_data([records[5], records[3], records[9]]).digest


# ----------------------------------------------------------------- sensitivity
@pytest.mark.parametrize("change", [
    "one_float_ulp", "one_int", "one_char", "null_for_value", "empty_for_null_string", "swap_rows",
    "drop_last_row", "rename_column", "int32_type", "empty_list_for_null_list", "struct_field", "bool",
])
def test_any_change_changes_hash(table, digest, change):
    t = table
    col = {n: i for i, n in enumerate(t.column_names)}
    if change == "one_float_ulp":
        r = t["reward"].to_numpy().copy()
        r[12_345] = np.nextafter(r[12_345], np.inf)
        t = t.set_column(col["reward"], "reward", pa.array(r))
    elif change == "one_int":
        ids = t["id"].to_numpy().copy()
        ids[-1] += 1
        t = t.set_column(col["id"], "id", pa.array(ids))
    elif change == "one_char":
        p = t["prompt"].to_pylist()
        p[101] = p[101].replace("1", "2", 1)
        t = t.set_column(col["prompt"], "prompt", pa.array(p))
    elif change == "null_for_value":
        s = t["score"].to_pylist()
        s[1] = None
        t = t.set_column(col["score"], "score", pa.array(s))
    elif change == "empty_for_null_string":
        p = t["prompt"].to_pylist()
        assert p[0] == ""
        p[0] = None
        t = t.set_column(col["prompt"], "prompt", pa.array(p))
    elif change == "swap_rows":
        idx = np.arange(t.num_rows)
        idx[[10, 11]] = idx[[11, 10]]
        t = t.take(idx)
    elif change == "drop_last_row":
        t = t.slice(0, t.num_rows - 1)
    elif change == "rename_column":
        t = t.rename_columns([("reward2" if n == "reward" else n) for n in t.column_names])
    elif change == "int32_type":
        t = t.set_column(col["id"], "id", t["id"].cast(pa.int32()))
    elif change == "empty_list_for_null_list":
        tk = t["tokens"].to_pylist()
        assert tk[0] is None
        tk[0] = []
        t = t.set_column(col["tokens"], "tokens", pa.array(tk, pa.list_(pa.int32())))
    elif change == "struct_field":
        m = t["meta"].to_pylist()
        m[5]["len"] += 1
        t = t.set_column(col["meta"], "meta", pa.array(m))
    elif change == "bool":
        f = t["flag"].to_pylist()
        f[1] = not f[1]
        t = t.set_column(col["flag"], "flag", pa.array(f))
    assert H.hash_table(t).digest != digest


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.text(max_size=6)), min_size=1, max_size=40),
       where=st.integers(min_value=0), new=st.one_of(st.none(), st.text(max_size=6)),
       cut=st.integers(min_value=0))
def test_property_chunking_never_matters_and_any_edit_does(values, where, new, cut):
    base = pa.table({"s": pa.array(values, pa.string())})
    k = cut % (len(values) + 1)
    rechunked = pa.concat_tables([base.slice(0, k), base.slice(k)])
    assert H.hash_table(rechunked).digest == H.hash_table(base).digest
    edited = list(values)
    i = where % len(values)
    edited[i] = new
    same = edited == values
    assert (H.hash_table(pa.table({"s": pa.array(edited, pa.string())})).digest
            == H.hash_table(base).digest) == same


def test_duplicate_column_names_are_refused():
    t = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    with pytest.raises(UsageError, match="duplicate column names: a"):
        H.hash_table(t)


# ------------------------------------------------------------ events and graph
@pytest.fixture(scope="module")
def lineage_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("lineage")
    raw = root / "raw.parquet"
    pq.write_table(pa.table({"prompt": [f"What is {i} + {i}?" for i in range(200)],
                             "answer": [str(2 * i) for i in range(200)]}), raw)

    with EventWriter(root / "runs", "sft", capture_env=False) as w:
        @W.transform(w)
        def keep_long(table, min_len=15):
            return table.filter(pc.greater_equal(pc.utf8_length(table["prompt"]), min_len))

        @W.transform(w)
        def split(table, val_fraction=0.1):
            n = int(table.num_rows * (1 - val_fraction))
            return table.slice(0, n), table.slice(n)

        raw_hash = W.record(w, "raw_prompts", str(raw))
        long = keep_long(pq.read_table(raw), min_len=16)
        train, val = split(long)
        W.record(w, "train", train)
        W.record(w, "val", val)
    return {"root": root, "store": root / "runs", "raw": raw, "raw_hash": raw_hash,
            "long": long, "train": train, "val": val}


def test_dataset_events_carry_digest_rows_schema(lineage_store):
    store = open_store(lineage_store["store"])
    rows = store.sql("SELECT name, digest, ivalue, text, attrs FROM datasets ORDER BY seq")
    first = rows.row(0, named=True)
    assert first["name"] == "raw_prompts"
    assert first["digest"] == lineage_store["raw_hash"].digest == H.hash_path(lineage_store["raw"]).digest
    assert first["ivalue"] == 200
    assert first["text"] == str(lineage_store["raw"])
    attrs = json.loads(first["attrs"])
    assert attrs["schema"] == [["answer", "string"], ["prompt", "string"]]
    assert attrs["hash"] == H.HASH_NAME


def test_transform_edges_record_inputs_function_params_outputs(lineage_store):
    store = open_store(lineage_store["store"])
    edges = [json.loads(a) for a in store.sql(
        "SELECT attrs FROM datasets WHERE json_extract_string(attrs, '$.type') = 'transform' ORDER BY seq")["attrs"]]
    keep, split = edges
    assert keep["function"] == "keep_long"
    assert keep["params"] == {"min_len": 16}
    assert keep["inputs"][0]["digest"] == lineage_store["raw_hash"].digest
    long_rows = lineage_store["long"].num_rows
    assert 0 < long_rows < 200          # "What is 9 + 9?" is 14 characters: filtered out
    assert keep["outputs"][0] == {"name": "keep_long", "digest": H.hash_table(lineage_store["long"]).digest,
                                  "rows": long_rows}
    assert len(keep["source_hash"]) == 32
    assert [o["rows"] for o in split["outputs"]] == [int(long_rows * 0.9), long_rows - int(long_rows * 0.9)]


def test_graph_text_and_png(lineage_store, tmp_path):
    graph = L.lineage_graph(open_store(lineage_store["store"]))
    assert len(graph.nodes) == 4 and len(graph.edges) == 2
    text = graph.to_text()
    assert text.splitlines()[0] == "lineage of run sft: 4 datasets, 2 transforms"
    assert "raw_prompts  [200 rows, " in text
    assert "└─ split(val_fraction=0.1)" in text
    assert text.index("raw_prompts") < text.index("keep_long") < text.index("split") < text.index("train  [")
    png = L.render_png(graph, tmp_path / "g.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_graph_without_dataset_events_says_what_to_record(tmp_path):
    with EventWriter(tmp_path, "plain", capture_env=False) as w:
        w.log(0, loss=1.0)
    with pytest.raises(MissingEvents, match=r"run 'plain' has no dataset events: record datasets with "
                                            r"rldk.writer.lineage.record"):
        L.lineage_graph(open_store(tmp_path))


def test_cli_show(lineage_store, tmp_path):
    png = tmp_path / "graph.png"
    res = CliRunner().invoke(main, ["lineage", "show", str(lineage_store["store"]), "--png", str(png)])
    assert res.exit_code == 0, res.output
    assert "lineage of run sft: 4 datasets, 2 transforms" in res.stdout
    assert png.exists()
    res = CliRunner().invoke(main, ["lineage", "show", str(lineage_store["store"]), "--format", "json"])
    assert res.exit_code == 0, res.output
    card = json.loads(res.stdout)
    assert card["status"] == "ok"
    assert {n["name"] for n in card["details"]["graphs"][0]["nodes"]} == {"raw_prompts", "keep_long", "train", "val"}
    assert [(c["name"], c["status"]) for c in card["checks"]] == [("dataset_events", "ran"),
                                                                  ("recorded_data_unchanged", "ran")]


# ------------------------------------------------------------------ analyzer
def _recorded(tmp_path):
    raw = tmp_path / "raw.parquet"
    pq.write_table(pa.table({"q": ["a", "b", "c"]}), raw)
    with EventWriter(tmp_path / "runs", "r", capture_env=False) as w:
        W.record(w, "raw", str(raw))
        W.record(w, "in_memory", [{"q": "x"}])
    return raw


def test_analyzer_is_registered_and_applies_only_with_dataset_events(tmp_path):
    from rldk import analyzers

    analyzer = analyzers.get("lineage")
    assert isinstance(analyzer, L.LineageAnalyzer)
    raw = _recorded(tmp_path)
    assert analyzer.applies(open_store(tmp_path / "runs"))
    with EventWriter(tmp_path / "plain", "p", capture_env=False) as w:
        w.log(0, loss=1.0)
    assert not analyzer.applies(open_store(tmp_path / "plain"))
    result = analyzer.run(open_store(tmp_path / "runs"))
    assert result.passed and [(d.name, d.status) for d in result.data] == [("raw", "unchanged")]
    assert result.data[0].path == str(raw)


def test_changed_recorded_data_is_a_problem(tmp_path):
    raw = _recorded(tmp_path)
    pq.write_table(pa.table({"q": ["a", "B", "c"]}), raw)
    result = L.LineageAnalyzer().run(open_store(tmp_path / "runs"))
    report = result.report()
    assert report.status == "problems" and not result.passed
    assert [f.code for f in report.findings] == ["dataset_changed"]
    assert report.findings[0].title == f"dataset raw at {raw} changed since run r recorded it"
    res = CliRunner().invoke(main, ["lineage", "show", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "cards")])
    assert res.exit_code == 3, res.output
    assert json.loads((tmp_path / "cards" / "lineage.json").read_text())["status"] == "problems"
    assert (tmp_path / "cards" / "lineage-r.png").exists()
    res = CliRunner().invoke(main, ["lineage", "show", str(tmp_path / "runs"), "--no-verify-data"])
    assert res.exit_code == 0, res.output
    raw.unlink()                                   # gone: cannot be checked, not a problem
    report = L.LineageAnalyzer().run(open_store(tmp_path / "runs")).report()
    assert report.status == "ok" and report.findings == ()
    assert [c.status for c in report.checks if c.name == "recorded_data_unchanged"] == ["skipped"]


def test_store_without_dataset_events_is_inconclusive(tmp_path):
    with EventWriter(tmp_path, "plain", capture_env=False) as w:
        w.log(0, loss=1.0)
    report = L.LineageAnalyzer().run(open_store(tmp_path)).report()
    assert report.status == "inconclusive"
    assert report.checks[0].detail == ("no dataset events: record datasets with "
                                       "rldk.writer.lineage.record(writer, name, data) and transforms with "
                                       "@rldk.writer.lineage.transform(writer)")
    res = CliRunner().invoke(main, ["lineage", "show", str(tmp_path), "--format", "json"])
    assert res.exit_code == 4
    assert json.loads(res.stdout)["status"] == "inconclusive"
    res = CliRunner().invoke(main, ["lineage", "show", str(tmp_path), "--png", str(tmp_path / "g.png")])
    assert res.exit_code == 2
    assert res.stderr == ("Error: --png draws one run's graph; runs with dataset events: none: "
                          "pick one with --run\n")


# -------------------------------------------------------------- manifests
def test_manifest_roundtrip_unchanged_then_changed_rows_and_column(tmp_path):
    path = tmp_path / "data.parquet"
    n = 3 * H.BLOCK_ROWS
    pq.write_table(pa.table({"x": np.arange(n), "y": np.zeros(n)}), path)
    manifest = W.write_manifest(path)
    assert manifest.name == "data.parquet.rldk.json"
    assert L.verify(path).status == "ok"
    y = np.zeros(n)
    y[H.BLOCK_ROWS + 5] = 1.0                        # one value in the second block
    pq.write_table(pa.table({"x": np.arange(n), "y": y}), path, row_group_size=1000)
    result = L.verify(manifest)
    assert result.status == "changed"
    assert [(c.what, c.detail) for c in result.changes] == [
        ("column", {"column": "y"}),
        ("blocks", {"row_ranges": [[H.BLOCK_ROWS, 2 * H.BLOCK_ROWS - 1]]})]


def test_manifest_of_directory_reports_missing_added_and_changed_files(tmp_path):
    data = tmp_path / "ds"
    data.mkdir()
    pq.write_table(pa.table({"a": [1, 2]}), data / "train.parquet")
    pq.write_table(pa.table({"a": [3]}), data / "val.parquet")
    (data / "README.txt").write_text("v1", encoding="utf-8")
    W.write_manifest(data)
    (data / "val.parquet").unlink()
    (data / "README.txt").write_text("v2", encoding="utf-8")
    (data / "extra.parquet").write_bytes(b"")
    pq.write_table(pa.table({"a": [9]}), data / "extra.parquet")
    result = L.verify(data)
    assert result.status == "missing"
    assert result.missing == ["val.parquet"]
    assert sorted((c.path, c.what) for c in result.changes) == [
        ("README.txt", "content"), ("extra.parquet", "added"), ("val.parquet", "missing")]


def test_verify_errors_name_the_file(tmp_path):
    path = tmp_path / "gone.parquet"
    pq.write_table(pa.table({"a": [1]}), path)
    W.write_manifest(path)
    path.unlink()
    with pytest.raises(L.MissingData, match=r"^data missing: .*gone.parquet \(recorded in .*gone.parquet.rldk.json\)"):
        L.verify(path)
    other = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1]}), other)
    with pytest.raises(UsageError, match=r"no manifest for .*plain.parquet .*rldk lineage record"):
        L.verify(other)


def test_cli_record_and_verify_exit_codes(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": "a", "r": 1}\n{"q": "b", "r": 2}\n', encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(main, ["lineage", "record", str(path)])
    assert res.exit_code == 0, res.output
    assert runner.invoke(main, ["lineage", "verify", str(path)]).exit_code == 0
    path.write_text('{"q": "a", "r": 1}\n{"q": "b", "r": 3}\n', encoding="utf-8")
    res = runner.invoke(main, ["lineage", "verify", str(path), "--format", "json"])
    assert res.exit_code == 3
    assert json.loads(res.stdout)[0]["changes"][0] == {"path": "", "what": "column", "detail": {"column": "r"}}
    path.unlink()
    res = runner.invoke(main, ["lineage", "verify", str(path)])
    assert res.exit_code == 1
    assert res.stderr == (f"Error: data missing: {path} (recorded in {path}.rldk.json): restore it, "
                          f"or re-record with `rldk lineage record {path}`\n")


def test_cli_verify_missing_file_in_directory_is_an_error(tmp_path):
    data = tmp_path / "ds"
    data.mkdir()
    for name in ("a.parquet", "b.parquet"):
        pq.write_table(pa.table({"a": [1]}), data / name)
    W.write_manifest(data)
    (data / "b.parquet").unlink()
    res = CliRunner().invoke(main, ["lineage", "verify", str(data)])
    assert res.exit_code == 1
    assert res.stderr == ("Error: 1 file(s) listed in the manifest are missing: b.parquet; restore them, "
                          "or re-record with `rldk lineage record`\n")


# ----------------------------------------------------------------- overlap
def test_overlap_counts_val_rows_found_in_train():
    train = [{"prompt": f"p{i}", "answer": str(i)} for i in range(100)]
    val = [{"prompt": "p3", "answer": "3"}, {"prompt": "p3", "answer": "4"}, {"prompt": "p7", "answer": "7"},
           {"prompt": "new", "answer": "0"}, {"prompt": "p7", "answer": "7"}]
    o = L.overlap(train, val)
    assert (o.train_rows, o.val_rows, o.shared_rows) == (100, 5, 3)
    assert o.fraction == pytest.approx(0.6)
    assert list(o.examples) == [{"val_index": 0, "train_index": 3}, {"val_index": 2, "train_index": 7},
                                {"val_index": 4, "train_index": 7}]
    assert L.overlap(train, val, ["prompt"]).shared_rows == 4


def test_overlap_of_strings_and_normalisation():
    assert L.overlap(["a b", "c"], ["A  b ", "c", "d"]).shared_rows == 1
    assert L.overlap(["a b", "c"], ["A  b ", "c", "d"], normalize=True).shared_rows == 2


def test_overlap_errors_are_clear():
    with pytest.raises(UsageError, match=r"^train and val share no column \(train: a; val: b\): pass columns="):
        L.overlap([{"a": 1}], [{"b": 1}])
    with pytest.raises(UsageError, match=r"^val has no column 'a'; columns: b"):
        L.overlap([{"a": 1}], [{"b": 1}], ["a"])
    with pytest.raises(UsageError, match=r"^column 'a' is Int64 in train but String in val"):
        L.overlap([{"a": 1}], [{"a": "1"}])


def test_cli_overlap(tmp_path):
    pq.write_table(pa.table({"prompt": ["x", "y", "z"]}), tmp_path / "train.parquet")
    pq.write_table(pa.table({"prompt": ["y", "w"]}), tmp_path / "val.parquet")
    res = CliRunner().invoke(main, ["lineage", "overlap", str(tmp_path / "train.parquet"),
                                    str(tmp_path / "val.parquet"), "--format", "json"])
    assert res.exit_code == 3
    assert json.loads(res.stdout)["shared_rows"] == 1
    res = CliRunner().invoke(main, ["lineage", "overlap", str(tmp_path / "train.parquet"),
                                    str(tmp_path / "nope.parquet")])
    assert res.exit_code == 1
    assert res.stderr == f"Error: no such data file: {tmp_path / 'nope.parquet'}\n"
