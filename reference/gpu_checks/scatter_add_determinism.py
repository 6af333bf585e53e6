"""GPU check: scatter_add_/index_add_ backward is nondeterministic on CUDA unless asked not to be.

A tiny model whose forward gathers rows of a table with ``index_select`` and
``nn.Embedding`` (backward: ``index_add_`` / ``embedding_dense_backward``, atomic
adds on CUDA) and pools them into buckets with ``scatter_add_`` (atomic adds in
the forward) is trained for a few steps, ``--replicas`` times in each mode:

  default        torch defaults
  deterministic  rldk.seed_everything(seed, deterministic=True) in the worker
                 (torch.use_deterministic_algorithms(True), cudnn flags) and
                 CUBLAS_WORKSPACE_CONFIG=:4096:8 in its environment

Each replica is a separate process run by ``rldk.check_determinism`` (the real
harness), logging loss, RNG digests and gradient/parameter checksums through the
rldk writer. The summary prints, per mode: the verdict, the first differing step
and tensor, and the number of distinct gradient checksums across replicas (max
over tensors and steps; 1 means bit-identical).

    python reference/gpu_checks/scatter_add_determinism.py            # needs CUDA
    python reference/gpu_checks/scatter_add_determinism.py --device cpu --replicas 2   # dry run

On a GPU machine that lacks polars/duckdb, record there and compare elsewhere:

    python .../scatter_add_determinism.py --record-only --workdir runs    # torch + pyarrow only
    python .../scatter_add_determinism.py --analyze-only --workdir runs   # anywhere with rldk

Needs only torch and rldk. On one H100 it takes well under 2 minutes (mostly
process start-up and CUDA initialisation, 2 x replicas processes).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

MODES = ("default", "deterministic")
SIZES = {"cuda": dict(rows=4096, dim=256, lookups=262144, buckets=64),
         "cpu": dict(rows=64, dim=16, lookups=2048, buckets=8)}

DISTINCT_SQL = """
SELECT name, step, count(DISTINCT digest) AS distinct_checksums
FROM tensors
WHERE name LIKE 'grad/%'
GROUP BY name, step
ORDER BY distinct_checksums DESC, step, name
"""


# ---------------------------------------------------------------- worker
def worker(args) -> None:
    """One replica: train ``--steps`` steps, logging through the rldk writer."""
    import torch
    from torch import nn

    import rldk
    from rldk.writer import EventWriter

    size = SIZES[args.device]
    rldk.seed_everything(args.seed, deterministic=args.mode == "deterministic")
    if args.device == "cpu":
        torch.set_num_threads(1)

    class ScatterModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Parameter(torch.randn(size["rows"], size["dim"]) * 0.1)
            self.emb = nn.Embedding(size["rows"], size["dim"])
            self.head = nn.Linear(size["dim"], 1)

        def forward(self, idx, bucket):
            h = self.table.index_select(0, idx) + self.emb(idx)      # backward: index_add_
            pooled = torch.zeros(size["buckets"], size["dim"], device=h.device)
            pooled = pooled.scatter_add(0, bucket.unsqueeze(1).expand_as(h), h)   # atomic adds
            return self.head(torch.tanh(pooled)).pow(2).mean()

    device = torch.device(args.device)
    model = ScatterModel().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    with EventWriter("rldk_runs", "scatter-add", config=vars(args), seed=args.seed) as w:
        for step in range(args.steps):
            idx = torch.randint(0, size["rows"], (size["lookups"],), generator=gen).to(device)
            bucket = torch.randint(0, size["buckets"], (size["lookups"],), generator=gen).to(device)
            loss = model(idx, bucket)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            w.log_tensors(step, model, kind="grad")
            opt.step()
            w.log(step, loss=loss)
            w.log_rng(step, {"data": gen})
            w.log_tensors(step, model, kind="param")


# ---------------------------------------------------------------- driver
def worker_argv(args, mode: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--worker", "--mode", mode,
            "--device", args.device, "--steps", str(args.steps), "--seed", str(args.seed)]


def mode_env(mode: str) -> dict:
    return {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"} if mode == "deterministic" else {}


def run_mode(args, mode: str, root: Path) -> dict:
    """Run the worker ``--replicas`` times in ``mode`` with ``check_determinism``; the figures."""
    from rldk.analyzers.determinism import check_determinism
    from rldk.harness import CommandFailed

    start = time.monotonic()
    try:
        result = check_determinism(worker_argv(args, mode), replicas=args.replicas, steps=args.steps,
                                   timeout=args.timeout, workdir=root / mode, env=mode_env(mode))
    except CommandFailed as exc:
        return {"mode": mode, "error": str(exc), "seconds": round(time.monotonic() - start, 1)}
    return figures(result, mode, root, time.monotonic() - start)


def record_mode(args, mode: str, root: Path) -> dict:
    """``--record-only``: run the replicas through the harness into ``root/mode/replica-i``
    (the layout check_determinism uses) without comparing them; needs no polars/duckdb."""
    from rldk import harness

    start = time.monotonic()
    for i in range(args.replicas):
        store = root / mode / f"replica-{i}"
        store.mkdir(parents=True, exist_ok=True)
        env = {**mode_env(mode), harness.ENV_DIR: str(store.resolve()), harness.ENV_RUN_ID: f"replica-{i}",
               harness.ENV_MAX_STEPS: str(args.steps)}
        result = harness.run_command(worker_argv(args, mode), root / mode / "logs" / f"replica-{i}.log",
                                     env, args.timeout)
        if result.problem():
            return {"mode": mode, "error": f"replica {i} {result.problem()}: {result.tail[-500:]}",
                    "seconds": round(time.monotonic() - start, 1)}
    return {"mode": mode, "recorded": args.replicas, "seconds": round(time.monotonic() - start, 1)}


def analyze_mode(args, mode: str, root: Path) -> dict:
    """``--analyze-only``: compare replicas recorded earlier (by ``--record-only``)."""
    from dataclasses import replace

    from rldk.analyzers import determinism
    from rldk.core.store import open_store

    stores = sorted(str(p) for p in (root / mode).glob("replica-*"))
    result = determinism.run(open_store(stores), determinism.Params(steps=args.steps))
    return figures(replace(result, store=str(root / mode)), mode, root, 0.0)


def figures(result, mode: str, root: Path, seconds: float) -> dict:
    """The summary figures of one mode, and its determinism card under ``root/mode/card``."""
    from rldk.core.report import write_report
    from rldk.core.store import open_store

    write_report(result.report(), root / mode / "card")
    distinct = open_store(result.store).sql(DISTINCT_SQL)
    worst = distinct.row(0, named=True) if distinct.height else {}
    return {"mode": mode, "replicas": len(result.replicas), "verdict": result.verdict,
            "first_step": result.first_divergent_step, "first_tensor": result.first_tensor,
            "first_metric": result.first_metric,
            "max_distinct_grad_checksums": worst.get("distinct_checksums"),
            "worst_tensor": worst.get("name"), "worst_step": worst.get("step"),
            "grad_tensor_steps_differing": int((distinct["distinct_checksums"] > 1).sum()),
            "grad_tensor_steps": distinct.height, "card": str(root / mode / "card" / "determinism.md"),
            "seconds": round(seconds, 1)}


def print_summary(rows: list[dict], device: str) -> None:
    print(f"scatter_add/index_add determinism on {device}")
    print(f"{'mode':<14} {'verdict':<17} {'first step':>10}  {'first tensor':<18} "
          f"{'distinct grad checksums':>23}  {'seconds':>7}")
    for r in rows:
        if "error" in r:
            print(f"{r['mode']:<14} FAILED: {r['error']}")
            continue
        if "recorded" in r:
            print(f"{r['mode']:<14} recorded {r['recorded']} replicas in {r['seconds']}s "
                  "(compare them with --analyze-only)")
            continue
        print(f"{r['mode']:<14} {r['verdict']:<17} {str(r['first_step']):>10}  "
              f"{str(r['first_tensor']):<18} {str(r['max_distinct_grad_checksums']):>23}  {r['seconds']:>7}")
    print("FIGURES " + json.dumps(rows, sort_keys=True))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per replica")
    ap.add_argument("--workdir", default=None, help="where stores, logs and cards go (default: a temp dir)")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--record-only", action="store_true",
                    help="run and record the replicas under --workdir, compare nothing "
                         "(for a GPU machine without polars/duckdb)")
    ap.add_argument("--analyze-only", action="store_true",
                    help="compare replicas recorded earlier under --workdir")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=MODES, default="default", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if (args.record_only or args.analyze_only) and not args.workdir:
        print("scatter_add_determinism: --record-only and --analyze-only need --workdir", file=sys.stderr)
        return 2
    if args.device == "cuda" and not args.analyze_only:
        import torch

        if not torch.cuda.is_available():
            print("scatter_add_determinism: CUDA is not available in this process: this check needs "
                  "a CUDA GPU (use --device cpu for a dry run of the harness)", file=sys.stderr)
            return 2
    import tempfile

    root = Path(args.workdir or tempfile.mkdtemp(prefix="rldk-gpu-check-"))
    modes = [m for m in args.modes.split(",") if m]
    step = record_mode if args.record_only else analyze_mode if args.analyze_only else run_mode
    rows = [step(args, mode, root) for mode in modes]
    print_summary(rows, args.device)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
