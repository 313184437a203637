"""The risk figure both reports show: mean held-out risk per group, models side by side."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lrl_core.report.plotting import PALETTE, RISK_NAMES, _grid, _message_figure, _styled


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
