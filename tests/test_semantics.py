"""One table says what each metric means: every name form answers the same through
every entry point (Run.metric, first_divergence, check_determinism, reward_health,
the health rules, spikes, `rldk diff`, `rldk analyze`)."""
from __future__ import annotations

import json
import math
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from rldk import semantics
from rldk.cli import main
from rldk.core.store import open_store
from rldk.writer import EventWriter


# ------------------------------------------------------------------ the table itself
@pytest.mark.parametrize("raw, quantity, split, sign", [
    ("reward", "reward", "train", 1),
    ("train/reward", "reward", "train", 1),                     # TRL TensorBoard / OpenRLHF
    ("objective/scores", "reward", "train", 1),                 # TRL PPO
    ("critic/score/mean", "reward", "train", 1),                # verl
    ("eval/reward", "reward", "eval", 1),
    ("eval_reward", "reward", "eval", 1),                       # HF Trainer eval prefix
    ("kl", "kl_to_ref", "train", 1),                            # TRL GRPO
    ("objective/kl", "kl_to_ref", "train", 1),                  # TRL PPO
    ("actor/reward_kl_penalty", "kl_to_ref", "train", 1),       # verl in-reward KL
    ("actor/kl_loss", "kl_to_ref", "train", 1),                 # verl use_kl_loss
    ("actor/ppo_kl", "ppo_approx_kl", "train", 1),              # verl PPO estimator: not kl_to_ref
    ("train/approx_kl", "ppo_approx_kl", "train", 1),           # SB3
    ("losses/approx_kl", "ppo_approx_kl", "train", 1),          # CleanRL
    ("train/entropy_loss", "entropy", "train", -1),             # SB3 logs minus the entropy
    ("actor/entropy", "entropy", "train", 1),                   # verl
    ("rollout/ep_rew_mean", "episode_return", "train", 1),      # SB3: not a reward-model reward
    ("charts/episodic_return", "episode_return", "train", 1),   # CleanRL
    ("rewards/margins", "dpo_margin", "train", 1),              # DPO: not a reward
    ("rewards/accuracies", "dpo_accuracy", "train", 1),
    ("train/completions/mean_length", "response_length", "train", 1),
    ("response_length/mean", "response_length", "train", 1),    # verl
    ("response_length/clip_ratio", "truncation_ratio", "train", 1),
    ("train/frac_reward_zero_std", "zero_std_frac", "train", 1),
    ("train/clip_fraction", "clip_ratio", "train", 1),          # SB3
    ("timing_s/step", "step_time", "train", 1),                 # verl
    ("Environment/Cumulative Reward", "episode_return", "train", 1),   # Unity ML-Agents
    ("Policy/Entropy", "entropy", "train", 1),                  # ML-Agents: the entropy itself
    ("Losses/Value Loss", "value_loss", "train", 1),            # ML-Agents
    ("Policy/Epsilon", "clip_range", "train", 1),               # ML-Agents PPO clip epsilon
    ("env/all/reward/total", "reward", "train", 1),             # Tinker RL
    ("test/env/all/reward/total", "reward", "eval", 1),         # Tinker's evaluation rows
    ("optim/entropy", "entropy", "train", 1),                   # Tinker
    ("reward/mean", "reward", "train", 1),                      # Tinker (other recipes)
    ("policy/entropy", "entropy", "train", 1),
    ("optim/lr", "lr", "train", 1),
    ("actor_train/grad_norm", "grad_norm", "train", 1),         # ROLL
    ("my_custom_metric", None, "train", 1),
])
def test_classify(raw, quantity, split, sign):
    q, got_split, got_sign = semantics.classify(raw)
    assert (q.name if q else None, got_split, got_sign) == (quantity, split, sign)


