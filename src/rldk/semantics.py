"""What each metric means: the one table every entry point resolves names through.

A *quantity* is a thing a training run measures (the reward, the KL to the
reference policy, the policy entropy...). Frameworks log it under their own
names: TRL's GRPO logs ``reward`` (``train/reward`` in its TensorBoard files),
verl ``critic/score/mean``, OpenRLHF ``train/reward``. This module says, for
every quantity: its canonical name, the names it has in each framework, its
*kind* (what values it can take, which scale its noise lives on), which
direction is bad, and which rules apply to it. Stored events always keep the
framework's own name; this table only answers "which metric of this run is the
KL to the reference?".

Resolution rules (``resolve``):

* a metric logged under exactly the asked name wins;
* names are compared after one normalisation (``split_name``): a leading
  ``train/`` (CS285's ``Train_``, Tianshou 2's ``training/``, Ray Tune's ``ray/tune/``) is
  dropped, and ``eval/``, ``eval_``, ``val/``, ``test/`` (and the other
  ``_EVAL_PREFIXES``) put the
  metric in the ``eval`` split (``train/reward`` is the train reward,
  ``eval/reward`` and HF Trainer's ``eval_reward`` the evaluation reward);
* candidates are tried in the order the table lists them; a name the table
  marks with a leading ``-`` is the quantity negated (SB3's ``entropy_loss`` is
  minus the entropy), and ``Resolved.sign`` says so;
* quantities that are related but not the same are kept apart on purpose:
  verl's ``actor/ppo_kl`` and SB3's ``approx_kl`` estimate the old-to-new policy
  KL of one PPO update (``ppo_approx_kl``), not the KL to the reference
  (``kl_to_ref``); SB3's ``rollout/ep_rew_mean`` is an ``episode_return``, DPO's
  ``rewards/margins`` a ``dpo_margin``; neither is a reward-model ``reward``.

Users add names with a metric map (``--metric-map FILE`` on every command, or
``RLDK_METRIC_MAP``): a JSON object ``{"kl_to_ref": ["my/kl"], ...}`` whose names
are tried before the built-in ones (``use_metric_map``).

The table is printed in ``docs/semantics.md`` (``python -m rldk.semantics``).
This module imports nothing else of rldk: every layer may use it.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace

#: What values a quantity takes and the scale its noise lives on.
KINDS = {
    "ratio": "a fraction in [0, 1]",
    "nonneg": "non-negative, noise on a linear scale",
    "logscale": "non-negative, noise multiplicative (compare on a log scale)",
    "signed": "any sign, noise on a linear scale",
}
#: Which direction of change is bad.
BAD = {"up": "rising is bad", "down": "falling is bad", "both": "moves either way are bad",
       "none": "no direction is bad in itself"}
SPLITS = ("train", "eval")
_EVAL_PREFIXES = ("eval/", "eval_", "val/", "val-core/", "test/", "test_", "Eval_", "Eval/", "validation/",
                  "evaluator/")
_TRAIN_PREFIXES = ("train/", "Train_", "ray/tune/", "training/")


@dataclass(frozen=True)
class Quantity:
    """One thing a run measures.

    name: canonical name. kind: a key of ``KINDS``. bad: a key of ``BAD``.
    names: framework names after ``split_name`` normalisation, tried in order; a
        leading ``-`` marks a name that logs the quantity negated.
    aliases: other canonical names accepted for it (``reward_mean`` for ``reward``).
    rules: codes of the detectors that read it. doc: one line: what it is, where from.
    undefined: where the quantity has no value by its definition (a ratio over a variance
        that is zero), so a logged NaN there is no numerical failure; empty when never.
    per_update: a statistic of the loss computation, logged as a mean over the updates
        since the last row: before the first update it is a mean over nothing, so NaNs
        before its first value are not yet defined (an off-policy learner logs its loss as
        NaN until learning starts), not a numerical failure. Not the grad norm: a NaN or
        inf one at the first steps is what fp16 loss scaling produces while it calibrates
        (non-finite gradients, skipped), a real non-finite value.
    """

    name: str
    kind: str
    bad: str
    names: tuple[str, ...]
    doc: str
    aliases: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    undefined: str = ""
    per_update: bool = False

    def __post_init__(self):
        if self.kind not in KINDS or self.bad not in BAD:
            raise ValueError(f"quantity {self.name}: kind {self.kind!r} / bad {self.bad!r} unknown")

    @property
    def log_scale(self) -> bool:
        return self.kind == "logscale"


def _q(name, kind, bad, names, doc, aliases=(), rules=(), undefined="", per_update=False) -> Quantity:
    return Quantity(name, kind, bad, tuple(names), doc, tuple(aliases), tuple(rules), undefined, per_update)


#: The built-in table, in documentation order.
QUANTITIES: tuple[Quantity, ...] = (
    _q("reward", "signed", "down",
       ["reward", "reward_mean", "rewards/mean", "env/reward_mean", "objective/scores", "ppo/mean_scores",
        "critic/score/mean", "critic/rewards/mean", "score", "env/all/reward/total", "reward/mean",
        "rollout_info/ep_rew", "rollout/reward_mean", "rollout/raw_reward", "ppo_actor/task_reward/avg"],
       "mean reward-model / verifier score of a batch (TRL GRPO/PPO, OpenRLHF, verl, LLaMA-Factory, "
       "Tinker env/all/reward/total or reward/mean)",
       aliases=["reward_mean"], rules=["reward_collapse", "reward_plateau", "reward_saturation"]),
    _q("reward_std", "nonneg", "down",
       ["reward_std", "rewards/std", "env/reward_std", "objective/scores_std", "critic/score/std",
        "rollout/reward_std", "ppo/std_scores"],
       "spread of the reward within a batch"),
    _q("kl_to_ref", "logscale", "up",
       ["kl", "objective/kl", "actor/reward_kl_penalty", "actor/kl_loss", "critic/kl", "kl_mean",
        "ppo/mean_non_score_reward_kl", "rollout_info/kl_div_mean"],
       "KL divergence of the policy from the reference model (TRL kl / objective/kl, OpenRLHF "
       "train/kl, verl actor/kl_loss or actor/reward_kl_penalty)",
       aliases=["kl"], rules=["negative_kl", "kl_above_target", "kl_spike", "kl_controller_stuck"]),
    _q("ppo_approx_kl", "logscale", "up",
       ["approx_kl", "actor/ppo_kl", "policy/approxkl_avg", "ppo/policy/approxkl", "losses/approx_kl",
        "ppo_kl", "approxkl", "loss/approxkl", "KL", "loss_kl", "meankl",
        "info/kl", "kl_divergence", "info/learner/default_policy/learner_stats/kl", "Train/KL",
        "learners/default_policy/mean_kl_loss", "losses/old_approx_kl", "ppo/policy/policykl",
        "policy/approx_kl"],
       "old-to-new policy KL estimate of one PPO update (verl actor/ppo_kl, SB3/CleanRL approx_kl, "
       "OmniSafe Train/KL, RLlib's new API stack mean_kl_loss): "
       "tiny and of either sign by construction; not the KL to the reference (Spinning Up's KL "
       "of PPO/TRPO is this one, as are OpenAI Baselines PPO1's loss_kl and TRPO's meankl)", per_update=True),
    _q("kl_coef", "nonneg", "none",
       ["kl_coef", "objective/kl_coef", "actor/kl_coef", "critic/kl_coeff", "critic/kl_coef",
        "actor/reward_kl_penalty_coeff", "ppo/kl_coef",
        "info/learner/default_policy/learner_stats/cur_kl_coeff", "learners/default_policy/curr_kl_coeff"],
       "coefficient of the KL penalty (adaptive controllers move it)", rules=["kl_controller_stuck"]),
    _q("action_std", "logscale", "none",
       ["std", "Policy/mean_noise_std", "Policy / Standard deviation", "action_std", "policy/std",
        "actor/action_std", "Train/PolicyStd", "Policy/mean_std", "policy_dist_mean_std"],
       "standard deviation of a Gaussian policy's actions (SB3 train/std, rsl_rl "
       "Policy/mean_noise_std, skrl Policy / Standard deviation, OmniSafe Train/PolicyStd): a run that logs it has "
       "continuous actions, and its entropy is a differential entropy"),
    _q("entropy", "nonneg", "down",
       ["entropy", "objective/entropy", "policy/entropy_avg", "actor/entropy", "actor/entropy_loss",
        "ppo/policy/entropy",
        "losses/entropy", "-entropy_loss", "policy_entropy", "loss/policy_entropy", "Policy/Entropy",
        "optim/entropy", "policy/entropy", "Entropy", "dist_entropy", "loss/ent", "update/loss/ent",
        "loss_ent",
        "info/learner/default_policy/learner_stats/entropy", "learners/default_policy/entropy",
        "Train/Entropy", "entropy/mean", "Loss/entropy", "update/ent_loss/mean", "-Loss/entropy_loss",
        "-loss_policy_entropy", "rollout/entropy", "ppo_actor/update/entropy/avg", "approx_entropy"],
       "mean token / action entropy of the policy (SB3 logs minus it as entropy_loss; verl "
       "before actor/entropy logged the rollouts' mean token entropy as actor/entropy_loss; "
       "ML-Agents Policy/Entropy, Tinker optim/entropy or policy/entropy, Spinning Up Entropy, "
       "OmniSafe Train/Entropy, prime-rl entropy/mean, rsl_rl Loss/entropy, Tianshou 2 "
       "update/ent_loss/mean; SheepRL logs minus it as Loss/entropy_loss, Acme as "
       "loss_policy_entropy)",
       rules=["entropy_collapse"], per_update=True),
    _q("loss", "signed", "none",
       ["loss", "policy_loss", "actor/pg_loss", "loss/policy_avg", "ppo/loss/policy", "losses/policy_loss",
        "policy_gradient_loss", "loss/policy_loss", "Losses/Policy Loss", "LossPi",
        "losses/a_loss", "Loss/surrogate", "Loss / Policy loss", "trainer/Policy Loss", "pg_loss",
        "loss/clip",
        "update/loss/clip", "info/learner/default_policy/learner_stats/policy_loss", "loss_pol_surr",
        "Loss/Loss_pi", "learners/default_policy/policy_loss"],
       "the (policy) training loss (Spinning Up LossPi, OpenAI Baselines PPO1 loss_pol_surr, OmniSafe "
       "Loss/Loss_pi; not "
       "an off-policy actor's loss, SB3 SAC/TD3 train/actor_loss: that is minus its Q estimate, "
       "and PPO code logs its policy loss under the same name: map it)", rules=["loss_spike"], per_update=True),
    _q("value_loss", "logscale", "up",
       ["value_loss", "critic_loss", "critic/vf_loss", "loss/value_avg", "ppo/loss/value",
        "losses/value_loss", "loss/value_loss", "Losses/Value Loss", "LossV", "LossQ",
        "losses/c_loss", "Loss/value_function", "Loss / Value loss", "trainer/QF1 Loss", "loss/vf",
        "update/loss/vf",
        "losses/td_loss", "losses/qf1_loss", "info/learner/default_policy/learner_stats/vf_loss",
        "loss_vf_loss", "Baseline_Loss", "losses/qf_loss", "Loss/Loss_reward_critic", "loss/critic1",
        "learners/default_policy/vf_loss", "Loss/value_loss", "Loss/value", "update/vf_loss/mean",
        "update/critic_loss", "update/critic1_loss"],
       "critic / value-function loss (Spinning Up LossV, or LossQ of its Q-function; OpenAI "
       "Baselines PPO1 loss_vf_loss; CS285's policy-gradient Baseline_Loss; OmniSafe "
       "Loss/Loss_reward_critic; OfflineRL-Kit loss/critic1)", per_update=True),
    _q("grad_norm", "logscale", "up",
       ["grad_norm", "actor/grad_norm", "policy/grad_norm", "gradient_norm", "actor_train/grad_norm",
        "actor_grad_norm",
        "agent_grad_norm", "losses/grad_norm", "info/learner/default_policy/learner_stats/grad_gnorm",
        "optim/grad_norm", "Grads/actor", "ppo_actor/update/grad_norm"],
       "gradient norm before clipping (PyMARL's actor-critic learners: agent_grad_norm; prime-rl "
       "optim/grad_norm)", rules=["grad_norm_spike"]),
    _q("lr", "nonneg", "none",
       ["learning_rate", "lr", "actor/lr", "actor_lr", "charts/learning_rate", "Policy/Learning Rate",
        "optim/lr", "Loss/learning_rate", "Learning / Learning rate", "info/last_lr", "info/lr",
        "info/learner/default_policy/learner_stats/cur_lr", "Train/LR",
        "learners/default_policy/default_optimizer_learning_rate", "Info/learning_rate"],
       "learning rate of the policy optimizer"),
    _q("response_length", "nonneg", "both",
       ["completions/mean_length", "completion_length", "response_length", "response_length/mean",
        "tokens/responses_len_mean", "env/all/ac_tokens_per_turn", "rollout_info/ep_lens",
        "completion_len/mean", "rollout/response_length_mean", "rollout/response_lengths",
        "mean_gen_tokens_per_sample"],
       "mean generated response length in tokens (Tinker: action tokens per turn; prime-rl "
       "completion_len/mean)",
       rules=["length_growth", "length_hacking"]),
    _q("response_length_max", "nonneg", "none",
       ["response_length/max", "completions/max_length", "max_gen_tokens_per_sample", "response_length_max",
        "completion_len/max"],
       "longest generated response of a batch in tokens: the generation cap once a response "
       "reaches it (verl response_length/max, TRL completions/max_length, NeMo-RL "
       "max_gen_tokens_per_sample)", rules=["length_explosion"]),
    _q("truncation_ratio", "ratio", "up",
       ["completions/clipped_ratio", "response_length/clip_ratio", "is_truncated/mean",
        "rollout/truncated_rate", "ppo_actor/no_eos_ratios/avg"],
       "fraction of responses cut at the maximum length", rules=["truncation"]),
    _q("clip_ratio", "ratio", "up",
       ["clip_ratio/region_mean", "clip_ratio", "policy/clipfrac_avg", "actor/pg_clipfrac", "clip_fraction",
        "losses/clipfrac", "ppo/policy/clipfrac", "policy_clip_frac", "clipfrac", "loss/clipfrac",
        "ClipFrac", "fraction_clipped", "ppo_clip_ratio", "pg_clipfrac", "ppo_actor/update/clip_ratio/avg"],
       "fraction of tokens whose PPO ratio was clipped", rules=["clip_ratio_high"], per_update=True),
    _q("clip_range", "nonneg", "none",
       ["clip_range", "cliprange", "clip_param", "Policy/Epsilon", "info/e_clip"],
       "PPO clip range epsilon (rl-zoo schedules decay it; ML-Agents logs it as Policy/Epsilon): "
       "the clip fraction counts ratios outside 1 +- epsilon, so it rises as epsilon shrinks"),
    _q("zero_std_frac", "ratio", "up",
       ["frac_reward_zero_std"],
       "fraction of GRPO groups whose rewards all tie (no learning signal)",
       aliases=["frac_reward_zero_std"], rules=["zero_std_groups"]),
    _q("advantage", "signed", "none",
       ["critic/advantages/mean", "advantages_mean", "advantages", "advantage"],
       "mean advantage", aliases=["advantage_mean"]),
    _q("value", "signed", "none",
       ["critic/values/mean", "values", "value_mean"],
       "mean value-function estimate", aliases=["value_mean"]),
    _q("explained_var", "signed", "down",
       ["explained_variance", "critic/vf_explained_var", "losses/explained_variance",
        "misc/explained_variance", "ev_tdlam_before",
        "info/learner/default_policy/learner_stats/vf_explained_var",
        "learners/default_policy/vf_explained_var", "ppo/val/var_explained"],
       "explained variance of the value function (1 is perfect)",
       undefined="where the batch's returns have no variance (1 - Var(returns - values) / Var(returns) "
                 "with Var(returns) = 0: SB3 and CleanRL log NaN there)"),
    _q("step_time", "logscale", "up",
       ["timing_s/step", "timing/step", "perf/time_per_step", "step_time", "time/step"],
       "wall-clock seconds per training step", rules=["step_time"]),
    _q("tokens_per_step", "nonneg", "none",
       ["perf/total_num_tokens", "tokens", "tokens_per_step", "batch_tokens", "num_tokens_per_step"],
       "tokens processed in the training step: the work that step time and throughput are read against"),
    _q("tokens_seen", "nonneg", "none",
       ["num_tokens", "num_input_tokens_seen", "total_tokens"],
       "tokens processed since the start (cumulative: its per-step difference is tokens_per_step)"),
    _q("samples_per_step", "nonneg", "none",
       ["samples", "num_samples", "samples_per_step", "batch_size"],
       "samples (sequences or episodes) in the training step"),
    _q("tokens_per_second", "nonneg", "down",
       ["perf/throughput"], "training throughput in tokens per second as the trainer logged it (verl: per GPU)"),
    _q("mfu", "ratio", "down",
       ["perf/mfu/actor", "perf/mfu/critic"],
       "model FLOPs utilisation as the trainer logged it (verl logs the actor's and the critic's)"),
    _q("episode_return", "signed", "down",
       ["rollout/ep_rew_mean", "charts/episodic_return", "r", "episode/reward", "ep_rew_mean",
        "episode_reward",
        "mean_reward", "episode_return", "ep_reward_mean", "eprewmean", "mean 100 episode reward",
        "Environment/Cumulative Reward", "AverageEpRet", "AverageReturn",
        "episode_reward_mean", "env_runners/episode_return_mean", "env_runners/episode_reward_mean",
        "rewards/step", "reward/reward", "Reward / Total reward (mean)", "Train/mean_reward",
        "average_episode_rewards", "return_mean", "Average Returns", "exploration/Average Returns",
        "EpRewMean", "collection/reward/episode_reward_mean", "reward/episode_reward_mean", "train_return",
        "EpisodeReturn", "Metrics/EpRet", "episode/score", "Rewards/rew_avg", "returns_stat/mean",
        "environment/episode_return", "episode/sum_reward", "charts/avg_episodic_return", "episodic_return",
        "AverageReturns", "Train/mean_reward/time"],
       "mean undiscounted return of finished episodes (SB3 rollout/ep_rew_mean, monitor.csv r, "
       "CleanRL charts/episodic_return, Stable-Baselines 2 ep_reward_mean, OpenAI Baselines "
       "eprewmean or EpRewMean (PPO1, TRPO), ML-Agents Environment/Cumulative Reward, Spinning Up AverageEpRet, rllab / "
       "garage AverageReturn, RLlib episode_reward_mean, rl_games rewards/step, Sample Factory "
       "reward/reward, skrl, rsl_rl Train/mean_reward, MAPPO, pymarl, rlkit, BenchMARL, CS285 train_return "
       "or Train_EpisodeReturn, OmniSafe Metrics/EpRet, DreamerV3 episode/score, SheepRL "
       "Rewards/rew_avg, Tianshou 2 returns_stat/mean, PufferLib environment/episode_return, Brax "
       "episode/sum_reward, Dopamine AverageReturns): an environment "
       "return, not a reward-model score (Tianshou's train/reward and test/reward are returns "
       "too, under TRL's name for a reward-model score: map them)",
       undefined="where no episode ended (a mean over no episodes: RLlib logs NaN until the first one does)"),
    _q("episode_length", "nonneg", "none",
       ["rollout/ep_len_mean", "charts/episodic_length", "l", "episode/length", "ep_len_mean", "eplenmean",
        "episode_length", "Environment/Episode Length", "EpLen", "AverageEpLen",
        "episode_len_mean", "env_runners/episode_len_mean", "episode_lengths/step", "len/len",
        "Episode / Total timesteps (mean)", "Train/mean_episode_length", "mean_ep_length", "ep_length_mean",
        "num_frames_mean", "path length Mean", "exploration/path length Mean", "EpLenMean",
        "reward/episode_len_mean", "episode_len", "train_ep_len", "EpisodeLen", "Metrics/EpLen",
        "Game/ep_len_avg", "lens_stat/mean", "environment/episode_length", "charts/avg_episodic_length",
        "avg_episode_length", "Train/mean_episode_length/time"],
       "mean length of finished episodes", rules=["episode_length_collapse"],
       undefined="where no episode ended (a mean over no episodes: RLlib logs NaN until the first one does)"),
    _q("success_rate", "ratio", "down",
       ["success_rate", "rollout/success_rate", "success_at_end", "success_once", "charts/success_rate",
        "episode/success_rate"],
       "share of episodes that reach the task's goal (SB3 rollout/success_rate, ManiSkill "
       "success_at_end, else success_once): what a shaped episode return stands in for"),
    _q("dpo_margin", "signed", "none",
       ["rewards/margins"], "DPO: mean implicit-reward margin of chosen over rejected"),
    _q("dpo_accuracy", "ratio", "down",
       ["rewards/accuracies"], "DPO: fraction of pairs whose chosen answer out-scores the rejected"),
    _q("gold_reward", "signed", "down",
       ["gold_reward", "reward_gold", "gold/reward", "heldout_reward"],
       "reward from a held-out (gold) reward model, for over-optimisation checks"),
)


@dataclass(frozen=True)
class Resolved:
    """A quantity found in a run: ``metric`` is the run's own name, ``sign`` -1 when
    the run logs the quantity negated, ``quantity`` the table entry (None when the
    asked name is not in the table and was found literally)."""

    metric: str
    sign: int = 1
    quantity: Quantity | None = None


#: quantities whose names are not read flattened: ``time_step`` is a step counter as often
#: as it is ``time/step``
_NOT_FLATTENED = frozenset({"step_time"})


@dataclass
class _Table:
    quantities: dict[str, Quantity] = field(default_factory=dict)
    by_alias: dict[str, str] = field(default_factory=dict)
    by_name: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    #: whole names a user's metric map gives (``test/reward``): they mean what the map
    #: says, prefix and all, before any prefix is read as a split
    mapped: frozenset[str] = frozenset()
    #: the table's names with ``/`` written as ``_`` (``critic_score_mean``), as loggers
    #: that flatten names write them; a form two quantities share means neither
    by_flat: dict[str, tuple[str, int] | None] = field(default_factory=dict)

    @classmethod
    def build(cls, quantities, mapped=()) -> "_Table":
        table = cls(mapped=frozenset(mapped))
        for q in quantities:
            table.quantities[q.name] = q
            for alias in (q.name, *q.aliases):
                table.by_alias.setdefault(alias, q.name)
            for raw in q.names:
                sign, name = (-1, raw[1:]) if raw.startswith("-") else (1, raw)
                table.by_name.setdefault(("train", name), (q.name, sign))
        for (_, name), hit in table.by_name.items():
            flat = name.replace("/", "_")
            if hit[0] in _NOT_FLATTENED or flat == name or ("train", flat) in table.by_name:
                continue
            table.by_flat[flat] = hit if table.by_flat.get(flat, hit) == hit else None
        return table


_BUILTIN = _Table.build(QUANTITIES)
_active = _BUILTIN


def split_name(raw: str) -> tuple[str, str]:
    """``(split, name)``: ``train/reward`` -> ("train", "reward"); ``eval_loss`` -> ("eval", "loss")."""
    for prefix in _EVAL_PREFIXES:
        if raw.startswith(prefix) and len(raw) > len(prefix):
            return "eval", raw[len(prefix):]
    for prefix in _TRAIN_PREFIXES:
        if raw.startswith(prefix) and len(raw) > len(prefix):
            return "train", raw[len(prefix):]
    return "train", raw


def quantity(name: str) -> Quantity | None:
    """The table entry of a canonical name or alias (``kl`` -> kl_to_ref), or None."""
    canonical = _active.by_alias.get(name)
    return _active.quantities[canonical] if canonical else None


def quantities() -> tuple[Quantity, ...]:
    """Every quantity of the active table (built-in, plus a user metric map)."""
    return tuple(_active.quantities.values())


def classify(raw: str, flattened: bool = True) -> tuple[Quantity | None, str, int]:
    """What a framework metric name measures: ``(quantity or None, split, sign)``.

    ``objective/kl`` -> (kl_to_ref, "train", 1); ``train/entropy_loss`` -> (entropy,
    "train", -1); ``eval/reward`` -> (reward, "eval", 1); ``foo`` -> (None, "train", 1).
    ``flattened``: whether a listed name written with ``_`` for ``/`` counts too.
    """
    if raw in _active.mapped:
        hit = _active.by_name[("train", raw)]
        return _active.quantities[hit[0]], "train", hit[1]
    split, name = split_name(raw)
    hit = _active.by_name.get(("train", name))
    if hit is None and name.startswith(_RLLIB_LEARNER):
        hit = _active.by_name.get(("train", _rllib_default(name)))
    if (hit is None and name.startswith(_RLLIB_LEARNERS) and name.count("/") == 2
            and not name.startswith(_RLLIB_LEARNERS + "__all_modules__/")):
        hit = _active.by_name.get(("train", _RLLIB_LEARNERS + "default_policy/" + name.rsplit("/", 1)[1]))
    if hit is None and flattened and "/" not in name:
        hit = _active.by_flat.get(name)          # a flattened name: verl's CSV exports
    if hit is None and _VERL_VALIDATION.match(raw) and "reward" in _active.quantities:
        return _active.quantities["reward"], "eval", 1
    if hit is None:
        return None, split, 1
    return _active.quantities[hit[0]], split, hit[1]


_RLLIB_LEARNER = "info/learner/"
#: RLlib's new API stack: ``learners/<module id>/<stat>`` (listed under the default
#: module id, ``default_policy``)
_RLLIB_LEARNERS = "learners/"
#: verl's validation score of one data source, under the source's own name:
#: ``val-core/<data source>/<reward|acc|score>/mean@<n>`` (``test_score/<data source>``
#: in verl before 0.3).
_VERL_VALIDATION = re.compile(r"^(val-core/.+/(reward|acc|score)/mean@\d+|val/test_score/.+)$")


def _rllib_default(name: str) -> str:
    """RLlib's learner stat ``name`` under the one name the table lists it by,
    ``info/learner/default_policy/learner_stats/<stat>``: RLlib writes it under the id of
    the policy it belongs to, inside ``learner_stats`` or not by version
    (``info/learner/<policy>/learner_stats/entropy``, ``info/learner/<policy>/entropy``,
    ``info/learner/entropy`` for one shared policy)."""
    parts = name.split("/")
    stat = parts[2] if len(parts) == 3 else parts[-1]
    return _RLLIB_LEARNER + "default_policy/learner_stats/" + stat


def canonical(raw: str) -> str | None:
    """The canonical name of a train-split metric name (``objective/kl`` -> ``kl_to_ref``), or None."""
    q, split, sign = classify(raw)
    return q.name if q is not None and split == "train" and sign == 1 else None


def resolve(name: str, available, split: str = "train") -> Resolved | None:
    """The metric of ``available`` (names a run logged) that ``name`` means, or None.

    ``name`` is a canonical name, an alias, or any framework name (which then
    stands for its quantity). A metric logged literally as ``name`` wins (for the
    train split), unless the user's map gives that name to another quantity; otherwise
    the quantity's names are tried in table order within ``split``, the unprefixed form
    of a name before its prefixed forms; a name from the user's metric map
    (``use_metric_map``) is matched whole and comes first.
    """
    available = list(available)
    if split == "train" and name in available:
        asked, means = quantity(name), classify(name)[0]
        # unless the user's map says the name means another quantity: one metric, one meaning
        if name not in _active.mapped or asked is None or means is None or means.name == asked.name:
            return Resolved(name, 1, asked or means)
    q = quantity(name) or classify(name)[0]
    if q is None:
        return None
    best = None
    for raw in available:
        hit_q, hit_split, sign = classify(raw)
        if hit_q is None or hit_q.name != q.name or hit_split != split:
            continue
        # a name the user's map gives is taken whole, as ``classify`` takes it, and ranks
        # at its place in the map (before every built-in name)
        key = raw if raw in _active.mapped else split_name(raw)[1]
        rank = (_position(q, key, sign), raw != key, raw)
        if best is None or rank < best[0]:
            best = (rank, Resolved(raw, sign, q))
    return best[1] if best else None


def _position(q: Quantity, name: str, sign: int) -> int:
    token = name if sign == 1 else "-" + name
    return q.names.index(token) if token in q.names else len(q.names)


def resolve_name(name: str, available, split: str = "train") -> str | None:
    """Like :func:`resolve` but only names logged with the quantity's own sign: the run's metric name."""
    found = resolve(name, available, split)
    return found.metric if found is not None and found.sign == 1 else None


# ------------------------------------------------------------------ hints for unknown names
#: Short forms names use for words of the table's names (``avg_response_len``, ``ep_rew``).
_SHORT = {"len": "length", "rew": "reward", "ret": "return", "ep": "episode", "ent": "entropy"}
#: Words that say too little alone to guess a quantity by: ``q_loss`` is no policy loss,
#: ``value`` no value estimate.
_VAGUE = frozenset({"loss", "mean", "value", "std", "step", "time", "total", "score", "l", "r"})
#: Words a name may add to a listed name and still mean it: how the value was averaged or
#: over what (``reward_avg``, ``mean_advantage``, ``episode_reward_last_100``, numbers).
#: Any other word makes it something else (``rewards/chosen``, ``critic/returns/mean``,
#: ``info/sample_time_ms``), and then no guess is offered.
_DECORATION = frozenset({"avg", "average", "mean", "batch", "epoch", "all", "overall", "global",
                         "last", "running", "smoothed", "ema", "rolling", "moving", "current", "curr"})


def _word(w: str) -> str:
    w = _SHORT.get(w, w)
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def _words(name: str) -> tuple[str, ...]:
    return tuple(_word(w) for w in re.findall(r"[a-z0-9]+", name.lower()))


def _decorates(part: tuple, whole: tuple) -> bool:
    """Whether every word of ``whole`` outside ``part`` only says how it was averaged."""
    rest = list(whole)
    for w in part:
        rest.remove(w)
    return all(w in _DECORATION or w.isdigit() for w in rest)


def _within(part: tuple, whole: tuple) -> bool:
    """Whether the words ``part`` appear in ``whole`` together and in order."""
    return any(whole[i:i + len(part)] == part for i in range(len(whole) - len(part) + 1))


_VAGUE_WORDS = frozenset(_word(w) for w in _VAGUE)


_LISTED_WORDS: dict = {}


def _listed_words() -> list[tuple[str, tuple[str, ...]]]:
    """``(quantity, words)`` of each name of the active table a guess may match (not a
    negated form, not step time, not a single vague word), built once per table."""
    table, listed = _LISTED_WORDS.get("table", (None, None))
    if table is not _active:
        listed = [(q.name, w) for q in _active.quantities.values() if q.name not in _NOT_FLATTENED
                  for name in q.names if not name.startswith("-")
                  if (w := _words(name)) and not (len(w) == 1 and w[0] in _VAGUE_WORDS)]
        _LISTED_WORDS["table"] = (_active, listed)
    return listed


#: The words a "not logged" line puts before the metric map it suggests (what the terminal
#: view picks those lines out by).
MAP_HINT = "if so, pass --metric-map FILE holding"


def looks_like(raw: str) -> Quantity | None:
    """A guess, for hints only, at what a name the table does not know measures: the
    quantity one of whose listed names appears, word for word and in order, in ``raw``
    (``reward_avg`` -> reward, ``avg_response_len`` -> response_length,
    ``mean_episode_reward_last_100`` -> episode_return), the most words winning. None for
    a known name, when two quantities tie, or when the only word shared says too little
    alone (``q_loss``), or a word other than how it was averaged (``_DECORATION``) makes it
    something else (``rewards/chosen``, ``response_length/min``, ``advantage/zero_rate``);
    never step time (``time_step`` is a counter as often). rldk never
    reads a metric by this guess: the user confirms it with a metric map."""
    if classify(raw)[0] is not None:
        return None
    words = _words(split_name(raw)[1])
    present = set(words)
    score: dict[str, int] = {}
    for quantity, w in _listed_words():
        if w[0] in present and _within(w, words) and _decorates(w, words):
            score[quantity] = max(score.get(quantity, 0), len(w))
    if not score:
        return None
    top = max(score.values())
    winners = [name for name, k in score.items() if k == top]
    return _active.quantities[winners[0]] if len(winners) == 1 else None


# ------------------------------------------------------------------ user metric maps
def load_metric_map(path) -> dict[str, list[str]]:
    """Read a metric map file: a JSON object canonical name -> list of the run's names."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the metric map ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno}: not JSON ({exc.msg}); a metric map is "
                         '{"kl_to_ref": ["my/kl"], ...}') from None
    if not isinstance(data, dict) or not all(
            isinstance(v, list) and all(isinstance(n, str) for n in v) for v in data.values()):
        raise ValueError(f'{path}: a metric map is a JSON object of lists of names, e.g. '
                         '{"kl_to_ref": ["my/kl"]}')
    return data


