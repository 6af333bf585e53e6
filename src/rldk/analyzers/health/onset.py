"""The onset-aware rules: a quantity entered a bad regime and stayed, from step N.

Each rule is a function of ``rldk.detectors.rules`` (the regime maths, thresholds
and their justification live there, shared with ``rldk watch`` and the in-process
guards); this module turns its events into findings with a fix.

=====================  ===================  ==========================================
code                   quantity             what
=====================  ===================  ==========================================
entropy_collapse       entropy              stays below 20% of a level it held (info
                                            at a reward ceiling: a solved task; info
                                            above 0.09 nats while the reward rose
                                            with the fall, or under it when the
                                            reward kept improving after: a policy
                                            that learned)
length_collapse        response_length      stays below 1/3 of a level it held (info
                                            while the reward rose with it: shorter
                                            answers that score better)
episode_length_        episode_length       stays below 1/3 of a level it held while
collapse                                    the episode return collapses over the same
                                            stretch, back to the lowest level it held
                                            (a warning: episodes end sooner, the
                                            policy fails early; alone, or with a
                                            return that did not collapse, nothing)
length_explosion       response_length      stays above 3x a level it held, or (no
                                            truncation share logged) rises from 80%
                                            or less of the generation cap to 95% of
                                            it and stays
truncation_onset       truncation_ratio     enters and stays at >= 50% truncated, or
                                            rises from <= 2% to a rolling level of
                                            >= 10% that stays to the end
zero_std_onset         zero_std_frac        enters and stays at >= 50% zero-std groups
reward_collapse        reward               sits at its floor from some step on
reward_degradation     reward, episode_     falls back by half its gain and stays (to
                       return (train, eval) the end, or a tenth of the run before it
                                            recovers, a twentieth with twice the
                                            evidence; on levels: rldk.detectors.trend),
                                            or by 25% of it to the end of the log,
                                            or, with no gain, settles below every
                                            level it held and stays; one finding per
                                            fall of a train series that fell twice;
                                            info while the success rate held
kl_blowup              kl_to_ref            jumps above 1 nat for 2+ rows, 10x the level before
grad_norm_explosion    grad_norm            a regime 10x every level held (3+ points) before
clip_ratio_blowup      clip_ratio           enters and stays at >= 30% clipped (info
                                            for a drift, a decayed clip range, or a
                                            state from the first step while the
                                            reward rose through it)
loss_divergence        loss, value_loss     100x a level it held and stays; a value
                                            loss 10x while the episode return falls,
                                            or 100x (in one jump or a climb) that
                                            the return's size does not explain (a
                                            squared error); a positive loss of a run
                                            that logs a return (a TD loss) 100x that
                                            the return's size does not explain, or
                                            one jump past it; none when it rose to a
                                            squared error under a thousandth of the
                                            return's size (or of 1); failing all, the
                                            same on the log up to where it came back
                                            after a tenth of the run (a warning)
=====================  ===================  ==========================================
"""
from __future__ import annotations

import numpy as np

from rldk.analyzers.health.data import EVAL, RunData
from rldk.analyzers.health.kl import find_key
from rldk.analyzers.health.params import NotApplicable, Params, at_least
from rldk.core.report import Finding
from rldk.detectors import rules

#: Fewest finite values an onset rule judges (a regime needs a few points to exist).
MIN_POINTS = 6

