"""A real, tiny TRL GRPO run on the CPU in seconds: the shared runner of rldk's real tests.

    from reference.tiny_trl import run_grpo
    out = run_grpo(tmp_path / "a", seed=0, steps=8, rldk_dir=tmp_path / "store", run_id="a")
    bug = run_grpo(tmp_path / "b", seed=0, steps=8, lr_change_at=5, rldk_dir=..., run_id="b")

The model is a 2-layer GPT-2 (n_embd 32) built from a config, the tokenizer a
word-level tokenizer built from the task's own text with ``tokenizers``: nothing
is downloaded. The task: prompts are short phrases about animals, and the default
reward is the fraction of completion words that are "good" words, so the reward
is learnable and varies within a group of generations.

Determinism: with the same arguments on the CPU two runs are bitwise identical
(same log_history, same final weights): the model is initialised under
``torch.manual_seed(seed)``, the Trainer seeds python/numpy/torch with ``seed``
and shuffles with ``data_seed``, generation samples from the seeded torch RNG,
dropout is off, and no dataloader worker processes are used.

Injected bug: ``lr_change_at=K`` multiplies every param group's learning rate by
``lr_factor`` for the optimizer updates numbered K, K+1, ... (the update whose
metrics the Trainer logs at step K is the first affected). The scheduler's own
value is restored right after each update, so the logged ``learning_rate`` does
not show the change (a silent optimizer bug). Consequences: parameters after step
K differ (tensor events at step K); metrics logged at step K were computed before
that update and are unchanged, the first metrics that can differ are step K+1's.
"""
from __future__ import annotations

import os
from pathlib import Path

ANIMALS = ("cat", "dog", "fox", "owl", "cow", "pig", "hen", "bee")
GOOD = ("good", "kind", "happy", "calm", "bright", "warm", "gentle", "brave")
OTHER = ("the", "a", "is", "was", "very", "not", "and", "runs", "sleeps", "eats", "sits",
         "on", "mat", "log", "hill", "sad", "cold", "dark", "loud", "slow")
PROMPTS = tuple(f"the {a} is" for a in ANIMALS) + tuple(f"a {a} was very" for a in ANIMALS)
SPECIAL = ("<pad>", "<eos>", "<unk>")


def task_text() -> list[str]:
    """The text the tokenizer is built from: every prompt and every word the task uses."""
    return list(PROMPTS) + [" ".join(GOOD), " ".join(OTHER), " ".join(ANIMALS)]


def good_word_reward(completions, **_kwargs) -> list[float]:
    """Fraction of each completion's words that are in ``GOOD`` (0 for an empty one)."""
    out = []
    for text in completions:
        words = text.split()
        out.append(sum(w in GOOD for w in words) / len(words) if words else 0.0)
    return out


def make_tokenizer(workdir=None):
    """A word-level ``PreTrainedTokenizerFast`` trained on :func:`task_text` (deterministic).

    The vocabulary is ordered by (descending count, word), so it never depends on
    hash order. Saved to ``workdir/tokenizer.json`` when ``workdir`` is given.
    """
    from collections import Counter

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    counts = Counter(w for line in task_text() for w in line.split())
    words = sorted(counts, key=lambda w: (-counts[w], w))
    vocab = {tok: i for i, tok in enumerate(SPECIAL + tuple(words))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    from tokenizers import decoders

    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)   # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>",
                                        unk_token="<unk>", bos_token="<eos>", padding_side="left")
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        core.save(str(Path(workdir) / "tokenizer.json"))
    return tokenizer


