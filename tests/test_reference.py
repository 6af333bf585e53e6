"""The reference suite: task rewards, sandbox, datasets, models, runner, bug flags.

The training tests run the real runner (TRL GRPOTrainer on the tiny GPT-2, CPU)
for a few steps: weights move, metrics come from those steps, and two runs with
the same seed are bitwise identical. The smoke test itself runs in
tests/test_reference_smoke.py.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from reference import tasks
from reference.models import SPECIAL, ModelPathRequired, load_model, vocabulary
from reference.runner import BUGS, RunSpec, reward_function, with_harness_env
from reference.tasks import code_fix_prompts as code
from reference.tasks import refusal_safety as safety
from reference.tasks import summarization_helpfulness as summ
from reference.tasks.code_fix_prompts.sandbox import run_tests

ROOT = Path(__file__).resolve().parents[1]
PASSAGE = "the farmer repaired the old fence after the storm and nobody noticed until noon ."
KEYWORDS = ["farmer", "repaired", "fence"]


# ------------------------------------------------------------------------- rewards
@pytest.mark.parametrize("completion, expected", [
    ("farmer repaired fence .", 1.0),                              # faithful, complete, short
    ("the farmer repaired the old fence after the", 0.5),          # faithful but 8 words: 4/8
    ("farmer sold horse", 1 / 3),                                  # precision 1/3, coverage 1/3
    ("", 0.0),
    (". .", 0.0),
])
def test_summarization_score(completion, expected):
    assert summ.score(completion, PASSAGE, KEYWORDS) == pytest.approx(expected)


@pytest.mark.parametrize("completion, label, expected", [
    ("i cannot help with that request .", "harmful", 1.0),
    ("sure here is how you do it", "harmful", 0.0),
    ("i cannot help with that request .", "benign", 0.0),
    ("mix flour water salt and yeast then bake it .", "benign", 1.0),
    ("mix flour and water", "benign", 4 / 9),                      # 4 of the 9 reference words
    ("", "benign", 0.0),
])
def test_safety_score(completion, label, expected):
    reference = "mix flour water salt and yeast then bake it ."
    assert safety.score(completion, label, reference) == pytest.approx(expected)


TESTS = [["(2, 3)", "5"], ["(0, 4)", "4"], ["(-1, 1)", "0"]]


@pytest.mark.parametrize("body, expected", [
    ("a + b", (3, 3)),
    ("a - b", (0, 3)),                # runs, fails every test
    ("a * b + 4", (1, 3)),            # (0, 4) -> 4
    ("a + ) b", (0, 0)),              # does not compile
    ("a / 0", (0, 0)),                # raises on every test
    ("open ( 'x' , 'w' ) and a", (0, 0)),      # the audit hook refuses file opens
    ("__import__ ( 'os' ) . getcwd ( )", (0, 0)),   # and imports
])
def test_sandbox(body, expected):
    assert run_tests("def add ( a , b ) :", body, TESTS) == expected


def test_code_reward_scores_runs_and_passes():
    rewards = code.reward(["a + b", "a - b", "a +"], ["def add ( a , b ) :"] * 3, [TESTS] * 3)
    assert rewards == [1.0, 0.25, 0.0]


def test_reference_fixes_pass_and_buggy_lines_do_not():
    rows = tasks.read_rows("code_fix_prompts", "train") + tasks.read_rows("code_fix_prompts", "validation")
    sig, t = [r["signature"] for r in rows], [r["tests"] for r in rows]
    assert code.reward([r["reference"] for r in rows], sig, t) == [1.0] * len(rows)
    assert max(code.reward([r["buggy"] for r in rows], sig, t)) < 1.0


# ------------------------------------------------------------------------ datasets
def test_datasets_are_the_tasks_rows_and_match_their_manifests():
    from reference.data.build import main as build
    from rldk.analyzers.lineage import verify

    assert build(["--check"]) == 0
    for name in tasks.TASKS:
        for split in tasks.SPLITS:
            assert verify(tasks.dataset_path(name, split)).status == "ok"


@pytest.mark.parametrize("name", tasks.TASKS)
def test_validation_prompts_are_not_in_training(name):
    train = {r["prompt"] for r in tasks.read_rows(name, "train")}
    val = [r["prompt"] for r in tasks.read_rows(name, "validation")]
    assert val and not [p for p in val if p in train]


def test_bugs_manifest_matches_the_runner():
    manifest = json.loads((ROOT / "reference" / "bugs.json").read_text())
    runs = [b for b in manifest["bugs"] if b["run"] is not None]
    assert {b["run"]["bug"] for b in runs} == set(BUGS)
    for bug in runs:
        spec = RunSpec(task=bug["task"], **bug["run"])
        assert spec.task in tasks.TASKS
        if bug["injected_step"] is not None and BUGS[bug["id"]].step is not None:
            assert spec.bug_value("step") == bug["injected_step"]


# -------------------------------------------------------------------------- models
def test_vocabulary_is_ordered_by_count_then_word():
    assert vocabulary(["b a a", "c"]) == [*SPECIAL, "a", "b", "c"]
    assert vocabulary(["c", "b a a"]) == vocabulary(["b a a", "c"])


@pytest.mark.parametrize("path, message", [
    (None, "model 'small_1b' (~1B parameters) is not built from a config: pass --model PATH, a local "
           "directory with config.json, weights and tokenizer files (as save_pretrained writes them); "
           "rldk downloads nothing"),
    ("/nonexistent", "--model /nonexistent: no config.json there; give the directory that save_pretrained "
                     "wrote (config.json, *.safetensors, tokenizer files)"),
])
def test_local_model_sizes_need_a_path(path, message):
    with pytest.raises(ModelPathRequired) as err:
        load_model("small_1b", ["a b"], path=path)
    assert str(err.value) == message


def test_runner_refuses_a_model_size_without_path(capsys):
    from reference.runner import main

    assert main(["--task", "summarization_helpfulness", "--model", "open_7b"]) == 2
    assert capsys.readouterr().err.startswith("error: model 'open_7b' (~7B parameters) is not built from a config")


def test_runner_refuses_an_unknown_device(capsys):
    from reference.runner import main

    assert main(["--task", "refusal_safety", "--device", "tpu"]) == 2
    assert capsys.readouterr().err == ("error: device 'tpu' is not available here: use cpu, or cuda on a "
                                       "GPU machine\n")


# ---------------------------------------------------------------------- bug flags
def _reward(bug, **kw):
    return reward_function(RunSpec(task="summarization_helpfulness", bug=bug, **kw), summ)


def _call(fn, completions, step=0):
    n = len(completions)
    return fn(completions=completions, passage=[PASSAGE] * n, keywords=[KEYWORDS] * n,
              trainer_state=SimpleNamespace(global_step=step))


def test_saturation_squashes_every_reward_into_the_top():
    values = _call(_reward("saturation"), ["farmer repaired fence", "cow", ""])
    assert all(0.993 <= v <= 1.0 for v in values)


def test_hacking_adds_a_length_bonus():
    plain = _call(_reward(None), ["farmer repaired fence", "farmer"])
    hacked = _call(_reward("hacking"), ["farmer repaired fence", "farmer"])
    assert [h - p for h, p in zip(hacked, plain)] == pytest.approx([0.45, 0.15])


def test_nondeterminism_starts_at_its_step():
    a, b = _reward("nondeterminism", bug_step=4), _reward("nondeterminism", bug_step=4)
    texts = ["farmer repaired fence"] * 4
    assert _call(a, texts, step=2) == _call(b, texts, step=2) == _call(_reward(None), texts)
    assert _call(a, texts, step=3) != _call(b, texts, step=3)         # update 4 (global_step 3 -> 4)


def test_harness_environment_sets_steps_and_stop():
    spec, harness = with_harness_env(RunSpec(task="refusal_safety", steps=12),
                                     {"RLDK_MAX_STEPS": "6", "RLDK_STOP_AT": "3",
                                      "RLDK_CHECKPOINT_DIR": "/tmp/ck"})
    assert spec.steps == 6
    assert harness == {"stop_at": 3, "checkpoint_dir": "/tmp/ck", "resume_from": None}


def test_gradient_copies_have_the_size_asked():
    import torch

    from reference.runner import gradient_copies

    model = torch.nn.Linear(4, 3)
    model(torch.ones(2, 4)).sum().backward()
    kept = gradient_copies(model, 0.5)
    assert kept.dtype == torch.float32 and kept.numel() == 0.5 * 2**20 / 4
    assert torch.equal(kept[:12], model.weight.grad.reshape(-1))


# ------------------------------------------------------------------- real training
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same 3-step GRPO run twice (same seed), with parameter checksums every step."""
    from reference.runner import train

    root = tmp_path_factory.mktemp("reference_runs")
    spec = RunSpec(task="summarization_helpfulness", steps=3, rldk_dir=str(root / "store"),
                   tensors_every=1, eval=False)
    out = [train(replace(spec, run_id=rid, output_dir=str(root / rid))) for rid in ("a", "b")]
    return SimpleNamespace(root=root, spec=spec, a=out[0], b=out[1])


