"""Reward-model health: is the reward still a signal, or is the policy gaming it?

Reads ``metric`` events (the per-step reward and, where logged, the KL to the
reference, the mean response length, per-function rewards ``rewards/<fn>/mean``,
``frac_reward_zero_std``, a gold / held-out reward, a validation reward; every
name resolved through ``rldk.semantics``) and ``sample`` events (text = response,
attrs.prompt, value = reward; attrs.split = "train" | "val", attrs.pair and
attrs.preferred for preference pairs). Every detector is a check that ran or
could not run (and then says what to log); none fires merely because training
makes progress (a reward that rises steadily is what training is for). One
module per detector:

=====================  =============================================================
values                 reward_values: NaN/inf or constant per-step reward
saturation             >= ``saturation_share`` of a window's sample rewards at one value
                       (or at a known clip bound, or beyond sigmoid 0.01/0.99)
zero_std               share of GRPO groups (same prompt, same step) whose rewards all
                       equal, from samples or TRL's ``frac_reward_zero_std``
length                 Spearman(response length, reward) >= ``length_rho`` in the later
                       windows, within steps (samples) or on step-to-step changes of the
                       ``response_length`` metric, so shared upward trends do not count
components             one ``rewards/<fn>/mean`` clearly rising while another falls
kl                     reward rising while the KL to the reference is above ``kl_band``
overoptimization       gold / held-out reward falling after its peak while the proxy
                       reward keeps rising; Gao et al. (2022) fit R(d) = a d - b d ln d
calibration            preference pairs: pairwise accuracy, ECE (10 bins) of the
                       Bradley-Terry probability sigmoid(r_a - r_b), length-only baseline
drift                  against a second run on shared (prompt, response) items:
                       Spearman, Kendall tau-b, pairwise sign-flip rate
leakage                validation prompts also in training (exact and normalized
                       content hash); validation reward in lockstep with training
=====================  =============================================================

Which checks define the verdict (and when it is "inconclusive") is documented in
``rldk.analyzers.reward_health.result``. ``data`` loads series and samples,
``stats`` holds the NumPy statistics, ``plots`` the card's PNGs.
"""
from __future__ import annotations

from rldk.analyzers.reward_health.analyzer import (
    RewardHealthAnalyzer,
    reward_health,
    write_card,
)
from rldk.analyzers.reward_health.calibration import calibration
from rldk.analyzers.reward_health.drift import drift
from rldk.analyzers.reward_health.params import Params
from rldk.analyzers.reward_health.result import DEFINING, RewardHealth
from rldk.analyzers.reward_health.stats import rankdata, spearman

__all__ = ["DEFINING", "Params", "RewardHealth", "RewardHealthAnalyzer", "calibration", "drift",
           "rankdata", "reward_health", "run", "spearman", "write_card"]


def run(store, params: Params | None = None, out_dir=None, run_ids=None) -> RewardHealth:
    """``RewardHealthAnalyzer().run(...)``: reward health of the runs of an open store."""
    return RewardHealthAnalyzer().run(store, params, out_dir=out_dir, run_ids=run_ids)
