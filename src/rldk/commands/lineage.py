"""Lineage commands: show a run's dataset graph, record and verify manifests, check overlap."""
from __future__ import annotations

import sys

import click

from rldk.analyzers.lineage import LineageAnalyzer, load_table, render_png
from rldk.analyzers.lineage import overlap as find_overlap
from rldk.analyzers.lineage import verify as verify_manifest
from rldk.cli import emit, exit_for, handle_errors, open_output, output_options
from rldk.core.errors import EXIT_FAILURE, EXIT_PROBLEMS, UsageError
from rldk.core.render import render_rows, to_json
from rldk.data import open_input
from rldk.writer.lineage import write_manifest


@click.group("lineage")
def lineage():
    """Content hashes of datasets: the graph a run recorded, manifests beside data on disk,
    train/validation overlap."""


@lineage.command("show")
@click.argument("paths", nargs=-1, required=True)
@click.option("--run", "run_id", default=None, help="The run whose lineage to show [every run].")
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Also draw the graph into this PNG (one run: pick it with --run).")
@click.option("--no-verify-data", is_flag=True,
              help="Do not hash the data the runs recorded by path again.")
@output_options(out_dir=True)
@handle_errors
def show(paths, run_id, png, no_verify_data, fmt, output, out_dir):
    """Show the datasets and transforms each run recorded (its dataset events) as a graph,
    and check that data recorded by path still has its recorded content hash.

    Exits 0 when unchanged, 3 when recorded data changed, 4 when no run recorded
    dataset events."""
    analyzer = LineageAnalyzer()
    result = analyzer.run(open_input(paths), analyzer.params(run_id=run_id, verify_data=not no_verify_data))
    if png:
        click.echo(f"picture: {render_png(_one_graph(result), png)}", err=True)
    if fmt == "table" and output is None:         # the tree reads best above the card
        click.echo("".join(g.to_text() + "\n\n" for g in result.graphs), nl=False)
    report = result.report()
    emit(report, fmt, output, out_dir, analyzer, result)
    exit_for(report)


def _one_graph(result):
    if len(result.graphs) != 1:
        runs = ", ".join(g.run_id for g in result.graphs) or "none"
        raise UsageError(f"--png draws one run's graph; runs with dataset events: {runs}: pick one with --run")
    return result.graphs[0]


@lineage.command("record")
@click.argument("data", nargs=-1, required=True)
@output_options
@handle_errors
def record(data, fmt, output):
    """Hash each DATA file or directory and write its manifest beside it (DATA.rldk.json)."""
    rows = []
    for path in data:
        manifest = write_manifest(path)
        result = verify_manifest(manifest)
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
    results = [verify_manifest(p) for p in paths]
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