def use_metric_map(mapping: dict[str, list[str]] | str | os.PathLike | None) -> None:
    """Make ``mapping`` (or the map file it names) part of the active table; None resets.

    Names of a known quantity are tried before its built-in names, and a name the map
    gives to one quantity is no longer a name of any other (a custom logger's ``kl``
    mapped to ``ppo_approx_kl`` is not the KL to the reference); an unknown canonical
    name becomes a new signed quantity with no rules. A mapped name is taken whole: a
    Tianshou ``test/reward`` mapped to ``episode_return`` is that quantity's train
    series, not the evaluation split of ``reward`` that its prefix would make it.
    """
    global _active
    if mapping is None:
        _active = _BUILTIN
        return
    if not isinstance(mapping, dict):
        mapping = load_metric_map(mapping)
    claimed = {n.lstrip("-") for names in mapping.values() for n in names}
    merged = {q.name: replace(q, names=tuple(n for n in q.names if n.lstrip("-") not in claimed))
              for q in QUANTITIES}
    for name, names in mapping.items():
        base = merged.get(_BUILTIN.by_alias.get(name, name))
        if base is None:
            merged[name] = _q(name, "signed", "none", names, "from the user's metric map")
        else:
            merged[base.name] = replace(base, names=tuple(dict.fromkeys([*names, *base.names])))
    _active = _Table.build(merged.values(), mapped=claimed)


def _from_environment() -> None:
    path = os.environ.get("RLDK_METRIC_MAP")
    if path:
        use_metric_map(path)


_from_environment()


# ------------------------------------------------------------------------- docs
def markdown_table() -> str:
    """The table as Markdown (``docs/semantics.md``)."""
    lines = ["| quantity | kind | bad | names (after `train/` is dropped; `-` = negated) | rules | what |",
             "|---|---|---|---|---|---|"]
    for q in QUANTITIES:
        names = ", ".join(f"`{n}`" for n in q.names)
        aliases = f" (also `{'`, `'.join(q.aliases)}`)" if q.aliases else ""
        lines.append(f"| `{q.name}`{aliases} | {q.kind} | {q.bad} | {names} | "
                     f"{', '.join(q.rules)} | {q.doc}{f'; undefined {q.undefined}' if q.undefined else ''}"
                     f"{'; undefined before the first update (per update)' if q.per_update else ''} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
