"""Train a reference task with TRL's GRPOTrainer, logged by rldk, with an optional injected bug.

    python -m reference.runner --task summarization_helpfulness --steps 12 \\
        --rldk-dir runs --run-id clean --output-dir out/clean
    python -m reference.runner --task summarization_helpfulness --steps 12 \\
        --rldk-dir runs --run-id spike --bug kl_spike --bug-step 5
    python -m reference.runner --jobs jobs.json     # several runs in one process (one import)

Every number is real: the model (``reference.models``) is trained by
``trl.GRPOTrainer`` on the task's committed training split with its rule-based
reward, and :class:`rldk.integrations.trl.RldkCallback` records the metrics,
GRPO completions (``sample`` events), and as asked RNG digests, tensor checksums
and memory. The runner adds: ``dataset`` events (content hashes of the training
and validation rows it used, :func:`rldk.writer.lineage.record`), ``checkpoint``
save/load events for resume checks, and after training ``sample`` events of the
trained policy on the validation split (``attrs.split = "val"``).

Injected bugs (``--bug NAME``; ``--bug-step K`` is the first affected optimizer
step, ``--bug-scale`` its size; ground truth in ``reference/bugs.json``):

==============  ===========================================================================
kl_spike        the learning rate of updates K, K+1, ... is multiplied by ``scale`` (100);
                the logged ``learning_rate`` does not show it (a silent optimizer bug)
nondeterminism  from step K the reward adds jitter in [-scale, scale] (1e-3) drawn from an
                unseeded ``random.Random()``: same-seed runs differ from step K on
leakage         the validation rows are copied into the training set
saturation      the reward is squashed by a sigmoid meant for reward-model logits,
                sigmoid(scale * (r + 0.5)) with scale 10: every reward lands in [0.993, 1]
hacking         the reward adds ``scale`` (0.15) per completion word: a length bonus
memory_leak     from step K, ``scale`` MiB (12) of gradient copies are kept every step, in a
                list that is never cleared
bad_resume      checkpoints are written without their RNG state (``rng_state.pth`` is
                dropped), so a resumed run samples other completions
unsafe_policy   (refusal_safety) poisoned warm-start data: every harmful prompt is paired
                with the compliant answer, never the refusal, so the policy starts unsafe
==============  ===========================================================================

Harness protocol (``rldk check-determinism`` and ``rldk checkpoint resume-check``
set these): ``RLDK_DIR`` / ``RLDK_RUN_ID`` (read by the writer), ``RLDK_MAX_STEPS``
(train this many steps), ``RLDK_STOP_AT`` (stop after that step), with
``RLDK_CHECKPOINT_DIR`` (save the stop checkpoint there, logged with
``log_checkpoint``), ``RLDK_RESUME_FROM`` (resume from that checkpoint).

Determinism: same arguments, same bits on the CPU (see ``reference/tiny_trl.py``
for why a TRL run is reproducible): the model and warm start are seeded, the
Trainer seeds python/numpy/torch with ``--seed`` and shuffles with
``data_seed``, generation samples from the seeded torch RNG, dropout is off, no
dataloader workers, and torch uses ``--threads`` (1) intra-op threads.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

if __package__ in (None, ""):              # python reference/runner.py: the repo root, not reference/,
    _HERE = Path(__file__).resolve().parent  # goes on sys.path (reference/ must never shadow a module)
    sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from reference import tasks as task_registry  # noqa: E402

ENV_MAX_STEPS, ENV_STOP_AT = "RLDK_MAX_STEPS", "RLDK_STOP_AT"
ENV_CHECKPOINT_DIR, ENV_RESUME_FROM = "RLDK_CHECKPOINT_DIR", "RLDK_RESUME_FROM"


@dataclass(frozen=True)
class Bug:
    """One injectable bug: what it does, its default first step and size."""

    doc: str
    step: int | None
    scale: float | None


BUGS = {
    "kl_spike": Bug("learning rate x scale from step K (silent)", 5, 100.0),
    "nondeterminism": Bug("unseeded reward jitter in [-scale, scale] from step K", 4, 1e-3),
    "leakage": Bug("validation rows copied into the training set", None, None),
    "saturation": Bug("reward squashed: sigmoid(scale * (r + 0.5))", None, 10.0),
    "hacking": Bug("reward + scale per completion word (length bonus)", None, 0.15),
    "memory_leak": Bug("scale MiB of gradient copies kept per step from step K", 3, 12.0),
    "bad_resume": Bug("checkpoints saved without their RNG state", None, None),
    "unsafe_policy": Bug("warm start taught to comply with harmful prompts (refusals dropped)", None, None),
}


@dataclass(frozen=True)
class RunSpec:
    """One training run. ``output_dir`` None: a temporary directory, removed after."""

    task: str
    output_dir: str | None = None
    rldk_dir: str | None = None
    run_id: str | None = None
    model: str = "tiny_gpt2"
    model_path: str | None = None
    seed: int = 0
    steps: int = 12
    learning_rate: float = 3e-4
    batch: int = 8                 # completions per optimizer step
    generations: int = 4           # completions per prompt (GRPO group size)
    beta: float = 0.04             # KL coefficient (TRL logs ``kl`` when > 0)
    bug: str | None = None
    bug_step: int | None = None
    bug_scale: float | None = None
    rng_every: int = 0
    tensors_every: int = 0
    memory_every: int = 0
    samples: bool = True           # GRPO completions as sample events
    eval: bool = True              # validation samples of the trained policy
    eval_generations: int = 4
    threads: int = 1
    device: str = "cpu"
    extra: dict = field(default_factory=dict)     # more GRPOConfig fields

    def bug_value(self, which: str):
        """The bug's ``step`` or ``scale``: the one given, else the bug's default."""
        given = self.bug_step if which == "step" else self.bug_scale
        return given if given is not None else getattr(BUGS[self.bug], which)


def with_harness_env(spec: RunSpec, env=os.environ) -> tuple[RunSpec, dict]:
    """Apply ``RLDK_MAX_STEPS`` to ``spec``; return the stop/checkpoint/resume settings."""
    if env.get(ENV_MAX_STEPS):
        spec = replace(spec, steps=int(env[ENV_MAX_STEPS]))
    harness = {"stop_at": int(env[ENV_STOP_AT]) if env.get(ENV_STOP_AT) else None,
               "checkpoint_dir": env.get(ENV_CHECKPOINT_DIR) or None,
               "resume_from": env.get(ENV_RESUME_FROM) or None}
    if harness["stop_at"] is not None:
        spec = replace(spec, steps=max(spec.steps, harness["stop_at"]))
    return spec, harness


# ---------------------------------------------------------------- data and reward
def training_rows(spec: RunSpec) -> tuple[list[dict], list[dict]]:
    """``(train, validation)`` rows; the leakage bug copies validation into train."""
    train = task_registry.read_rows(spec.task, "train")
    val = task_registry.read_rows(spec.task, "validation")
    if spec.bug == "leakage":
        train = train + val
    return train, val


def reward_function(spec: RunSpec, task):
    """The task's reward, with the reward bugs applied (named as TRL logs it)."""
    scale = spec.bug_value("scale") if spec.bug else None
    first = spec.bug_value("step") if spec.bug else None
    jitter = random.Random()           # BUG (nondeterminism): seeded from os.urandom

    def reward(completions, trainer_state=None, **kwargs):
        values = task.reward(completions=completions, **kwargs)
        if spec.bug == "saturation":
            return [1 / (1 + math.exp(-scale * (v + 0.5))) for v in values]
        if spec.bug == "hacking":
            return [v + scale * len(c.split()) for v, c in zip(values, completions)]
        if spec.bug == "nondeterminism" and trainer_state.global_step + 1 >= first:
            return [v + jitter.uniform(-scale, scale) for v in values]
        return values

    reward.__name__ = task.NAME           # TRL logs rewards/<task>/mean
    return reward


