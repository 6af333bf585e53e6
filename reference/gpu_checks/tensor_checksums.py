"""GPU check of the writer's probes: tensor checksums, CUDA RNG digests, CUDA memory.

Checks, on one CUDA device:
  1. checksums computed on the GPU equal those of the same tensors on the CPU
     (bit-exact: the checksum is an integer function of the raw bits);
  2. repeated GPU computations give the same checksum (order-independent sum);
  3. one log_tensors call does one device-to-host copy, whatever the tensor count, and
     logging ten one-element CUDA tensors in one log() call does one copy too;
  4. log_rng records a digest per CUDA device; log_memory records allocated/
     reserved/peak bytes; log(step, loss=<cuda tensor>) stores the value.
Prints one JSON summary line. Needs torch with CUDA; refuses clearly otherwise.

    python reference/gpu_checks/tensor_checksums.py [--params-millions 100]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time


def build_model(torch, millions: float, device):
    width = 1024
    layers = max(1, int(millions * 1e6 / (2 * width * 4 * width)))
    blocks = []
    for _ in range(layers):
        blocks += [torch.nn.Linear(width, 4 * width), torch.nn.GELU(), torch.nn.Linear(4 * width, width)]
    return torch.nn.Sequential(*blocks).to(device)


def read_events(store: str) -> list[dict]:
    import glob
    import os

    import pyarrow.parquet as pq

    rows = []
    for path in sorted(glob.glob(os.path.join(store, "*.parquet"))):
        rows.extend(pq.read_table(path, columns=["kind", "name", "value"]).to_pylist())
    return rows


def count_dtoh(torch, fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if "Memcpy DtoH" in e.name)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params-millions", type=float, default=100.0)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("refusing: this check needs a CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    from rldk.writer import EventWriter
    from rldk.writer.probes import tensor_stats

    torch.manual_seed(0)
    device = torch.device("cuda:0")
    model = build_model(torch, args.params_millions, device)
    x = torch.randn(64, 1024, device=device)
    model(x).square().mean().backward()
    named = list(model.named_parameters())
    grads = [(n, p.grad) for n, p in named]
    gpu = tensor_stats(named + [(f"grad/{n}", g) for n, g in grads])
    cpu = tensor_stats([(n, p.detach().cpu()) for n, p in named] + [(f"grad/{n}", g.cpu()) for n, g in grads])
    same_as_cpu = all(a["checksum"] == b["checksum"] for a, b in zip(gpu, cpu))
    repeats = {tuple(s["checksum"] for s in tensor_stats(named)) for _ in range(5)}
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        tensor_stats(named)
    torch.cuda.synchronize()
    per_call = (time.perf_counter() - t0) / 5
    dtoh = count_dtoh(torch, lambda: tensor_stats(named))
    store = tempfile.mkdtemp()
    with EventWriter(store, "gpu", capture_env=True) as w:
        loss = model(x).square().mean()
        w.log(0, loss=loss)
        scalars = {f"m{i}": loss * i for i in range(10)}
        log_dtoh = count_dtoh(torch, lambda: w.log(1, scalars))
        w.log_tensors(0, model, kind="param")
        w.log_rng(0)
        w.log_memory(0)
    events = read_events(store)           # pyarrow only: GPU images may lack polars/duckdb
    kinds = {}
    for e in events:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    rng_names = sorted(e["name"] for e in events if e["kind"] == "rng")
    mem_names = sorted(e["name"] for e in events if e["kind"] == "memory")
    logged_loss = next(e["value"] for e in events if e["kind"] == "metric" and e["name"] == "loss")
    summary = {
        "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
        "params": sum(p.numel() for _, p in named), "tensors": len(named),
        "gpu_checksums_equal_cpu": same_as_cpu, "distinct_checksum_sets_over_5_repeats": len(repeats),
        "log_tensors_seconds_per_call": round(per_call, 4), "dtoh_copies_per_call": dtoh,
        "dtoh_copies_logging_10_cuda_scalars": log_dtoh,
        "events": kinds, "rng_sources": rng_names, "memory_names": mem_names,
        "loss_logged": logged_loss, "loss_actual": float(loss),
    }
    print(json.dumps(summary))
    ok = same_as_cpu and len(repeats) == 1 and dtoh == 1 and log_dtoh == 1 and "cuda:0" in rng_names
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
