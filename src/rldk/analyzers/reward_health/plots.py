"""The reward-health card's PNGs: reliability diagrams and reward / length-correlation by window.

matplotlib is optional (``rldk[plots]``): it is imported on use, and without it
``rldk.core.plots.MissingPlotting`` is raised.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rldk.core.naming import safe_file_stem


def plots(result, out_dir) -> dict:
    """The card's PNGs of a :class:`RewardHealth` ({caption: path})."""
    out = {}
    for run_id, cal in result.calibration.items():
        out[f"reliability diagram ({run_id})"] = cal.get("plot") or plot_reliability(
            cal, Path(out_dir) / f"reliability-{safe_file_stem(run_id)}.png", run_id)
    if result.windows:
        out["reward and length-reward correlation by window"] = plot_windows(
            result, Path(out_dir) / "reward_health_windows.png")
    return out


def plot_label(text: str) -> str:
    """``text`` shown literally by matplotlib (no mathtext from log contents)."""
    return str(text).replace("$", r"\$")


def plot_windows(result, path: Path) -> str:
    """Per-window mean reward and Spearman(length, reward), one line per run."""
    from rldk.core.plots import pyplot

    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    for run_id in result.run_ids:
        ws = [w for w in result.windows if w["run_id"] == run_id]
        x = [(w["first_step"] + w["last_step"]) / 2 for w in ws]
        label = plot_label(run_id)
        top.plot(x, [np.nan if w["reward_mean"] is None else w["reward_mean"] for w in ws], "o-", label=label)
        bottom.plot(x, [np.nan if w["length_rho"] is None else w["length_rho"] for w in ws], "o-", label=label)
    bottom.axhline(result.params.length_rho, ls="--", color="red", lw=1, label="alarm threshold")
    top.set_ylabel("mean reward")
    bottom.set_ylabel("Spearman(length, reward)")
    bottom.set_xlabel("step (window centre)")
    top.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def plot_reliability(cal: dict, path: Path, title: str) -> str:
    """Reliability diagram PNG: observed preference rate per confidence bin."""
    from rldk.core.plots import pyplot

    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot([b["confidence"] for b in cal["bins"]], [b["accuracy"] for b in cal["bins"]], "o-",
            label=f"reward model (ECE {cal['ece']:.3f})")
    ax.set_xlabel("sigmoid(reward margin)")
    ax.set_ylabel("observed preference rate")
    ax.set_title(plot_label(f"reliability: {title}"[:60]))
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
