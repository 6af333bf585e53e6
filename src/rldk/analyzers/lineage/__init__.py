"""Dataset lineage analysis: the graph a run recorded, manifests, train/validation overlap.

Modules: :mod:`.graph` (a run's ``dataset`` events as a graph), :mod:`.plot` (its
PNG), :mod:`.verify` (manifests beside data on disk), :mod:`.overlap` (validation
rows found in training), :mod:`.result` and :mod:`.analyzer` (``LineageAnalyzer``).
Hashing is :mod:`rldk.core.hashing`; recording is :mod:`rldk.writer.lineage`.
"""
from __future__ import annotations

from rldk.analyzers.lineage.analyzer import LineageAnalyzer, Params, recorded_data
from rldk.analyzers.lineage.graph import (
           LineageEdge,
           LineageGraph,
           LineageNode,
           lineage_graph,
           run_graph,
)
from rldk.analyzers.lineage.overlap import Overlap, load_table, overlap
from rldk.analyzers.lineage.plot import render_png
from rldk.analyzers.lineage.result import LineageResult, RecordedData
from rldk.analyzers.lineage.verify import (
           Change,
           VerifyResult,
           compare,
           find_manifest,
           verify,
)
from rldk.core.hashing import MissingData

__all__ = ["LineageAnalyzer", "Params", "LineageResult", "RecordedData", "recorded_data", "LineageGraph",
           "LineageNode", "LineageEdge", "lineage_graph", "run_graph", "render_png", "Overlap", "overlap",
           "load_table", "Change", "VerifyResult", "verify", "compare", "find_manifest", "MissingData"]
