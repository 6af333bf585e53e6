"""The reward-health parameters: every threshold, named and documented."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Params:
    """Reward-health parameters (defaults in brackets).

    reward_col: per-step reward metric [None: the run's ``reward`` quantity, ``rldk.semantics``].
    kl_col: KL-to-reference metric [None: the ``kl_to_ref`` quantity; never the PPO
        old-to-new ``ppo_approx_kl`` such as verl's actor/ppo_kl].
    length_col: mean response-length metric [None: the ``response_length`` quantity].
    gold_col: gold / held-out reward metric [None: the ``gold_reward`` quantity].
    val_reward_col: validation reward metric [None: the ``reward`` quantity in the eval split].
    windows: windows a run is cut into for windowed statistics [8].
    min_window: fewest values a window needs to be scored [5].
    saturation_share: share of a window's rewards at one value that is saturation [0.9].
    bounds: the reward's clip bounds (lo, hi) when known [None].
    zero_std_share: share of zero-std groups that is a problem [0.5].
    length_rho: Spearman(length, reward) that says reward follows length [0.5].
    component_rho: |Spearman(component, step)| for a clear trend [0.5].
    component_shift: |late - early mean| / std for a clear trend [1.0].
    kl_band: KL (as logged, nats) above which a rising reward is suspect [1.0].
    gold_drop: fall of the gold reward from its peak, in units of its step-to-step
        noise (and at least 5% of its range), that is overoptimization [3.0].
    accuracy_min, ece_max: preference accuracy below / ECE above which the reward
        model is flagged [0.6, 0.1].
    drift_rho, flip_max: Spearman below / sign-flip rate above which two reward
        models (runs) disagree [0.7, 0.2].
    overlap_max: share of validation prompts also in training above which it is
        leakage (any overlap is reported) [0.01].
    lockstep_rho: Spearman of step-to-step train and validation reward changes
        above which validation tracks training batch noise [0.8].
    against: id of a second run in the same store to compare rewards with [None].
    validation: id of a run whose samples are the validation set [None].
    """

    reward_col: str | None = None
    kl_col: str | None = None
    length_col: str | None = None
    gold_col: str | None = None
    val_reward_col: str | None = None
    windows: int = 8
    min_window: int = 5
    saturation_share: float = 0.9
    bounds: tuple[float, float] | None = None
    zero_std_share: float = 0.5
    length_rho: float = 0.5
    component_rho: float = 0.5
    component_shift: float = 1.0
    kl_band: float = 1.0
    gold_drop: float = 3.0
    accuracy_min: float = 0.6
    ece_max: float = 0.1
    drift_rho: float = 0.7
    flip_max: float = 0.2
    overlap_max: float = 0.01
    lockstep_rho: float = 0.8
    against: str | None = None
    validation: str | None = None
