"""Figures of one new experiment's per-unit CATEs: histograms, standard errors, agreement with a T-learner."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lrl_core.report.plotting import PALETTE, _diagonal, _grid, _message, _message_figure, _subsample, _styled


@_styled
def cate_histograms(cates: pd.DataFrame, title: str = "Distribution of estimated CATEs",
                    unit: str = "metric units") -> Figure:
    """Histogram of CATEs per (arm, metric): one row of panels per arm, one column per metric.

    ``cates``: long table with ``arm, metric, cate``. The solid line marks
    the mean (the average effect), the dotted one zero.
    """
    if cates.empty:
        return _message_figure(title, "No CATEs to show")
    arms = list(dict.fromkeys(cates["arm"]))
    metrics = list(dict.fromkeys(cates["metric"]))
    fig = Figure(figsize=(3.6 * len(metrics) + 0.4, 2.8 * len(arms) + 0.6), layout="constrained")
    axes = fig.subplots(len(arms), len(metrics), squeeze=False)
    groups = dict(tuple(cates.groupby(["arm", "metric"], sort=False)))
    for r, arm in enumerate(arms):
        for c, metric in enumerate(metrics):
            ax = axes[r, c]
            values = groups[(arm, metric)]["cate"].to_numpy(dtype=np.float64) if (arm, metric) in groups else []
            values = np.asarray(values)[np.isfinite(values)]
            if values.size == 0:
                _message(ax, f"{arm} / {metric}: no CATEs")
                continue
            ax.hist(values, bins=40, color=PALETTE[c % len(PALETTE)], alpha=0.85)
            ax.axvline(values.mean(), color="black", lw=1.2, label=f"mean {values.mean():.3g}")
            ax.axvline(0.0, color="#888888", ls=":", lw=1)
            ax.set_title(f"{arm} / {metric}")
            ax.set_xlabel(f"CATE ({unit})")
            ax.set_ylabel("units")
            ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


@_styled
def se_vs_cate(cates: pd.DataFrame, title: str = "Standard error against estimated CATE",
               unit: str = "metric units") -> Figure:
    """Scatter of each unit's CATE standard error against its CATE, one panel per metric, arms by colour.

    ``cates``: long table with ``arm, metric, cate, cate_se``. Points
    outside the grey cone ``|CATE| = 1.96 SE`` are individually significant
    at the 5% level.
    """
    if cates.empty or "cate_se" not in cates or cates["cate_se"].notna().sum() == 0:
        return _message_figure(title, "No standard errors available")
    data = cates[np.isfinite(cates["cate"]) & np.isfinite(cates["cate_se"])]
    metrics = list(dict.fromkeys(data["metric"]))
    arms = list(dict.fromkeys(data["arm"]))
    fig, axes = _grid(len(metrics), max_cols=3, panel=(4.2, 3.4))
    for ax, metric in zip(axes, metrics):
        part = data[data["metric"] == metric]
        for a, arm in enumerate(arms):
            sub = _subsample(part[part["arm"] == arm])
            ax.scatter(sub["cate"], sub["cate_se"], s=6, alpha=0.5, color=PALETTE[a % len(PALETTE)], label=arm)
        se_max = float(part["cate_se"].max())
        cone = np.linspace(0.0, se_max * 1.05, 2)
        ax.fill_betweenx(cone, -1.96 * cone, 1.96 * cone, color="#dddddd", alpha=0.6, lw=0, zorder=0,
                         label="|CATE| < 1.96 SE")
        ax.set_title(metric)
        ax.set_xlabel(f"CATE ({unit})")
        ax.set_ylabel(f"standard error ({unit})")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), markerscale=2)
    fig.suptitle(title)
    return fig


@_styled
def cate_agreement(cates: pd.DataFrame, other: str = "tlearner_cate",
                   title: str = "Head CATE against an independent T-learner", unit: str = "metric units") -> Figure:
    """Per-unit CATE of the head (``cate``) against another estimator's (``other`` column), one panel per metric.

    Panel titles carry the correlation; the dashed line is agreement.
    """
    if cates.empty or other not in cates or cates[other].notna().sum() == 0:
        return _message_figure(title, "No T-learner CATEs to compare with")
    data = cates[np.isfinite(cates["cate"]) & np.isfinite(cates[other])]
    metrics = list(dict.fromkeys(data["metric"]))
    arms = list(dict.fromkeys(data["arm"]))
    fig, axes = _grid(len(metrics), max_cols=3, panel=(4.0, 3.6))
    for ax, metric in zip(axes, metrics):
        part = data[data["metric"] == metric]
        for a, arm in enumerate(arms):
            sub = _subsample(part[part["arm"] == arm])
            ax.scatter(sub[other], sub["cate"], s=6, alpha=0.5, color=PALETTE[a % len(PALETTE)], label=arm)
        _diagonal(ax, part[other], part["cate"])
        corr = np.corrcoef(part[other], part["cate"])[0, 1] if len(part) > 1 else np.nan
        ax.set_title(f"{metric} (correlation {corr:.2f})")
        ax.set_xlabel(f"T-learner CATE ({unit})")
        ax.set_ylabel(f"head CATE ({unit})")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), markerscale=2)
    fig.suptitle(title)
    return fig