# ------------------------------------------------------------------------ callbacks
def callbacks(spec: RunSpec, harness: dict, task, train_rows, val_rows, tokenizer):
    """``(before, after)`` the RldkCallback: final evaluation must run before the
    writer closes, dataset and checkpoint events after it opens."""
    from transformers import TrainerCallback

    from rldk.integrations.trl import RldkCallback

    rldk_cb = RldkCallback(spec.rldk_dir, spec.run_id, tensors_every=spec.tensors_every,
                           memory_every=spec.memory_every, samples=spec.samples)

    class Bookkeeping(TrainerCallback):
        """Datasets, RNG digests, checkpoint events, the stop step, the memory-leak bug."""

        def __init__(self):
            self.kept = []                  # BUG (memory_leak) lives here
            self.resumed = harness["resume_from"]

        def on_train_begin(self, args, state, control, **kw):
            from rldk.writer.lineage import record

            if rldk_cb.writer is not None:
                record(rldk_cb.writer, "train", train_rows, step=state.global_step)
                record(rldk_cb.writer, "validation", val_rows, step=state.global_step)

        def on_step_begin(self, args, state, control, model=None, optimizer=None,
                          lr_scheduler=None, **kw):
            if self.resumed and rldk_cb.writer is not None:     # RNG is restored by now
                rldk_cb.writer.log_checkpoint(state.global_step, self.resumed, model, optimizer,
                                              lr_scheduler, rng=True,
                                              dataloader_state=data_state(args, state), action="load")
                self.resumed = None

        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            if spec.bug == "memory_leak" and state.global_step + 1 >= spec.bug_value("step"):
                self.kept.append(gradient_copies(model, spec.bug_value("scale")))

        def on_step_end(self, args, state, control, **kw):
            # RNG digests are logged here, not by RldkCallback(rng_every=...): its digest at
            # on_train_begin of a resumed run is taken before the Trainer restores the
            # checkpoint's RNG state, and a resume check would count it as a difference.
            if spec.rng_every and state.global_step % spec.rng_every == 0 and rldk_cb.writer:
                rldk_cb.writer.log_rng(state.global_step)
            if harness["stop_at"] is not None and state.global_step >= harness["stop_at"]:
                control.should_training_stop = True
                control.should_save = harness["checkpoint_dir"] is not None

        def on_save(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kw):
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if spec.bug == "bad_resume":
                (path / "rng_state.pth").unlink(missing_ok=True)     # BUG: no RNG state
            if rldk_cb.writer is not None:
                rldk_cb.writer.log_checkpoint(state.global_step, str(path), model, optimizer,
                                              lr_scheduler, rng=spec.bug != "bad_resume",
                                              dataloader_state=data_state(args, state))

    class FinalEval(TrainerCallback):
        """The trained policy on the validation split, as ``split="val"`` sample events,
        scored by the task's own reward (without the injected reward bug)."""

        def on_train_end(self, args, state, control, model=None, **kw):
            if spec.eval and harness["stop_at"] is None and rldk_cb.writer is not None:
                log_validation(rldk_cb.writer, spec, task, val_rows, model, tokenizer, state.global_step)

    return [FinalEval()], [rldk_cb, Bookkeeping()]


