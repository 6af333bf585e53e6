"""Analyzers: every analysis is one :class:`~rldk.analyzers.base.Analyzer` subclass.

``REGISTRY`` is the one explicit list of analyses (name -> ``module:Class``,
imported on use; nothing is discovered by magic). ``DEFAULT`` names those that
``rldk analyze`` runs on any store, in order; the others need an input of their
own (replica commands, evaluation scores, checkpoints, a git range) and run
through their commands.
"""
from __future__ import annotations

import importlib

from rldk.core.errors import UsageError

REGISTRY: dict[str, str] = {
    "summary": "rldk.analyzers.summary:SummaryAnalyzer",
    "nan_onset": "rldk.analyzers.nan_onset:NanOnsetAnalyzer",
    "spikes": "rldk.analyzers.spikes:SpikesAnalyzer",
    "health": "rldk.analyzers.health:HealthAnalyzer",
    "divergence": "rldk.analyzers.divergence:DivergenceAnalyzer",
    "profile": "rldk.analyzers.profile:ProfileAnalyzer",
    "memory_leak": "rldk.analyzers.memory_leak:MemoryLeakAnalyzer",
    "reward_health": "rldk.analyzers.reward_health:RewardHealthAnalyzer",
    "safety": "rldk.analyzers.safety:SafetyAnalyzer",
    "rank_desync": "rldk.analyzers.rank_desync:RankDesyncAnalyzer",
    "determinism": "rldk.analyzers.determinism:DeterminismAnalyzer",
    "eval_compare": "rldk.analyzers.eval_compare:EvalCompareAnalyzer",
    "checkpoint": "rldk.analyzers.checkpoint:CheckpointAnalyzer",
    "lineage": "rldk.analyzers.lineage:LineageAnalyzer",
    "bisect": "rldk.analyzers.bisect:BisectAnalyzer",
}

#: What ``rldk analyze`` runs, in order.
DEFAULT: tuple[str, ...] = ("summary", "nan_onset", "spikes", "health", "divergence", "profile",
                            "memory_leak", "reward_health", "safety", "rank_desync")


def get(name: str):
    """The analyzer registered as ``name`` (an instance)."""
    target = REGISTRY.get(name)
    if target is None:
        raise UsageError(f"no analyzer {name!r}; analyzers: {', '.join(REGISTRY)}")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)()


def default():
    """The analyzers ``rldk analyze`` runs, as instances, in order."""
    return [get(name) for name in DEFAULT]


def modules(names=DEFAULT) -> list[str]:
    """The modules that hold the analyzers ``names``."""
    return [REGISTRY[name].split(":")[0] for name in names]
