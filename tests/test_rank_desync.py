"""Rank desync: real 2-process DDP runs (gloo, CPU) under torchrun, one with rank 1
perturbing a parameter after the optimizer step at step 7 (outside DDP's all-reduce),
one without; plus hand-made stores for the ranks and RNG rules and the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from rldk.analyzers import get
from rldk.analyzers.rank_desync import Params
from rldk.cli import main
from rldk.data import open_input
from rldk.writer import EventWriter

TRAIN = textwrap.dedent('''
    import os, sys
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    import rldk.writer as w

    store, run_id, inject = sys.argv[1], sys.argv[2], int(sys.argv[3])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)                       # same initial weights on every rank
    model = DDP(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    torch.manual_seed(100 + rank)              # each rank draws its own data, on purpose
    w.init(store, run_id=run_id)               # rank from RANK, set by torchrun
    for step in range(12):
        x = torch.randn(16, 4)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if inject >= 0 and step == inject and rank == 1:
            with torch.no_grad():
                model.module[2].bias.add_(1e-3)
        w.log(step, loss=loss.item())
        w.log_rng(step)
        w.log_tensors(step, model.module, kind="param")
    w.close()
    dist.destroy_process_group()
''')


def torchrun(tmp_path, run_id, inject):
    script = tmp_path / "train_ddp.py"
    script.write_text(TRAIN)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "RLDK_RANK", "RLDK_RUN_ID", "RLDK_DIR")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--standalone", str(script), str(tmp_path / "store"), run_id, str(inject)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def ddp_store(tmp_path_factory):
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("ddp")
    torchrun(root, "ddp-desync", 7)
    torchrun(root, "ddp-clean", -1)
    return root / "store"


def test_ddp_under_torchrun_one_run_two_ranks(ddp_store):
    store = open_input(ddp_store)
    summary = store.summary()
    assert summary["run_id"].to_list() == ["ddp-clean", "ddp-desync"]
    assert [list(r) for r in summary["ranks"].to_list()] == [[0, 1], [0, 1]]
    assert summary["status"].to_list() == ["complete", "complete"]
    # metrics of a multi-rank run come from its lowest rank
    loss = store.run("ddp-clean").metric("loss")
    assert loss.equals(store.run("ddp-clean").metric("loss", rank=0))
    assert not loss.equals(store.run("ddp-clean").metric("loss", rank=1))


def test_ddp_desync_found_at_the_injected_step(ddp_store):
    report = get("rank_desync").run(open_input(ddp_store)).report()
    assert report.status == "problems"
    [finding] = report.problems
    assert (finding.code, finding.run_id, finding.steps) == ("rank_desync", "ddp-desync", (7, 7))
    d = finding.evidence
    assert d["tensors"] == ["param/2.bias"]
    assert (d["ranks"], d["reference"], d["last_agreed"]) == ([1], [0], 6)
    assert d["steps_differing"] == d["steps_after"] == 5          # steps 7..11 stay apart
    assert d["tensors_ever"] >= 1
    assert abs(d["norms"]["param/2.bias"]["1"] - d["norms"]["param/2.bias"]["0"]) > 0
    # torch is seeded per rank on purpose, python and numpy are unseeded: evidence, not findings
    assert {(s["source"], s["step"]) for s in d["rng"]} == {("numpy", 0), ("python", 0), ("torch", 0)}
    assert "; RNG differing across ranks by then: " in finding.title and "torch (step 0)" in finding.title
    assert not [f for f in report.findings if f.run_id == "ddp-clean" and f.is_problem]


def test_ddp_clean_run_is_quiet(ddp_store):
    store = open_input(ddp_store)
    result = get("rank_desync").run(store.for_run("ddp-clean"))
    report = result.report()
    assert report.status == "ok", report.summary
    assert [r.steps for r in result.runs] == [12]
    assert sorted((f.code, f.severity, f.evidence["source"]) for f in report.findings) == [
        ("rank_rng_differs", "info", s) for s in ("numpy", "python", "torch")]


def test_ddp_cli_exit_codes(ddp_store, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(main, ["analyze", str(ddp_store), "--out-dir", str(tmp_path / "cards"),
                               "--no-plots", "--format", "json"])
    assert bad.exit_code == 3, bad.output
    index = json.loads((tmp_path / "cards" / "index.json").read_text())
    [desync] = [o for o in index["outcomes"] if o["analyzer"] == "rank_desync"]
    assert desync["status"] == "problems" and desync["problems"] == 1


# ------------------------------------------------------- hand-made stores (fast)
def write_rank(root, run_id, rank, checksums, rng=None):
    """One rank's tensor events: ``checksums`` {step: {tensor: digest}}."""
    w = EventWriter(root, run_id, rank=rank, capture_env=False)
    for step, tensors in checksums.items():
        w.log(step, loss=1.0)
        for name, digest in tensors.items():
            w.log_event("tensor", f"param/{name}", step, value=float(len(digest)), digest=digest)
        if rng is not None:
            w.log_event("rng", "numpy", step, digest=rng)
    w.close()


def test_majority_is_the_reference_and_ranks_filter(tmp_path):
    same = {s: {"w": f"a{s}", "b": f"b{s}"} for s in range(4)}
    for rank in (0, 1, 2):
        write_rank(tmp_path, "r", rank, same)
    write_rank(tmp_path, "r", 3, {**same, 2: {"w": "x", "b": "b2"}, 3: {"w": "x", "b": "b3"}})
    result = get("rank_desync").run(open_input(tmp_path))
    [d] = result.desyncs
    assert (d.step, d.tensors, d.ranks, d.reference, d.last_agreed) == (2, ("param/w",), (3,), (0, 1, 2), 1)
    assert (d.steps_differing, d.steps_after, d.tensors_ever) == (2, 2, 1)
    only = get("rank_desync").run(open_input(tmp_path), Params(ranks=(0, 1, 2)))
    assert not only.desyncs and only.report().status == "ok"


def test_rng_only_is_info_and_no_common_step_is_inconclusive(tmp_path):
    write_rank(tmp_path / "a", "a", 0, {0: {"w": "1"}, 1: {"w": "2"}}, rng="r0")
    write_rank(tmp_path / "a", "a", 1, {0: {"w": "1"}, 1: {"w": "2"}}, rng="r1")
    report = get("rank_desync").run(open_input(tmp_path / "a")).report()
    assert report.status == "ok"
    assert [(f.code, f.steps) for f in report.findings] == [("rank_rng_differs", (0, 0))]
    write_rank(tmp_path / "b", "b", 0, {0: {"w": "1"}})
    write_rank(tmp_path / "b", "b", 1, {1: {"w": "1"}})
    report = get("rank_desync").run(open_input(tmp_path / "b")).report()
    assert report.status == "inconclusive"
    assert report.checks[0].detail.startswith("ranks 0, 1 logged no tensor checksum at a common step: "
                                              "call rldk.writer.log_tensors(step, model, kind='param')")


def test_single_rank_store_is_not_applicable(tmp_path):
    write_rank(tmp_path, "solo", 0, {0: {"w": "1"}})
    assert not get("rank_desync").applies(open_input(tmp_path))