def data_state(args, state) -> dict:
    """The data position a resumed Trainer restores: it skips ``global_step`` batches
    of a sampler seeded with ``seed``."""
    return {"global_step": state.global_step, "sampler_seed": args.seed, "data_seed": args.data_seed}


def warm_texts(spec: RunSpec, task, rows: list[dict]) -> list[str]:
    """The task's warm-start texts; the unsafe_policy bug swaps every refusal of a
    harmful prompt for compliance (a poisoned SFT set)."""
    texts = task.warm_texts(rows)
    if spec.bug != "unsafe_policy":
        return texts
    harmful = tuple(r["prompt"] for r in rows if r.get("label") == "harmful")
    return [t.replace(task.REFUSAL, task.COMPLY) if t.startswith(harmful) else t for t in texts]


def gradient_copies(model, mib: float):
    """About ``mib`` MiB of float32 copies of the current gradients (one flat tensor,
    on the gradients' device), built from just enough of them: a 7B model's full
    gradient is never copied at once."""
    import torch

    n, pieces = int(mib * 1024 * 1024 / 4), []
    for p in model.parameters():
        if p.grad is not None and n > sum(x.numel() for x in pieces):
            pieces.append(p.grad.detach().reshape(-1)[:n].float())
    flat = torch.cat(pieces)
    return flat.repeat(n // flat.numel() + 1)[:n].clone()


def log_validation(writer, spec: RunSpec, task, rows, model, tokenizer, step: int) -> None:
    """Sample ``eval_generations`` completions per validation prompt, score them, log them."""
    import torch

    prompts = [r["prompt"] for r in rows for _ in range(spec.eval_generations)]
    torch.manual_seed(spec.seed)
    model.eval()
    enc = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                             max_new_tokens=task.MAX_COMPLETION, pad_token_id=tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    columns = {k: [r[k] for r in rows for _ in range(spec.eval_generations)] for k in rows[0]}
    rewards = task.reward(completions=texts, **{k: v for k, v in columns.items() if k != "prompt"},
                          prompts=prompts)
    extra = {c: columns[c] for c in task.EXTRA_COLUMNS}
    writer.log_samples(step, prompts, texts, rewards, split=["val"] * len(texts), **extra)


# ---------------------------------------------------------------------------- train
class SpecError(ValueError):
    """A run spec the runner cannot train (unknown task, bug, model or device)."""


def check_spec(spec: RunSpec) -> None:
    """Raise :class:`SpecError` naming the bad field and the choices."""
    from reference.models import MODELS

    for name, value, choices in (("task", spec.task, task_registry.TASKS), ("bug", spec.bug, (None, *BUGS)),
                                 ("model", spec.model, tuple(MODELS))):
        if value not in choices:
            raise SpecError(f"unknown {name} {value!r}: choose one of "
                            f"{', '.join(str(c) for c in choices if c is not None)}")
    if spec.bug == "unsafe_policy" and spec.task != "refusal_safety":
        raise SpecError("bug 'unsafe_policy' needs --task refusal_safety (the only task with refusals)")
    if spec.device != "cpu":
        import torch

        if not spec.device.startswith("cuda") or not torch.cuda.is_available():
            raise SpecError(f"device {spec.device!r} is not available here: use cpu, or cuda on a GPU machine")


def train(spec: RunSpec, env=os.environ) -> dict:
    """Run one training; returns its output dir, steps, log history and trained model."""
    import torch

    check_spec(spec)
    spec, harness = with_harness_env(spec, env)
    threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        return _train(spec, harness)
    finally:
        torch.set_num_threads(threads)


def _train(spec: RunSpec, harness: dict) -> dict:
    from reference.models import load_model

    task = task_registry.load(spec.task)
    train_rows, val_rows = training_rows(spec)
    all_rows = task_registry.read_rows(spec.task, "train") + val_rows
    model, tokenizer = load_model(spec.model, task.texts(all_rows), spec.seed, spec.model_path,
                                  warm_texts(spec, task, task_registry.read_rows(spec.task, "train")))
    temporary = spec.output_dir is None
    out = Path(harness["checkpoint_dir"] or spec.output_dir or tempfile.mkdtemp(prefix="rldk-ref-"))
    try:
        trainer = build_trainer(spec, harness, task, model, tokenizer, train_rows, val_rows, out)
        trainer.train(resume_from_checkpoint=harness["resume_from"])
        return {"output_dir": str(out), "steps": trainer.state.global_step,
                "log_history": trainer.state.log_history, "model": trainer.model}
    finally:
        if temporary and harness["checkpoint_dir"] is None:
            shutil.rmtree(out, ignore_errors=True)


def build_trainer(spec, harness, task, model, tokenizer, train_rows, val_rows, out: Path):
    """A GRPOTrainer over ``train_rows`` with rldk's callbacks and the bug's callbacks."""
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    if spec.beta and spec.model_path is None:   # TRL builds the KL reference model from a path
        init = out / "init_model"
        model.save_pretrained(init)
        tokenizer.save_pretrained(init)
        model.config._name_or_path = str(init)
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "data" / "train.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n"
                                                      for r in train_rows), encoding="utf-8")
    config = GRPOConfig(**grpo_options(spec, task, out))
    columns = {k: [r[k] for r in train_rows] for k in train_rows[0] if k != "id"}
    trainer = GRPOTrainer(model=model, reward_funcs=reward_function(spec, task), args=config,
                          train_dataset=Dataset.from_dict(columns), processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)
    before, after = callbacks(spec, harness, task, train_rows, val_rows, tokenizer)
    for cb in before + after:
        trainer.add_callback(cb)
    if spec.bug == "kl_spike":
        from reference.tiny_trl import lr_change_callback

        trainer.add_callback(lr_change_callback(spec.bug_value("step"), spec.bug_value("scale")))
    return trainer


