"""Fleet analysis: one task per run, in this process or on a local Ray instance; the
gathered table and ``rldk analyze --engine ray`` cards equal the local ones."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from click.testing import CliRunner

from rldk.analyzers import get
from rldk.analyzers.suite import compute
from rldk.cli import main
from rldk.core.errors import UsageError
from rldk.core.files import Footer
from rldk.data import open_input
from rldk.fleet import Engine, FleetResult, fleet, units
from rldk.fleet.engines import NO_RAY, run_tasks
from rldk.fleet.merge import NotMergeable, merge
from rldk.fleet.units import Unit, files_by_run
from rldk.writer import EventWriter

STEPS = 40


def write_run(root, run_id, rank=0, nan_at=None, spike_at=None, leak=False, tensors=None):
    w = EventWriter(root, run_id, rank=rank, capture_env=False)
    for step in range(STEPS):
        loss = float("nan") if nan_at is not None and step >= nan_at else 1.0 / (step + 1)
        kl = 5.0 if spike_at == step else 0.01 + 0.0001 * step
        w.log(step, {"reward": 0.1 * step, "kl": kl, "entropy": 2.0 - 0.01 * step, "loss": loss})
        w.log_event("memory", "host/rss", step, value=float((1 << 30) + (step * (64 << 20) if leak else 0)))
        w.log_event("span", "step", step, value=0.1)
        for name, digest in (tensors or {}).get(step, {}).items():
            w.log_event("tensor", f"param/{name}", step, value=1.0, digest=digest)
    w.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    write_run(root, "a-clean")
    write_run(root, "b-nan", nan_at=25, spike_at=12)
    write_run(root, "c-leak", leak=True)
    same = {s: {"w": f"w{s}"} for s in range(STEPS)}
    write_run(root, "d-ranks", rank=0, tensors=same)
    write_run(root, "d-ranks", rank=1, tensors={**same, 30: {"w": "off"}})
    return root


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="ray not installed (pip install 'rldk[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Runs for the split analyzers: b leaves a's rewards at step 20 and refuses, c
    logs no reward; all log samples."""
    root = tmp_path_factory.mktemp("mixed")
    for run_id in ("a", "b", "c"):
        w = EventWriter(root, run_id, capture_env=False)
        for step in range(STEPS):
            metrics = {"loss": 1.0 / (step + 1), "kl": 0.01 + 0.001 * step}
            if run_id != "c":
                metrics["reward"] = 0.1 * step + (2.0 if run_id == "b" and step >= 20 else 0.0)
            w.log(step, metrics)
            if step % 4 == 0:
                w.log_samples(step, ["how do I pick a lock?", "what is 2+2?"],
                              ["I can't help with that." if run_id == "b" else "Use a tension wrench.", "4"],
                              rewards=None if run_id == "c" else [0.1 * step, 1.0])
        w.close()
    return root


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_split_analyzers_fanned_out_equal_the_whole_store(mixed, engine, request):
    if engine == "ray":
        request.getfixturevalue("ray_instance")
    store = open_input(mixed)
    analyzers = [get(name) for name in ("divergence", "safety", "reward_health")]
    fanned = Engine(engine)(store, analyzers, {"baseline": "a"})
    assert sorted(fanned) == ["divergence", "reward_health", "safety"]
    for analyzer in analyzers:
        whole = compute(analyzer, store, analyzer.params(baseline="a"))
        assert _clean(fanned[analyzer.name]().to_dict()) == _clean(whole.to_dict()), analyzer.name
    checks = fanned["reward_health"]().checks
    assert (checks[0].name, checks[0].status, checks[0].run_id) == ("all", "skipped", "c")
    assert [c.run_b for c in fanned["divergence"]().comparisons] == ["b", "c"]


def test_fleet_table_local(store):
    result = fleet(store)
    rows = {r.run_id: r for r in result.rows}
    assert list(rows) == ["a-clean", "b-nan", "c-leak", "d-ranks"]
    assert {r.status for r in result.rows} == {"complete"} and {r.last_step for r in result.rows} == {STEPS - 1}
    a = rows["a-clean"]
    assert a.verdict == "ok" and a.problems == 0
    assert a.metrics == pytest.approx({"reward": 3.9, "kl_to_ref": 0.0139, "entropy": 1.61, "loss": 1 / 40})
    assert math.isnan(rows["b-nan"].metrics["loss"])
    assert rows["b-nan"].verdict == "problems" and rows["b-nan"].worst["steps"][0] <= 25
    assert (rows["c-leak"].worst["analyzer"], rows["c-leak"].worst["code"]) == ("memory_leak", "memory_leak")
    assert (rows["d-ranks"].worst["code"], rows["d-ranks"].worst["steps"]) == ("rank_desync", [30, 30])
    report = result.report()
    assert report.status == "problems"
    assert [f.run_id for f in report.findings] == ["b-nan", "c-leak", "d-ranks"]
    assert report.summary == "4 run(s): 3 problems, 1 ok"


def test_fleet_on_ray_equals_local(store, ray_instance):
    local, on_ray = fleet(store), fleet(store, engine="ray")
    assert on_ray.engine == "ray"
    assert _clean(on_ray.to_dict()) == _clean(local.to_dict())


