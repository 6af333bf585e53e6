"""False alarms across seeds: every pair of clean seeds of one config, compared statistically.

    python benchmarks/seed_pairs.py                      # train (cached) and print the table
    python benchmarks/seed_pairs.py --workdir /tmp/sp --grpo-steps 20 --sb3-timesteps 8192

Two real training sets, each five seeds of one configuration:

* **TRL GRPO**: the tiny GPT-2 of ``reference/tiny_trl.py`` on the CPU, logged through
  the TRL callback, plus one run of another seed with an injected learning-rate bug
  (``lr_change_at``: the updates from step K on use ``lr_factor`` x the learning rate).
* **SB3 PPO on CartPole-v1** with the CSV logger (``progress.csv``), imported with
  ``rldk import sb3`` (the converter behind ``rldk.data.open_input``).

For every pair (i, j) of seeds it runs ``first_divergence(i, j)`` twice: without
replicas (the warm-up band; the verdict is flagged weak) and with the other seeds
of the config as replicas (split between the sides). A clean pair that diverges is
a false alarm. The bug run is compared with every clean seed, with the other clean
seeds as replicas of A; it should diverge, at or after step K + 1 (the first step
whose metrics the bug can change). Runs are trained once into ``--workdir`` and
reused.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rldk.analyzers.divergence import first_divergence  # noqa: E402
from rldk.data import open_input  # noqa: E402

SEEDS = (0, 1, 2, 3, 4)
_PAIR_HEADER = ("pair", "no replicas (weak)", "replicas split A/B", "replicas all on A")
BUG_SEED = 5


def train_grpo(root: Path, steps: int, lr_change_at: int, lr_factor: float) -> Path:
    """Five clean seeds and one LR-bug run of the tiny GRPO config into ``root/store``."""
    from reference.tiny_trl import run_grpo

    store = root / "store"
    for seed in SEEDS:
        if not (root / f"seed{seed}").exists():
            run_grpo(root / f"seed{seed}", seed=seed, steps=steps, rldk_dir=store, run_id=f"seed{seed}")
    if not (root / "lr-bug").exists():
        run_grpo(root / "lr-bug", seed=BUG_SEED, steps=steps, rldk_dir=store, run_id="lr-bug",
                 lr_change_at=lr_change_at, lr_factor=lr_factor)
    return store


def train_sb3(root: Path, timesteps: int) -> list[Path]:
    """PPO on CartPole-v1, one ``progress.csv`` per seed (n_steps 256: a row per 256 steps)."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import configure

    torch.set_num_threads(1)
    out = []
    for seed in SEEDS:
        folder = root / f"seed{seed}"
        if not (folder / "progress.csv").exists():
            model = PPO("MlpPolicy", "CartPole-v1", n_steps=256, batch_size=64, seed=seed,
                        device="cpu", verbose=0)
            model.set_logger(configure(str(folder), ["csv"]))
            model.learn(total_timesteps=timesteps)
        out.append(folder)
    return out


def pairs_table(store, ids, signals):
    """Rows ``(pair, without replicas, replicas split between the sides, all replicas on A)``."""
    rows = []
    for i, j in itertools.combinations(ids, 2):
        rest = [r for r in ids if r not in (i, j)]
        alone = first_divergence(i, j, signals, store=store, mode="statistical")
        split = first_divergence(i, j, signals, store=store, replicas_a=rest[: len(rest) // 2],
                                 replicas_b=rest[len(rest) // 2:])
        on_a = first_divergence(i, j, signals, store=store, replicas_a=rest)
        rows.append((f"{i} vs {j}", _cell(alone, weak=True), _cell(split), _cell(on_a)))
    return rows


def _cell(d, weak=False) -> str:
    assert d.weak == weak, d
    return f"diverges at {d.step} ({d.signal})" if d.diverged else "no"


def _alarms(counts, ids) -> None:
    pairs = len(list(itertools.combinations(ids, 2)))
    print("clean pairs diverging: " + ", ".join(
        f"{name}: {n} of {pairs}" for name, n in zip(_PAIR_HEADER[1:], counts)))


def bug_table(store, clean, bug, signals):
    rows = []
    for ref in clean:
        reps = [r for r in clean if r != ref]
        d = first_divergence(ref, bug, signals, store=store, replicas_a=reps)
        rows.append((f"{ref} (+{len(reps)} replicas) vs {bug}", _cell(d)))
    return rows


def show(title, header, rows) -> list[int]:
    """Print the table; return, per column after the first, how many rows diverge."""
    print(f"\n{title}")
    print("-" * len(title))
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(c) for c in row))
    return [sum(str(row[i]).startswith("diverges") for row in rows) for i in range(1, len(header))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/rldk-seed-pairs")
    parser.add_argument("--grpo-steps", type=int, default=20)
    parser.add_argument("--lr-change-at", type=int, default=8)
    parser.add_argument("--lr-factor", type=float, default=30.0)
    parser.add_argument("--sb3-timesteps", type=int, default=8192)
    parser.add_argument("--signals", default="reward,loss,kl_to_ref,entropy",
                        help="GRPO signals compared")
    parser.add_argument("--skip", choices=("grpo", "sb3"), action="append", default=[])
    args = parser.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    root = Path(args.workdir)
    if "grpo" not in args.skip:
        store = open_input(str(train_grpo(root / "grpo", args.grpo_steps, args.lr_change_at,
                                          args.lr_factor)))
        ids = [f"seed{s}" for s in SEEDS]
        signals = args.signals.split(",")
        n = show(f"TRL GRPO, {args.grpo_steps} steps, signals {args.signals}: clean seed pairs",
                 _PAIR_HEADER, pairs_table(store, ids, signals))
        _alarms(n, ids)
        hits = show(f"LR bug (x{args.lr_factor} from update {args.lr_change_at}; metrics can differ "
                    f"from step {args.lr_change_at + 1})", ("comparison", "with replicas"),
                    bug_table(store, ids, "lr-bug", signals))
        print(f"bug detected in {hits[0]} of {len(ids)} comparisons")
    if "sb3" not in args.skip:
        import importlib.util
        if importlib.util.find_spec("stable_baselines3") is None:
            print("SB3 seed pairs not run: stable-baselines3 is not installed (pip install "
                  "torch==2.13.0 stable-baselines3), or pass --skip sb3", file=sys.stderr)
            return 2
        folders = train_sb3(root / "sb3", args.sb3_timesteps)
        store = open_input([str(f) for f in folders], adapter="sb3")
        ids = sorted(store.run_ids)
        n = show(f"SB3 PPO CartPole-v1, {args.sb3_timesteps} timesteps, every shared signal: "
                 "clean seed pairs", _PAIR_HEADER,
                 pairs_table(store, ids, None))
        _alarms(n, ids)
    return 0


if __name__ == "__main__":
    sys.exit(main())