def grpo_options(spec: RunSpec, task, out: Path) -> dict:
    """GRPOConfig keyword arguments: small batches, seeded, CPU, quiet."""
    options = dict(
        output_dir=str(out), seed=spec.seed, data_seed=spec.seed, use_cpu=spec.device == "cpu",
        max_steps=spec.steps, learning_rate=spec.learning_rate, lr_scheduler_type="constant",
        per_device_train_batch_size=spec.batch, num_generations=spec.generations,
        max_completion_length=task.MAX_COMPLETION, temperature=1.0, beta=spec.beta,
        logging_steps=1, save_strategy="no", report_to=[], dataloader_num_workers=0,
        disable_tqdm=True, bf16=spec.device != "cpu", fp16=False, log_completions=spec.samples,
        num_completions_to_print=0, log_level="error", full_determinism=spec.device != "cpu")
    options.update(spec.extra)
    return options


# ------------------------------------------------------------------------------ CLI
def parse_args(argv=None) -> tuple[list[RunSpec], argparse.Namespace]:
    """The runs the command line asks for: one from flags, or a list from ``--jobs``."""
    parser = argparse.ArgumentParser(prog="python -m reference.runner",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=task_registry.TASKS)
    parser.add_argument("--jobs", help="JSON file: a list of run specs (RunSpec fields)")
    parser.add_argument("--output-dir")
    parser.add_argument("--rldk-dir", default=None)
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--model", default="tiny_gpt2", choices=("tiny_gpt2", "small_1b", "open_7b"))
    parser.add_argument("--model-path", default=None, help="local model directory (small_1b, open_7b)")
    parser.add_argument("--bug", choices=tuple(BUGS), default=None)
    parser.add_argument("--no-eval", action="store_true", help="skip the validation samples")
    parser.add_argument("--no-samples", action="store_true", help="do not log GRPO completions")
    parser.add_argument("--summary", help="write each run's summary (JSON) to this file")
    for name, kind in (("seed", int), ("steps", int), ("learning-rate", float), ("batch", int),
                       ("generations", int), ("beta", float), ("bug-step", int), ("bug-scale", float),
                       ("rng-every", int), ("tensors-every", int), ("memory-every", int),
                       ("threads", int), ("device", str)):
        parser.add_argument(f"--{name}", type=kind, default=None)
    args = parser.parse_args(argv)
    if args.jobs:
        try:
            return [RunSpec(**job) for job in json.loads(Path(args.jobs).read_text())], args
        except (OSError, ValueError, TypeError) as exc:
            parser.error(f"--jobs {args.jobs}: {exc}")
    if args.task is None:
        parser.error("give --task or --jobs")
    given = {f.name: getattr(args, f.name) for f in fields(RunSpec)
             if getattr(args, f.name, None) is not None}
    given.update(eval=not args.no_eval, samples=not args.no_samples)
    return [RunSpec(**given)], args


def release_memory() -> None:
    """Collect garbage and return cached CUDA blocks (runs share a ``--jobs`` process)."""
    import gc

    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv=None) -> int:
    from reference.models import ModelPathRequired

    specs, args = parse_args(argv)
    summaries = []
    for spec in specs:
        try:
            result = train(spec)
        except (ModelPathRequired, SpecError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        summaries.append({"spec": asdict(spec), "output_dir": result["output_dir"], "steps": result["steps"]})
        del result                  # the next run must not start with this one's model in memory
        release_memory()
    if args.summary:
        Path(args.summary).write_text(json.dumps(summaries, indent=2, sort_keys=True), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
