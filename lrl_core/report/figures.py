"""The report figures: one function per figure, each returning a matplotlib ``Figure``.

This module holds the training and data-quality figures and is the one place
every figure can be imported from; the others live by topic in
:mod:`.risk_figures`, :mod:`.low_rank_figures`, :mod:`.calibration_figures`
and :mod:`.cate_figures`, and style and PNG/markdown export in :mod:`.plotting`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from lrl_core.report.calibration_figures import calibration_plot, calibration_slopes_plot
from lrl_core.report.cate_figures import cate_agreement, cate_histograms, se_vs_cate
from lrl_core.report.low_rank_figures import clustered_heatmap, correlation_heatmap, singular_values_plot
from lrl_core.report.plotting import (
    PALETTE,
    _message,
    _message_figure,
    _styled,
    figure_title,
    figure_to_markdown,
    figure_to_png,
)
from lrl_core.report.risk_figures import risk_bars

__all__ = [
    "figure_to_png",
    "figure_to_markdown",
    "figure_title",
    "risk_bars",
    "singular_values_plot",
    "clustered_heatmap",
    "correlation_heatmap",
    "calibration_plot",
    "calibration_slopes_plot",
    "training_curves",
    "quarantine_bars",
    "cate_histograms",
    "se_vs_cate",
    "cate_agreement",
]


@_styled
def training_curves(history: Sequence[Mapping], best_epoch: int | None = None,
                    title: str = "Training curves") -> Figure:
    """Train and validation loss per epoch, with the epoch early stopping kept marked.

    ``history``: one dict per epoch with ``epoch, train_loss, val_loss``
    (optionally ``seconds``), as ``LRLearner.history_``. A log scale is used
    when the losses span more than a factor of 20.
    """
    if not history:
        return _message_figure(title, "No training history recorded for this model")
    h = pd.DataFrame(list(history))
    fig = Figure(figsize=(8.0, 4.2), layout="constrained")
    ax = fig.subplots()
    for column, label, colour in (("train_loss", "train", PALETTE[0]), ("val_loss", "validation", PALETTE[1])):
        if column in h and h[column].notna().any():
            ax.plot(h["epoch"], h[column], "-", marker="." if len(h) < 60 else None, color=colour, label=label)
    losses = h[[c for c in ("train_loss", "val_loss") if c in h]].to_numpy(dtype=np.float64)
    positive = losses[np.isfinite(losses) & (losses > 0)]
    if positive.size and positive.max() / positive.min() > 20:
        ax.set_yscale("log")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="#2ca02c", ls="--", lw=1.2, label=f"kept epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (mean squared error, standardised metrics)")
    ax.legend()
    if "seconds" in h and h["seconds"].notna().any():
        title = f"{title} ({len(h)} epochs, {float(h['seconds'].sum()):.1f} s)"
    fig.suptitle(title)
    return fig


@_styled
def quarantine_bars(quarantine: pd.DataFrame, rows_in: Mapping[str, int] | None = None,
                    title: str = "Data quality: rows in and rows quarantined") -> Figure:
    """Rows read per raw table (left) and rows quarantined by table and reason (right).

    ``quarantine``: summary with columns ``table, reason, rows``. With no
    quarantined rows the right panel says so.
    """
    has_in = bool(rows_in)
    fig = Figure(figsize=(11.0 if has_in else 7.0, 3.6), layout="constrained")
    axes = fig.subplots(1, 2 if has_in else 1, squeeze=False).reshape(-1)
    if has_in:
        ax = axes[0]
        names = list(rows_in)
        counts = [rows_in[n] for n in names]
        ax.barh(names, counts, color=PALETTE[0])
        ax.invert_yaxis()
        # Counts as labels: a 19-row registry beside 200,000 outcomes would be an invisible bar.
        for y, value in enumerate(counts):
            ax.text(value, y, f" {int(value):,}", va="center", fontsize=9)
        ax.margins(x=0.18)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_xlabel("rows read")
        ax.set_title("Rows in per raw table")
    ax = axes[-1]
    q = quarantine[quarantine["rows"] > 0] if not quarantine.empty else quarantine
    if q.empty:
        _message(ax, "No rows quarantined: every input row passed validation")
        ax.set_title("Rows quarantined by reason")
    else:
        q = q.sort_values("rows", ascending=True)
        labels = [f"{t}: {r}" for t, r in zip(q["table"], q["reason"])]
        ax.barh(labels, q["rows"], color=PALETTE[3])
        for y, value in enumerate(q["rows"]):
            ax.text(value, y, f" {int(value):,}", va="center", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("rows quarantined")
        ax.set_title("Rows quarantined by table and reason")
    fig.suptitle(title)
    return fig
