"""The command line's shared options: every output option is named the same way
everywhere, and ``--metric-map`` (or ``RLDK_METRIC_MAP``) teaches every command a
run's own metric names."""
from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from rldk import semantics
from rldk.cli import COMMANDS, main
from rldk.core.errors import EXIT_PROBLEMS, EXIT_USAGE
from rldk.core.store import open_store
from rldk.writer import EventWriter

#: Commands that print no result of their own, and why.
NO_RESULT = {
    "demo": "a walkthrough: trains two runs and prints what it does",
    "report": "its result is the HTML file it writes to -o/--output",
}


def leaf_commands():
    """(name, click command) for every registered command, groups expanded."""
    ctx = click.Context(main)
    out = []
    for name in COMMANDS:
        cmd = main.get_command(ctx, name)
        if cmd is None:
            continue
        if isinstance(cmd, click.Group):
            out += [(f"{name} {sub}", cmd.get_command(ctx, sub)) for sub in cmd.list_commands(ctx)]
        else:
            out.append((name, cmd))
    return out


def options(cmd) -> dict[str, click.Option]:
    return {opt: p for p in cmd.params if isinstance(p, click.Option) for opt in p.opts}


@pytest.mark.parametrize("name,cmd", leaf_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_output_options_are_named_alike_everywhere(name, cmd):
    opts = options(cmd)
    assert "--out" not in opts, f"rldk {name}: a directory option is --out-dir, a file -o/--output"
    if "--out-dir" in opts:
        assert isinstance(opts["--out-dir"].type, click.Path) and not opts["--out-dir"].type.file_okay
    if "--output" in opts:
        assert opts["--output"].opts == ["--output", "-o"] and not opts["--output"].type.dir_okay
    if name.split()[0] not in NO_RESULT:
        assert {"--format", "--output"} <= set(opts), f"rldk {name} prints a result: --format and --output"
        assert set(opts["--format"].type.choices) >= {"table", "json"}


def test_the_commands_keep_their_default_directories():
    ctx = click.Context(main)
    assert options(main.get_command(ctx, "analyze"))["--out-dir"].default == "rldk_reports"
    assert options(main.get_command(ctx, "import"))["--out-dir"].default == "rldk_runs"
    assert options(main.get_command(ctx, "report"))["--output"].default == "rldk_report.html"


# ------------------------------------------------------------------ --metric-map
@pytest.fixture
def my_kl_store(tmp_path):
    for run_id, jump in (("a", None), ("b", 20)):
        with EventWriter(tmp_path / "s", run_id, capture_env=False) as w:
            for step in range(40):
                w.log(step, {"my/kl": 0.5 if jump is not None and step >= jump else 0.01,
                             "loss": 1.0})
    (tmp_path / "map.json").write_text(json.dumps({"kl_to_ref": ["my/kl"]}))
    yield tmp_path
    semantics.use_metric_map(None)                  # the option sets the process-wide table


def test_metric_map_makes_a_custom_name_the_kl(my_kl_store):
    store, mapping = my_kl_store / "s", my_kl_store / "map.json"
    without = CliRunner().invoke(main, ["diff", str(store), "--signals", "kl", "--format", "json"])
    assert without.exit_code != 0 and "my/kl" not in without.stdout
    result = CliRunner().invoke(main, ["--metric-map", str(mapping), "diff", str(store),
                                       "--signals", "kl", "--format", "json"])
    assert result.exit_code == EXIT_PROBLEMS, result.output
    assert json.loads(result.stdout)["details"]["comparisons"][0]["step"] == 20
    assert semantics.resolve_name("kl_to_ref", ["my/kl", "loss"]) == "my/kl"
    kl = open_store(store).run("b").metric("kl_to_ref")
    assert kl["value"].to_list()[19:21] == [0.01, 0.5]


def test_metric_map_after_the_command_name(tmp_path):
    """``rldk analyze runs/ --metric-map map.json``: where a user types it, after the command."""
    with EventWriter(tmp_path / "s", "b", capture_env=False) as w:
        for step in range(40):
            w.log(step, {"my/kl": (0.01 if step < 20 else 5.0) * (1 + 0.1 * (step % 3)), "loss": 1.0})
    (tmp_path / "map.json").write_text(json.dumps({"kl_to_ref": ["my/kl"]}))
    args = ["analyze", str(tmp_path / "s"), "--no-plots", "--format", "json", "--out-dir", str(tmp_path / "o")]
    try:
        without = CliRunner().invoke(main, args)
        assert without.exit_code == 0 and json.loads(without.stdout)["findings"] == [], without.output
        result = CliRunner().invoke(main, [*args, "--metric-map", str(tmp_path / "map.json")])
        assert result.exit_code == EXIT_PROBLEMS, result.output
        found = [(f["code"], f["metric"], f["steps"]) for f in json.loads(result.stdout)["findings"]]
        assert found == [("kl_blowup", "my/kl", [20, 39])]
    finally:
        semantics.use_metric_map(None)


def test_metric_map_from_the_environment(my_kl_store):
    result = CliRunner().invoke(main, ["diff", str(my_kl_store / "s"), "--signals", "kl_to_ref",
                                       "--format", "json"],
                                env={"RLDK_METRIC_MAP": str(my_kl_store / "map.json")})
    assert result.exit_code == EXIT_PROBLEMS, result.output


def test_a_bad_metric_map_is_a_usage_error(tmp_path):
    bad = tmp_path / "map.json"
    bad.write_text('{"kl_to_ref": "my/kl"}')
    result = CliRunner().invoke(main, ["--metric-map", str(bad), "runs", str(tmp_path)])
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.splitlines()[-1] == (
        f"Error: Invalid value for '--metric-map': {bad}: a metric map is a JSON object of lists "
        'of names, e.g. {"kl_to_ref": ["my/kl"]}')


def test_console_script_keeps_output_and_exit_codes(tmp_path):
    """``rldk`` (``rldk.cli.run``) ends its process without the interpreter's teardown:
    what it prints and its exit codes are main's."""
    import subprocess
    import sys

    def rldk(*args):
        return subprocess.run([sys.executable, "-m", "rldk.cli", *args], capture_output=True, text=True)

    version = rldk("--version")
    assert version.returncode == 0 and version.stdout.startswith("rldk, version")
    missing = tmp_path / "missing"
    failed = rldk("analyze", str(missing))
    assert failed.returncode == 1 and failed.stderr == f"Error: {missing}: no such file or directory\n"
    assert rldk("analyze", "--bogus").returncode == EXIT_USAGE
