"""Analyzers: one module per analysis, one interface, no state.

Each analyzer module defines

    NAME: str                       the analyzer's name (its output file stem)
    CONSUMES: tuple[str, ...]       event kinds it reads (``rldk.schemas.KINDS``)
    Params                          a frozen dataclass of documented parameters
    def applies(store) -> bool      whether the store holds what it needs
    def run(store, params) -> Result          reads only; Result is a frozen
                                              dataclass with to_dict() and report()
                                              (an ``rldk.core.report.Report``)

Optionally ``def plots(result, out_dir) -> {caption: png_path}`` writes PNG plots
(through ``rldk.core.plots``) that the card links. ``rldk analyze`` (see
``rldk.analyzers.suite``) sets a Params field from its own options of the same
name (``baseline``); every other field keeps its documented default.

An analyzer that lacks the events it needs raises
``rldk.core.errors.MissingEvents`` naming what to log (``run``), or returns False
from ``applies`` (so ``rldk analyze`` skips it and says so).

``BUILTIN`` lists the analyzers ``rldk analyze`` runs, in order; nothing is
discovered by magic. Entries are module paths, imported on use.
"""
from __future__ import annotations

import importlib

BUILTIN: tuple[str, ...] = (
    "rldk.analyzers.summary",
    "rldk.analyzers.nan_onset",
    "rldk.analyzers.spikes",
    "rldk.analyzers.health",
    "rldk.analyzers.divergence",
    "rldk.analyzers.profile",
    "rldk.analyzers.memory_leak",
    "rldk.analyzers.reward_health",
    "rldk.analyzers.safety",
)


def load(module_path: str):
    """Import one analyzer module."""
    return importlib.import_module(module_path)


def builtin():
    """The built-in analyzer modules, imported, in order."""
    return [load(m) for m in BUILTIN]
