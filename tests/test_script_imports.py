"""The reference suite's scripts run the same from any directory, interpreter and venv.

Running ``python reference/x/y.py`` puts ``reference/x/`` first on ``sys.path``: a
module or package there named like a standard-library or installed module would be
imported instead of it (``reference/bisect/`` once hid the stdlib ``bisect`` from
every training process). So no module under ``reference/`` or ``smoke_tests/`` may
carry such a name: a ``.py`` file, or a directory holding Python code (a package, or
a namespace portion with ``.py`` files). A data-only directory cannot shadow an
installed module: Python prefers a regular module found later on the path over a
namespace directory found earlier.
"""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = ("reference", "smoke_tests")


def taken_names() -> set[str]:
    """Top-level import names of the standard library and of every installed distribution."""
    installed = set(importlib.metadata.packages_distributions())
    return set(sys.stdlib_module_names) | {n for n in installed if n.isidentifier()}


def module_names(tree: Path) -> dict[str, Path]:
    """Path -> the import name it would have if its folder were first on sys.path."""
    out = {}
    for path in sorted(tree.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        if path.suffix == ".py" and path.stem != "__init__":
            out[str(path.relative_to(ROOT))] = path.stem
        elif path.is_dir() and any(path.glob("*.py")):
            out[str(path.relative_to(ROOT))] = path.name
    return out


def test_the_scan_sees_names_and_knows_taken_ones():
    names = module_names(ROOT / "reference")
    assert names["reference/runner.py"] == "runner" and names["reference/bisect_repo"] == "bisect_repo"
    assert {"bisect", "json", "datasets", "torch", "numpy"} <= taken_names()


@pytest.mark.parametrize("tree", TREES)
def test_no_module_shadows_a_stdlib_or_installed_one(tree):
    taken = taken_names()
    clashes = {path: name for path, name in module_names(ROOT / tree).items() if name in taken}
    assert not clashes, f"rename these, they shadow modules of the same name: {clashes}"


def run_script(args, cwd, safe_path=False):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    if safe_path:
        env["PYTHONSAFEPATH"] = "1"
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("safe_path", [False, True], ids=["plain", "PYTHONSAFEPATH"])
@pytest.mark.parametrize("where", ["root", "elsewhere"])
def test_runner_refuses_a_7b_model_without_a_path_from_anywhere(tmp_path, where, safe_path):
    cwd = ROOT if where == "root" else tmp_path
    done = run_script([str(ROOT / "reference" / "runner.py"), "--task", "refusal_safety", "--model", "open_7b",
                       "--rldk-dir", str(tmp_path / "runs"), "--run-id", "x"], cwd, safe_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines()[-1].startswith("error: model 'open_7b' (~7B parameters) is not built from "
                                                   "a config: pass --model PATH"), done.stderr[-2000:]


@pytest.mark.parametrize("script", ["reference/runner.py", "reference/data/build.py",
                                    "smoke_tests/cpu_2min_test.py", "smoke_tests/gpu_1hr_test.py"])
def test_scripts_start_from_elsewhere_with_a_safe_path(tmp_path, script):
    done = run_script([str(ROOT / script), "--help"], tmp_path, safe_path=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:")
