"""First divergence: the first step where two runs that should agree stop agreeing.

Three levels of evidence, strongest first:

1. **bitwise** (event kinds ``tensor``, ``rng``; :mod:`.bitwise`): the first step
   where a tensor checksum or an RNG-state digest differs, naming the first tensor
   (in logging order) and RNG source that differ.
2. **exact** (kind ``metric``; :mod:`.exact`): the first common step where a
   signal's values differ at all (NaN equals NaN; a float32 copy of a run compares
   at float32 precision). For runs meant to be bit-identical.
3. **statistical** (kind ``metric``; :mod:`.statistical`): a noise band (replicas
   or warm-up steps) and a two-sided CUSUM, reporting the change's first step.

Signals are resolved through :mod:`rldk.semantics` (:mod:`.signals`): ``reward_mean``,
``reward`` and ``train/reward`` are one signal. Steps are aligned by step number:
per signal only steps both runs logged are compared (other logging intervals, gaps
and shorter runs drop out, never filled); a step logged twice keeps its last value;
multi-rank runs use the lowest rank (see ``rldk.analyzers._series``). Which level
gives the verdict: :mod:`.compare`. The drift card: :mod:`.card`.
"""
from rldk.analyzers.divergence.analyzer import DivergenceAnalyzer
from rldk.analyzers.divergence.bitwise import compare_digests
from rldk.analyzers.divergence.card import card, plots
from rldk.analyzers.divergence.compare import compare, diff, first_divergence
from rldk.analyzers.divergence.params import CONSUMES, MODES, NAME, TIMING, Params
from rldk.analyzers.divergence.result import (
    BitwiseEvidence,
    Divergence,
    DivergenceResult,
    SignalDivergence,
)

__all__ = ["BitwiseEvidence", "CONSUMES", "Divergence", "DivergenceAnalyzer", "DivergenceResult",
           "MODES", "NAME", "Params", "SignalDivergence", "TIMING", "card", "compare",
           "compare_digests", "diff", "first_divergence", "plots"]
