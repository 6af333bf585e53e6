"""The reference suite on a GPU with a 1B or 7B model from a local directory.

    python smoke_tests/gpu_1hr_test.py --size small_1b --model /models/my-1b --out gpu_outputs
    python smoke_tests/gpu_1hr_test.py --size open_7b  --model /models/my-7b --out gpu_outputs
    python smoke_tests/gpu_1hr_test.py --size tiny_gpt2 --out gpu_outputs   # the pipeline on CUDA
    python smoke_tests/gpu_1hr_test.py --dry-run                            # the whole plan, CPU, tiny

The same runs, bugs and checks as ``smoke_tests/cpu_2min_test.py`` (ground
truth in ``reference/bugs.json``), with every run on ``cuda`` in bf16 and
TRL's ``full_determinism`` (deterministic kernels, cuBLAS workspace config).
``small_1b`` / ``open_7b`` load a causal LM with ``AutoModelForCausalLM`` from
``--model PATH`` (``config.json``, weights, tokenizer files): nothing is
downloaded. Differences from the CPU test, because a GPU run is measured in
device memory: the memory leak keeps ``--leak-mib`` MiB per step (default 256)
and must show in ``cuda:0/allocated``; jobs run one at a time (one GPU).

``--dry-run`` runs the same plan (one job at a time, the GPU timeouts) on the CPU
with the tiny GPT-2, whatever ``--size`` says, with the CPU-sized leak measured in
``host/rss``: a check of the plan and the pipeline on any machine (~2 minutes).

It refuses, with exit status 2 and one line saying why, when no CUDA device is
visible or when a 1B/7B size is asked for without ``--model``. Budget: about an
hour for a 7B model on one 80 GB GPU (13 training processes of 8-16 GRPO
steps each, most of the time spent loading the model).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpu_2min_test import parser, run_suite  # noqa: E402

SIZES = ("small_1b", "open_7b", "tiny_gpt2")


def refusal(args) -> str | None:
    """Why this machine or these arguments cannot run the GPU suite (None: they can)."""
    if args.size != "tiny_gpt2" and args.model is None:
        return (f"--size {args.size} needs --model PATH, a local directory with config.json, weights "
                "and tokenizer files (as save_pretrained writes them); nothing is downloaded")
    if args.model is not None and not (Path(args.model) / "config.json").is_file():
        return f"--model {args.model}: no config.json there; give the directory save_pretrained wrote"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device is visible (torch.cuda.is_available() is False): run the CPU suite, " \
               "smoke_tests/cpu_2min_test.py, or run this on a GPU machine"
    return None


def main(argv=None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=SIZES, default="small_1b", help="model size [%(default)s]")
    p.add_argument("--model", default=None, help="local model directory (small_1b, open_7b)")
    p.add_argument("--leak-mib", type=float, default=256.0, help="MiB kept per step by the leak [256]")
    p.add_argument("--dry-run", action="store_true", help="the same plan on the CPU with the tiny model")
    args = p.parse_args(argv)
    why = "--record writes the CPU suite's cards: leave it out here" if args.record else \
        None if args.dry_run else refusal(args)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    return run_suite(args, *plan_settings(args), slots=1, timeout=1800)


def plan_settings(args) -> tuple[dict, dict, str]:
    """``(overrides, bug_overrides, memory_series)`` of the GPU plan, or of its CPU dry run."""
    if args.dry_run:
        return {"model": "tiny_gpt2", "device": "cpu"}, {}, "host/rss"
    overrides = {"model": args.size, "device": "cuda"}
    if args.model is not None:
        overrides["model_path"] = str(Path(args.model).resolve())
    return overrides, {"memory_leak": {"bug_scale": args.leak_mib}}, "cuda:0/allocated"


if __name__ == "__main__":
    sys.exit(main())