FIXES = {
    "entropy_collapse": "The policy became nearly deterministic and stopped exploring: raise the "
                        "entropy bonus or the KL coefficient, lower the learning rate, or look for "
                        "a narrow behaviour the reward over-pays.",
    "length_collapse": "Short answers are being rewarded: check the reward for a length bias or an "
                       "exploit (empty or truncated answers scoring well) and the EOS handling.",
    "episode_length_collapse": "Episodes now end within a few steps: the policy fails early (it falls, "
                               "crashes or reaches a terminal state at once). Compare its actions "
                               "before and after the onset step, and treat it as the return's "
                               "failure: lower the learning rate and keep the checkpoint from before.",
    "length_explosion": "Long answers are being rewarded: add a length penalty or normalise the "
                        "reward by length, and check that truncated answers are not reinforced.",
    "truncation_onset": "Raise max_completion_length, reward concise answers, or mask truncated "
                        "completions from the loss (TRL: mask_truncated_completions=True).",
    "zero_std_onset": "GRPO gets no advantage when every completion of a prompt scores the same: "
                      "make the reward less sparse (partial credit), raise num_generations or "
                      "temperature, or drop prompts that are always solved or always failed.",
    "reward_collapse": "The reward no longer varies: check the reward function (an exception "
                       "caught as 0, a parser that no longer matches), and the policy's outputs "
                       "at the onset step.",
    "reward_flat": "The reward sat at its floor from the start and never rose: nothing scores, so "
                   "there is nothing to learn from. Check the reward function on a few known-good "
                   "answers, the answer format the parser expects, and the task's difficulty for "
                   "this model (easier prompts, partial credit, more generations per prompt).",
    "reward_degradation": "The run unlearned what it had learned: lower the learning rate, raise "
                          "the KL/entropy regularisation, and compare the policy before and after "
                          "the onset step (keep the checkpoint from before it).",
    "kl_blowup": "The policy moves too far per update (or from the reference): lower the learning "
                 "rate, raise the KL coefficient or set target_kl, and check the onset step's "
                 "batch for degenerate samples.",
    "grad_norm_explosion": "Gradients exploded: clip the gradient norm, lower the learning rate, "
                           "and check the onset step's batch and loss for overflow.",
    "loss_divergence": "The loss diverged and did not come back: lower the learning rate, clip "
                       "gradients, and (DQN) check the target-network update and reward scale.",
    "clip_ratio_blowup": "Most PPO ratios are clipped: updates are too large; lower the learning "
                         "rate or the number of PPO epochs per batch.",
}


#: Quantities that are trivially ~0 at GRPO steps where every group's rewards tie (no
#: advantage, no gradient): those steps are not the run's level for them.
NEEDS_SIGNAL = ("grad_norm", "loss", "clip_ratio")


def _with_signal(run: RunData, quantity: str, steps, values):
    """``steps, values`` without the steps where ``zero_std_frac`` is 1 (no reward
    variance in any group), for quantities in NEEDS_SIGNAL; not applicable when fewer than
    MIN_POINTS are left."""
    zero = run.get("zero_std_frac")
    if quantity not in NEEDS_SIGNAL or zero is None:
        return steps, values
    keep = ~np.isin(steps, zero.steps[zero.values >= 1.0])
    if keep.sum() < MIN_POINTS:
        raise NotApplicable(f"{int(keep.sum())} step(s) with reward variance in some group "
                            f"(zero_std_frac under 1), the rule needs {MIN_POINTS}: the other steps "
                            f"had no learning signal to carry")
    return steps[keep], values[keep]


def _partner(run: RunData, quantity: str, kinds: tuple | None = None):
    """``(steps, values)`` of the finite values of the first quantity the run logs of
    ``kinds`` (default: those that ``quantity``'s rules judge it against, ``rules.PAIRED``;
    of the same split as ``quantity`` when the run logs it there, else of the other), or
    None when the run logs none of them."""
    kind = quantity.removeprefix(EVAL)
    for paired in kinds or rules.paired(kind):
        splits = (EVAL + paired, paired) if quantity != kind else (paired, EVAL + paired)
        other = run.get(splits[0]) or run.get(splits[1])
        if other is None:
            continue
        keep = np.isfinite(other.values)
        return (other.steps[keep], other.values[keep]) if keep.sum() >= MIN_POINTS else None
    return None


#: Config sections of an adaptive KL-to-reference controller (verl, TRL's old PPO).
KL_CONTROLLERS = ("kl_ctrl", "kl_controller", "adap_kl_ctrl")


def _target_kl(config: dict) -> float | None:
    """The per-update KL at which the run's PPO stops an update early (``target_kl`` in
    its config: SB3, CleanRL, ManiSkill, TRL's PPOConfig), or None when it sets none or
    turns early stopping off (TRL's ``early_stopping: false`` leaves its default
    ``target_kl`` unused). A ``target_kl`` inside a KL controller's section (verl's
    ``algorithm.kl_ctrl``) is the target of the KL to the reference, not this one."""
    if find_key(config, ("early_stopping",)) is False:
        return None
    value = find_key(config, ("target_kl",), skip=KL_CONTROLLERS)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


#: Config keys of the generation cap in tokens: verl's data.max_response_length, TRL's
#: max_completion_length, OpenRLHF's generate_max_len, Hugging Face generation's
#: max_new_tokens.
CAP_KEYS = ("max_response_length", "max_completion_length", "generate_max_len", "max_new_tokens")


