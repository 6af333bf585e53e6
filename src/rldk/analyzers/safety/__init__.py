"""Safety evaluation over sample events: refusals, over-refusal, harmful content, jailbreaks.

Reads ``sample`` events (text = response, attrs.prompt; optional labels
attrs.harmful = true/false or attrs.label / attrs.category = "harmful" | "benign")
or a JSONL file of ``{"prompt", "response"[, "step", "harmful" | "label"]}``
records (``data``). Classification (``classify``) uses the documented lexicon in
``rldk.analyzers.safety.lexicon`` (regular expressions, no model, no download;
its limits are printed on the card).

Reported, with Wilson 95% intervals: the refusal rate on benign prompts
(over-refusal), on harmful prompts (appropriate refusal), the rate of responses
with harmful-content phrases that are not refusals, the rate of jailbreak prompts
that were answered; the refusal-rate curve by step and the step where it changes
(``curve``: the single split of the per-step refusal counts with the largest
binomial likelihood ratio, Bonferroni-corrected over the candidate splits).
A rate is judged on ``min_samples`` prompts of its kind at least; a run where
neither refusal rate could be judged gets no verdict (``judge``).
"""
from __future__ import annotations

from rldk.analyzers.safety.analyzer import (
    SafetyAnalyzer,
    evaluate,
    evaluate_run,
    safety,
    write_card,
)
from rldk.analyzers.safety.classify import Rate, classify, rate, rates_of
from rldk.analyzers.safety.curve import change_point, refusal_curve
from rldk.analyzers.safety.params import Params
from rldk.analyzers.safety.result import LIMITS, RunSafety, SafetyResult

__all__ = ["LIMITS", "Params", "Rate", "RunSafety", "SafetyAnalyzer", "SafetyResult", "change_point",
           "classify", "evaluate", "evaluate_run", "rate", "rates_of", "refusal_curve", "safety",
           "write_card"]
