"""A real, tiny RL run for the README's first command: REINFORCE on a bandit.

A softmax policy over ``arms`` arms learns from sampled rewards with a baseline,
with a KL penalty to its initial policy (the shape of RLHF objectives). NumPy
only, a second or two on a laptop. ``lr_spike_at`` multiplies the learning rate
by 50 from that step on: an injected bug for ``rldk diff`` to find.
"""
from __future__ import annotations

import numpy as np


def train_bandit(writer, steps: int = 300, seed: int = 0, arms: int = 10, batch: int = 64,
                 lr: float = 0.1, kl_coef: float = 0.05, lr_spike_at: int | None = None) -> dict:
    """Train and log every step through ``writer`` (an ``EventWriter``); returns final stats."""
    rng = np.random.default_rng(seed)
    means = np.linspace(0.0, 1.0, arms)              # arm i pays N(means[i], 0.5)
    logits = np.zeros(arms)
    ref = np.full(arms, 1.0 / arms)
    for step in range(steps):
        probs = _softmax(logits)
        actions = rng.choice(arms, size=batch, p=probs)
        rewards = rng.normal(means[actions], 0.5)
        advantages = rewards - rewards.mean()
        grad = np.zeros(arms)
        np.add.at(grad, actions, advantages)
        grad -= probs * advantages.sum()                 # d log pi(a) / d logits
        grad /= batch
        kl = float(np.sum(probs * np.log(probs / ref)))
        grad -= kl_coef * probs * (np.log(probs / ref) - kl)
        step_lr = lr * (50.0 if lr_spike_at is not None and step >= lr_spike_at else 1.0)
        logits += step_lr * grad
        entropy = float(-np.sum(probs * np.log(probs)))
        writer.log(step, reward_mean=float(rewards.mean()), reward_std=float(rewards.std()),
                   kl=kl, entropy=entropy, grad_norm=float(np.linalg.norm(grad)), lr=step_lr,
                   loss=float(-(advantages * np.log(probs[actions])).mean()))
    return {"best_arm_prob": float(_softmax(logits)[-1]), "steps": steps}


def _softmax(x):
    z = np.exp(x - x.max())
    return z / z.sum()
