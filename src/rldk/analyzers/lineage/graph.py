"""A run's lineage graph: the datasets and transforms its ``dataset`` events recorded."""
from __future__ import annotations

import json
from dataclasses import dataclass

from rldk.core.errors import MissingEvents, UsageError
from rldk.core.result import as_dict

#: what a run without dataset events should log
RECORD_HINT = ("record datasets with rldk.writer.lineage.record(writer, name, data) and transforms "
               "with @rldk.writer.lineage.transform(writer)")


@dataclass(frozen=True)
class LineageNode:
    """A dataset in a run's lineage: its content digest, a name, rows, source path, and
    how it was hashed ("table", "bytes", "directory"; None for a transform's side)."""

    digest: str
    name: str
    rows: int | None
    path: str | None = None
    format: str | None = None


@dataclass(frozen=True)
class LineageEdge:
    """A transform: ``function`` (with the hash of its source) turned inputs into outputs."""

    function: str
    source_hash: str | None
    params: dict
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    step: int | None = None


@dataclass(frozen=True)
class LineageGraph:
    """The datasets and transforms one run recorded (from its ``dataset`` events)."""

    run_id: str
    nodes: tuple[LineageNode, ...]
    edges: tuple[LineageEdge, ...]

    def node(self, digest: str) -> LineageNode:
        return next(n for n in self.nodes if n.digest == digest)

    def to_dict(self) -> dict:
        return as_dict(self)

    def to_text(self) -> str:
        """The graph as an indented tree: roots first, each transform under its first input."""
        lines = [f"lineage of run {self.run_id}: {len(self.nodes)} datasets, {len(self.edges)} transforms"]
        produced = {d for e in self.edges for d in e.outputs}
        shown: set[str] = set()
        for node in self.nodes:
            if node.digest not in produced:
                self._text_tree(node.digest, "", lines, shown)
        for node in self.nodes:                       # cycles or nodes only reachable oddly
            if node.digest not in shown:
                self._text_tree(node.digest, "", lines, shown)
        return "\n".join(lines)

    def _text_tree(self, digest: str, indent: str, lines: list, shown: set) -> None:
        node = self.node(digest)
        seen = digest in shown
        lines.append(f"{indent}{_node_label(node)}{'  (see above)' if seen else ''}")
        shown.add(digest)
        if seen:
            return
        children = [e for e in self.edges if e.inputs and e.inputs[0] == digest]
        for edge in children:
            others = [self.node(d).name for d in edge.inputs[1:]]
            also = f" (+ {', '.join(others)})" if others else ""
            lines.append(f"{indent}  └─ {_edge_label(edge)}{also} ->")
            for out in edge.outputs:
                self._text_tree(out, indent + "       ", lines, shown)


def _node_label(node: LineageNode) -> str:
    rows = f"{node.rows:,} rows" if node.rows is not None else "bytes"
    where = f"  {node.path}" if node.path else ""
    return f"{node.name}  [{rows}, {node.digest[:12]}]{where}"


def _edge_label(edge: LineageEdge) -> str:
    params = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in edge.params.items())
    src = f" src {edge.source_hash[:8]}" if edge.source_hash else ""
    return f"{edge.function}({params}){src}"


def lineage_graph(store, run_id: str | None = None) -> LineageGraph:
    """The lineage graph of ``run_id`` (the only run when None) from its dataset events;
    :class:`MissingEvents` when the run recorded none."""
    run = _pick_run(store, run_id)
    graph = run_graph(run)
    if graph is None:
        raise MissingEvents(f"run {run.id!r} has no dataset events: {RECORD_HINT}")
    return graph


def run_graph(run) -> LineageGraph | None:
    """The lineage graph of one :class:`~rldk.core.store.Run` (None without dataset events)."""
    events = run.events("dataset")
    if events.is_empty():
        return None
    nodes: dict[str, LineageNode] = {}
    edges = []
    for row in events.iter_rows(named=True):
        attrs = json.loads(row["attrs"]) if row["attrs"] else {}
        if attrs.get("type") == "transform":
            edges.append(_edge(row, attrs, nodes))
        elif row["digest"]:
            old = nodes.get(row["digest"])
            if old is None or old.path is None:      # a recorded name wins over an edge's name
                nodes[row["digest"]] = LineageNode(row["digest"], row["name"], row["ivalue"], row["text"],
                                                   attrs.get("format"))
    return LineageGraph(run.id, tuple(nodes.values()), tuple(edges))


def _edge(row: dict, attrs: dict, nodes: dict) -> LineageEdge:
    """The transform of one event; its inputs and outputs join ``nodes`` when new."""
    for side in ("inputs", "outputs"):
        for item in attrs.get(side, []):
            nodes.setdefault(item["digest"], LineageNode(item["digest"], item["name"], item["rows"]))
    return LineageEdge(attrs.get("function") or row["name"], attrs.get("source_hash"),
                       attrs.get("params") or {}, tuple(i["digest"] for i in attrs.get("inputs", [])),
                       tuple(o["digest"] for o in attrs.get("outputs", [])), row["step"])


def _pick_run(store, run_id):
    if run_id is not None:
        return store.run(run_id)
    runs = store.runs()
    if len(runs) != 1:
        raise UsageError(f"the store holds {len(runs)} runs ({', '.join(r.id for r in runs)}): pick one with --run")
    return runs[0]


