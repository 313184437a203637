"""Figures of the low-rank evidence: singular values and clustered similarity heatmaps (Figures 2-3)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from lrl_core.report.plotting import PALETTE, _grid, _message, _message_figure, _styled


@_styled
def singular_values_plot(
    svals: Mapping[str, np.ndarray],
    ranks: Mapping[str, int | None] | None = None,
    title: str = "Singular values of the T-learner ITE matrix",
) -> Figure:
    """One panel per metric: singular values (log scale) by component, the BCV rank marked.

    ``svals``: metric -> ``(q,)`` decreasing singular values; ``ranks``:
    metric -> effective rank by bi-cross-validation (``None``: not
    estimated). The dashed line sits after the last retained component.
    """
    if not svals:
        return _message_figure(title, "No ITE matrices to decompose")
    ranks = ranks or {}
    fig, axes = _grid(len(svals), max_cols=3, panel=(4.0, 3.2))
    for i, (ax, (metric, s)) in enumerate(zip(axes, svals.items())):
        s = np.asarray(s, dtype=np.float64)
        positive = s > 0
        if not positive.any():
            _message(ax, f"{metric}: all singular values are zero")
            continue
        comp = np.arange(1, s.size + 1)
        ax.plot(comp[positive], s[positive], "o-", color=PALETTE[i % len(PALETTE)], ms=4)
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis, s[positive])
        rank = ranks.get(metric)
        if rank is not None:
            ax.axvline(rank + 0.5, ls="--", color="#d62728", lw=1.2)
            ax.text(rank + 0.5 + 0.03 * s.size, 0.5, f"BCV rank = {rank}", transform=ax.get_xaxis_transform(),
                    va="center", color="#d62728", fontsize=9)
        ax.set_title(metric)
        ax.set_xlabel("component")
        ax.set_ylabel("singular value (metric units)")
    fig.suptitle(title)
    return fig


def _plain_log_ticks(axis, values) -> None:
    """Label a log axis with plain numbers (20, not 2 x 10^1) at 1-2-5 steps, or at decades when it spans many."""
    span = np.log10(values.max() / values.min()) if values.size else 0.0
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if span <= 3 else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _cluster_order(S: np.ndarray) -> np.ndarray:
    """Leaf order of average-linkage clustering on the dissimilarity ``1 - S``."""
    if S.shape[0] < 3:
        return np.arange(S.shape[0])
    D = np.clip(1.0 - S, 0.0, None)
    D = (D + D.T) / 2.0
    np.fill_diagonal(D, 0.0)
    return leaves_list(linkage(squareform(D, checks=False), method="average"))


@_styled
def clustered_heatmap(
    S,
    labels: Sequence[str],
    title: str,
    colorbar_label: str = "correlation",
    vmin: float = -1.0,
    vmax: float = 1.0,
) -> Figure:
    """Heatmap of a symmetric similarity ``S (K, K)`` with rows and columns in hierarchical-clustering order.

    Average linkage on ``1 - S``; NaN entries (e.g. the correlation of a
    constant column) count as 0. ``labels (K,)`` name the rows; they shrink
    with ``K`` and are thinned beyond 80 rows so they stay readable.
    """
    S = np.nan_to_num(np.asarray(S, dtype=np.float64), nan=0.0)
    K = S.shape[0]
    if K == 0:
        return _message_figure(title, "Nothing to show")
    # At most as wide as the report page at 100 dpi, so labels are never scaled down in the browser.
    side = float(np.clip(0.14 * K + 3.0, 5.0, 9.8))
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.subplots()
    order = _cluster_order(S)
    image = ax.imshow(S[np.ix_(order, order)], cmap="RdBu_r", vmin=vmin, vmax=vmax, interpolation="nearest")
    step = max(1, -(-K // 80))
    ticks = np.arange(0, K, step)
    names = [str(labels[i]) for i in order[ticks]]
    # About 85% of the height per row; the axes take roughly all but 3.5 inches of the figure.
    fontsize = float(np.clip(0.85 * 72.0 * (side - 2.5) / (K / step), 4.5, 9))
    ax.set_xticks(ticks, names, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, names, fontsize=fontsize)
    ax.grid(False)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8, label=colorbar_label)
    return fig


@_styled
def correlation_heatmap(matrix, labels: Sequence[str], title: str) -> Figure:
    """Clustered heatmap of the column correlations of ``matrix (n, K)`` (e.g. CATEs: units x arms)."""
    M = np.asarray(matrix, dtype=np.float64)
    if M.ndim != 2 or M.shape[1] < 2 or M.shape[0] < 2:
        return _message_figure(title, "Fewer than two experiments or units: no correlation to show")
    with np.errstate(invalid="ignore", divide="ignore"):
        C = np.corrcoef(M, rowvar=False)
    return clustered_heatmap(C, labels, title, colorbar_label="correlation of estimated CATEs")
