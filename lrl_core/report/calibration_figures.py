"""Calibration figures: decile plots and best-linear-predictor slopes with their intervals."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lrl_core.report.plotting import PALETTE, _diagonal, _grid, _message, _message_figure, _styled


@_styled
def calibration_plot(
    tables: Mapping[str, pd.DataFrame],
    title: str = "Calibration by decile of predicted CATE",
    unit: str = "metric units",
) -> Figure:
    """Small multiples, one per table of :func:`lrl_core.report.calibration.decile_calibration`.

    Each panel: observed treated-minus-control difference per bin (points,
    95% interval bars) against the bin's mean predicted CATE, with the 45
    degree line a calibrated model follows.
    """
    if not tables:
        return _message_figure(title, "No held-out units to calibrate on")
    fig, axes = _grid(len(tables), max_cols=3, panel=(4.0, 3.5))
    for ax, (name, table) in zip(axes, tables.items()):
        ok = table["observed_diff"].notna()
        if not ok.any():
            _message(ax, f"{name}:\nnot enough treated and control units per bin")
            continue
        t = table[ok]
        err = np.vstack([t["observed_diff"] - t["ci_low"], t["ci_high"] - t["observed_diff"]])
        ax.errorbar(t["mean_pred"], t["observed_diff"], yerr=np.nan_to_num(err), fmt="o", ms=4,
                    color=PALETTE[0], ecolor="#9ecae1", capsize=2, label="decile (95% CI)")
        _diagonal(ax, t["mean_pred"], t["observed_diff"])
        ax.axhline(0.0, color="#bbbbbb", lw=0.8, zorder=0)
        ax.set_title(name)
        ax.set_xlabel(f"mean predicted CATE ({unit})")
        ax.set_ylabel(f"observed difference ({unit})")
    # The first panel may be a message (too few units in a bin): put the legend on the first with points.
    drawn = next((ax for ax in axes if ax.get_legend_handles_labels()[0]), None)
    if drawn is not None:
        drawn.legend(fontsize=8, loc="upper left")
    fig.suptitle(title)
    return fig


@_styled
def calibration_slopes_plot(
    slopes: pd.DataFrame,
    title: str = "Calibration slope (best linear predictor) per experiment and metric",
    limits: tuple[float, float] = (-1.0, 3.0),
) -> Figure:
    """Dot plot of BLP calibration slopes with 95% intervals, one row per experiment arm, metrics by colour.

    ``slopes``: :func:`lrl_core.report.calibration.calibration_slopes`
    output; rows are labelled by its ``experiment_id`` and ``arm`` columns
    (those present). Reference lines at 0 (no signal) and 1 (calibrated). Points
    beyond ``limits`` are drawn as open triangles at the edge so a noisy arm
    does not squash the rest.
    """
    slopes = slopes[slopes["slope"].notna()] if not slopes.empty else slopes
    if slopes.empty:
        return _message_figure(title, "No calibration slopes could be estimated")
    keys = [c for c in ("experiment_id", "arm") if c in slopes]
    row_label = slopes[keys].astype(str).agg(" / ".join, axis=1).to_numpy()
    rows = list(dict.fromkeys(row_label))
    metrics = list(dict.fromkeys(slopes["metric"]))
    row_of = {r: i for i, r in enumerate(rows)}
    fig = Figure(figsize=(9.0, float(np.clip(0.3 * len(rows) + 1.6, 3.0, 40.0))), layout="constrained")
    ax = fig.subplots()
    lo, hi = limits
    offsets = (np.arange(len(metrics)) - (len(metrics) - 1) / 2) * min(0.8 / max(len(metrics), 1), 0.15)
    for m, metric in enumerate(metrics):
        mine = (slopes["metric"] == metric).to_numpy()
        part = slopes[mine]
        y = np.array([row_of[label] for label in row_label[mine]]) + offsets[m]
        s = part["slope"].to_numpy()
        half = 1.959963984540054 * np.nan_to_num(part["slope_se"].to_numpy())
        inside = (s >= lo) & (s <= hi)
        colour = PALETTE[m % len(PALETTE)]
        ax.hlines(y[inside], np.clip(s - half, lo, hi)[inside], np.clip(s + half, lo, hi)[inside],
                  color=colour, lw=1, alpha=0.6)
        ax.plot(s[inside], y[inside], "o", color=colour, ms=4, label=metric)
        ax.plot(np.clip(s[~inside], lo, hi), y[~inside], ">" , mfc="none", color=colour, ms=6)
    ax.axvline(0.0, color="#888888", ls=":", lw=1)
    ax.axvline(1.0, color="#2ca02c", ls="--", lw=1)
    ax.set_xlim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    ax.set_yticks(np.arange(len(rows)), rows, fontsize=float(np.clip(300 / max(len(rows), 1), 7, 9)))
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first row on top, no empty margin rows
    ax.set_xlabel("calibration slope (1 = calibrated, 0 = no signal; 95% CI)")
    ax.set_ylabel(" / ".join(k.replace("_id", "") for k in keys))
    fig.legend(*ax.get_legend_handles_labels(), title="metric", loc="outside right upper")
    fig.suptitle(title)
    return fig
