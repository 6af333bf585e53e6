"""Small is instant: the fast CLI paths import only what they use and read their input once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from click.testing import CliRunner

from rldk.analyzers import suite
from rldk.cli import main
from rldk.writer import EventWriter

SRC = str(Path(__file__).resolve().parents[1] / "src")


def small_store(path: Path, runs=("a", "b")) -> Path:
    for run in runs:
        with EventWriter(path, run, capture_env=False) as w:
            for step in range(30):
                w.log(step, {"loss": 1.0 / (1 + step), "kl": 0.01, "reward": 0.1 * step})
    return path


def modules_after(args: list[str], cwd: Path) -> dict:
    """Exit code of ``rldk ARGS`` in a fresh process (stderr not a terminal) and which of
    the heavy modules it imported."""
    code = textwrap.dedent(f"""
        import json, sys
        from rldk.cli import main
        try:
            main({args!r}, standalone_mode=False)
            rc = 0
        except SystemExit as exc:
            rc = exc.code
        heavy = ("matplotlib", "pandas", "scipy", "rich.progress", "pyarrow")
        print(json.dumps({{"rc": rc, "imported": [m for m in heavy if m in sys.modules]}}))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env,
                         timeout=120, stdin=subprocess.DEVNULL)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_analyze_and_import_import_no_plotting_pandas_or_scipy(tmp_path):
    # analyze reads footers and rows without pyarrow (0.1 s to import); import writes with it
    store = small_store(tmp_path / "s")
    assert modules_after(["analyze", str(store), "--out-dir", str(tmp_path / "cards"), "--format", "json",
                          "-o", str(tmp_path / "a.json")], tmp_path) == {"rc": 0, "imported": []}
    assert not list((tmp_path / "cards").glob("*.png"))
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0 / (s + 1)}) + "\n" for s in range(50)))
    assert modules_after(["import", "jsonl", str(log), "--out-dir", str(tmp_path / "imported")],
                         tmp_path) == {"rc": 0, "imported": ["pyarrow"]}


def test_no_plots_is_still_accepted(tmp_path):
    store = small_store(tmp_path / "s")
    result = CliRunner().invoke(main, ["analyze", str(store), "--no-plots", "--out-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert not list((tmp_path / "c").glob("*.png"))


def test_pandas_still_works_after_the_probe_is_skipped():
    code = textwrap.dedent("""
        import sys
        from rldk.cli import skip_pandas_probe
        import pyarrow as pa
        skip_pandas_probe()
        pa.array([1.0, 2.0])
        before = "pandas" in sys.modules
        import pandas as pd
        table = pa.Table.from_pandas(pd.DataFrame({"x": [1.0, None]}))
        print(before, table.column("x").null_count, table.to_pandas()["x"].tolist()[0])
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    if "No module named 'pandas'" in out.stderr:
        return                                       # nothing to skip where pandas is absent
    assert out.stdout.split() == ["False", "1", "1.0"], out.stderr


def test_report_opens_its_input_once(tmp_path, monkeypatch):
    import rldk.data

    store = small_store(tmp_path / "s")
    calls = []
    real = rldk.data.open_input

    def counting(paths, *args, **kwargs):
        calls.append(paths)
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(rldk.data, "open_input", counting)
    monkeypatch.setattr(suite, "open_input", counting)
    result = CliRunner().invoke(main, ["report", str(store), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    calls.clear()
    result = CliRunner().invoke(main, ["analyze", str(store), "--out-dir", str(tmp_path / "c"),
                                       "--html", str(tmp_path / "a.html")])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and (tmp_path / "a.html").is_file()


def test_small_stores_are_read_without_a_thread_pool(tmp_path, monkeypatch):
    store = small_store(tmp_path / "s", runs=("a", "b", "c"))      # no baseline: no pair compared
    prefetched = []
    monkeypatch.setattr(suite._series, "prefetch", lambda sources: prefetched.append(len(sources)))
    suite.analyze(store, out_dir=tmp_path / "c1", plots=False)
    assert prefetched == []
    monkeypatch.setattr(suite, "PREFETCH_ROWS", 10)
    suite.analyze(store, out_dir=tmp_path / "c2", plots=False)
    assert prefetched == [3]
