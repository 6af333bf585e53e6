"""The safety card's PNG: the refusal-rate curve by step (matplotlib imported on use)."""
from __future__ import annotations

from pathlib import Path

from rldk.core.naming import safe_file_stem


def plots(result, out_dir) -> dict:
    """The refusal-curve PNGs of a SafetyResult ({caption: path}); MissingPlotting without matplotlib."""
    return {f"refusal rate by step ({r.run_id})":
            plot_curve(r, Path(out_dir) / f"safety_refusal_{safe_file_stem(r.run_id)}.png")
            for r in result.runs if r.curve}


def plot_curve(result, path: Path) -> str:
    """Refusal rate per step of a RunSafety with its Wilson band and the change point."""
    from rldk.core.plots import pyplot

    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = [r["step"] for r in result.curve]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [r["rate"] for r in result.curve], "o-", ms=3, label="refusal rate")
    ax.fill_between(steps, [r["lower"] for r in result.curve], [r["upper"] for r in result.curve],
                    alpha=0.2, label="Wilson 95%")
    if result.change and result.change["significant"]:
        ax.axvline(result.change["step"], color="red", ls="--", lw=1, label="change point")
    ax.set_xlabel("step")
    ax.set_ylabel("refusal rate")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
