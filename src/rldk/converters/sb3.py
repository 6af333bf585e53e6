"""Stable-Baselines3 logs: ``progress.csv`` (the CSV logger) and ``monitor.csv`` (Monitor wrapper).

- ``progress.csv``: one row per ``logger.dump``; columns ``rollout/ep_rew_mean``,
  ``train/entropy_loss``, ``time/total_timesteps``... The step is
  ``time/total_timesteps`` (the x-axis SB3 itself uses for TensorBoard). SB3
  rewrites the whole file with a wider header when new keys appear, leaving older
  rows' new cells empty: empty cells are missing values, not zeros (the first
  row's ``train/*`` cells are empty because no update has run yet).
- ``monitor.csv``: a ``#{"t_start": ..., "env_id": ...}`` line, then ``r,l,t`` per
  finished episode. Stored as metrics ``episode/reward`` and ``episode/length`` at
  step = the cumulative environment steps at the end of the episode, wall time =
  ``t_start + t``; with them, at each episode's end, the means SB3's logger reports
  over its last 100 episodes, ``rollout/ep_rew_mean`` and ``rollout/ep_len_mean``
  (derived, and said so in the run's import event).

How the run ended is "unknown" (neither file holds the planned ``total_timesteps``);
its seconds are the last ``time/time_elapsed`` of progress.csv, the last episode's
``t`` of monitor.csv.
"""
from __future__ import annotations

import json
from pathlib import Path

from rldk.converters import csvlog
from rldk.converters.base import (
    ConvertError,
    RunData,
    Skip,
    facts,
    metric_table,
    relative_key,
    write_runs,
)
from rldk.converters.jsonl import check_rows

NAME = "sb3"
_SB3_PREFIXES = ("time/", "rollout/", "train/", "eval/")
ELAPSED = "time/time_elapsed"
_UNPLANNED = "SB3 logs do not record the planned total_timesteps"


def detect(path) -> bool:
    """True for an SB3 progress.csv / monitor.csv, or a directory with one (2 levels down)."""
    return bool(files(path, limit=1))


def files(path, limit: int | None = None) -> list[Path]:
    path = Path(path)
    found = [path] if path.is_file() else sorted(
        p for pattern in ("progress.csv", "*monitor.csv", "*/progress.csv", "*/*monitor.csv",
                          "*/*/progress.csv", "*/*/*monitor.csv") for p in path.glob(pattern))
    out = [p for p in dict.fromkeys(found) if _kind(p)]
    return out[:limit] if limit else out


def _kind(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            first = f.readline(65536).decode("utf-8", errors="replace").strip()
    except OSError:
        return None
    # SB3 writes '#{"t_start": ...}'; OpenAI Baselines' Monitor '# {"t_start": ...} '
    if path.name.endswith("monitor.csv") and first.startswith("#") and first[1:].lstrip().startswith("{"):
        return "monitor"
    if path.name == "progress.csv" and any(c.startswith(_SB3_PREFIXES) for c in first.split(",")):
        return "progress"
    return None


def read(path, **_options) -> list[RunData]:
    path = Path(path)
    targets = files(path)
    if not targets:
        raise ConvertError(f"{path}: no Stable-Baselines3 progress.csv or monitor.csv found")
    base = path if path.is_dir() else path.parent
    runs = []
    for f in targets:
        if _kind(f) == "progress":
            run = csvlog.read_file(f, {})
            run.tables = _with_elapsed(run.tables, run)
        else:
            run = _read_monitor(f)
        run.key = relative_key(f.parent, base) if f.name == "progress.csv" else relative_key(f, base)
        run.key = run.key.removesuffix(".csv") if run.key.endswith(".csv") else run.key
        runs.append(run)
    return runs


def _with_elapsed(tables, run: RunData):
    """``tables`` as they stream by; once read, the run's meta holds its facts with the
    last ``time/time_elapsed`` as its seconds."""
    import pyarrow.compute as pc

    elapsed = None
    for table in tables:
        yield table
        values = table.filter(pc.equal(table.column("name"), ELAPSED)).column("value").drop_null()
        if len(values):
            elapsed = values[-1].as_py()
    run.meta.update(facts("unknown", f"progress.csv: {_UNPLANNED}", elapsed))


def _read_monitor(file: Path) -> RunData:
    lines = csvlog.csv_lines(file)
    with open(file, "rb") as f:
        header_json = f.readline().decode("utf-8", errors="replace")[1:]
    try:
        info = json.loads(header_json)
    except ValueError:
        raise ConvertError(f"{file}:line 1: the '#{{...}}' header is not valid JSON") from None
    t_start = float(info.get("t_start", 0.0))
    steps, names, values, walls, skipped, header, total, last_t = [], [], [], [], [], None, 0, None
    for lineno, cells in lines:
        if cells[0].startswith("#"):
            continue
        if header is None:
            header = cells
            continue
        row = dict(zip(header, cells))
        try:
            reward, length, t = float(row["r"]), int(float(row["l"])), float(row["t"])
        except (KeyError, ValueError):
            skipped.append(Skip(str(file), f"line {lineno}", f"not an r,l,t episode row: {cells[:3]}"))
            continue
        total += length
        last_t = t
        for name, value in (("episode/reward", reward), ("episode/length", float(length))):
            steps.append(total), names.append(name), values.append(value), walls.append(t_start + t)
    check_rows(file, len(steps), skipped)
    tables = [metric_table(steps, names, values, walls)]
    if steps:       # each episode appended its reward, then its length
        tables.append(_episode_means(steps[::2], values[::2], values[1::2], walls[::2]))
    return RunData(key=file.stem, source=str(file), tables=tables, skipped=skipped,
                   meta={"monitor": info, "derived": _DERIVED,
                         **facts("unknown", f"monitor.csv: {_UNPLANNED}", last_t)})


#: What SB3's logger reports from the same episodes: the mean over its episode buffer
#: (the last EPISODE_WINDOW episodes) as ``rollout/ep_rew_mean`` / ``rollout/ep_len_mean``.
EPISODE_WINDOW = 100
_DERIVED = {"rollout/ep_rew_mean": f"mean of episode/reward over the last {EPISODE_WINDOW} episodes",
            "rollout/ep_len_mean": f"mean of episode/length over the last {EPISODE_WINDOW} episodes"}


def _episode_means(steps: list, rewards: list, lengths: list, walls: list):
    """The trailing means SB3's logger would report, at each episode's end: the numbers
    an SB3 user reads (a single episode's return is too noisy to judge a run by)."""
    import numpy as np

    n = len(steps)
    count = np.minimum(np.arange(1, n + 1), EPISODE_WINDOW)
    out = []
    for episodes in (rewards, lengths):
        total = np.cumsum(np.r_[0.0, np.asarray(episodes, float)])
        out.append((total[1:] - total[np.arange(1, n + 1) - count]) / count)
    names = ["rollout/ep_rew_mean"] * n + ["rollout/ep_len_mean"] * n
    return metric_table(steps * 2, names, np.concatenate(out).tolist(), walls * 2)


def convert(path, target, run_id=None, strict: bool = False, **options):
    """Convert SB3 logs at ``path`` into ``target`` (store directory or EventWriter)."""
    return write_runs(read(path, **options), target, run_id, NAME, source=str(path), strict=strict)