def test_flattened_names_stop_where_they_would_guess():
    # a step counter is not time/step's step time, and a name with its own "/" is not flattened
    assert semantics.classify("time_step")[0] is None
    assert semantics.classify("timing_s_step")[0] is None
    assert semantics.classify("critic/score_mean")[0] is None
    # an off-policy actor's loss is minus its Q estimate, PPO code's policy loss elsewhere
    assert semantics.classify("train/actor_loss")[0] is None
    # a flattened form two quantities share means neither
    table = semantics._Table.build([
        semantics._q("a", "signed", "none", ["x/y_z"], "a"),
        semantics._q("b", "signed", "none", ["x_y/z"], "b")])
    assert table.by_flat["x_y_z"] is None


@pytest.mark.parametrize("raw, guess", [
    ("reward_avg", "reward"),
    ("entropy_avg", "entropy"),
    ("avg_response_len", "response_length"),
    ("mean_episode_reward_last_100", "episode_return"),
    ("reward_std_avg", "reward_std"),
    ("mean_advantage", "advantage"),
    ("critic_grad_norm", None),             # another word than how it was averaged: the critic's
    ("rewards/chosen", None),               # DPO's implicit reward of the chosen answers
    ("critic/returns/mean", None),          # verl's GAE returns, not an episode return
    ("info/sample_time_ms", None),
    ("entropy loss", None),                 # SB3 logs minus the entropy under that name
    ("reward", None),                       # known: no guess needed
    ("kl_avg", None),                       # kl_to_ref's "kl" and the PPO estimator's "KL" tie
    ("q_loss", None),                       # "loss" alone says too little
    ("response_length/min", None),          # another statistic of the length
    ("advantage/zero_rate", None),          # a share, not the advantage
    ("time_step", None),                    # a step counter as often as a step time
    ("iter", None),
])
def test_unknown_names_get_a_guess_for_hints_only(raw, guess):
    q = semantics.looks_like(raw)
    assert (q.name if q else None) == guess
    assert semantics.classify(raw)[0] is None or guess is None    # never read by the guess


def test_not_the_same_quantity_on_purpose():
    assert semantics.resolve("kl_to_ref", ["actor/ppo_kl", "actor/pg_loss"]) is None
    assert semantics.resolve("reward", ["rollout/ep_rew_mean"]) is None
    assert semantics.resolve("reward", ["rewards/margins", "rewards/chosen"]) is None
    assert semantics.resolve("clip_ratio", ["train/clip_range"]) is None      # SB3's hyperparameter
    assert semantics.resolve("response_length", ["eps"]) is None              # TRL PPO: episodes/s


def test_resolve_prefers_the_literal_name_then_table_order():
    assert semantics.resolve("kl", ["kl", "objective/kl"]).metric == "kl"
    assert semantics.resolve("kl_to_ref", ["objective/kl", "train/kl"]).metric == "train/kl"
    assert semantics.resolve("reward_mean", ["critic/score/mean", "critic/rewards/mean"]).metric \
        == "critic/score/mean"
    assert semantics.resolve("reward", ["eval/reward"]) is None
    assert semantics.resolve("reward", ["eval/reward"], split="eval").metric == "eval/reward"
    found = semantics.resolve("entropy", ["train/entropy_loss"])
    assert (found.metric, found.sign) == ("train/entropy_loss", -1)
    assert semantics.resolve_name("entropy", ["train/entropy_loss"]) is None   # negated: not as is


def test_a_framework_name_stands_for_its_quantity():
    assert semantics.resolve_name("train/kl", ["kl"]) == "kl"
    assert semantics.resolve_name("objective/kl", ["actor/kl_loss"]) == "actor/kl_loss"


def test_metric_map_extends_the_table(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"kl_to_ref": ["my/kl"], "tokens_per_sec": ["perf/tps"]}))
    try:
        semantics.use_metric_map(path)
        assert semantics.resolve("kl", ["my/kl"]).metric == "my/kl"
        assert semantics.resolve("tokens_per_sec", ["perf/tps"]).metric == "perf/tps"
    finally:
        semantics.use_metric_map(None)
    assert semantics.resolve("kl", ["my/kl"]) is None


