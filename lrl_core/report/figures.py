"""The report figures: one function per figure, each returning a matplotlib ``Figure``.

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
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

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


# ----------------------------------------------------------------------------- export


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


# ----------------------------------------------------------------------------- risks


@_styled
def risk_bars(
    risks: pd.DataFrame,
    by: Sequence[str] = ("metric",),
    risks_to_plot: Sequence[str] = ("mu_risk", "tau_risk", "pehe"),
    title: str = "Held-out risk by model (lower is better)",
    unit: str = "risk (÷ metric variance)",
) -> Figure:
    """Grouped bars of the mean risk per group, models side by side, one panel per risk.

    ``risks``: long table with a ``model`` column, the ``by`` columns and
    risk columns (:func:`lrl_core.metrics.risk_table` rows stacked over
    models). Bars are means over the remaining rows (experiments and arms);
    error bars one standard error of that mean. Risks that are NaN
    throughout (PEHE without ground truth) get no panel.
    """
    present = [r for r in risks_to_plot if r in risks and risks[r].notna().any()]
    if risks.empty or not present:
        return _message_figure(title, "No risks to show")
    by = list(by)
    models = list(dict.fromkeys(risks["model"]))
    groups = list(dict.fromkeys(map(tuple, risks[by].astype(str).to_numpy())))
    # Panels side by side only while the whole figure stays about page-wide (11 in at 100 dpi).
    panel_width = float(np.clip(0.3 * len(groups) * len(models) + 1.5, 3.6, 11.0))
    fig, axes = _grid(len(present), max_cols=max(1, min(3, int(11.0 // panel_width))), panel=(panel_width, 3.6))
    width = 0.8 / len(models)
    x = np.arange(len(groups))
    for ax, risk in zip(axes, present):
        stats = risks.assign(_g=list(map(tuple, risks[by].astype(str).to_numpy()))).groupby(
            ["_g", "model"], sort=False
        )[risk].agg(["mean", "std", "count"])
        for m, model in enumerate(models):
            mean = np.array([stats["mean"].get((g, model), np.nan) for g in groups])
            count = np.array([stats["count"].get((g, model), 0) for g in groups])
            std = np.array([stats["std"].get((g, model), np.nan) for g in groups])
            sem = np.where(count > 1, std / np.sqrt(np.maximum(count, 1)), np.nan)
            # A group of one row has no spread to show: no error bar rather than a flat cap.
            yerr = np.nan_to_num(sem) if np.isfinite(sem).any() else None
            ax.bar(x + (m - (len(models) - 1) / 2) * width, mean, width, yerr=yerr,
                   label=model, color=PALETTE[m % len(PALETTE)], capsize=2, error_kw={"lw": 0.8})
        names = [" / ".join(g) for g in groups]
        crowded = sum(map(len, names)) > 12 * len(names) or len(groups) > 4
        ax.set_xticks(x, names, rotation=30 if crowded else 0, ha="right" if crowded else "center",
                      rotation_mode="anchor")
        ax.set_title(RISK_NAMES.get(risk, risk))
        ax.set_ylabel(unit)
        ax.set_xlabel(" / ".join(by))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(models))
    fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- low rank


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


# ----------------------------------------------------------------------------- calibration


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


# ----------------------------------------------------------------------------- training and data


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


# ----------------------------------------------------------------------------- new experiment


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
