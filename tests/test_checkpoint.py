"""Checkpoint policy: per-part digests, verify, diff (hand-checkable), resume-check (real torch)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from rldk.analyzers import checkpoint as ck
from rldk.cli import main
from rldk.core.errors import UsageError
from rldk.writer import EventWriter
from rldk.writer import checkpoint as wck

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "reference" / "determinism" / "train_tiny.py"
PY = sys.executable


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 2)


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# ------------------------------------------------------------------ digests
def test_digests_are_stable_and_name_missing_parts():
    model, model2 = _model(), _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    a = wck.state_digests(model, opt, None, rng=False, dataloader_state={"epoch": 0, "batch": 3})
    b = wck.state_digests(model2, opt, None, rng=False, dataloader_state={"epoch": 0, "batch": 3})
    assert a == b
    assert a["missing"] == ["scheduler", "rng"]
    assert a["parts"]["model"]["tensors"] == 2 and a["parts"]["model"]["numel"] == 8
    assert sorted(a["tensors"]) == ["bias", "weight"]
    assert wck.combined_digest(a["parts"]) == wck.combined_digest(b["parts"])


def test_each_part_digest_moves_only_with_its_part():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = wck.state_digests(model, opt, None, rng=True, dataloader_state={"batch": 3})
    with torch.no_grad():
        model.weight[0, 0] = torch.nextafter(model.weight[0, 0], torch.tensor(2.0))   # one ulp
    after = wck.state_digests(model, opt, None, rng=True, dataloader_state={"batch": 3})
    changed = [p for p in ck.PARTS if before["parts"][p] != after["parts"][p]]
    assert changed == ["model"]
    assert [n for n in before["tensors"] if before["tensors"][n] != after["tensors"][n]] == ["weight"]
    torch.rand(1)                                         # draws from the global torch RNG
    moved = wck.state_digests(model, opt, None, rng=True, dataloader_state={"batch": 4})
    assert [p for p in ck.PARTS if after["parts"][p] != moved["parts"][p]] == ["rng", "data"]
    assert [k for k, v in moved["parts"]["rng"]["sources"].items()
            if after["parts"]["rng"]["sources"][k] != v] == ["torch"]


def test_optimizer_digest_follows_its_state():
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    empty = wck.state_digests(optimizer=opt, rng=False)["parts"]["optimizer"]
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    stepped = wck.state_digests(optimizer=opt, rng=False)["parts"]["optimizer"]
    assert empty["tensors"] == 0 and stepped["tensors"] == 6      # step, exp_avg, exp_avg_sq x 2
    assert empty["digest"] != stepped["digest"]


# ------------------------------------------------------------------ verify
def _save_run(store, run_id, ckpt_dir, rng=True, data=True, steps=(2, 4)):
    """A run that saves ``{"model": ..., "optimizer": ...}`` files and logs each save."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    paths = []
    with EventWriter(store, run_id, capture_env=False) as w:
        for step in steps:
            w.log(step, loss=1.0)
            path = Path(ckpt_dir) / f"{run_id}-{step}.pt"
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, path)
            w.log_checkpoint(step, path, model, opt, rng=rng,
                             dataloader_state={"step": step} if data else None)
            paths.append(path)
    return model, paths


def test_verify_complete_checkpoints(tmp_path):
    _save_run(tmp_path / "store", "run", tmp_path)
    result = ck.verify_checkpoints(tmp_path / "store")
    assert result.passed and [c.step for c in result.checkpoints] == [2, 4]
    assert result.checkpoints[0].present == ("model", "optimizer", "rng", "data")
    assert result.checkpoints[0].optional_missing == ("scheduler",)
    report = result.report()
    assert report.status == "ok"
    assert report.summary == "2 checkpoint(s) of run run: all hold what an exact resume needs."
    assert [f.code for f in report.findings] == ["scheduler_not_saved", "scheduler_not_saved"]
    assert [(c.name, c.status) for c in report.checks] == [("checkpoint_complete", "ran")] * 2
    out = _cli("checkpoint", "verify", tmp_path / "store", "--out-dir", tmp_path / "cards")
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "cards" / "checkpoint_verify.json").read_text())["status"] == "ok"


