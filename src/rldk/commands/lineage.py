"""Lineage commands: show a run's dataset graph, record and verify manifests, check overlap."""
from __future__ import annotations

import sys

import click

from rldk.cli import handle_errors, open_output, output_options
from rldk.core.errors import EXIT_FAILURE, EXIT_PROBLEMS


@click.group("lineage")
def lineage():
    """Content hashes of datasets: the graph a run recorded, manifests beside data on disk,
    train/validation overlap."""


@lineage.command("show")
@click.argument("paths", nargs=-1, required=True)
@click.option("--run", "run_id", default=None, help="The run whose lineage to show [the only run].")
@click.option("--png", type=click.Path(dir_okay=False), default=None, help="Also draw the graph into this PNG.")
@output_options
@handle_errors
def show(paths, run_id, png, fmt, output):
    """Show the datasets and transforms a run recorded (its dataset events) as a graph."""
    from rldk.core.render import render_rows, to_json
    from rldk.core.store import open_store
    from rldk.lineage import lineage_graph, render_png

    graph = lineage_graph(open_store(paths), run_id)
    if png:
        click.echo(f"picture: {render_png(graph, png)}", err=True)
    with open_output(output) as stream:
        if fmt == "json":
            stream.write(to_json(graph.to_dict()) + "\n")
        elif fmt in ("csv", "markdown"):
            render_rows([n.to_dict() for n in graph.nodes], fmt, stream=stream)
        else:
            stream.write(graph.to_text() + "\n")


@lineage.command("record")
@click.argument("data", nargs=-1, required=True)
@output_options
@handle_errors
def record(data, fmt, output):
    """Hash each DATA file or directory and write its manifest beside it (DATA.rldk.json)."""
    from rldk.core.render import render_rows
    from rldk.lineage import verify, write_manifest

    rows = []
    for path in data:
        manifest = write_manifest(path)
        result = verify(manifest)
        rows.append({"data": path, "digest": result.current, "manifest": str(manifest)})
    with open_output(output) as stream:
        render_rows(rows, fmt, title="manifests written", stream=stream)


@lineage.command("verify")
@click.argument("paths", nargs=-1, required=True)
@output_options
@handle_errors
def verify(paths, fmt, output):
    """Recompute the hashes of the data behind each manifest (or DATA with a manifest beside it)
    and report what changed: files, rows, schema, columns, row ranges.

    Exits 0 when unchanged, 3 when something changed, 1 when data is missing."""
    from rldk.core.render import render_rows, to_json
    from rldk.lineage import verify as verify_one

    results = [verify_one(p) for p in paths]
    rows = [{"data": r.data, "status": r.status, "path": c.path, "what": c.what, "detail": _detail(c.detail)}
            for r in results for c in r.changes] or []
    summary = [{"data": r.data, "status": r.status, "recorded": r.recorded[:16],
                "current": (r.current or "")[:16], "changes": len(r.changes)} for r in results]
    with open_output(output) as stream:
        if fmt == "json":
            stream.write(to_json([r.to_dict() for r in results]) + "\n")
        else:
            render_rows(summary, fmt, title="lineage verify", stream=stream)
            if rows:
                render_rows(rows, fmt, title="changes", stream=stream)
    missing = [p for r in results for p in r.missing]
    if missing:
        click.echo(f"Error: {len(missing)} file(s) listed in the manifest are missing: {', '.join(missing[:5])}; "
                   "restore them, or re-record with `rldk lineage record`", err=True)
        sys.exit(EXIT_FAILURE)
    if any(r.status != "ok" for r in results):
        sys.exit(EXIT_PROBLEMS)


def _detail(detail: dict) -> str:
    if "column" in detail:
        return f"column {detail['column']}"
    if "row_ranges" in detail:
        return "rows " + ", ".join(f"{a}-{b}" for a, b in detail["row_ranges"][:5])
    if "recorded" in detail and "current" in detail and not isinstance(detail["recorded"], list):
        return f"{detail['recorded']} -> {detail['current']}"
    return "schema changed" if "current" in detail and isinstance(detail["current"], list) else str(detail)


@lineage.command("overlap")
@click.argument("train")
@click.argument("val")
@click.option("--columns", default=None, help="Comma-separated columns to compare [those both share].")
@click.option("--normalize", is_flag=True, help="Compare strings lower-cased with whitespace collapsed.")
@click.option("--max-fraction", type=float, default=0.0, show_default=True,
              help="Exit 3 when more than this share of VAL rows occurs in TRAIN.")
@output_options
@handle_errors
def overlap(train, val, columns, normalize, max_fraction, fmt, output):
    """Count the rows of VAL (a data file or directory) whose content also occurs in TRAIN."""
    from rldk.core.render import render_rows, to_json
    from rldk.lineage import load_table
    from rldk.lineage import overlap as find_overlap

    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    result = find_overlap(load_table(train), load_table(val), cols, normalize=normalize)
    with open_output(output) as stream:
        if fmt == "json":
            stream.write(to_json(result.to_dict()) + "\n")
        else:
            row = {k: v for k, v in result.to_dict().items() if k != "examples"}
            row["columns"] = ", ".join(result.columns)
            render_rows([row], fmt, title="train/validation overlap", stream=stream)
    if result.fraction > max_fraction:
        sys.exit(EXIT_PROBLEMS)