def test_a_mapped_name_is_taken_whole_prefix_and_all():
    """Tianshou logs ``test/reward`` (the test collector's return after each epoch) and
    ``train/reward``; mapped to ``episode_return``, each is that quantity's series, not
    the evaluation or train split of ``reward`` that its prefix would make it (the map
    was read after the prefix, so it never applied)."""
    try:
        semantics.use_metric_map({"episode_return": ["test/reward"], "entropy": ["-update/loss/ent"]})
        assert semantics.classify("test/reward")[:2] == (semantics.quantity("episode_return"), "train")
        assert semantics.classify("update/loss/ent")[0].name == "entropy"
        assert semantics.classify("update/loss/ent")[2] == -1
        assert semantics.resolve("episode_return", ["train/reward", "test/reward"]).metric == "test/reward"
        assert semantics.classify("test/length")[1] == "eval"          # an unmapped name keeps its split
    finally:
        semantics.use_metric_map(None)
    assert semantics.classify("test/reward")[:2] == (semantics.quantity("reward"), "eval")


def test_a_name_mapped_to_another_quantity_is_not_also_read_as_its_literal_one():
    """MARLlib's CSV logs the team's episode return as ``reward``; mapped to
    ``episode_return``, it is that quantity only. It was also taken literally as the
    reward-model score ``reward``, and each of its falls was reported twice, once by
    each quantity's rules."""
    try:
        semantics.use_metric_map({"episode_return": ["reward"]})
        assert semantics.resolve("reward", ["reward"]) is None
        assert semantics.resolve("episode_return", ["reward"]).metric == "reward"
        assert semantics.resolve("reward", ["reward", "critic/score/mean"]).metric == "critic/score/mean"
    finally:
        semantics.use_metric_map(None)
    assert semantics.resolve("reward", ["reward"]).quantity.name == "reward"


def test_a_mapped_name_with_a_train_prefix_beats_the_built_in_names():
    """A wandb run of SB3 logs ``rollout/ep_rew_mean`` a few times and the user's own
    ``train/mean_episode_reward_last_100`` on every step; mapped to ``episode_return``, the
    user's name is the series. It was ranked by its unprefixed form, which is in no table,
    so the built-in ``rollout/ep_rew_mean`` won."""
    logged = ["rollout/ep_rew_mean", "train/mean_episode_reward_last_100"]
    assert semantics.resolve("episode_return", logged).metric == "rollout/ep_rew_mean"
    try:
        semantics.use_metric_map({"episode_return": ["train/mean_episode_reward_last_100"]})
        assert semantics.resolve("episode_return", logged).metric == "train/mean_episode_reward_last_100"
        semantics.use_metric_map({"entropy": ["-train/neg_entropy"]})
        found = semantics.resolve("entropy", ["train/entropy", "train/neg_entropy"])
        assert (found.metric, found.sign) == ("train/neg_entropy", -1)
    finally:
        semantics.use_metric_map(None)