def test_verify_names_what_is_missing(tmp_path):
    _save_run(tmp_path / "store", "run", tmp_path, rng=False, data=False, steps=(5,))
    result = ck.verify_checkpoints(tmp_path / "store", "run")
    assert not result.passed and result.checkpoints[0].missing == ("rng", "data")
    finding = result.report().findings[0]
    assert finding.code == "checkpoint_incomplete" and finding.steps == (5, 5)
    assert finding.title == "checkpoint at step 5 lacks rng, data"
    assert finding.fix == ("save and restore it (rng: dropout masks, sampling and shuffling draw "
                           "different numbers after the resume; data: the resumed run sees other "
                           "batches (the data position restarts)); log it with log_checkpoint(..., "
                           "rng=True, dataloader_state=...)")
    out = _cli("checkpoint", "verify", tmp_path / "store", "--format", "json")
    assert out.exit_code == 3
    assert json.loads(out.stdout)["findings"][0]["code"] == "checkpoint_incomplete"


def test_verify_deep_compares_the_file(tmp_path):
    model, paths = _save_run(tmp_path / "store", "run", tmp_path, steps=(1,))
    deep = ck.verify_checkpoints(tmp_path / "store", deep=True)
    assert deep.checkpoints[0].file_check == "match (2 tensors)"
    assert [c.name for c in deep.report().checks] == ["checkpoint_complete", "checkpoint_file_matches"]
    state = torch.load(paths[0], weights_only=True)
    state["model"]["bias"] = state["model"]["bias"] + 1.0             # overwritten later
    torch.save(state, paths[0])
    check = ck.verify_checkpoints(tmp_path / "store", deep=True).checkpoints[0]
    assert check.file_check == "mismatch: 1 tensor(s) differ (first bias)" and not check.ok
    paths[0].unlink()
    check = ck.verify_checkpoints(tmp_path / "store", deep=True).checkpoints[0]
    assert check.exists is False and check.file_check == "skipped: no file"
    assert ck.verify_checkpoints(tmp_path / "store").report().findings[0].code == "checkpoint_file_missing"


def test_verify_errors(tmp_path):
    with EventWriter(tmp_path / "s1", "plain", capture_env=False) as w:
        w.log(0, loss=1.0)
    result = ck.verify_checkpoints(tmp_path / "s1")           # nothing verified: never "ok"
    assert not result.passed and result.without == ("plain",)
    report = result.report()
    assert report.status == "inconclusive"
    assert report.summary == ("no checkpoint events in run plain: log each save with "
                              "rldk.writer.log_checkpoint(step, path, model, optimizer, scheduler, "
                              "rng=True, dataloader_state=...).")
    out = _cli("checkpoint", "verify", tmp_path / "s1", "--format", "json")
    assert out.exit_code == 4
    assert json.loads(out.stdout)["checks"] == [{
        "name": "checkpoint_events", "status": "skipped", "run_id": "plain",
        "detail": "no checkpoint events: log each save with rldk.writer.log_checkpoint(step, path, model, "
                  "optimizer, scheduler, rng=True, dataloader_state=...)"}]
    _save_run(tmp_path / "s2", "a", tmp_path, steps=(1,))
    _save_run(tmp_path / "s2", "b", tmp_path, steps=(1,))
    both = ck.verify_checkpoints(tmp_path / "s2")                 # every run by default
    assert [(c.run_id, c.step) for c in both.checkpoints] == [("a", 1), ("b", 1)] and both.passed
    out = _cli("checkpoint", "verify", tmp_path / "s2", "--run", "c")
    assert out.exit_code == 2
    assert out.stderr == "Error: no run 'c' in the store; runs: a, b\n"
    assert _cli("checkpoint", "verify", tmp_path / "s2", "--run", "b", "--out-dir", tmp_path / "c").exit_code == 0


def test_verify_reads_trainer_checkpoints_from_the_trl_callback(tmp_path):
    """A Trainer checkpoint directory logged by RldkCallback.on_save: parts from its files."""
    from types import SimpleNamespace

    from rldk.integrations.trl import RldkCallback

    for step, files in ((2, ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
                             "trainer_state.json")),
                        (4, ("model.safetensors", "trainer_state.json"))):
        ckpt = tmp_path / "out" / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        for name in files:
            (ckpt / name).write_bytes(b"x" * 10)
    callback = RldkCallback(tmp_path / "store", "grpo")
    callback.writer = EventWriter(tmp_path / "store", "grpo", capture_env=False)
    for step in (2, 4):
        callback.on_save(SimpleNamespace(output_dir=str(tmp_path / "out")),
                         SimpleNamespace(global_step=step, is_world_process_zero=True), None)
    callback.writer.close()
    result = ck.verify_checkpoints(tmp_path / "store")
    assert [(c.step, c.ok, c.missing) for c in result.checkpoints] == [(2, True, ()), (4, False, ("optimizer", "rng"))]
    assert result.checkpoints[1].optional_missing == ("scheduler",)


