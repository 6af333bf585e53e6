"""A tiny, real torch training loop for the determinism and resume harnesses.

A bag-of-embeddings classifier (Embedding 64x16 -> mean -> Linear 16x32 -> ReLU
-> dropout -> Linear 32x4) learns a fixed synthetic task with Adam and a step LR
schedule. Each step's batch is split into 8 micro-batches whose gradients are
summed, as a data-parallel all-reduce would. Every step logs metrics, RNG digests
(global RNGs and the data generator) and gradient and parameter checksums.

Injected nondeterminism, each starting at ``--inject-at`` (a known step):

  --inject shuffle     the batch is drawn by an unseeded generator
  --inject dropout     the dropout mask is drawn by an unseeded generator
  --inject reduction   micro-batch gradients are summed in a random order
                       (floating-point addition is not associative)

The unseeded sources are deliberately not passed to ``log_rng``: like real bugs,
they are invisible to the RNG digests and show up first in the tensors.

Harness protocol (environment variables, see docs/determinism.md):
  RLDK_DIR, RLDK_RUN_ID  where the writer puts the run (read by EventWriter)
  RLDK_MAX_STEPS         train this many steps (overrides --steps)
  RLDK_STOP_AT           stop after this step (inclusive) ...
  RLDK_CHECKPOINT_DIR    ... and save a checkpoint there, logged with log_checkpoint
  RLDK_RESUME_FROM       restore this checkpoint and continue after its step
``--omit rng,data,...`` leaves parts out of the checkpoint and ``--skip-restore rng,...``
saves them but does not restore them on resume (resume-check injections).
"""
from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

import rldk
from rldk.writer import EventWriter

VOCAB, SEQ, CLASSES, N_EXAMPLES, BATCH, MICRO = 64, 8, 4, 512, 64, 8
INJECTIONS = ("shuffle", "dropout", "reduction")
PARTS = ("model", "optimizer", "scheduler", "rng", "data")


class BagClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 16)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, CLASSES)
        self.p = 0.2
        self.dropout_generator = None       # None: the global torch RNG

    def forward(self, tokens):
        h = torch.relu(self.fc1(self.emb(tokens).mean(dim=1)))
        if self.training:
            keep = torch.rand(h.shape, generator=self.dropout_generator) >= self.p
            h = h * keep / (1 - self.p)
        return self.fc2(h)


def make_data(seed: int):
    """A fixed task: the label is the most frequent token's residue mod 4."""
    g = torch.Generator().manual_seed(seed + 1000)
    tokens = torch.randint(0, VOCAB, (N_EXAMPLES, SEQ), generator=g)
    labels = torch.mode(tokens % CLASSES, dim=1).values
    return tokens, labels


def unseeded_generator() -> torch.Generator:
    g = torch.Generator()
    g.seed()                                # a non-deterministic seed: the injected bug
    return g


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", default="rldk_runs")
    ap.add_argument("--run-id", default="train-tiny")
    ap.add_argument("--inject", choices=INJECTIONS)
    ap.add_argument("--inject-at", type=int, default=5)
    ap.add_argument("--omit", default="", help="checkpoint parts to leave out: " + ",".join(PARTS))
    ap.add_argument("--skip-restore", default="", help="parts saved but not restored on resume")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--deterministic", action="store_true", help="seed_everything(deterministic=True)")
    args = ap.parse_args(argv)
    for opt in ("omit", "skip_restore"):
        parts = {p for p in getattr(args, opt).split(",") if p}
        if parts - set(PARTS):
            ap.error(f"--{opt.replace('_', '-')}: unknown part(s) {', '.join(sorted(parts - set(PARTS)))}")
        setattr(args, opt, parts)
    return args


