"""The reference suite's three toy RL tasks and their fixed datasets.

Each task is a package with the same module attributes:

    NAME              the task's name (its directory under ``reference/data/``)
    MAX_COMPLETION    completion length in tokens for GRPO
    EXTRA_COLUMNS     dataset columns the reward logs into TRL's completions table
    rows(split)       the rows ``reference/data/build.py`` writes (train / validation)
    reward(completions, **columns) -> list[float]   the rule-based TRL reward function
    warm_texts(rows)  the tiny model's warm-start sequences
    texts(rows)       every text the tiny tokenizer must cover

The datasets are read from the committed JSONL files, never regenerated at
training time: their manifests (``*.rldk.json``, content hashes from
:mod:`rldk.analyzers.lineage`) say they are the data the expected outputs came from.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

TASKS = ("summarization_helpfulness", "refusal_safety", "code_fix_prompts")
SPLITS = ("train", "validation")
DATASETS = Path(__file__).resolve().parent.parent / "data"


def load(name: str):
    """The task module ``name`` (one of :data:`TASKS`)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    return importlib.import_module(f"reference.tasks.{name}")


def dataset_path(name: str, split: str) -> Path:
    """``reference/data/<name>/<split>.jsonl``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    return DATASETS / name / f"{split}.jsonl"


def read_rows(name: str, split: str) -> list[dict]:
    """The rows of a task's committed dataset split, in file order."""
    path = dataset_path(name, split)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run python reference/data/build.py")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