# ------------------------------------------------------------------ diff
@pytest.fixture()
def pair(tmp_path):
    a = {"w": torch.tensor([1.0, 0.0]), "b": torch.tensor([3.0, 4.0]), "s": torch.zeros(2),
         "only_a": torch.ones(1), "step": 7}
    b = {"w": torch.tensor([0.0, 1.0]), "b": torch.tensor([3.0, 4.0]), "s": torch.zeros(3),
         "only_b": torch.ones(1), "step": 8}
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    return tmp_path / "a.pt", tmp_path / "b.pt"


def test_diff_exact_values(pair):
    d = ck.diff_checkpoints(*pair)
    assert [t.name for t in d.tensors] == ["b", "w"]
    assert d.identical == 1 and d.only_a == ("only_a",) and d.only_b == ("only_b",)
    assert d.shape_mismatch == ("s",)
    w = next(t for t in d.tensors if t.name == "w")
    assert (w.l2_a, w.l2_b, w.cosine, w.max_abs_diff) == (1.0, 1.0, 0.0, 1.0)
    assert w.l2_diff == pytest.approx(math.sqrt(2)) and w.rel_change == pytest.approx(math.sqrt(2))
    b = next(t for t in d.tensors if t.name == "b")
    assert (b.l2_a, b.l2_diff, b.rel_change, b.cosine) == (5.0, 0.0, 0.0, 1.0)
    assert [t.name for t in d.top] == ["w"]                         # unmoved tensors are not movers
    assert d.total_rel_change == pytest.approx(math.sqrt(2) / math.sqrt(26))
    assert d.report().status == "problems"                           # names differ between files


def test_diff_cli(pair, tmp_path):
    out = _cli("checkpoint", "diff", *pair, "--format", "json")
    assert out.exit_code == 3, out.output                        # names and shapes differ
    card = json.loads(out.stdout)
    data = card["details"]
    assert data["compared"] == 2 and data["identical"] == 1
    assert [t["tensor"] for t in data["top_movers"]] == ["w"]
    assert [t["tensor"] for t in data["tensors"]] == ["b", "w"]
    assert [f["code"] for f in card["findings"]] == ["only_in_a", "only_in_b", "shape_mismatch"]
    out = _cli("checkpoint", "diff", *pair)
    assert out.exit_code == 3
    assert ("2 tensors compared, 1 bit-identical; relative change of the floating-point tensors "
            "0.277.") in " ".join(out.stdout.split())
    out = _cli("checkpoint", "diff", *pair, "--format", "csv")
    assert out.stdout.splitlines()[0] == "tensor,shape,l2_a,l2_b,l2_diff,rel_change,cosine,max_abs_diff"
    assert [line.split(",")[0] for line in out.stdout.splitlines()[1:]] == ["b", "w"]
    same = _cli("checkpoint", "diff", pair[0], pair[0], "--format", "json")
    assert same.exit_code == 0 and json.loads(same.stdout)["status"] == "ok"


def test_diff_prefix(pair):
    d = ck.diff_checkpoints(*pair, prefix="w")
    assert [t.name for t in d.tensors] == ["w"] and d.only_a == () and d.identical == 0
    with pytest.raises(UsageError) as err:
        ck.diff_checkpoints(*pair, prefix="model.")
    assert str(err.value) == f"no tensors under 'model.' in {pair[0]} or {pair[1]}"


def test_diff_directories_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "ckpt-1").mkdir()
    save_file({"w": torch.tensor([1.0, 2.0])}, tmp_path / "ckpt-1" / "model.safetensors")
    torch.save({"w": torch.tensor([1.0, 2.0])}, tmp_path / "b.pt")
    d = ck.diff_checkpoints(tmp_path / "ckpt-1", tmp_path / "b.pt")
    assert d.identical == 1 and d.top == []