class Trainer:
    def __init__(self, args, writer):
        self.args, self.w = args, writer
        torch.set_num_threads(args.threads)
        self.tokens, self.labels = make_data(args.seed)
        self.model = BagClassifier()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=3e-3)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=4, gamma=0.5)
        self.g_data = torch.Generator().manual_seed(args.seed)
        self.epoch, self.batch, self.perm = 0, 0, None
        self.g_bad = unseeded_generator() if args.inject else None
        self.start = 0

    # --------------------------------------------------------------- data
    def next_batch(self, step):
        if self.args.inject == "shuffle" and step >= self.args.inject_at:
            return torch.randint(0, N_EXAMPLES, (BATCH,), generator=self.g_bad)
        if self.perm is None or self.batch * BATCH >= N_EXAMPLES:
            if self.perm is not None:
                self.epoch, self.batch = self.epoch + 1, 0
            self.perm = torch.randperm(N_EXAMPLES, generator=self.g_data)
        idx = self.perm[self.batch * BATCH:(self.batch + 1) * BATCH]
        self.batch += 1
        return idx

    # --------------------------------------------------------------- step
    def train_step(self, step):
        args = self.args
        if args.inject == "dropout" and step >= args.inject_at:
            self.model.dropout_generator = self.g_bad
        idx = self.next_batch(step)
        params = [p for _, p in self.model.named_parameters()]
        micro_grads, losses = [], []
        for chunk in idx.chunk(MICRO):
            loss = nn.functional.cross_entropy(self.model(self.tokens[chunk]), self.labels[chunk])
            micro_grads.append(torch.autograd.grad(loss / MICRO, params))
            losses.append(loss.detach())
        order = list(range(MICRO))
        if args.inject == "reduction" and step >= args.inject_at:
            random.SystemRandom().shuffle(order)    # like an all-reduce whose order varies
        for i, p in enumerate(params):
            total = micro_grads[order[0]][i].clone()
            for j in order[1:]:
                total += micro_grads[j][i]
            p.grad = total
        grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        self.w.log_tensors(step, self.model, kind="grad")
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        lr = self.sched.get_last_lr()[0]
        self.sched.step()
        self.w.log(step, loss=torch.stack(losses).mean(), grad_norm=grad_norm, lr=lr)
        self.w.log_rng(step, {"data": self.g_data})
        self.w.log_tensors(step, self.model, kind="param")

    # --------------------------------------------------------------- checkpoints
    def rng_state(self):
        kind, keys, pos, has_gauss, gauss = np.random.get_state()   # keys as a tensor: weights_only loads it
        return {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.copy()), pos, has_gauss, gauss),
                "torch": torch.get_rng_state(), "data": self.g_data.get_state()}

    def data_state(self):
        return {"epoch": self.epoch, "batch": self.batch, "perm": self.perm}

    def save(self, step, directory):
        omit = self.args.omit
        state = {"step": step, "model": self.model.state_dict()}
        for part, get in (("optimizer", self.opt.state_dict), ("scheduler", self.sched.state_dict),
                          ("rng", self.rng_state), ("data", self.data_state)):
            if part not in omit:
                state[part] = get()
        path = Path(directory) / f"step-{step}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
        self.log_checkpoint(step, path, "save", omit)

    def log_checkpoint(self, step, path, action, omit=frozenset()):
        self.w.log_checkpoint(
            step, path, model=self.model,
            optimizer=None if "optimizer" in omit else self.opt,
            scheduler=None if "scheduler" in omit else self.sched,
            rng=False if "rng" in omit else {"data": self.g_data},
            dataloader_state=None if "data" in omit else self.data_state(),
            action=action)

    def resume(self, path):
        state = torch.load(path, weights_only=True)
        for part in self.args.skip_restore:             # injected: saved, but not restored
            state.pop(part, None)
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self.opt.load_state_dict(state["optimizer"])
        if "scheduler" in state:
            self.sched.load_state_dict(state["scheduler"])
        if "rng" in state:
            rng = state["rng"]
            random.setstate(rng["python"])
            kind, keys, pos, has_gauss, gauss = rng["numpy"]
            np.random.set_state((kind, keys.numpy(), pos, has_gauss, gauss))
            torch.set_rng_state(rng["torch"])
            self.g_data.set_state(rng["data"])
        if "data" in state:
            self.epoch, self.batch, self.perm = (state["data"][k] for k in ("epoch", "batch", "perm"))
        self.start = state["step"] + 1
        self.log_checkpoint(state["step"], path, "load")


def main(argv=None):
    args = parse_args(argv)
    steps = int(os.environ.get("RLDK_MAX_STEPS") or args.steps)
    stop_at = int(os.environ["RLDK_STOP_AT"]) if os.environ.get("RLDK_STOP_AT") else steps - 1
    config = {"seed": args.seed, "inject": args.inject, "inject_at": args.inject_at,
              "omit": sorted(args.omit), "threads": args.threads}
    torch.set_num_threads(args.threads)
    rldk.seed_everything(args.seed, deterministic=args.deterministic)   # before init: in the start event
    with EventWriter(args.store, args.run_id, config=config, seed=args.seed) as w:
        trainer = Trainer(args, w)
        if os.environ.get("RLDK_RESUME_FROM"):
            trainer.resume(os.environ["RLDK_RESUME_FROM"])
        for step in range(trainer.start, stop_at + 1):
            trainer.train_step(step)
        if os.environ.get("RLDK_CHECKPOINT_DIR"):
            trainer.save(stop_at, os.environ["RLDK_CHECKPOINT_DIR"])


if __name__ == "__main__":
    main()
