"""What every report figure shares: the style, the palette, layout helpers and PNG/markdown export.

Figures are built with the object-oriented API (``matplotlib.figure.Figure``
on the Agg canvas), never through ``pyplot``: no display is needed, nothing
is kept in pyplot's global figure registry (a long-running Dagster process
does not leak figures), and the process-wide backend is left alone. Every
figure has a title, labelled axes with units, and shows a short message
rather than an empty frame when it has nothing to plot.
"""
from __future__ import annotations

import base64
import functools
import io

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "figure.titlesize": 13,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "figure.facecolor": "white",
}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
RISK_NAMES = {"mu_risk": "μ-risk", "tau_risk": "τ-risk", "pehe": "PEHE"}
MAX_SCATTER_POINTS = 4000
"""Scatter plots draw a seeded subsample beyond this: more points only add ink."""


def _styled(make):
    """Build the figure under the report style without touching global rcParams."""

    @functools.wraps(make)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return make(*args, **kwargs)

    return wrapper


def _grid(n_panels: int, max_cols: int = 3, panel=(4.2, 3.4)):
    """A constrained-layout figure with ``n_panels`` axes in rows of at most ``max_cols``; spare axes hidden."""
    n_cols = max(1, min(n_panels, max_cols))
    n_rows = max(1, -(-n_panels // n_cols))
    fig = Figure(figsize=(panel[0] * n_cols, panel[1] * n_rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(n_rows, n_cols, squeeze=False)).reshape(-1)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _message(ax, text: str) -> None:
    """Fill an axes with a centred message (a figure that has nothing to plot still says so)."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, color="#555555",
            transform=ax.transAxes, wrap=True)


def _message_figure(title: str, text: str, size=(7.0, 2.6)) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.subplots()
    _message(ax, text)
    fig.suptitle(title)
    return fig


def _subsample(frame: pd.DataFrame, limit: int = MAX_SCATTER_POINTS, seed: int = 0) -> pd.DataFrame:
    return frame if len(frame) <= limit else frame.sample(limit, random_state=seed)


def _diagonal(ax, *values) -> None:
    """Dashed 45 degree line across the joint range of the given arrays."""
    finite = np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in values])
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return
    lo, hi = finite.min(), finite.max()
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", color="#888888", lw=1, label="y = x", zorder=0)


def figure_to_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of ``fig`` on a white background (the figures use constrained layout, so no tight bbox pass)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def figure_title(fig: Figure) -> str:
    """The figure's suptitle, else its first axes title, else ``'figure'``."""
    if fig.get_suptitle():
        return fig.get_suptitle()
    for ax in fig.axes:
        if ax.get_title():
            return ax.get_title()
    return "figure"


def figure_to_markdown(fig: Figure, title: str | None = None, dpi: int = 80) -> str:
    """``![title](data:image/png;base64,...)``: the figure inline, for Dagster markdown metadata.

    ``title`` defaults to the figure's suptitle (or its first axes title);
    ``dpi`` is lower than the HTML report's to keep the metadata small.
    """
    title = (title or figure_title(fig)).replace("[", "(").replace("]", ")").replace("\n", " ")
    encoded = base64.b64encode(figure_to_png(fig, dpi=dpi)).decode("ascii")
    return f"![{title}](data:image/png;base64,{encoded})"