def test_diff_refuses_unsafe_and_missing_files(tmp_path, pair):
    torch.save({"w": torch.ones(1), "obj": Path("x")}, tmp_path / "unsafe.pt")   # a pickled class
    out = _cli("checkpoint", "diff", tmp_path / "unsafe.pt", pair[0])
    assert out.exit_code == 2
    assert out.stderr.startswith(f"Error: {tmp_path / 'unsafe.pt'}: cannot load safely with "
                                 "torch.load(weights_only=True): Unsupported global: GLOBAL pathlib")
    assert out.stderr.endswith("PosixPath was not an allowed global by default; rldk runs no code from "
                               "checkpoints: compare files that hold tensors, plain containers and "
                               "numbers (state_dicts, safetensors)\n")
    out = _cli("checkpoint", "diff", tmp_path / "nope.pt", pair[0])
    assert out.exit_code == 2 and "does not exist" in out.stderr
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError) as err:
        ck.diff_checkpoints(tmp_path / "empty", pair[0])
    assert str(err.value) == (f"{tmp_path / 'empty'}: no model weights found (looked for "
                              "model.safetensors, pytorch_model.bin, model.pt, model.pth, checkpoint.pt)")


# ------------------------------------------------------------------ resume-check (real training)
AT, TO = 3, 6


def _resume(tmp_path, *flags):
    return ck.resume_check([PY, str(TRAIN), *flags], at=AT, to=TO, workdir=tmp_path / "w")


def test_full_state_resumes_exactly(tmp_path):
    result = _resume(tmp_path)
    assert result.exact and result.departs_at is None and result.missing == ()
    assert result.passed and [(c.name, c.status) for c in result.report().checks] == [
        ("resume_matches", "ran"), ("state_restored", "ran")]
    assert result.loaded is not None and result.saved.step == AT
    assert {d.level for d in result.divergences} == {"tensor", "rng", "metric", "steps"}
    assert result.report().summary == (f"Exact resume: stopped after step {AT} and resumed, the run "
                                       f"matches the uninterrupted run at every step to {TO}.")


def test_rng_not_saved_is_named(tmp_path):
    result = _resume(tmp_path, "--omit", "rng")
    assert not result.exact and result.departs_at == AT + 1 and not result.before_resume
    assert result.missing[0] == ck.MissingState("rng", "not saved", ck.NEEDED["rng"])
    assert result.first("tensor").name == "grad/emb.weight"
    assert set(result.first("rng").detail["names"]) == {"data", "torch"}
    assert result.report().summary == (f"Resume departs at step {AT + 1} (checkpoint after step {AT}); "
                                       "missing state: rng (not saved).")


def test_rng_saved_but_not_restored_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = _cli("checkpoint", "resume-check", "--at", AT, "--to", TO, "--workdir", tmp_path / "w",
               "--format", "json", "--", PY, TRAIN, "--skip-restore", "rng")
    assert out.exit_code == 3, out.output
    card = json.loads(out.stdout)["details"]
    assert card["departs_at"] == AT + 1
    assert card["missing_state"] == [{"part": "rng", "how": "not restored",
                                      "detail": "RNG sources that differ after loading: data, torch"}]


def test_resume_check_errors(tmp_path):
    out = _cli("checkpoint", "resume-check", "--at", 5, "--to", 5, "--", PY, "-c", "pass")
    assert out.exit_code == 2
    assert out.stderr == "Error: --at must be at least 0 and below --to (got --at 5 --to 5)\n"
    logger = ("import sys; from rldk.writer import EventWriter\n"
              "w = EventWriter(capture_env=False)\n"
              "for i in range(8): w.log(i, loss=1.0)\n"
              "w.close()\n")
    out = _cli("checkpoint", "resume-check", "--at", 1, "--to", 4, "--workdir", tmp_path / "w", "--",
               PY, "-c", logger)
    assert out.exit_code == 1
    assert out.stderr.endswith(
        "logged no checkpoint at step 1 (checkpoints logged: none): with RLDK_STOP_AT=1 and "
        "RLDK_CHECKPOINT_DIR set it must save one after that step and log it with "
        "rldk.writer.log_checkpoint(step, path, model, optimizer, ...)\n")
