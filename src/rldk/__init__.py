"""rldk, the RL Debug Kit: an event store for RL training runs and analyzers over it.

``import rldk`` is cheap: the public functions below are loaded on first use, so
neither torch, polars nor duckdb is imported until an analysis needs it.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "ingest_runs": "rldk.data",
    "open_input": "rldk.data",
    "open_store": "rldk.core.store",
    "Store": "rldk.core.store",
    "Run": "rldk.core.store",
    "first_divergence": "rldk.analyzers.divergence",
    "check_determinism": "rldk.analyzers.determinism",
    "reward_health": "rldk.analyzers.reward_health",
    "seed_everything": "rldk.seeding",
    "Stop": "rldk.live.guards",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rldk' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
