"""PNG plots for report cards (matplotlib, imported lazily, headless Agg backend).

Each function takes JSON-ready data (the same lists that go into a card's JSON),
writes one PNG and returns its path. matplotlib is an optional extra
(``pip install rldk[plots]``); without it :class:`MissingPlotting` says so and
the cards are written without pictures.
"""
from __future__ import annotations

from pathlib import Path

from rldk.core.errors import RldkError

_DPI = 110
_SIZE = (8.0, 3.6)


class MissingPlotting(RldkError):
    """matplotlib is not installed."""


def pyplot():
    """matplotlib.pyplot on the headless Agg backend; MissingPlotting without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        raise MissingPlotting("plots need matplotlib: pip install 'rldk[plots]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _nan(values):
    return [float("nan") if v is None else v for v in values]


def _save(fig, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return str(path)


def divergence_plot(curve: dict, path, title: str, labels=("A", "B"), step=None) -> str:
    """Both runs' curves, the noise band around A (when present) and the divergence step.

    curve: ``{"steps": [...], "a": [...], "b": [...], "band_low"?: [...], "band_high"?: [...]}``.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=_SIZE)
    steps = curve["steps"]
    if "band_low" in curve:
        ax.fill_between(steps, _nan(curve["band_low"]), _nan(curve["band_high"]), color="tab:blue",
                        alpha=0.15, linewidth=0, label="noise band (A)")
    ax.plot(steps, _nan(curve["a"]), color="tab:blue", linewidth=1.2, label=str(labels[0]))
    ax.plot(steps, _nan(curve["b"]), color="tab:orange", linewidth=1.2, label=str(labels[1]))
    if step is not None:
        ax.axvline(step, color="tab:red", linestyle="--", linewidth=1.0, label=f"divergence: step {step}")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def metric_plot(steps, values, path, title: str, marks=(), hline=None) -> str:
    """One metric's curve with marked steps (``marks``: ``[(step, label), ...]``) and an
    optional horizontal reference line (``hline``: ``(value, label)``)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=_SIZE)
    ax.plot(steps, _nan(values), color="tab:blue", linewidth=1.2)
    for i, (step, label) in enumerate(marks):
        ax.axvline(step, color="tab:red", linestyle="--", linewidth=0.9,
                   label=label if i < 5 else None)
    if hline is not None:
        ax.axhline(hline[0], color="grey", linestyle=":", linewidth=1.0, label=hline[1])
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    if marks or hline is not None:
        ax.legend(fontsize=8, loc="best")
    return _save(fig, path)