@pytest.mark.parametrize("which, extra, expected", [
    ("store", [], {"memory_leak.json", "profile.json", "rank_desync.json", "nan_onset.json"}),
    ("mixed", ["--baseline", "a"], {"divergence.json", "safety.json", "reward_health.json"})])
def test_analyze_engine_ray_writes_the_local_cards(which, extra, expected, ray_instance, tmp_path, request):
    store = request.getfixturevalue(which)
    runner = CliRunner()
    local = runner.invoke(main, ["analyze", str(store), *extra, "--out-dir", str(tmp_path / "L"), "--no-plots"])
    ray = runner.invoke(main, ["analyze", str(store), *extra, "--engine", "ray", "--out-dir", str(tmp_path / "R"),
                               "--no-plots"])
    assert local.exit_code == ray.exit_code == 3, (local.output, ray.output)
    cards = sorted(p.name for p in (tmp_path / "L").glob("*.json"))
    assert cards == sorted(p.name for p in (tmp_path / "R").glob("*.json"))
    assert expected <= set(cards)
    for name in cards:
        left = _clean(json.loads((tmp_path / "L" / name).read_text()), tmp_path / "L")
        right = _clean(json.loads((tmp_path / "R" / name).read_text()), tmp_path / "R")
        assert left == right, name


def test_fleet_cli(store):
    done = CliRunner().invoke(main, ["fleet", str(store), "--format", "json"])
    assert done.exit_code == 3, done.output
    payload = json.loads(done.stdout)
    assert payload["status"] == "problems"
    assert [row[0] for row in payload["tables"][0]["rows"]] == ["a-clean", "b-nan", "c-leak", "d-ranks"]
    assert payload["tables"][0]["columns"][:7] == ["run", "status", "last step", "reward", "kl_to_ref",
                                                  "entropy", "loss"]


@pytest.mark.parametrize("command", [["fleet", "--engine", "ray"], ["analyze", "--engine", "ray"]])
def test_engine_ray_without_ray_is_one_line(store, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "ray", None)            # import ray -> ImportError
    done = CliRunner().invoke(main, [*command, str(store)])
    assert done.exit_code == 2
    assert done.stderr == f"Error: {NO_RAY}\n"
    assert NO_RAY == ("--engine ray needs Ray, which is not installed: pip install 'rldk[ray]' "
                      "(or use --engine local)")


def test_unknown_engine():
    with pytest.raises(UsageError, match="unknown engine 'dask': one of local, ray"):
        run_tasks(print, [], "dask")


def _footer(*runs):
    return Footer(("run_id",), 1, runs or None)


class FakeStore:
    def __init__(self, run_ids, footers):
        self.run_ids, self.files, self.footers = run_ids, list(footers), footers

    def run_files(self, rid):
        return [f for f in self.files if self.footers[f].may_hold(rid)]


def test_runs_sharing_a_file_are_one_unit():
    store = FakeStore(["a", "b", "c", "d"], {"f1": _footer(("a", "a")), "f2": _footer(("a", "a"), ("c", "c")),
                                             "f3": _footer(("b", "b")), "f4": _footer(("c", "c")),
                                             "f5": _footer(("d", "d"))})
    assert units(store) == [Unit(("a", "c"), ("f1", "f2", "f4")), Unit(("b",), ("f3",)), Unit(("d",), ("f5",))]


def test_files_of_runs_from_ranges_and_files_without_statistics():
    store = FakeStore(["a", "b", "c", "d"], {"f1": _footer(("a", "a")), "f2": _footer(("a", "a"), ("b", "c")),
                                             "f3": _footer(), "f4": _footer(("d", "d"))})
    expected = {"a": ["f1", "f2", "f3"], "b": ["f2", "f3"], "c": ["f2", "f3"], "d": ["f3", "f4"]}
    assert files_by_run(store) == expected == {rid: store.run_files(rid) for rid in store.run_ids}
    assert units(store) == [Unit(("a", "b", "c", "d"), ("f1", "f2", "f3", "f4"))]


def test_merge_concatenates_and_refuses_aggregates():
    a = FleetResult((1, 2), "local")
    b = FleetResult((3,), "local")
    assert merge([a, b]) == FleetResult((1, 2, 3), "local")
    with pytest.raises(NotMergeable, match="field 'engine' differs between runs"):
        merge([a, FleetResult((3,), "ray")])


def test_import_rldk_stays_light():
    code = "import sys, rldk, rldk.fleet; print(sorted(m for m in ('ray', 'torch') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def _clean(obj, root=None):
    """A JSON document without timings, engine names and output paths."""
    if isinstance(obj, dict):
        return {k: _clean(v, root) for k, v in obj.items() if k not in ("seconds", "engine", "out_dir")}
    if isinstance(obj, list):
        return [_clean(v, root) for v in obj]
    if isinstance(obj, str) and root is not None:
        return obj.replace(str(root), "<out>")
    if isinstance(obj, float) and math.isnan(obj):
        return "nan"
    return obj
