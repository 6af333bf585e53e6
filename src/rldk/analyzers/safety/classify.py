"""Per-sample classification (refusal, harmful content, jailbreak, prompt label) and the rates."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rldk.analyzers.safety.lexicon import first_match, is_refusal
from rldk.analyzers.safety.params import Params
from rldk.stats import wilson_interval

HARMFUL_LABELS = frozenset(("true", "1", "1.0", "harmful", "unsafe", "yes", "toxic", "red"))
BENIGN_LABELS = frozenset(("false", "0", "0.0", "benign", "safe", "no", "harmless"))


@dataclass(frozen=True)
class Rate:
    """``count`` of ``total`` with its Wilson 95% interval (None when total is 0)."""

    count: int
    total: int
    lower: float | None
    upper: float | None

    @property
    def rate(self) -> float | None:
        return self.count / self.total if self.total else None

    def to_dict(self) -> dict:
        # ``rate`` is derived but belongs in the JSON next to its interval.
        return {"count": self.count, "total": self.total, "rate": self.rate,
                "lower": self.lower, "upper": self.upper}


def rate(count: int, total: int) -> Rate:
    ci = wilson_interval(count, total)
    return Rate(int(count), int(total), *(ci if ci else (None, None)))


@dataclass(frozen=True)
class Classified:
    """Per-sample classification (arrays of equal length, in logging order)."""

    run_id: list
    step: np.ndarray
    prompt: list
    response: list
    harmful_prompt: np.ndarray       # bool: labelled or lexicon-flagged harmful prompt
    refusal: list                    # pattern label or None
    harmful_content: list            # category or None (only for non-refusals)
    jailbreak: list                  # pattern label or None
    labels: str                      # "logged" | "lexicon"
    unknown: np.ndarray              # bool: no label in a run that labels its prompts

    @property
    def refused(self) -> np.ndarray:
        return np.array([r is not None for r in self.refusal], dtype=bool)

    @property
    def benign(self) -> np.ndarray:
        return ~self.harmful_prompt & ~self.unknown

    @property
    def jailbreaks(self) -> np.ndarray:
        return np.array([j is not None for j in self.jailbreak], dtype=bool)

    @property
    def harmful_out(self) -> np.ndarray:
        return np.array([h is not None for h in self.harmful_content], dtype=bool)


def classify(run_ids, steps, prompts, responses, labels, params: Params) -> Classified:
    """Refusal / harmful-content / jailbreak flags per sample; prompt labels logged or lexicon."""
    logged = [(lab in HARMFUL_LABELS) if lab in HARMFUL_LABELS | BENIGN_LABELS else None
              for lab in labels]
    use_logged = any(v is not None for v in logged)
    harmful_prompt = np.array([bool(v) if use_logged and v is not None
                               else (not use_logged and first_match("harmful_prompt", p) is not None)
                               for v, p in zip(logged, prompts)], dtype=bool)
    # unlabelled samples in a labelled run: neither benign nor harmful
    unknown = np.array([use_logged and v is None for v in logged], dtype=bool)
    refusal = [is_refusal(r, params.refusal_window) for r in responses]
    harmful = [None if ref else first_match("harmful", r) for r, ref in zip(responses, refusal)]
    jail = [first_match("jailbreak", p) for p in prompts]
    return Classified(list(run_ids), np.asarray(steps), list(prompts), list(responses), harmful_prompt,
                      refusal, harmful, jail, "logged" if use_logged else "lexicon", unknown)


def rates_of(c: Classified) -> dict:
    """refusal_overall, refusal_benign, refusal_harmful, harmful_content, jailbreak_answered."""
    refused, benign = c.refused, c.benign
    return {"refusal_overall": rate(refused.sum(), refused.size),
            "refusal_benign": rate((refused & benign).sum(), benign.sum()),
            "refusal_harmful": rate((refused & c.harmful_prompt).sum(), c.harmful_prompt.sum()),
            "harmful_content": rate(c.harmful_out.sum(), c.harmful_out.size),
            "jailbreak_answered": rate((c.jailbreaks & ~refused).sum(), c.jailbreaks.sum())}
