"""RNG digests, tensor checksums and memory readings."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from rldk.core.store import open_store
from rldk.writer import EventWriter
from rldk.writer.probes import rng_digests, tensor_stats

torch = pytest.importorskip("torch")


def reference_checksum(t) -> int:
    """Plain-Python checksum: sum of raw bits (signed) x (index+1) x golden, mod 2**64, signed."""
    width = {8: "<q", 4: "<i", 2: "<h", 1: "<b"}[t.element_size()]
    int_view = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.int8}[t.element_size()]
    raw = t.detach().contiguous().reshape(-1).view(int_view).numpy().tobytes()
    import struct

    ints = [v[0] for v in struct.iter_unpack(width, raw)]
    golden = 0x9E3779B97F4A7C15
    total = sum(b * (((i + 1) * golden) % 2**64) for i, b in enumerate(ints)) % 2**64
    return total - 2**64 if total >= 2**63 else total


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16,
                                   torch.int64, torch.int8])
def test_checksum_matches_a_plain_python_reference(dtype):
    g = torch.Generator().manual_seed(0)
    t = (torch.randn(37, 5, generator=g) * 100).to(dtype)
    (stats,) = tensor_stats([("w", t)])
    assert stats["checksum"] == reference_checksum(t)
    assert stats["numel"] == 185 and stats["shape"] == [37, 5]


def test_checksum_sees_one_bit_and_a_swap_but_not_layout():
    t = torch.randn(64, 64, generator=torch.Generator().manual_seed(1))
    base = tensor_stats([("w", t)])[0]["checksum"]
    flipped = t.clone().view(torch.int32)
    flipped[3, 7] ^= 1                                   # one bit of one mantissa
    assert tensor_stats([("w", flipped.view(torch.float32))])[0]["checksum"] != base
    swapped = t.clone()
    swapped[0, 0], swapped[0, 1] = t[0, 1].item(), t[0, 0].item()
    assert tensor_stats([("w", swapped)])[0]["checksum"] != base
    noncontiguous = t.t().contiguous().t()              # same values, other memory layout
    assert tensor_stats([("w", noncontiguous)])[0]["checksum"] == base


def test_checksum_is_chunked_for_large_tensors(monkeypatch):
    import rldk.writer.probes as probes

    t = torch.randn(1000, generator=torch.Generator().manual_seed(2))
    whole = tensor_stats([("w", t)])[0]["checksum"]
    monkeypatch.setattr(probes, "_CHUNK", 7)
    assert tensor_stats([("w", t)])[0]["checksum"] == whole


def test_stats_with_nan_and_inf():
    t = torch.tensor([1.0, float("nan"), float("inf"), -3.0])
    (s,) = tensor_stats([("w", t)])
    assert (s["nan"], s["inf"], s["min"], s["max"]) == (1, 1, -3.0, 1.0)


def test_log_tensors_from_a_module_and_its_grads(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 1))
    model(torch.randn(2, 4)).sum().backward()
    opt = torch.optim.Adam(model.parameters())
    opt.step()
    with EventWriter(tmp_path, "t", capture_env=False) as w:
        w.log_tensors(1, model, kind="param")
        w.log_tensors(1, model, kind="grad")
        w.log_tensors(1, opt, kind="optimizer")
    rows = open_store(tmp_path).sql("SELECT name, ivalue, digest, value, attrs FROM tensors ORDER BY name").rows()
    names = [r[0] for r in rows]
    assert "param/0.weight" in names and "grad/1.bias" in names and "optimizer/0.exp_avg" in names
    for name, ivalue, digest, norm, attrs in rows:
        assert digest == f"{ivalue & 0xFFFFFFFFFFFFFFFF:016x}"
        assert norm >= 0 and json.loads(attrs)["dtype"] == "float32"
    param = dict(model.named_parameters())["0.weight"]
    assert dict((r[0], r[1]) for r in rows)["param/0.weight"] == reference_checksum(param)


def test_rng_digests_follow_the_state():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    first = dict(rng_digests())
    assert set(first) >= {"python", "numpy", "torch"}
    random.random()
    np.random.rand()
    after = dict(rng_digests())
    assert after["python"] != first["python"] and after["numpy"] != first["numpy"]
    assert after["torch"] == first["torch"]
    random.seed(0)
    np.random.seed(0)
    assert dict(rng_digests())["python"] == first["python"]


def test_rng_digests_of_named_generators():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    digests = dict(rng_digests({"data": g1, "dropout": g2, "np": np.random.default_rng(1),
                                "py": random.Random(3)}))
    assert digests["data"] == digests["dropout"]
    torch.randn(3, generator=g2)
    assert dict(rng_digests({"dropout": g2}))["dropout"] != digests["data"]
    with pytest.raises(TypeError, match="cannot read the state of str"):
        rng_digests({"bad": "not a generator"})


def test_memory_readings(tmp_path):
    with EventWriter(tmp_path, "m", capture_env=False) as w:
        w.log(3, x=1.0)
        w.log_memory(None)
    row = open_store(tmp_path).sql("SELECT step, name, value, ivalue FROM memory").row(0)
    assert row[0] == 3 and row[1] == "host/rss" and row[2] > 10e6 and row[3] == int(row[2])
