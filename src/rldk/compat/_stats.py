"""Summary statistics of a histogram's values: what the stand-ins log instead of bins."""
from __future__ import annotations

import math

STATS = ("min", "max", "mean", "std", "count")


def value_stats(values) -> dict:
    """``min``, ``max``, ``mean``, ``std`` (population) of the finite values and ``count`` of
    all values, for a sequence, numpy array or torch tensor of numbers (any shape);
    ``nonfinite`` too when some values are NaN/inf. Empty input: ``{"count": 0}``.
    Never raises: values that are not numbers give ``{}``."""
    import numpy as np

    try:
        array = _to_numpy(values).astype(np.float64, copy=False).ravel()
    except (TypeError, ValueError):
        return {}
    finite = array[np.isfinite(array)]
    out: dict = {"count": int(array.size)}
    if finite.size:
        out.update(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean()),
                   std=float(finite.std()))
    if finite.size != array.size:
        out["nonfinite"] = int(array.size - finite.size)
    return out


def _to_numpy(values):
    import numpy as np

    detach = getattr(values, "detach", None)
    if callable(detach):                     # a torch tensor, on any device
        values = detach().float().cpu().numpy()
    return np.asarray(values)


def stats_from_bins(counts, edges) -> dict:
    """The same statistics from a histogram's ``counts`` (n) and bin ``edges`` (n+1), taking
    each value at its bin's centre (so mean and std are approximate); ``{}`` if malformed."""
    try:
        counts, edges = [float(c) for c in counts], [float(e) for e in edges]
    except (TypeError, ValueError):
        return {}
    if len(edges) != len(counts) + 1 or not counts or sum(counts) <= 0:
        return {}
    centres = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
    total = sum(counts)
    mean = sum(c * x for c, x in zip(counts, centres)) / total
    var = sum(c * (x - mean) ** 2 for c, x in zip(counts, centres)) / total
    used = [i for i, c in enumerate(counts) if c > 0]
    return {"min": edges[used[0]], "max": edges[used[-1] + 1], "mean": mean, "std": math.sqrt(var),
            "count": int(total) if total == int(total) else total}
