"""A real CPU RL training loop with an optional injected memory leak.

REINFORCE on a contextual bandit: a small torch MLP policy reads a context vector
and picks one of ``actions`` arms; the arm a hidden linear "teacher" prefers pays
reward 1. Each step logs the loss, reward and host memory, and times its phases
(rollout, reward, train, all inside a ``step`` span) as spans.

The injected bug (``leak_from``): from that step on, the rollout logits are kept
"for debugging" in a list that is never cleared, a classic leak of tensors held by
a growing Python list. Each kept logits tensor is batch x actions float32
(2 MiB at the defaults), so host RSS grows by about that much per step.

The injected slowdown (``slow_from``): from that step on, the rollout draws
``slow_factor`` candidate batches and keeps the best (best-of-n sampling switched
on by mistake), so rollout and step time grow several-fold.

    python reference/leak/train.py --dir runs --run-id leaky --steps 200 --leak-from 60
    python reference/leak/train.py --dir runs --run-id slow --steps 120 --slow-from 60
"""
from __future__ import annotations

import argparse


def train(writer, steps: int = 200, leak_from: int | None = None, batch: int = 512,
          actions: int = 1024, features: int = 32, seed: int = 0, slow_from: int | None = None,
          slow_factor: int = 4) -> dict:
    """Train for ``steps`` steps, logging through ``writer`` (an ``EventWriter``)."""
    import torch

    torch.set_num_threads(1)          # a few ms a step, steady on a shared CPU
    torch.manual_seed(seed)
    teacher = torch.randn(features, actions)
    policy = torch.nn.Sequential(torch.nn.Linear(features, 64), torch.nn.Tanh(),
                                 torch.nn.Linear(64, actions))
    opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
    kept_logits = []                                   # the leak lives here
    for step in range(steps):
        with writer.span("step", step):
            n = slow_factor if slow_from is not None and step >= slow_from else 1
            with writer.span("rollout", step):
                context = torch.randn(batch, features)
                for _ in range(n):               # n > 1 only with the injected slowdown
                    logits = policy(context)
                    logp = torch.log_softmax(logits, dim=-1)
                    action = _sample(logp.detach().exp())
            with writer.span("reward", step):
                reward = (action == (context @ teacher).argmax(dim=1)).float()
            with writer.span("train", step):
                advantage = reward - reward.mean()
                loss = -(logp.gather(1, action[:, None]).squeeze(1) * advantage).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            if leak_from is not None and step >= leak_from:
                kept_logits.append(logits.detach().clone())   # BUG: never cleared
            writer.log(step, loss=loss.item(), reward_mean=reward.mean().item(), samples=batch)
            writer.log_memory(step)
    return {"steps": steps, "kept_tensors": len(kept_logits)}


def _sample(probs):
    """One action per row by inverse CDF (one uniform draw per row: cheap for many arms)."""
    import torch

    cdf = probs.cumsum(dim=-1)
    u = torch.rand(probs.shape[0], 1) * cdf[:, -1:]
    return torch.searchsorted(cdf, u).squeeze(1).clamp_(max=probs.shape[1] - 1)


def main(argv=None) -> None:
    from rldk.writer import EventWriter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="rldk_runs")
    parser.add_argument("--run-id", default="leak")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--leak-from", type=int, default=None)
    parser.add_argument("--slow-from", type=int, default=None)
    parser.add_argument("--slow-factor", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = {"steps": args.steps, "leak_from": args.leak_from, "slow_from": args.slow_from,
              "seed": args.seed}
    with EventWriter(args.dir, args.run_id, config=config, seed=args.seed, capture_env=False) as writer:
        print(train(writer, steps=args.steps, leak_from=args.leak_from, seed=args.seed,
                    slow_from=args.slow_from, slow_factor=args.slow_factor))


if __name__ == "__main__":
    main()
