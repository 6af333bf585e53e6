"""The one table of metric names: each framework's own name -> rldk's canonical name.

Stored events keep the framework's name (``objective/kl``, ``actor/pg_loss``); this
table only lets a caller ask for the canonical name. ``Run.metric("kl")`` on a run
that has no metric literally called ``kl`` looks here and returns the run's own
KL metric, the first of the candidates below that the run has.

=================  ==========================================================================
canonical          framework names, in the order they are tried
=================  ==========================================================================
reward_mean        reward (TRL GRPO/RLOO), rewards/mean, env/reward_mean (TRL PPO old),
                   objective/scores, train/reward (OpenRLHF), critic/score/mean,
                   critic/rewards/mean (verl), rollout/ep_rew_mean (SB3), reward_mean
reward_std         reward_std (TRL GRPO), env/reward_std, objective/scores_std, critic/score/std
kl                 kl (TRL GRPO), objective/kl (TRL PPO), train/kl (OpenRLHF),
                   actor/ppo_kl, actor/kl_loss, critic/kl (verl), policy/approxkl_avg
loss               loss (HF Trainer), train/policy_loss (OpenRLHF), actor/pg_loss (verl),
                   loss/policy_avg (TRL PPO), train/loss (SB3)
value_loss         train/critic_loss (OpenRLHF), critic/vf_loss (verl), loss/value_avg,
                   train/value_loss (SB3)
entropy            entropy (TRL), policy/entropy_avg, objective/entropy, actor/entropy
                   (verl), train/entropy (OpenRLHF)
grad_norm          grad_norm (HF Trainer), actor/grad_norm (verl), train/grad_norm
lr                 learning_rate (HF Trainer / SB3 train/learning_rate), actor/lr (verl),
                   train/actor_lr (OpenRLHF), lr
response_length    completions/mean_length (TRL GRPO), train/response_length (OpenRLHF),
                   response_length/mean (verl), val/response_length (TRL PPO old),
                   eps (TRL PPO tokens/episode)
clip_ratio         clip_ratio/region_mean (TRL GRPO), clip_ratio, policy/clipfrac_avg
                   (TRL PPO), actor/pg_clipfrac (verl), train/clip_ratio, train/clip_range
truncation_ratio   completions/clipped_ratio (TRL GRPO), response_length/clip_ratio (verl)
advantage_mean     critic/advantages/mean (verl), train/advantages_mean
value_mean         critic/values/mean (verl), train/values
explained_var      train/explained_variance (SB3), critic/vf_explained_var (verl)
step_time          step_time (TRL), timing_s/step (verl)
episode_length     rollout/ep_len_mean (SB3), episode_length
=================  ==========================================================================

Names that are related but not the same quantity are left out on purpose: SB3's
``train/entropy_loss`` is minus the entropy and ``time/time_elapsed`` is cumulative,
so neither stands in for ``entropy`` or ``step_time``.

A canonical name never hides a real one: ``metric("loss")`` on a run that logged
``loss`` returns that, whatever else the run has.
"""
from __future__ import annotations

#: canonical name -> framework names, tried in order.
CANONICAL: dict[str, tuple[str, ...]] = {
    "reward_mean": ("reward", "rewards/mean", "env/reward_mean", "objective/scores", "train/reward",
                    "critic/score/mean", "critic/rewards/mean", "rollout/ep_rew_mean", "reward_mean"),
    "reward_std": ("reward_std", "env/reward_std", "objective/scores_std", "critic/score/std"),
    "kl": ("kl", "objective/kl", "train/kl", "actor/ppo_kl", "actor/kl_loss", "critic/kl",
           "policy/approxkl_avg"),
    "loss": ("loss", "train/policy_loss", "actor/pg_loss", "loss/policy_avg", "train/loss"),
    "value_loss": ("train/critic_loss", "critic/vf_loss", "loss/value_avg", "train/value_loss"),
    "entropy": ("entropy", "policy/entropy_avg", "objective/entropy", "actor/entropy", "train/entropy"),
    "grad_norm": ("grad_norm", "actor/grad_norm", "train/grad_norm"),
    "lr": ("learning_rate", "train/learning_rate", "actor/lr", "train/actor_lr", "lr"),
    "response_length": ("completions/mean_length", "train/response_length", "response_length/mean",
                        "val/response_length", "eps"),
    "clip_ratio": ("clip_ratio/region_mean", "clip_ratio", "policy/clipfrac_avg", "actor/pg_clipfrac",
                   "train/clip_ratio", "train/clip_range"),
    "truncation_ratio": ("completions/clipped_ratio", "response_length/clip_ratio"),
    "advantage_mean": ("critic/advantages/mean", "train/advantages_mean"),
    "value_mean": ("critic/values/mean", "train/values"),
    "explained_var": ("train/explained_variance", "critic/vf_explained_var"),
    "step_time": ("step_time", "timing_s/step"),
    "episode_length": ("rollout/ep_len_mean", "episode_length"),
}

_TO_CANONICAL = {}
for _canonical, _names in CANONICAL.items():
    for _name in _names:
        _TO_CANONICAL.setdefault(_name, _canonical)


def resolve(name: str, available) -> str | None:
    """The metric of ``available`` that ``name`` means: itself if present, else the first
    framework name the table lists for canonical ``name`` that is present, else None."""
    available = set(available)
    if name in available:
        return name
    for candidate in CANONICAL.get(name, ()):
        if candidate in available:
            return candidate
    return None


def canonical(name: str) -> str | None:
    """The canonical name of a framework metric name (``objective/kl`` -> ``kl``), or None."""
    return _TO_CANONICAL.get(name)
