"""Model sizes of the reference suite, as configs: nothing is downloaded.

==========  ==================================================================
tiny_gpt2   a 2-layer GPT-2 (width 32) built from a config, with a word-level
            tokenizer trained on the task's own text with ``tokenizers``, then
            warm-started by a second of supervised training on the task's
            warm-start texts (so its completions look like the task's answers
            and vary in length and quality, as a pretrained model's do).
            Trains on a CPU in seconds.
small_1b    any local causal-LM directory of about 1B parameters
            (``--model PATH``: ``config.json``, weights, tokenizer files as
            ``save_pretrained`` writes them), loaded with ``AutoModelForCausalLM``.
open_7b     the same for about 7B parameters (a GPU with >= 40 GB for GRPO).
==========  ==================================================================

Determinism: ``tiny_gpt2`` is initialised under ``torch.manual_seed(seed)``, its
vocabulary is ordered by (descending count, word) so it never depends on hash
order, dropout is off, and the warm start draws its batches from a
``torch.Generator`` seeded with ``seed``. Two builds with the same texts and seed
are bitwise identical on the CPU.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SPECIAL = ("<pad>", "<eos>", "<unk>")


class ModelPathRequired(Exception):
    """A model size that is a local directory was asked for without ``--model PATH``."""


@dataclass(frozen=True)
class ModelSpec:
    """One model size: ``name``, whether it needs ``--model PATH``, approximate
    parameter count, and what hardware it was sized for."""

    name: str
    needs_path: bool
    params: str
    hardware: str
    doc: str


MODELS = {
    "tiny_gpt2": ModelSpec("tiny_gpt2", False, "~0.05M", "CPU, seconds",
                           "2-layer GPT-2 (n_embd 32, 2 heads) from a config; word-level tokenizer "
                           "trained on the task text; seeded init and warm start"),
    "small_1b": ModelSpec("small_1b", True, "~1B", "one GPU >= 24 GB",
                          "a local causal-LM directory (e.g. a 1B Llama/Qwen/GPT-NeoX saved with "
                          "save_pretrained), passed as --model PATH"),
    "open_7b": ModelSpec("open_7b", True, "~7B", "one GPU >= 40 GB (80 GB recommended)",
                         "a local 7B causal-LM directory, passed as --model PATH"),
}

#: the tiny model's architecture (GPT2Config fields)
TINY_CONFIG = dict(n_positions=64, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0,
                   embd_pdrop=0.0, attn_pdrop=0.0)
#: the tiny model's warm start: AdamW steps, learning rate, batch size (sequences)
WARM_START = dict(steps=80, lr=1e-2, batch=16)


def load_model(name: str, texts, seed: int = 0, path=None, warm_texts=None):
    """``(model, tokenizer)`` of model size ``name``.

    texts: the task's text (prompts and answers) the tiny tokenizer is built from.
    warm_texts: full sequences (prompt + answer) for the tiny model's warm start
    (None: no warm start). path: the local model directory of ``small_1b`` /
    ``open_7b`` (required for them, ignored by ``tiny_gpt2``).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    if MODELS[name].needs_path:
        return load_local(name, path)
    model, tokenizer = tiny_gpt2(texts, seed)
    if warm_texts:
        warm_start(model, tokenizer, warm_texts, seed)
    return model, tokenizer


def load_local(name: str, path):
    """A causal LM and its tokenizer from a local directory (``local_files_only``)."""
    if path is None:
        raise ModelPathRequired(
            f"model {name!r} ({MODELS[name].params} parameters) is not built from a config: pass "
            f"--model PATH, a local directory with config.json, weights and tokenizer files "
            f"(as save_pretrained writes them); rldk downloads nothing")
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ModelPathRequired(f"--model {path}: no config.json there; give the directory that "
                                "save_pretrained wrote (config.json, *.safetensors, tokenizer files)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(p), local_files_only=True, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(p), local_files_only=True, dtype="auto")
    return model, tokenizer


def vocabulary(texts) -> list[str]:
    """The special tokens, then every whitespace-separated word of ``texts`` by
    (descending count, word): independent of hash order and of the texts' order."""
    counts = Counter(w for line in texts for w in line.split())
    return list(SPECIAL) + sorted((w for w in counts if w not in SPECIAL), key=lambda w: (-counts[w], w))


def make_tokenizer(texts):
    """A word-level ``PreTrainedTokenizerFast`` over :func:`vocabulary` (``tokenizers``).

    Words are split on whitespace and decoded joined by single spaces; padding is
    on the left (generation), ``<eos>`` doubles as BOS.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(vocabulary(texts))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)      # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>", bos_token="<eos>", padding_side="left")


def tiny_gpt2(texts, seed: int = 0):
    """``(model, tokenizer)``: GPT-2 of :data:`TINY_CONFIG` initialised under ``manual_seed(seed)``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = make_tokenizer(texts)
    config = GPT2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                        **TINY_CONFIG)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def warm_start(model, tokenizer, texts, seed: int = 0, steps: int | None = None) -> list[float]:
    """Supervised next-token training on ``texts`` (each followed by ``<eos>``).

    ``WARM_START`` steps of AdamW on batches drawn by a generator seeded with
    ``seed``; returns the loss of each step. Leaves the model in eval mode.
    """
    import torch

    steps = WARM_START["steps"] if steps is None else steps
    enc = tokenizer([t + " <eos>" for t in texts], return_tensors="pt", padding=True,
                    padding_side="right")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    labels = ids.masked_fill(mask == 0, -100)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=WARM_START["lr"], weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, ids.shape[0], (WARM_START["batch"],), generator=gen)
        loss = model(input_ids=ids[idx], attention_mask=mask[idx], labels=labels[idx]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses
