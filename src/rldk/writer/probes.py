"""Probes that read training state: RNG digests, tensor checksums, memory.

They run on the caller's thread (the state must be read *now*) but do one pass
each: tensor statistics are computed on the tensor's own device and fetched in a
single device-to-host transfer per device. torch is imported only if the caller
already imported it, so rldk never pulls torch into a process that lacks it.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import sys

_DIGEST_BYTES = 16
# Position weights: multiplying each element's raw bits by a weight derived from
# its flat index makes the sum sensitive to permutations; integer addition mod
# 2**64 is associative, so the result does not depend on reduction order.
_WEIGHT_MUL = 0x9E3779B97F4A7C15 - 2**64   # golden-ratio constant as signed int64
_BITS_DTYPES = {8: "int64", 4: "int32", 2: "int16", 1: "int8"}
_CHUNK = 1 << 24


def digest(data: bytes) -> str:
    """Hex BLAKE2b digest (16 bytes) of ``data``."""
    return hashlib.blake2b(data, digest_size=_DIGEST_BYTES).hexdigest()


def rng_digests(generators=None) -> list[tuple[str, str]]:
    """``(source, digest)`` for python ``random``, numpy's global RNG, torch CPU, each
    CUDA device, and any extra generators (``{name: generator}`` or a sequence).

    numpy and torch are read only if the process already imported them.
    """
    import random

    out = [("python", digest(pickle.dumps(random.getstate(), protocol=4)))]
    np = sys.modules.get("numpy")
    if np is not None:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        out.append(("numpy", digest(kind.encode() + keys.tobytes() + repr((pos, has_gauss, gauss)).encode())))
    torch = sys.modules.get("torch")
    if torch is not None:
        out.append(("torch", digest(torch.get_rng_state().numpy().tobytes())))
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                out.append((f"cuda:{i}", digest(state.numpy().tobytes())))
    if generators:
        items = generators.items() if hasattr(generators, "items") else (
            (f"generator{i}", g) for i, g in enumerate(generators))
        for name, gen in items:
            out.append((str(name), _generator_digest(gen)))
    return out


def _generator_digest(gen) -> str:
    if hasattr(gen, "get_state") and hasattr(gen, "manual_seed"):      # torch.Generator
        return digest(gen.get_state().numpy().tobytes())
    if hasattr(gen, "bit_generator"):                                   # numpy Generator
        return digest(repr(gen.bit_generator.state).encode())
    if hasattr(gen, "getstate"):                                        # random.Random
        return digest(pickle.dumps(gen.getstate(), protocol=4))
    raise TypeError(f"cannot read the state of {type(gen).__name__}: pass a torch.Generator, "
                    "numpy Generator or random.Random")


def named_tensors(source, group: str):
    """``(name, tensor)`` pairs from a module (params, grads or buffers), an optimizer
    (its state tensors) or a mapping/sequence of named tensors."""
    if hasattr(source, "named_parameters") and group in ("param", "grad", "buffer"):
        if group == "buffer":
            return [(n, b) for n, b in source.named_buffers()]
        if group == "grad":
            return [(n, p.grad) for n, p in source.named_parameters() if p.grad is not None]
        return [(n, p) for n, p in source.named_parameters()]
    if hasattr(source, "state_dict") and hasattr(source, "param_groups"):   # optimizer
        out = []
        for pid, state in source.state_dict()["state"].items():
            for key, val in state.items():
                if hasattr(val, "dtype") and getattr(val, "dim", lambda: 0)() > 0:
                    out.append((f"{pid}.{key}", val))
        return out
    if hasattr(source, "items"):
        return list(source.items())
    return list(source)


def tensor_stats(tensors) -> list[dict]:
    """Checksum and statistics of each ``(name, tensor)``, one transfer per device.

    Per tensor: ``checksum`` (int64: sum over elements of raw bits x position
    weight, wrapping mod 2**64, so bit-exact and independent of reduction order),
    ``norm`` (L2, float64), ``min``, ``max``, ``nan``, ``inf``, ``dtype``,
    ``shape``, ``numel``.
    """
    import torch

    by_device: dict = {}
    for name, t in tensors:
        if t is None:
            continue
        by_device.setdefault(t.device, []).append((name, t.detach()))
    results = []
    for device, items in by_device.items():
        rows = [_stats_row(t) for _, t in items]
        fetched = torch.stack(rows).cpu()          # the one device-to-host transfer
        for (name, t), row in zip(items, fetched.tolist()):
            results.append(_unpack(name, t, row))
    return results


def _stats_row(t):
    """An int64 vector of 6: checksum, nan, inf, and float64 bits of norm, min, max."""
    import torch

    flat = t.reshape(-1)
    if flat.is_complex():
        flat = torch.view_as_real(flat).reshape(-1)
    bits = flat.contiguous().view(getattr(torch, _BITS_DTYPES[flat.element_size()]))
    checksum = torch.zeros((), dtype=torch.int64, device=t.device)
    for start in range(0, bits.numel(), _CHUNK):      # bounded temporaries for huge tensors
        chunk = bits[start:start + _CHUNK].to(torch.int64)
        idx = torch.arange(start + 1, start + 1 + chunk.numel(), device=t.device, dtype=torch.int64)
        checksum = checksum + (chunk * (idx * _WEIGHT_MUL)).sum()
    zero = torch.zeros((), dtype=torch.int64, device=t.device)
    if flat.is_floating_point():
        # no boolean indexing: it would sync with the host to learn the result's size
        finite = torch.isfinite(flat)
        nan = torch.isnan(flat).sum()
        inf = flat.numel() - finite.sum() - nan
        lo = torch.where(finite, flat, torch.inf).min().double() if flat.numel() else zero.double()
        hi = torch.where(finite, flat, -torch.inf).max().double() if flat.numel() else zero.double()
        norm = torch.linalg.vector_norm(flat, dtype=torch.float64)
    else:
        nan = inf = zero
        as_double = flat.double()
        lo = as_double.min() if flat.numel() else zero.double()
        hi = as_double.max() if flat.numel() else zero.double()
        norm = torch.linalg.vector_norm(as_double)
    floats = torch.stack([norm, lo, hi]).to(torch.float64).view(torch.int64)
    ints = torch.stack([checksum, nan.to(torch.int64), inf.to(torch.int64)])
    return torch.cat([ints, floats])


def _unpack(name, t, row) -> dict:
    import struct

    checksum, nan, inf = row[0], row[1], row[2]
    norm, lo, hi = struct.unpack("<3d", struct.pack("<3q", *row[3:6]))
    if nan + inf == t.numel():             # no finite value: no min or max either
        lo = hi = float("nan")
    return {"name": name, "checksum": checksum, "norm": norm, "min": lo, "max": hi,
            "nan": nan, "inf": inf, "dtype": str(t.dtype).replace("torch.", ""),
            "shape": list(t.shape), "numel": t.numel(), "device": str(t.device)}


def memory_readings() -> list[tuple[str, float, int | None]]:
    """``(name, bytes_or_count, exact_int)``: host RSS and, where CUDA is in use, each
    device's allocated, reserved and peak bytes and allocator retries."""
    out = [("host/rss", *_pair(_host_rss()))]
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        for i in range(torch.cuda.device_count()):
            stats = torch.cuda.memory_stats(i)
            for name, key in (("allocated", "allocated_bytes.all.current"),
                              ("reserved", "reserved_bytes.all.current"),
                              ("peak_allocated", "allocated_bytes.all.peak"),
                              ("alloc_retries", "num_alloc_retries")):
                out.append((f"cuda:{i}/{name}", *_pair(int(stats.get(key, 0)))))
    return out


def _pair(n: int):
    return float(n), n


def _host_rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss
