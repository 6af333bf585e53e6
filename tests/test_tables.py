"""Tables for people: terminal tables fit the screen, ids are never split, long lists
become counts, verdicts wrap instead of being cut; --wide / json / csv keep every cell."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.cells import cell_len

from rldk.cli import main
from rldk.core import html
from rldk.core.render import RUN_COLUMNS, console, duration, record_tables, rich_table
from rldk.core.store import open_store
from rldk.writer import EventWriter

#: ids of every shape a user has: an MLflow uuid, long descriptive names, a short one
IDS = ("0-0d8653353e3e43beb89442a8bca1a94d", "sb3_ppo_entropy_collapse_seed_1234",
       "trl_grpo_zero_std-qwen2.5-0.5b-lr3e-6", "a")
METRICS = 42


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    for k, run_id in enumerate(IDS):
        with EventWriter(root, run_id, capture_env=False) as w:
            for step in range(5 + k):
                w.log(step, **{f"train/metric_{i:02d}_with_a_long_name": float(i + step)
                               for i in range(METRICS)})
    return root


def invoke(*args, columns=None):
    env = {"COLUMNS": str(columns)} if columns else {}
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def assert_fits(text: str, width: int, ids=IDS):
    lines = text.splitlines()
    too_wide = [line for line in lines if cell_len(line) > width]
    assert not too_wide, f"{len(too_wide)} line(s) wider than {width}: {too_wide[0]!r}"
    assert "…" not in text and "..." not in text
    for run_id in ids:                              # every id whole, on one line, as a word
        assert any(re.search(rf"(^|[\s│(]){re.escape(run_id)}($|[\s│,):])", line) for line in lines), run_id


@pytest.mark.parametrize("width", [80, 120])
def test_runs_fits_the_terminal(store, width):
    result = invoke("runs", store, columns=width)
    assert result.exit_code == 0, result.output
    assert_fits(result.output, width)
    lines = result.output.splitlines()
    assert len(lines) < 16                          # one line per run, not one per metric name
    header = next(line for line in lines if line.lstrip().startswith("run "))
    assert header.split() == list(RUN_COLUMNS)
    row = next(line for line in lines if line.lstrip().startswith(IDS[0]))
    assert row.split() == [IDS[0], "complete", "0-4", str(METRICS), row.split()[-1]]
    assert "train/metric_00" not in result.output    # names are counted, not listed


@pytest.mark.parametrize("width", [80, 120])
def test_runs_wide_lists_everything_and_still_fits(store, width):
    result = invoke("runs", store, "--wide", columns=width)
    assert result.exit_code == 0
    assert_fits(result.output, width)
    flat = "".join(result.output.split())
    for i in range(METRICS):
        assert f"train/metric_{i:02d}_with_a_long_name" in flat
    assert "metric_names" in result.output and "status_evidence" in result.output


def test_runs_json_and_csv_hold_every_column(store):
    rows = json.loads(invoke("runs", store, "--format", "json").output)
    assert [r["run_id"] for r in rows] == sorted(IDS)
    assert len(rows[0]["metric_names"]) == METRICS and rows[0]["metrics"] == METRICS
    table = list(csv.reader(io.StringIO(invoke("runs", store, "--format", "csv").output)))
    assert table[0][:3] == ["run_id", "ranks", "steps"] and "metric_names" in table[0]
    assert table[0][-2:] == ["status", "status_evidence"]


def test_runs_markdown_is_the_people_view_unless_wide(store):
    md = invoke("runs", store, "--format", "markdown").output.splitlines()
    assert md[0] == "| run | status | steps | metrics | wall |"
    assert "metric\\_names" in invoke("runs", store, "--format", "markdown", "--wide").output


@pytest.mark.parametrize("width", [80, 120])
def test_analyze_summary_fits_and_wraps(store, tmp_path, width):
    result = invoke("analyze", store, "--no-plots", "--out-dir", tmp_path / "cards", columns=width)
    assert result.exit_code in (0, 3, 4), result.output
    assert_fits(result.stdout, width)


@pytest.mark.parametrize("seconds, text", [
    (None, ""), (float("nan"), ""), (0.04, "0.0s"), (42.0, "42.0s"), (59.96, "60.0s"),
    (60, "1m00s"), (723.4, "12m03s"), (3600, "1h00m"), (10_920, "3h02m"), (4.8e7, "13333h20m"),
])
def test_duration(seconds, text):
    assert duration(seconds) == text


def words(text: str) -> str:
    """``text`` without spaces and box lines: what is left of words wrapped over lines."""
    return "".join(ch for ch in text if not ch.isspace() and not "\u2500" <= ch <= "\u257f")


def render(renderable, width) -> str:
    buf = io.StringIO()
    buf.isatty = lambda: False
    out = console(buf)
    out.width = width
    out.print(renderable)
    return buf.getvalue()


def test_rich_table_counts_long_lists_and_never_splits_headers():
    names = [f"m{i}" for i in range(7)]
    text = render(rich_table(("run_id", "first_step", "metric_names"), [("r", 0, names), ("s", 1, ["x", "y"])]), 40)
    assert "7 items" in text and "x, y" in text and "m0" not in text
    assert "first_step" in text and "metric_names" in text
    wide = render(rich_table(("run_id", "metric_names"), [("r", names)], wide=True), 80)
    assert "m0, m1, m2, m3, m4, m5, m6" in wide


def test_a_long_verdict_wraps_in_a_record_table():
    verdict = " ".join(f"word{i}" for i in range(60))
    text = render(record_tables(("run_id", "summary"), [("run-1", verdict)]), 50)
    assert_fits(text, 50, ids=("run-1",))
    assert "".join(verdict.split()) in words(text)


def test_a_card_title_wider_than_the_screen_is_not_cut():
    from rldk.core.report import Check, Report

    title = "Drift card: 3 runs vs baseline " + IDS[0]
    report = Report("divergence", title, "ok", "nothing diverges", checks=(Check("x", "ran"),))
    text = render(report, 60)
    assert_fits(text, 60, ids=())
    assert "".join(f"{title} [ok]".split()) in words(text)


def test_html_runs_table_is_for_people(store):
    data = html.report_data(open_store(store), [])
    assert data["runs"]["columns"] == list(RUN_COLUMNS)
    assert [r[0] for r in data["runs"]["rows"]] == sorted(IDS)
    assert data["runs"]["rows"][0][3] == METRICS          # a count, not 42 names
    page = html.render_html(data)
    assert "overflow-wrap:anywhere" not in page            # it broke words: "ste ps"
    assert "th{white-space:nowrap}" in page and "td.id{white-space:nowrap}" in page


REAL = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "real"
if not REAL.is_dir():                               # a checkout beside shared/ (CI) or under /work
    REAL = Path("/work/shared/fixtures/real")


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    if not REAL.is_dir():
        pytest.skip("shared/fixtures/real not present")
    out = tmp_path_factory.mktemp("real")
    for d in sorted(p for p in REAL.iterdir() if p.is_dir()):
        assert invoke("import", "auto", d, "--out-dir", out).exit_code == 0
    return out


@pytest.mark.parametrize("width", [80, 120])
def test_seven_real_runs_at_80_and_120_columns(real_store, tmp_path, width):
    ids = [r["run_id"] for r in json.loads(invoke("runs", real_store, "--format", "json").output)]
    assert len(ids) == 7
    runs = invoke("runs", real_store, columns=width)
    assert_fits(runs.output, width, ids)
    assert len(runs.output.splitlines()) <= 7 + 6          # was 524 lines at 100 columns
    analysis = invoke("analyze", real_store, "--no-plots", "--out-dir", tmp_path / "c", columns=width)
    assert analysis.exit_code == 3
    assert_fits(analysis.stdout, width, ids)
