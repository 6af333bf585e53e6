"""Summarization helpfulness: reward short, faithful summaries of given passages.

Each row: ``prompt`` ("passage : <two sentences> summary :"), ``passage``, the
three ``keywords`` (who, did what, to what) and a ``reference`` summary. The
reward of a completion with words ``w`` (``.`` dropped), in [0, 1]:

    precision = share of w that occur in the passage          (faithful)
    coverage  = share of the keywords that occur in w           (helpful)
    brevity   = min(1, 4 / len(w))                              (short)
    reward    = brevity * (precision + coverage) / 2,   0 for an empty completion

So "farmer repaired fence" scores 1.0, a copy of the whole passage about 0.3
and an unfaithful summary little: longer is never better.
"""
from __future__ import annotations

NAME = "summarization_helpfulness"
MAX_COMPLETION = 8
EXTRA_COLUMNS = ()

SUBJECTS = ("farmer", "teacher", "doctor", "baker", "sailor", "pilot", "miner", "singer",
            "painter", "soldier", "student", "driver")
ACTIONS = (("repaired", "fence"), ("sold", "horse"), ("painted", "barn"), ("found", "key"),
           ("lost", "map"), ("built", "boat"), ("cleaned", "kitchen"), ("opened", "shop"),
           ("closed", "gate"), ("carried", "basket"), ("planted", "garden"), ("fixed", "roof"))
WHEN = ("after the storm", "before the winter", "during the festival", "on a cold morning",
        "late at night", "in the spring")
THEN = ("and the neighbours helped all day", "and nobody noticed until noon",
        "while the children watched", "and then went home to rest")
STOP = frozenset(("the", "a", "and", "."))


def rows(split: str) -> list[dict]:
    """The fixed rows of ``split`` ("train": 24, "validation": 8), deterministic."""
    out = []
    for i in range(32):
        subject = SUBJECTS[i % len(SUBJECTS)]
        verb, obj = ACTIONS[(i * 5 + i // len(SUBJECTS)) % len(ACTIONS)]
        passage = (f"the {subject} {verb} the old {obj} {WHEN[i % len(WHEN)]} "
                   f"{THEN[(i // 2) % len(THEN)]} .")
        out.append({"id": f"sum-{i:03d}", "prompt": f"passage : {passage} summary :",
                    "passage": passage, "keywords": [subject, verb, obj],
                    "reference": f"{subject} {verb} {obj} ."})
    return out[:24] if split == "train" else out[24:]


def score(completion: str, passage: str, keywords) -> float:
    """The reward of one completion (see the module doc)."""
    words = [w for w in completion.split() if w != "."]
    if not words:
        return 0.0
    source = set(passage.split())
    precision = sum(w in source for w in words) / len(words)
    coverage = sum(k in words for k in keywords) / len(keywords)
    return min(1.0, 4 / len(words)) * (precision + coverage) / 2


def reward(completions, passage, keywords, **_kwargs) -> list[float]:
    """TRL reward function: :func:`score` of each completion against its row."""
    return [score(c, p, k) for c, p, k in zip(completions, passage, keywords)]


def warm_texts(train_rows) -> list[str]:
    """Warm-start sequences: each prompt with a faithful short summary, a long
    copy of the passage's start, and an unfaithful one (another row's summary),
    so the warm model's answers vary in length and quality."""
    out = []
    for i, row in enumerate(train_rows):
        other = train_rows[(i + 7) % len(train_rows)]["reference"]
        copy = " ".join(row["passage"].split()[:8])
        out += [f"{row['prompt']} {row['reference']}", f"{row['prompt']} {copy}",
                f"{row['prompt']} {other}"]
    return out


def texts(all_rows) -> list[str]:
    """Every text the tokenizer must cover."""
    return [r["prompt"] + " " + r["reference"] for r in all_rows]
