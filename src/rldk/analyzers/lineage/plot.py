"""The lineage graph drawn as a PNG (matplotlib, imported on use)."""
from __future__ import annotations

from rldk.analyzers.lineage.graph import LineageGraph


def render_png(graph: LineageGraph, path) -> str:
    """Draw the graph (datasets as boxes in columns by depth, transforms as labelled
    arrows) into a PNG at ``path`` with matplotlib; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depth = _depths(graph)
    columns: dict[int, list[str]] = {}
    for n in graph.nodes:
        columns.setdefault(depth[n.digest], []).append(n.digest)
    pos = {d: (x * 3.2, -y * 1.4) for x, ds in columns.items() for y, d in enumerate(ds)}
    width = 3.2 * max(columns) + 3.2
    height = 1.4 * (max(len(v) for v in columns.values()) - 1) + 1.4
    fig, ax = plt.subplots(figsize=(max(4.0, width * 1.1), max(2.0, height * 1.1)))
    for edge in graph.edges:
        for src in edge.inputs:
            for dst in edge.outputs:
                (x0, y0), (x1, y1) = pos[src], pos[dst]
                ax.annotate("", xy=(x1 - 1.1, y1), xytext=(x0 + 1.1, y0),
                            arrowprops={"arrowstyle": "->", "color": "0.35"})
                ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.15, _safe(edge.function), ha="center",
                        fontsize=7, color="0.25")
    for n in graph.nodes:
        x, y = pos[n.digest]
        rows = f"{n.rows:,} rows" if n.rows is not None else "bytes"
        ax.text(x, y, _safe(f"{n.name}\n{rows} · {n.digest[:10]}"), ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "#e8f0fe", "edgecolor": "#4a6fa5"})
    ax.set_xlim(-1.6, width - 1.6)
    ax.set_ylim(-height + 0.7, 0.7)
    ax.axis("off")
    ax.set_title(_safe(f"lineage of run {graph.run_id}"), fontsize=10)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def _safe(text: str) -> str:
    """Text for matplotlib with mathtext off: a '$' from a log must not start a formula."""
    return str(text).replace("\\", "\\\\").replace("$", r"\$")


def _depths(graph: LineageGraph) -> dict[str, int]:
    """Longest-path depth of each node (0 for roots); bounded so cycles terminate."""
    depth = {n.digest: 0 for n in graph.nodes}
    for _ in range(len(graph.nodes)):
        changed = False
        for e in graph.edges:
            base = max((depth[i] for i in e.inputs), default=-1) + 1
            for o in e.outputs:
                if depth[o] < base and base < len(graph.nodes):
                    depth[o], changed = base, True
        if not changed:
            break
    return depth