@pytest.mark.parametrize("text, message", [
    ("{", "map.json: line 1: not JSON"),
    ('{"kl_to_ref": "my/kl"}', "map.json: a metric map is a JSON object of lists of names"),
])
def test_bad_metric_map_is_one_clear_line(tmp_path, text, message):
    path = tmp_path / "map.json"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        semantics.load_metric_map(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_every_quantity_is_documented():
    table = semantics.markdown_table()
    for q in semantics.QUANTITIES:
        assert f"`{q.name}`" in table and q.doc and q.kind in semantics.KINDS and q.bad in semantics.BAD


#: Names that frameworks write themselves (not a user's choice), each seen in a real log of
#: benchmarks/data/real, where a metric map had to say what it was: the built-in table
#: knows them, so a user of those frameworks needs no map.
FRAMEWORK_NAMES = [
    ("rllib", "episode_reward_mean", "episode_return", "train"),
    ("rllib", "episode_len_mean", "episode_length", "train"),
    ("rllib", "env_runners/episode_return_mean", "episode_return", "train"),
    ("rllib", "info/learner/default_policy/learner_stats/entropy", "entropy", "train"),
    ("rllib", "info/learner/default_policy/vf_loss", "value_loss", "train"),
    ("rllib", "info/learner/default_policy/learner_stats/kl", "ppo_approx_kl", "train"),
    ("rllib", "info/learner/shared_policy/learner_stats/entropy", "entropy", "train"),
    ("rllib", "info/learner/vf_loss", "value_loss", "train"),
    ("rl_games", "rewards/step", "episode_return", "train"),
    ("rl_games", "episode_lengths/step", "episode_length", "train"),
    ("rl_games", "losses/a_loss", "loss", "train"),
    ("rl_games", "losses/c_loss", "value_loss", "train"),
    ("rl_games", "info/kl", "ppo_approx_kl", "train"),
    ("rl_games", "info/e_clip", "clip_range", "train"),
    ("sample_factory", "reward/reward", "episode_return", "train"),
    ("sample_factory", "len/len", "episode_length", "train"),
    ("sample_factory", "train/kl_divergence", "ppo_approx_kl", "train"),
    ("sample_factory", "train/fraction_clipped", "clip_ratio", "train"),
    ("skrl", "Reward / Total reward (mean)", "episode_return", "train"),
    ("skrl", "Loss / Value loss", "value_loss", "train"),
    ("rsl_rl", "Train/mean_reward", "episode_return", "train"),
    ("rsl_rl", "Loss/value_function", "value_loss", "train"),
    ("rsl_rl", "Loss/surrogate", "loss", "train"),
    ("tianshou", "update/loss/ent", "entropy", "train"),
    ("tianshou", "update/loss/vf", "value_loss", "train"),
    ("on-policy (MAPPO)", "average_episode_rewards", "episode_return", "train"),
    ("on-policy (MAPPO)", "dist_entropy", "entropy", "train"),
    ("on-policy (MAPPO)", "actor_grad_norm", "grad_norm", "train"),
    ("pymarl", "test_return_mean", "episode_return", "eval"),
    ("pymarl", "test_ep_length_mean", "episode_length", "eval"),
    ("rlkit", "eval/Average Returns", "episode_return", "eval"),
    ("rlkit", "trainer/QF1 Loss", "value_loss", "train"),
    ("sb3", "eval/mean_ep_length", "episode_length", "eval"),
    ("cleanrl dqn", "losses/td_loss", "value_loss", "train"),
    ("rl4lms", "rollout_info/kl_div_mean", "kl_to_ref", "train"),
    ("verl", "val-core/openai/gsm8k/acc/mean@1", "reward", "eval"),
    ("cs285", "Train_AverageReturn", "episode_return", "train"),
    ("cs285", "Eval_AverageReturn", "episode_return", "eval"),
    ("verl", "val-core/math_dapo/reward/mean@32", "reward", "eval"),
    ("verl", "val/test_score/openai/gsm8k", "reward", "eval"),
    ("baselines ppo1", "EpRewMean", "episode_return", "train"),
    ("baselines ppo1", "EpLenMean", "episode_length", "train"),
    ("baselines ppo1", "loss_ent", "entropy", "train"),
    ("baselines ppo1", "loss_kl", "ppo_approx_kl", "train"),
    ("baselines ppo1", "loss_vf_loss", "value_loss", "train"),
    ("baselines ppo1", "loss_pol_surr", "loss", "train"),
    ("baselines trpo", "meankl", "ppo_approx_kl", "train"),
    ("baselines trpo", "ev_tdlam_before", "explained_var", "train"),
    ("cleanrl sac", "losses/qf_loss", "value_loss", "train"),
    ("pymarl", "agent_grad_norm", "grad_norm", "train"),
    ("cs285 hw3", "train_return", "episode_return", "train"),
    ("cs285 hw3", "train_ep_len", "episode_length", "train"),
    ("cs285", "Baseline_Loss", "value_loss", "train"),
    ("benchmarl", "collection/reward/episode_reward_mean", "episode_return", "train"),
    ("benchmarl", "eval/reward/episode_reward_mean", "episode_return", "eval"),
    ("benchmarl", "eval/reward/episode_len_mean", "episode_length", "eval"),
    ("maniskill", "train/episode_len", "episode_length", "train"),
    ("maniskill", "losses/grad_norm", "grad_norm", "train"),
    ("verl csv export", "critic_score_mean", "reward", "train"),
    ("verl csv export", "actor_entropy", "entropy", "train"),
    ("verl csv export", "actor_ppo_kl", "ppo_approx_kl", "train"),
    ("verl csv export", "actor_pg_clipfrac", "clip_ratio", "train"),
    ("verl csv export", "response_length_mean", "response_length", "train"),
    ("verl csv export", "response_length_clip_ratio", "truncation_ratio", "train"),
    ("cs285 hw3", "Train_EpisodeReturn", "episode_return", "train"),
    ("cs285 hw3", "Train_EpisodeLen", "episode_length", "train"),
    ("omnisafe", "Metrics/EpRet", "episode_return", "train"),
    ("omnisafe", "Metrics/EpLen", "episode_length", "train"),
    ("omnisafe", "Train/Entropy", "entropy", "train"),
    ("omnisafe", "Train/KL", "ppo_approx_kl", "train"),
    ("omnisafe", "Train/LR", "lr", "train"),
    ("omnisafe", "Loss/Loss_pi", "loss", "train"),
    ("omnisafe", "Loss/Loss_reward_critic", "value_loss", "train"),
    ("dreamerv3", "episode/score", "episode_return", "train"),
    ("offlinerl-kit", "loss/critic1", "value_loss", "train"),
    ("prime-rl", "optim/grad_norm", "grad_norm", "train"),
    ("prime-rl", "entropy/mean", "entropy", "train"),
    ("prime-rl", "completion_len/mean", "response_length", "train"),
    ("prime-rl", "is_truncated/mean", "truncation_ratio", "train"),
    ("rllib via ray tune", "ray/tune/episode_reward_mean", "episode_return", "train"),
    ("rllib via ray tune", "ray/tune/info/learner/shared_policy/learner_stats/entropy", "entropy", "train"),
    ("rllib new api", "learners/default_policy/entropy", "entropy", "train"),
    ("rllib new api", "learners/shared/vf_loss", "value_loss", "train"),
    ("rllib new api", "learners/shared/mean_kl_loss", "ppo_approx_kl", "train"),
    ("rllib new api", "learners/shared/curr_kl_coeff", "kl_coef", "train"),
    ("sheeprl", "Rewards/rew_avg", "episode_return", "train"),
    ("sheeprl", "Game/ep_len_avg", "episode_length", "train"),
    ("sheeprl", "Loss/value_loss", "value_loss", "train"),
    ("sheeprl", "Grads/actor", "grad_norm", "train"),
    ("tianshou 2", "training/returns_stat/mean", "episode_return", "train"),
    ("tianshou 2", "test/returns_stat/mean", "episode_return", "eval"),
    ("tianshou 2", "update/ent_loss/mean", "entropy", "train"),
    ("tianshou 2", "update/vf_loss/mean", "value_loss", "train"),
    ("rsl_rl", "Loss/entropy", "entropy", "train"),
    ("rsl_rl", "Policy/mean_std", "action_std", "train"),
    ("pufferlib", "environment/episode_return", "episode_return", "train"),
    ("brax", "episode/sum_reward", "episode_return", "train"),
    ("brax", "eval/avg_episode_length", "episode_length", "eval"),
    ("dopamine", "Eval/AverageReturns", "episode_return", "eval"),
    ("cleanrl jax", "charts/avg_episodic_return", "episode_return", "train"),
    ("cleanrl", "losses/old_approx_kl", "ppo_approx_kl", "train"),
    ("openrlhf", "train/ppo_clip_ratio", "clip_ratio", "train"),
    ("openrlhf", "train/rollout/truncated_rate", "truncation_ratio", "train"),
    ("openrlhf", "train/rollout/response_length_mean", "response_length", "train"),
    ("trl < 0.12", "ppo/policy/policykl", "ppo_approx_kl", "train"),
    ("trl < 0.12", "ppo/val/var_explained", "explained_var", "train"),
    ("slime", "rollout/raw_reward", "reward", "train"),
    ("areal", "ppo_actor/update/clip_ratio/avg", "clip_ratio", "train"),
    ("nemo-rl", "train/mean_gen_tokens_per_sample", "response_length", "train"),
    ("nemo-rl", "train/approx_entropy", "entropy", "train"),
]


@pytest.mark.parametrize("raw", ["Loss/entropy_loss", "loss_policy_entropy"])
def test_entropy_logged_as_minus_a_loss_comes_back_with_its_sign(raw):
    # SheepRL's Loss/entropy_loss and Acme's loss_policy_entropy are minus the entropy
    q, split, sign = semantics.classify(raw)
    assert (q.name, split, sign) == ("entropy", "train", -1)


def test_rllib_totals_over_all_modules_are_no_one_modules_stat():
    assert semantics.classify("learners/__all_modules__/entropy")[0] is None
    assert semantics.classify("learners/shared/entropy/extra")[0] is None


@pytest.mark.parametrize("framework, raw, quantity, split", FRAMEWORK_NAMES)
def test_names_frameworks_write_need_no_map(framework, raw, quantity, split):
    q, got_split, sign = semantics.classify(raw)
    assert (q.name if q else None, got_split, sign) == (quantity, split, 1), framework


# ------------------------------------------------- frameworks x entry points
#: (framework, name it logs) for each quantity the matrix exercises.
FORMS = {
    "reward": [("trl", "reward"), ("trl_tensorboard", "train/reward"), ("trl_ppo", "objective/scores"),
               ("verl", "critic/score/mean"), ("openrlhf", "train/reward")],
    "kl_to_ref": [("trl", "kl"), ("trl_tensorboard", "train/kl"), ("trl_ppo", "objective/kl"),
                  ("verl", "actor/reward_kl_penalty"), ("openrlhf", "train/kl")],
    "response_length": [("trl", "completions/mean_length"),
                        ("trl_tensorboard", "train/completions/mean_length"),
                        ("verl", "response_length/mean"), ("openrlhf", "train/response_length")],
    "entropy": [("trl", "entropy"), ("verl", "actor/entropy"), ("cleanrl", "losses/entropy")],
}
CASES = [(q, fw, name) for q, forms in FORMS.items() for fw, name in forms]
#: Canonical names and aliases users type.
ASKED = {"reward": ["reward", "reward_mean"], "kl_to_ref": ["kl_to_ref", "kl"],
         "response_length": ["response_length"], "entropy": ["entropy"]}

rng = np.random.default_rng(0)
STEPS = 60
CURVE = {"reward": np.linspace(0.1, 0.8, STEPS) + rng.normal(0, 0.02, STEPS),
         "kl_to_ref": np.linspace(0.0, 0.05, STEPS) + np.abs(rng.normal(0, 0.002, STEPS)),
         "response_length": 200 + rng.normal(0, 5, STEPS),
         "entropy": 1.5 - np.linspace(0, 0.2, STEPS) + rng.normal(0, 0.01, STEPS)}


def write_run(directory, run_id, metrics: dict):
    with EventWriter(directory, run_id, capture_env=False) as w:
        for step in range(STEPS):
            w.log(step, {name: float(values[step]) for name, values in metrics.items()})
    return directory


@pytest.mark.parametrize("quantity, framework, name", CASES)
def test_run_metric_resolves_every_form(tmp_path, quantity, framework, name):
    run = open_store(write_run(tmp_path, framework, {name: CURVE[quantity]})).run(framework)
    for asked in ASKED[quantity]:
        assert np.allclose(run.metric(asked)["value"].to_numpy(), CURVE[quantity]), asked


def test_negated_form_comes_back_with_its_sign(tmp_path):
    run = open_store(write_run(tmp_path, "sb3", {"train/entropy_loss": -CURVE["entropy"]})).run("sb3")
    assert np.allclose(run.metric("entropy")["value"].to_numpy(), CURVE["entropy"])


@pytest.mark.parametrize("quantity, framework, name", CASES)
def test_first_divergence_matches_forms_across_frameworks(tmp_path, quantity, framework, name):
    """The same numbers under two frameworks' names agree; a change is found at its step."""
    from rldk import first_divergence

    other = "trl" if framework != "trl" else "verl"
    other_name = dict(FORMS[quantity]).get(other, FORMS[quantity][-1][1])
    a = write_run(tmp_path / "a", "a", {name: CURVE[quantity]})
    b = write_run(tmp_path / "b", "b", {other_name: CURVE[quantity]})
    changed = CURVE[quantity].copy()
    changed[40:] *= 3
    c = write_run(tmp_path / "c", "c", {other_name: changed})
    for asked in ASKED[quantity]:
        same = first_divergence(a, b, [asked])
        assert not same.diverged, (asked, same.to_dict())
        moved = first_divergence(a, c, [asked])
        assert (moved.diverged, moved.step) == (True, 40), (asked, moved.to_dict())


@pytest.mark.parametrize("framework, name", FORMS["kl_to_ref"])
def test_diff_cli_takes_canonical_signals(tmp_path, framework, name):
    a = write_run(tmp_path / "a", "a", {name: CURVE["kl_to_ref"]})
    b = write_run(tmp_path / "b", "b", {"kl": CURVE["kl_to_ref"]})
    result = CliRunner().invoke(main, ["diff", str(a), str(b), "--signals", "kl_to_ref",
                                       "--format", "json"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("framework, name", FORMS["reward"])
def test_reward_health_finds_the_reward_under_every_name(tmp_path, framework, name):
    from rldk import reward_health

    flat = np.full(STEPS, 0.5)                       # a constant reward: not a signal at all
    store = write_run(tmp_path, framework, {name: flat})
    for asked in (None, "reward", "reward_mean"):
        health = reward_health(str(store), reward_col=asked)
        assert any(f.metric == name for f in health.findings), (asked, health.to_dict())


@pytest.mark.parametrize("framework, name",
                         FORMS["entropy"] + [("sb3", "train/entropy_loss")])
def test_entropy_collapse_rule_reads_every_form(tmp_path, framework, name):
    from rldk.analyzers import get

    collapse = np.concatenate([np.full(20, 1.2), np.full(STEPS - 20, 0.01)])
    values = -collapse if name.endswith("entropy_loss") else collapse
    store = open_store(write_run(tmp_path, framework, {name: values}))
    report = get("health").run(store).report()
    assert [f.code for f in report.findings if f.metric == name] == ["entropy_collapse"]


@pytest.mark.parametrize("name, watched", [("actor/pg_loss", True), ("train/loss", True),
                                           ("actor/ppo_kl", True), ("objective/kl", True),
                                           ("rewards/chosen", False), ("nll_loss_custom", False)])
def test_spikes_watch_the_quantities_not_name_endings(tmp_path, name, watched):
    from rldk.analyzers import spikes

    store = open_store(write_run(tmp_path, "r", {name: np.ones(STEPS), "reward": np.ones(STEPS)}))
    assert ((store.run_ids[0], name) in spikes.watched_metrics(store)) is watched


SCRIPT = textwrap.dedent("""
    import sys
    import rldk.writer as w
    w.init("unused", run_id="unused")
    for step in range(6):
        w.log(step, {sys.argv[1]: 0.1 * step})
    w.close()
""")


@pytest.mark.parametrize("name, asked", [("reward", "reward_mean"), ("train/reward", "reward"),
                                         ("objective/kl", "kl"), ("actor/reward_kl_penalty", "kl_to_ref")])
def test_check_determinism_takes_canonical_signals(tmp_path, name, asked):
    from rldk import check_determinism

    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    report = check_determinism([sys.executable, str(script), name], [asked], replicas=2)
    assert report.passed, report.to_dict()


def test_analyze_applies_rules_to_tensorboard_prefixed_names(tmp_path):
    """TRL's TensorBoard tags keep `train/`: the zero-std and truncation rules still apply."""
    from rldk.analyzers import get

    ones = np.ones(STEPS)
    store = open_store(write_run(tmp_path, "tb", {"train/frac_reward_zero_std": ones * 0.9,
                                                  "train/completions/clipped_ratio": ones * 0.8,
                                                  "train/reward": ones * 0.1}))
    codes = {f.code for f in get("health").run(store).report().findings}
    assert {"zero_std_onset", "truncation_onset"} <= codes


def test_verls_older_entropy_name_is_the_entropy(tmp_path):
    """verl before ``actor/entropy`` logged the rollouts' mean token entropy (positive) as
    ``actor/entropy_loss``; SB3's ``train/entropy_loss`` is minus the entropy. A verl run's
    entropy that falls from 0.8 to 0.01 nats is an entropy collapse without a metric map;
    where both verl names are logged, ``actor/entropy`` is read."""
    from rldk.analyzers import get

    assert semantics.classify("actor/entropy_loss")[0].name == "entropy"
    assert semantics.classify("actor/entropy_loss")[2] == 1 and semantics.classify("train/entropy_loss")[2] == -1
    entropy = np.r_[np.full(30, 0.8), np.full(STEPS - 30, 0.01)] * (1 + 0.01 * np.cos(np.arange(STEPS)))
    store = open_store(write_run(tmp_path, "verl", {"actor/entropy_loss": entropy,
                                                    "critic/score/mean": np.ones(STEPS)}))
    (f,) = [f for f in get("health").run(store).report().findings if f.code == "entropy_collapse"]
    assert (f.metric, f.steps[0], f.severity) == ("actor/entropy_loss", 30, "error")
    assert semantics.resolve("entropy", ["actor/entropy_loss", "actor/entropy"]).metric == "actor/entropy"


def test_ppo_estimator_is_not_reported_as_negative_kl(tmp_path):
    from rldk.analyzers import get

    wiggle = 7e-4 * np.sin(np.arange(STEPS))         # verl actor/ppo_kl: tiny, either sign
    store = open_store(write_run(tmp_path, "verl", {"actor/ppo_kl": wiggle,
                                                    "critic/score/mean": np.ones(STEPS)}))
    assert "negative_kl" not in {f.code for f in get("health").run(store).report().findings}
    store = open_store(write_run(tmp_path / "b", "verl", {"actor/reward_kl_penalty": -0.5 + wiggle}))
    assert "negative_kl" in {f.code for f in get("health").run(store).report().findings}
    assert not math.isnan(wiggle[1])


def test_docs_print_the_table():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "semantics.md").read_text(encoding="utf-8")
    assert doc.endswith(semantics.markdown_table()), "regenerate: python -m rldk.semantics"


def test_every_listed_name_resolves_to_its_own_entry_with_its_sign():
    # a name listed under two quantities, or one a prefix rule rewrites, would be read as
    # another quantity than the table says (the first entry wins)
    for q in semantics.QUANTITIES:
        for raw in q.names:
            sign, name = (-1, raw[1:]) if raw.startswith("-") else (1, raw)
            got, split, got_sign = semantics.classify(name)
            assert (got.name if got else None, split, got_sign) == (q.name, "train", sign), raw
