"""The HTML report: one offline file, escaped log contents, checked in a real browser."""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from rldk.cli import main
from rldk.core.html import curve, render_html, report_data
from rldk.core.store import open_store
from rldk.writer import EventWriter

PAYLOAD = '<img src=x onerror="document.body.setAttribute(\'data-pwned\',\'1\')"><script>document.body.setAttribute("data-pwned","2")</script>'
ARTIFACTS = Path(os.environ.get("RLDK_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("html")
    for run_id, spike in (("clean", None), ("spiky", 600)):
        with EventWriter(path, run_id, capture_env=False) as w:
            for step in range(1000):
                loss = 1.0 / math.sqrt(step + 1)
                if spike and step >= spike and step % 97 == 0:
                    loss *= 40.0                                   # isolated loss spikes
                w.log(step, loss=loss, grad_norm=1.0 + 0.001 * step, **{PAYLOAD: 0.5})
            w.log_samples(10, [PAYLOAD], ["a response with <b>bold</b> & " + PAYLOAD], [1.0])
    return path


def test_report_data_downsampling_keeps_spikes(tmp_path):
    with EventWriter(tmp_path, "long", capture_env=False) as w:
        for step in range(50_000):
            w.log(step, x=100.0 if step == 31_337 else 0.0)
    c = curve(open_store(tmp_path), "x", max_points=500)
    points = c.series["long"]
    assert c.downsampled and len(points) <= 1000
    assert [31_337, 100.0] in points and max(p[1] for p in points) == 100.0


def test_log_text_cannot_close_the_data_script(store_dir):
    page = render_html(report_data(open_store(store_dir), []))
    data_block = page.split('id="rldk-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data_block and ">" not in data_block
    assert page.count("<script") == 2            # the JSON block and the page's own code


def test_report_command_writes_one_file(store_dir, tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(store_dir), "-o", str(out)])
    assert result.exit_code in (0, 3), result.output
    assert re.match(r"wrote .*report\.html: 2 run\(s\), \d+ card\(s\), \d+ problem\(s\)", result.output)
    page = out.read_text()
    assert "http://" not in page and "https://" not in page and "src=\"http" not in page
    assert out.stat().st_size < 3_000_000


def test_a_small_stores_report_reads_without_polars_or_pandas(tmp_path):
    """Small is instant (issue #16): a small store of metrics is analysed through DuckDB
    alone, so the page's runs table and curves are read through it too (and `rldk runs`
    reads the footers' run summaries as rows); importing Polars for them would be a
    quarter of the command's wall time."""
    import sys

    for run_id in ("a", "b"):
        with EventWriter(tmp_path / "store", run_id, capture_env=False) as w:
            for step in range(200):
                w.log(step, loss=1.0 / (step + 1), reward=0.01 * step, entropy=2.0 - 0.001 * step)
    code = ("import sys\nfrom rldk.cli import main\n"
            f"for args in (['report', {str(tmp_path / 'store')!r}, '-o', {str(tmp_path / 'r.html')!r}],\n"
            f"             ['runs', {str(tmp_path / 'store')!r}, '--format', 'json']):\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('polars', 'pandas', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "curves" in (tmp_path / "r.html").read_text() and '"run_id": "b"' in out.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package 'chromium'; "
                    ".ci/run installs it)")
def test_report_renders_in_a_real_browser_without_errors(store_dir, tmp_path):
    out = tmp_path / "report.html"
    CliRunner().invoke(main, ["report", str(store_dir), "-o", str(out)])
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=3000"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", out.as_uri()], capture_output=True,
                         text=True, timeout=120)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "html_report.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1400,2400", f"--screenshot={shot}", out.as_uri()],
                   capture_output=True, text=True, timeout=120)
    console_errors = [line for line in dom.stderr.splitlines()
                      if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]
    assert console_errors == []
    html_after_js = dom.stdout
    assert 'data-rendered="1"' in html_after_js                  # the page's script ran to the end
    assert "data-pwned" not in html_after_js.split("<script", 1)[0].split("<body", 1)[1][:200]
    assert 'data-pwned="1"' not in html_after_js and 'data-pwned="2"' not in html_after_js
    assert html_after_js.count("<canvas") >= 2                    # the curves were drawn
    assert "&lt;img src=x onerror=" in html_after_js               # the payload shows as text
    for section in ('id="overview"', 'id="findings"', 'id="curves"', 'id="cards"'):
        assert section in html_after_js
    assert shot.exists() and shot.stat().st_size > 10_000


def test_analyze_writes_the_same_html_report(store_dir, tmp_path):
    out = tmp_path / "analyze.html"
    result = CliRunner().invoke(main, ["analyze", str(store_dir), "--out-dir", str(tmp_path / "cards"),
                                       "--no-plots", "--html", str(out)])
    assert result.exit_code in (0, 3), result.output
    page = out.read_text()
    assert 'id="rldk-data"' in page and "rldk report: clean, spiky" in page


def test_an_inconclusive_store_is_shown_as_such_in_the_page_and_cards(tmp_path):
    import json

    with EventWriter(tmp_path / "s", "only-foo", capture_env=False) as w:
        for step in range(20):
            w.log(step, foo=float(step))
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", str(tmp_path / "s"), "-o", str(out),
                                       "--out-dir", str(tmp_path / "cards")])
    assert result.exit_code == 4, result.output
    assert result.stdout == f"wrote {out}: 1 run(s), 3 card(s), 0 problem(s); inconclusive\n"
    page = out.read_text()
    assert ".status-inconclusive{" in page and "Checks that could not run" in page
    data = json.loads(re.search(r'id="rldk-data">(.*?)</script>', page, re.S).group(1))
    health = {c["analyzer"]: c for c in data["cards"]}["health"]
    assert health["status"] == "inconclusive" and not any(c["status"] == "ran" for c in health["checks"])
    card = (tmp_path / "cards" / "health.md").read_text()
    assert "> **INCONCLUSIVE:** the checks that define this analysis could not run" in card
    assert "| negative\\_kl | only-foo | not logged: kl\\_to\\_ref \\(log it as kl" in card