def _length_cap(run: RunData) -> float | None:
    """The generation cap of ``run``'s responses, for ``rules.length_at_cap``: its config's
    (CAP_KEYS), else the longest response it logged (``response_length_max``: the cap once
    a response reached it), else a mean length pinned at its top (``_pinned_cap``). None
    when the run logs its truncation share, which the truncation rule reads directly, or
    when none is known."""
    if run.get("truncation_ratio") is not None:
        return None
    try:
        cap = float(find_key(run.config, CAP_KEYS))
    except (TypeError, ValueError):
        longest = run.get("response_length_max")
        finite = longest.values[np.isfinite(longest.values)] if longest is not None else ()
        cap = float(np.max(finite)) if len(finite) else _pinned_cap(run.get("response_length"))
    return cap if cap is not None and np.isfinite(cap) and cap > 0 else None


def _pinned_cap(length) -> float | None:
    """The generation cap as the mean response length itself shows it, or None: a whole
    number of tokens that is the series' highest value and that it takes exactly on half
    or more of its rows from the first time it reached it (at least MIN_POINTS of them). A
    batch's mean length repeats to the last digit only when every response has the same
    length, which only the cap imposes (a real TRL GRPO console with no config beside it:
    192 and 201 tokens, then exactly 256.0 on 3738 of its next 4126 steps)."""
    if length is None:
        return None
    v = length.values[np.isfinite(length.values)]
    if not len(v):
        return None
    top = float(np.max(v))
    first = int(np.argmax(v == top))
    pinned = int(np.count_nonzero(v[first:] == top))
    if top != round(top) or pinned < MIN_POINTS or pinned < 0.5 * (len(v) - first):
        return None
    return top


def onset_rule(quantity: str, run: RunData, params: Params) -> list[Finding]:
    """Every onset rule of ``quantity`` on one run."""
    series = run.get(quantity)
    finite = np.isfinite(series.values)
    at_least(series.values[finite], MIN_POINTS)
    if quantity == "entropy" and rules.differential_entropy(series.values[finite]):
        raise NotApplicable("the entropy takes values below 0 (a differential entropy of continuous "
                            "actions): a collapse to zero is not defined")
    if quantity == "entropy" and run.get("action_std") is not None:
        raise NotApplicable(f"the run logs its actions' standard deviation "
                            f"({run.names.get('action_std', 'action_std')}): a Gaussian policy, whose "
                            "entropy is a differential entropy, with no collapse to zero")
    metric = run.names.get(quantity, quantity)
    steps, values = _with_signal(run, quantity, series.steps[finite], series.values[finite])
    kind = quantity.removeprefix(EVAL)
    extra = {"partner": _partner(run, quantity)} if kind in rules.PAIRED else {}
    if kind == "ppo_approx_kl":
        extra["target_kl"] = _target_kl(run.config)
    if kind == "clip_ratio":
        extra["returns"] = _partner(run, quantity, rules.RETURNS)
    if quantity == "response_length":
        extra["cap"] = _length_cap(run)
    if kind == "episode_length":
        extra["success"] = _partner(run, quantity, ("success_rate",))
    out = []
    table = rules.EVAL_RULES if quantity != kind and kind in rules.EVAL_RULES else rules.RULES
    for rule in table[kind]:
        found = rule(metric, steps, values, **extra)       # an Event, None, or a list of them
        for event in found if isinstance(found, list) else [e for e in (found,) if e is not None]:
            if event.code == "reward_degradation" and any(f.code == "reward_collapse" for f in out):
                continue
            title = event.title
            if quantity in run.derived:        # a share read off another series: say which
                title = title.replace("share of zero-std reward groups", f"share of {run.derived[quantity]}")
            out.append(Finding(code=event.code, severity=event.severity, title=title,
                               run_id=run.run_id, metric=metric, steps=(event.onset, event.last),
                               evidence={"onset": event.onset, **event.evidence},
                               fix=_fix(event)))
    return out


#: What to do about a loss divergence the run came back from (``rules.recovered_divergence``).
RECOVERED_DIVERGENCE_FIX = ("The loss diverged for a stretch of the run and came back: whatever the "
                            "policy learned over that stretch came from a broken critic. Lower the "
                            "learning rate, clip gradients, and (DQN, SAC) check the target-network "
                            "update and reward scale.")


def _fix(event) -> str:
    """What to do about ``event``: ``FIXES`` by its code, or, for a loss divergence the run
    came back from, RECOVERED_DIVERGENCE_FIX."""
    if event.code == "loss_divergence" and event.evidence.get("recovered_at") is not None:
        return RECOVERED_DIVERGENCE_FIX
    return FIXES[event.code]