def make_tiny_model(seed: int = 0, workdir=None, n_layer: int = 2, n_embd: int = 32):
    """``(model, tokenizer)``: a GPT-2 of ``n_layer`` layers and width ``n_embd``,
    initialised under ``torch.manual_seed(seed)``, dropout off; no download."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = make_tokenizer(workdir)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=n_embd, n_layer=n_layer,
                        n_head=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def lr_change_callback(at_step: int, factor: float):
    """A TrainerCallback that scales the learning rate of updates ``at_step``, ``at_step+1``...

    It multiplies each param group's lr at ``on_step_begin`` and restores the
    scheduler's value at ``on_optimizer_step`` (right after the update), so it
    composes with any scheduler and never compounds.
    """
    from transformers import TrainerCallback

    class LrChange(TrainerCallback):
        def __init__(self):
            self.saved = None

        def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
            if optimizer is not None and state.global_step + 1 >= at_step:
                self.saved = [g["lr"] for g in optimizer.param_groups]
                for g in optimizer.param_groups:
                    g["lr"] = g["lr"] * factor

        def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
            if optimizer is not None and self.saved is not None:
                for g, lr in zip(optimizer.param_groups, self.saved):
                    g["lr"] = lr
                self.saved = None

    return LrChange()


def run_grpo(output_dir, *, seed: int = 0, steps: int = 8, learning_rate: float = 1e-4,
             lr_change_at: int | None = None, lr_factor: float = 10.0, reward_fn=None, prompts=None,
             rldk_dir=None, run_id=None, rldk_callback_kwargs=None, logging_steps: int = 1,
             save_steps: int | None = None, tensorboard: bool = False, **grpo_overrides) -> str:
    """Train the tiny GPT-2 with ``trl.GRPOTrainer`` for ``steps`` optimizer steps on the CPU.

    Writes ``output_dir/trainer_state.json`` (log_history with the end-of-training
    summary row), ``checkpoint-<N>/`` every ``save_steps`` steps, and with
    ``tensorboard=True`` a TensorBoard event file under ``output_dir/runs/``.
    ``rldk_dir`` (or ``run_id``) attaches :class:`rldk.integrations.trl.RldkCallback`
    with ``rldk_callback_kwargs``. ``grpo_overrides`` go to ``GRPOConfig`` (e.g.
    ``beta=0.0``, ``log_completions=True``, ``max_completion_length=12``).
    Returns ``output_dir`` as a string.
    """
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    output_dir = str(output_dir)
    model, tokenizer = make_tiny_model(seed)
    if grpo_overrides.get("beta", 0.04):       # TRL loads the KL reference model from a path
        init = Path(output_dir) / "init_model"
        model.save_pretrained(init)
        tokenizer.save_pretrained(init)
        model.config._name_or_path = str(init)
    dataset = Dataset.from_dict({"prompt": list(prompts or PROMPTS)})
    options = dict(
        output_dir=output_dir, seed=seed, data_seed=seed, use_cpu=True, max_steps=steps,
        learning_rate=learning_rate, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=8, temperature=1.0, beta=0.04, logging_steps=logging_steps,
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
        report_to=["tensorboard"] if tensorboard else [], dataloader_num_workers=0,
        disable_tqdm=True, bf16=False, fp16=False, gradient_checkpointing=False, log_completions=False, num_completions_to_print=0,
    )
    options.update(grpo_overrides)
    trainer = GRPOTrainer(model=model, reward_funcs=reward_fn or good_word_reward,
                          args=GRPOConfig(**options), train_dataset=dataset, processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)           # keep test output quiet
    if lr_change_at is not None:
        trainer.add_callback(lr_change_callback(lr_change_at, lr_factor))
    if rldk_dir is not None or run_id is not None:
        from rldk.integrations.trl import RldkCallback

        trainer.add_callback(RldkCallback(rldk_dir, run_id, **(rldk_callback_kwargs or {})))
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)     # a 32-wide model: one thread is fastest, and unhurt by a busy machine
    try:
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    trainer.save_state()
    return output_dir


def main(argv=None) -> None:
    """``python -m reference.tiny_trl OUTPUT_DIR [--seed N] [--steps N] [--lr-change-at K] ...``"""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("output_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--lr-change-at", type=int, default=None)
    parser.add_argument("--lr-factor", type=float, default=10.0)
    parser.add_argument("--rldk-dir", default=os.environ.get("RLDK_DIR"))
    parser.add_argument("--run-id", default=os.environ.get("RLDK_RUN_ID"))
    parser.add_argument("--tensors-every", type=int, default=0)
    parser.add_argument("--rng-every", type=int, default=0)
    parser.add_argument("--save-steps", type=int, default=None)
    parser.add_argument("--tensorboard", action="store_true")
    args = parser.parse_args(argv)
    kwargs = {"tensors_every": args.tensors_every, "rng_every": args.rng_every}
    run_grpo(args.output_dir, seed=args.seed, steps=args.steps, lr_change_at=args.lr_change_at,
             lr_factor=args.lr_factor, rldk_dir=args.rldk_dir, run_id=args.run_id,
             rldk_callback_kwargs=kwargs, save_steps=args.save_steps, tensorboard=args.tensorboard)


if __name__ == "__main__":
    main()
