"""``rldk analyze`` and ``rldk diff``: cards written, exit codes, exact error lines."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from rldk import semantics
from rldk.analyzers import suite
from rldk.cli import main
from rldk.core.errors import EXIT_INCONCLUSIVE, EXIT_PROBLEMS
from rldk.writer import EventWriter

CORE = ["summary", "nan_onset", "spikes", "health", "divergence"]


def write(directory, run_id, steps=40, **series):
    """A run with metrics ``series`` (name -> function of step); defaults: a clean one."""
    series = series or {"loss": lambda s: 1.0 / (1 + s), "kl": lambda s: 0.01}
    with EventWriter(directory, run_id, capture_env=False) as w:
        for step in range(steps):
            w.log(step, {k: f(step) for k, f in series.items()})
    return directory


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def clean(tmp_path):
    return write(tmp_path / "clean", "a")


@pytest.fixture
def sick(tmp_path):
    return write(tmp_path / "sick", "a", loss=lambda s: math.nan if s >= 30 else 1.0,
                 grad_norm=lambda s: 50.0 if s == 20 else 1.0 + 0.01 * (s % 3))


# -------------------------------------------------------------------- analyze
def test_analyze_clean_store_exits_0_and_writes_cards(clean, tmp_path):
    out = tmp_path / "reports"
    result = invoke("analyze", clean, "--out-dir", out, "--no-plots")
    assert result.exit_code == 0, result.output
    for name in ("summary", "nan_onset", "spikes", "health"):
        card = json.loads((out / f"{name}.json").read_text())
        assert card["status"] == "ok" and card["schema_version"] == 1
        assert (out / f"{name}.md").read_text().startswith("# ")
    index = json.loads((out / "index.json").read_text())
    assert index["problems"] == 0 and index["runs"] == ["a"]
    outcomes = {o["analyzer"]: o["status"] for o in index["outcomes"]}
    assert outcomes["divergence"] == "skipped"
    assert "summary" in result.output and "ok" in result.output


def test_analyze_problems_exit_3_with_findings(sick, tmp_path):
    out = tmp_path / "reports"
    result = invoke("analyze", sick, "--out-dir", out, "--format", "json", "--no-plots")
    assert result.exit_code == EXIT_PROBLEMS, result.output
    data = json.loads(result.stdout)
    status = {o["analyzer"]: o["status"] for o in data["details"]["outcomes"]}
    assert (status["nan_onset"], status["spikes"]) == ("problems", "ok")   # a recovered 50x spike: info
    onset = json.loads((out / "nan_onset.json").read_text())
    assert onset["findings"][0]["title"] == "loss NaN at step 30 (10 of 40 values: 30, 31, 32, 33, " \
                                            "34, 35, 36, 37, 38, 39)"
    assert onset["findings"][0]["severity"] == "error"


@pytest.mark.parametrize("floor, severity, code", [(0.3, "warning", 0), (0.05, "error", EXIT_PROBLEMS)])
def test_fail_on_error_gates_on_errors_only(tmp_path, floor, severity, code):
    """An entropy that falls from 2.0 to 0.3 (15%: a warning) or to 0.05 (an error) at step 20:
    both exit 3 by default; with --fail-on error only the error does, and the warning is
    still printed."""
    store = write(tmp_path / "s", "a", entropy=lambda s: (2.0 if s < 20 else floor) + 0.001 * ((s * 7) % 5 - 2))
    default = invoke("analyze", store, "--out-dir", tmp_path / "r", "--format", "json")
    assert default.exit_code == EXIT_PROBLEMS, default.output
    gated = invoke("analyze", store, "--out-dir", tmp_path / "g", "--format", "json", "--fail-on", "error")
    assert gated.exit_code == code, gated.output
    printed = json.loads(gated.stdout)
    assert [(f["code"], f["severity"]) for f in printed["findings"]] == [("entropy_collapse", severity)]
    assert ("no error: exit 0 (--fail-on error)" in gated.stderr) == (code == 0)


def test_unknown_names_get_the_metric_map_that_reads_them(tmp_path):
    """A run whose names the table does not know is inconclusive, and says which of its
    names look like the quantities the rules need, with the map to pass; that map, passed,
    makes the analysis conclusive."""
    csv = tmp_path / "custom.csv"
    rows = [f"{i},{0.1 + 0.005 * i},{1.0 - 0.009 * i},{300 + i}" for i in range(60)]
    csv.write_text("step,reward_avg,entropy_avg,avg_response_len\n" + "\n".join(rows) + "\n")
    result = invoke("analyze", csv, "--out-dir", tmp_path / "r", "--no-plots")
    assert result.exit_code == EXIT_INCONCLUSIVE, result.output
    index = json.loads((tmp_path / "r" / "health.json").read_text())
    skipped = {c["name"]: c["detail"] for c in index["checks"] if c["status"] == "skipped"}
    assert ("this run's reward_avg looks like it: if so, pass --metric-map FILE holding "
            '{"reward": ["reward_avg"]}') in skipped["reward_collapse_or_degradation"]
    assert '{"response_length": ["avg_response_len"]}' in skipped["length_collapse_or_explosion"]
    assert "looks like" not in skipped["kl_blowup"]
    partly = tmp_path / "partly.csv"
    partly.write_text(csv.read_text().replace("reward_avg", "reward"))
    shown = invoke("analyze", partly, "--out-dir", tmp_path / "p", "--no-plots")
    assert shown.exit_code == 0 and "Checks a metric map would let run" in shown.output, shown.output
    assert '{"entropy":' in shown.output.replace("\n", " ").replace("│", "")
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"reward": ["reward_avg"], "entropy": ["entropy_avg"],
                                   "response_length": ["avg_response_len"]}))
    try:
        mapped = invoke("analyze", csv, "--metric-map", mapping, "--out-dir", tmp_path / "m", "--no-plots")
    finally:
        semantics.use_metric_map(None)              # the option sets the process-wide table
    assert mapped.exit_code == 0, mapped.output


def test_analyze_with_baseline_writes_a_drift_card(tmp_path):
    store = tmp_path / "s"
    write(store, "base", steps=60)
    write(store, "lr-bug", steps=60, loss=lambda s: 1.0 / (1 + s) + (0.5 if s >= 37 else 0.0),
          kl=lambda s: 0.01)
    out = tmp_path / "reports"
    result = invoke("analyze", store, "--baseline", "base", "--out-dir", out)
    assert result.exit_code == EXIT_PROBLEMS, result.output
    card = json.loads((out / "divergence.json").read_text())
    comparison = card["details"]["comparisons"][0]
    assert (comparison["run_b"], comparison["step"], comparison["signal"]) == ("lr-bug", 37, "loss")
    assert not list(out.glob("*.png")) and "](divergence-lr-bug.png)" not in (out / "divergence.md").read_text()
    pytest.importorskip("matplotlib")
    plotted = tmp_path / "plotted"                  # plots are opt-in: they import matplotlib
    assert invoke("analyze", store, "--baseline", "base", "--out-dir", plotted, "--plots").exit_code == EXIT_PROBLEMS
    assert (plotted / "divergence-lr-bug.png").is_file()
    assert "![loss: base vs lr-bug](divergence-lr-bug.png)" in (plotted / "divergence.md").read_text()


def test_analyze_errors(tmp_path):
    with EventWriter(tmp_path / "empty", "a", capture_env=False):
        pass
    result = invoke("analyze", tmp_path / "empty")
    assert result.exit_code == 1
    assert result.output == (f"Error: no metric events in {tmp_path / 'empty'}: log scalars with "
                             "rldk.writer.log or import logs with `rldk import`\n")
    missing = invoke("analyze", tmp_path / "nope")
    assert missing.exit_code == 1
    assert missing.output.startswith(f"Error: {tmp_path / 'nope'}: no such file or directory")


def test_unknown_baseline_is_an_error_outcome_not_a_crash(clean, tmp_path):
    result = suite.analyze(clean, baseline="zz", out_dir=tmp_path / "r", plots=False)
    outcome = {o.analyzer: o for o in result.outcomes}["divergence"]
    assert (outcome.status, outcome.summary) == ("error", "no run 'zz' in the store; runs: a")
    assert invoke("analyze", clean, "--baseline", "zz", "--out-dir", tmp_path / "r2").exit_code == 1


def test_params_come_from_options_by_field_name():
    from rldk.analyzers import get

    assert get("divergence").params(baseline="x").baseline == "x"
    assert get("nan_onset").params(baseline="x") == get("nan_onset").Params()


# ----------------------------------------------------------------------- diff
@pytest.fixture
def pair(tmp_path):
    store = tmp_path / "pair"
    write(store, "a")
    write(store, "b", loss=lambda s: 1.0 / (1 + s) + (1e-9 if s >= 25 else 0.0), kl=lambda s: 0.01)
    return store


def test_diff_reports_first_step_and_exits_3(pair, tmp_path):
    result = invoke("diff", pair, "--format", "json")
    assert result.exit_code == EXIT_PROBLEMS, result.output
    card = json.loads(result.output)
    assert card["details"]["comparisons"][0]["step"] == 25
    assert card["summary"].startswith("runs a and b diverge at step 25: loss = ")
    table = invoke("diff", pair, "--signals", "kl")
    assert table.exit_code == 0 and "runs a and b are identical" in table.output
    csv = invoke("diff", pair, "--format", "csv")           # diverged: the findings, as every command
    assert csv.output.splitlines()[0].startswith("code,")


@pytest.mark.parametrize("setup, args, code, line", [
    ("no_common", [], 1, "Error: runs 'a' and 'b' share no step (loss: 'a' logs steps 0-39, "
                         "'b' 100-139); steps are aligned by number: log both runs with the same "
                         "step counter"),
    ("pair", ["--signals", "reward"], 2, "Error: signal 'reward' is not logged by run 'a'; its "
                                         "metrics: kl, loss"),
    ("empty_b", [], 1, "Error: run 'b' has no metric events: log scalars with "
                       "rldk.writer.log(step, ...) or import its logs with `rldk import`"),
    ("text", ["--signals", "loss"], 1, "Error: metric 'loss' of run 'b' has no numeric values "
                                       "(40 non-numeric, e.g. 'n/a' at step 0): log numbers"),
    ("single", [], 1, "Error: runs 'a' and 'b' differ from their first common step and share "
                      "only 1 step(s): the statistical level needs at least 10; compare values "
                      "exactly with mode='exact' (CLI: --mode exact)"),
    ("three", [], 2, "Error: 3 runs in {store} (a, b, c): name the two to compare with --a RUN --b RUN"),
    ("pair", ["--a", "a"], 2, "Error: pass both --a and --b, or neither"),
    ("pair", ["--a", "a", "--b", "zz"], 2, "Error: no run 'zz' in the store; runs: a, b"),
])
def test_diff_bad_input(tmp_path, pair, setup, args, code, line):
    store = tmp_path / setup
    if setup == "pair":
        store = pair
    elif setup == "no_common":
        write(store, "a")
        with EventWriter(store, "b", capture_env=False) as w:
            for step in range(100, 140):
                w.log(step, loss=1.0)
    elif setup == "empty_b":
        write(store, "a")
        with EventWriter(store, "b", capture_env=False):
            pass
    elif setup == "text":
        write(store, "a")
        with pytest.warns(Warning):
            write(store, "b", loss=lambda s: "n/a", kl=lambda s: 0.01)
    elif setup == "single":
        write(store, "a", steps=1)
        write(store, "b", steps=1, loss=lambda s: 2.0, kl=lambda s: 0.01)
    elif setup == "three":
        for run_id in "abc":
            write(store, run_id)
    result = invoke("diff", store, *args)
    assert result.exit_code == code, result.output
    assert result.output == line.format(store=store) + "\n"


def test_diff_mode_exact_and_out_dir(tmp_path):
    store = tmp_path / "single"
    write(store, "a", steps=1)
    write(store, "b", steps=1, loss=lambda s: 2.0, kl=lambda s: 0.01)
    out = tmp_path / "card"
    result = invoke("diff", store, "--mode", "exact", "--out-dir", out, "--format", "markdown")
    assert result.exit_code == EXIT_PROBLEMS
    assert result.stdout.startswith("# Drift card: a vs b")
    assert json.loads((out / "divergence.json").read_text())["status"] == "problems"


# ------------------------------------------------------------ inconclusive verdicts
def test_analyze_a_store_of_only_an_unknown_metric_is_inconclusive_exit_4(tmp_path):
    store = write(tmp_path / "s", "a", foo=lambda s: float(s))
    out = tmp_path / "reports"
    result = invoke("analyze", store, "--out-dir", out, "--no-plots")
    assert result.exit_code == EXIT_INCONCLUSIVE, result.output
    assert "rldk analyze: 1 run(s) [inconclusive]" in result.stdout
    assert ("INCONCLUSIVE: the checks that define this analysis could not run, so nothing was "
            "verified:") in result.stdout
    assert "  - negative_kl (a): not logged: kl_to_ref (log it as kl, objective/kl or " in result.stdout
    index = json.loads((out / "index.json").read_text())
    assert index["status"] == "inconclusive"
    assert json.loads((out / "health.json").read_text())["status"] == "inconclusive"
    assert "**INCONCLUSIVE: no check that finds training problems could run" in (out / "index.md").read_text()
    md = invoke("analyze", store, "--out-dir", out, "--no-plots", "--format", "markdown")
    assert md.exit_code == EXIT_INCONCLUSIVE
    assert md.stdout.splitlines()[:5] == [
        "# rldk analyze: 1 run\\(s\\)", "", "**Status:** inconclusive  ",
        "nothing verified in a: no check that finds training problems could run \\(see the checks "
        "that could not run\\)", ""]


def test_terminal_summary_is_never_truncated(tmp_path):
    for run in "abcd":
        store = write(tmp_path / "s", run, loss=lambda s: 1.0, **{
            f"{run}{i}": (lambda s: math.nan if s >= 30 else 1.0) for i in range(12)})
    analysis = suite.analyze(store, out_dir=tmp_path / "r", plots=False)
    summary = {o.analyzer: o.summary for o in analysis.outcomes}["nan_onset"]
    assert len(summary) > 300                               # used to be cut at 300 with "..."
    result = invoke("analyze", store, "--out-dir", tmp_path / "r", "--no-plots", "--format", "json")
    rows = json.loads(result.stdout)["tables"][0]["rows"]
    assert {r[0]: r[3] for r in rows}["nan_onset"] == summary
    table = invoke("analyze", store, "--out-dir", tmp_path / "r", "--no-plots")
    assert "..." not in table.stdout and "…" not in table.stdout
    cells = "".join(ch for ch in table.stdout if not ch.isspace() and not "\u2500" <= ch <= "\u257f")
    assert "".join(summary.split()) in cells                # wrapped over lines, every word there


# ------------------------------------------------------------ foreign logs through every door
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "real"
if not REAL.is_dir():                               # a checkout beside shared/ (CI) or under /work
    REAL = Path("/work/shared/fixtures/real")


@pytest.mark.skipif(not (REAL / "trl_grpo_zero_std").is_dir(), reason="real fixtures not present")
def test_a_trl_output_dir_gives_the_same_runs_through_every_command(tmp_path, monkeypatch):
    monkeypatch.setenv("RLDK_CACHE_DIR", str(tmp_path / "cache"))
    trl = REAL / "trl_grpo_zero_std"
    runs = invoke("runs", trl, "--format", "json")
    assert runs.exit_code == 0, runs.output
    ids = sorted(r["run_id"] for r in json.loads(runs.stdout))
    assert ids
    sql = invoke("sql", "SELECT DISTINCT run_id FROM metrics ORDER BY 1", trl, "--format", "json")
    assert sql.exit_code == 0, sql.output
    assert [r["run_id"] for r in json.loads(sql.stdout)] == ids
    analyzed = invoke("analyze", trl, "--out-dir", tmp_path / "a", "--no-plots", "--format", "json")
    assert analyzed.exit_code in (0, 3), analyzed.output
    assert json.loads(analyzed.stdout)["details"]["runs"] == ids
    report = invoke("report", trl, "-o", tmp_path / "r.html", "--out-dir", tmp_path / "cards")
    assert report.exit_code in (0, 3), report.output
    assert json.loads((tmp_path / "cards" / "index.json").read_text())["runs"] == ids
    assert f"rldk report: {', '.join(ids)}" in (tmp_path / "r.html").read_text()


def test_a_large_store_analyzed_on_threads_gives_the_serial_cards(tmp_path, monkeypatch):
    """A store over ``PREFETCH_ROWS`` is read into the cache first and its analyzers run
    on a worker thread, two at a time over ``PARALLEL_ROWS`` (``suite._on_threads``):
    every card is the serial one, an error outcome included."""
    from rldk.analyzers import _series

    store = tmp_path / "store"
    write(store, "a", steps=60, loss=lambda s: 1.0 / (1 + s) + (5.0 if s == 30 else 0.0),
          grad_norm=lambda s: 1.0 + 0.01 * (s % 3), kl=lambda s: 0.01 * s)
    write(store, "b", steps=60, loss=lambda s: 1.0 / (1 + s) + (0.5 if s >= 40 else 0.0),
          grad_norm=lambda s: 1.0, kl=lambda s: 0.02 * s)
    cards, workers = {}, []
    on_threads = suite._on_threads
    monkeypatch.setattr(suite, "_on_threads", lambda *a: workers.append(a[3]) or on_threads(*a))
    # serial; on one worker thread; two at a time
    for case, (prefetch, parallel) in enumerate(((10**12, 10**12), (0, 10**12), (0, 0))):
        monkeypatch.setattr(suite, "PREFETCH_ROWS", prefetch)
        monkeypatch.setattr(suite, "PARALLEL_ROWS", parallel)
        _series.clear_cache()
        analysis = suite.analyze(store, baseline="missing", out_dir=tmp_path / str(case), plots=False)
        cards[case] = {o.analyzer: (o.status, o.summary) for o in analysis.outcomes}
        cards[case].update({r.analyzer: r.to_dict() for r in analysis.reports})
    assert workers == [1, 2] and cards[0] == cards[1] == cards[2]
    assert cards[2]["divergence"][0] == "error"
