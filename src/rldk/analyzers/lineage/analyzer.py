"""The lineage analysis behind the one analyzer interface: reads ``dataset`` events."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rldk.analyzers.base import Analyzer
from rldk.analyzers.lineage.graph import LineageGraph, run_graph
from rldk.analyzers.lineage.plot import render_png
from rldk.analyzers.lineage.result import NAME, TITLE, LineageResult, RecordedData
from rldk.core.errors import RldkError
from rldk.core.hashing import hash_path
from rldk.core.naming import safe_file_stem


@dataclass(frozen=True)
class Params:
    """run_id: the run to analyse (None: every run in the store).
    verify_data: hash every dataset a run recorded by path again and compare
    (reads the data; False leaves that check out)."""

    run_id: str | None = None
    verify_data: bool = True


class LineageAnalyzer(Analyzer):
    """Each run's dataset graph (``dataset`` events: datasets and transforms), and
    whether the data it recorded by path still has the recorded content hash."""

    name = NAME
    title = TITLE
    consumes = ("dataset",)
    Params = Params

    def run(self, store, params: Params | None = None) -> LineageResult:
        params = params or Params()
        runs = [store.run(params.run_id)] if params.run_id is not None else store.runs()
        graphs, without = [], []
        for run in runs:
            graph = run_graph(run)
            if graph is None:
                without.append(run.id)
            else:
                graphs.append(graph)
        data = tuple(d for g in graphs for d in recorded_data(g)) if params.verify_data else ()
        return LineageResult(tuple(graphs), tuple(without), data, params.verify_data)

    def plots(self, result: LineageResult, out_dir) -> dict[str, str]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return {f"lineage of run {g.run_id}": render_png(g, out / f"lineage-{safe_file_stem(g.run_id)}.png")
                for g in result.graphs if g.nodes}


def recorded_data(graph: LineageGraph) -> list[RecordedData]:
    """The datasets of ``graph`` recorded with a path, hashed again now."""
    return [_rehash(graph.run_id, n) for n in graph.nodes if n.path]


def _rehash(run_id: str, node) -> RecordedData:
    path = Path(node.path)
    if not path.exists():
        return RecordedData(run_id, node.name, node.path, node.digest, "missing")
    try:
        now = hash_path(path)
    except RldkError:
        return RecordedData(run_id, node.name, node.path, node.digest, "not comparable")
    if node.format is not None and now.format != node.format:
        return RecordedData(run_id, node.name, node.path, node.digest, "not comparable", now.digest)
    status = "unchanged" if now.digest == node.digest else "changed"
    return RecordedData(run_id, node.name, node.path, node.digest, status, now.digest)


