"""Tab-separated tables: Spinning Up's ``progress.txt`` imports and resolves like a CSV log."""
from __future__ import annotations

import pytest

from rldk import semantics
from rldk.converters import ConvertError, convert_path, csvlog, detect_format
from rldk.core.store import open_store

#: the columns of Spinning Up's PPO logger (``EpochLogger.log_tabular`` with min and max)
HEADER = ["Epoch", "AverageEpRet", "StdEpRet", "MaxEpRet", "MinEpRet", "EpLen", "AverageVVals", "StdVVals",
          "MaxVVals", "MinVVals", "TotalEnvInteracts", "LossPi", "LossV", "DeltaLossPi", "DeltaLossV",
          "Entropy", "KL", "ClipFrac", "StopIter", "Time"]


def progress_txt(path, epochs: int = 5):
    """A progress.txt as Spinning Up's logger writes it: tab-joined, ``str`` of each value."""
    lines = ["\t".join(HEADER)]
    for e in range(epochs):
        row = [e, -150.0 + 20 * e, 30.5, -80.25, -210.0, 95.0 + e, 1.5, 0.3, 2.0, 0.1, 4000 * (e + 1),
               -0.012, 310.7 - e, -0.004, -20.5, 1.41 - 0.05 * e, 0.0061, 0.07, 79, 12.3 * (e + 1)]
        lines.append("\t".join(map(str, row)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_progress_txt_imports_with_its_env_steps_as_steps(tmp_path):
    src = progress_txt(tmp_path / "ppo_s0" / "progress.txt")
    assert detect_format(src) == "csv" and detect_format(src.parent) == "csv"
    summary = convert_path(src, None, tmp_path / "store")
    assert summary.rows == 5 * (len(HEADER) - 1)
    store = open_store(tmp_path / "store")
    rows = store.sql("SELECT step, value FROM metrics WHERE name = 'AverageEpRet' ORDER BY step").rows()
    assert rows == [(4000, -150.0), (8000, -130.0), (12000, -110.0), (16000, -90.0), (20000, -70.0)]


def test_spinning_up_names_resolve_to_their_quantities():
    want = {"AverageEpRet": "episode_return", "EpLen": "episode_length", "Entropy": "entropy",
            "KL": "ppo_approx_kl", "ClipFrac": "clip_ratio", "LossPi": "loss", "LossV": "value_loss",
            "LossQ": "value_loss", "AverageReturn": "episode_return"}
    assert {name: semantics.canonical(name) for name in want} == want
    assert semantics.canonical("kl") == "kl_to_ref"        # case matters: TRL's kl is another quantity


def test_a_txt_file_that_is_not_a_tab_table_is_not_a_log(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("a, b\tc\n1, 2\t3\n", encoding="utf-8")        # a comma on its first line
    (tmp_path / "readme.txt").write_text("just words\n", encoding="utf-8")
    assert not csvlog.detect(notes) and not csvlog.detect(tmp_path)
    with pytest.raises(ConvertError, match="no CSV file"):
        csvlog.read(tmp_path)


def test_a_ragged_tab_row_is_skipped_and_named(tmp_path):
    src = progress_txt(tmp_path / "progress.txt", epochs=3)
    with open(src, "a", encoding="utf-8") as fh:
        fh.write("3\t-90.0\n")                                      # a row cut short by a crash
    summary = convert_path(src, "csv", tmp_path / "store")
    assert [(s.where, s.reason) for s in summary.skipped] == [
        ("line 5", f"row has 2 cells, the header has {len(HEADER)}; row skipped")]