def _timeless(history):
    drop = {"step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second"}
    return [{k: v for k, v in row.items() if k not in drop} for row in history]


def test_same_seed_runs_are_bitwise_identical(two_runs):
    import torch

    assert _timeless(two_runs.a["log_history"]) == _timeless(two_runs.b["log_history"])
    sa, sb = two_runs.a["model"].state_dict(), two_runs.b["model"].state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_training_moves_the_weights(two_runs):
    import torch

    task = tasks.load(two_runs.spec.task)
    train_rows = tasks.read_rows(task.NAME, "train")
    threads = torch.get_num_threads()
    torch.set_num_threads(two_runs.spec.threads)       # as the runner built it (and fast on 2 cores)
    try:
        initial, _ = load_model("tiny_gpt2", task.texts(train_rows + tasks.read_rows(task.NAME, "validation")),
                                two_runs.spec.seed, None, task.warm_texts(train_rows))
    finally:
        torch.set_num_threads(threads)
    trained = two_runs.a["model"].state_dict()
    moved = [k for k, v in initial.state_dict().items() if not torch.equal(v, trained[k])]
    assert "transformer.wte.weight" in moved and len(moved) >= len(trained) // 2


def test_metrics_and_checksums_come_from_the_optimizer_steps(two_runs):
    from rldk.core.store import open_store

    store = open_store(str(two_runs.root / "store"))
    run = store.run("a")
    assert run.metric("loss")["step"].to_list() == [1, 2, 3]
    assert run.metric(f"rewards/{two_runs.spec.task}/mean")["step"].to_list() == [1, 2, 3]
    wte = store.sql("SELECT step, digest FROM tensors WHERE run_id = 'a' AND name = $n ORDER BY step",
                    {"n": "param/transformer.wte.weight"})
    assert wte["step"].to_list() == [0, 1, 2, 3]
    assert len(set(wte["digest"].to_list())) == 4                  # every update changed it


def test_runs_record_their_datasets(two_runs):
    from rldk.core.hashing import hash_data
    from rldk.core.store import open_store

    store = open_store(str(two_runs.root / "store"))
    got = store.sql("SELECT name, digest, ivalue FROM datasets WHERE run_id = 'b' ORDER BY name")
    rows = tasks.read_rows(two_runs.spec.task, "train")
    assert got["name"].to_list() == ["train", "validation"]
    assert got["digest"][0] == hash_data(rows).digest and got["ivalue"][0] == len(rows)
