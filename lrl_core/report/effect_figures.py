"""Figures of effects across experiments: arm effects on two metrics, and the lines each estimator fits."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lrl_core.report.plotting import PALETTE, _message_figure, _styled


@_styled
def effect_scatter(effects: pd.DataFrame, metric_a: str, metric_b: str, slopes: Mapping[str, float],
                   title: str | None = None) -> Figure:
    """Each treated arm's estimated effect on ``metric_b`` against ``metric_a``, with 95% noise bars,
    the pooled model's arm effects, and one line per estimator through the origin of the effects'
    means with slope ``Lambda_ab / Lambda_aa``.

    ``effects``: one row per arm with ``effect_a, effect_b, se_a, se_b`` and optional
    ``pooled_a, pooled_b``. With weak experiments the noise bars dwarf the spread of the
    effects, and the naive line is pulled towards the noise's own correlation.
    """
    title = title or f"Arm effects: {metric_b} against {metric_a}"
    usable = effects.dropna(subset=["effect_a", "effect_b"])
    if usable.empty:
        return _message_figure(title, "No arm reports both metrics")
    fig = Figure(figsize=(7.0, 5.0), layout="constrained")
    ax = fig.subplots()
    ax.errorbar(usable["effect_a"], usable["effect_b"], xerr=1.96 * usable["se_a"], yerr=1.96 * usable["se_b"],
                fmt="o", ms=4, color=PALETTE[0], ecolor="#9ecae1", elinewidth=0.8, alpha=0.8,
                label="estimated effect (difference in means, 95% noise)")
    if {"pooled_a", "pooled_b"} <= set(usable.columns) and usable["pooled_a"].notna().any():
        ax.scatter(usable["pooled_a"], usable["pooled_b"], s=14, marker="x", color=PALETTE[2],
                   label="pooled model's arm effect")
    centre = np.array([usable["effect_a"].mean(), usable["effect_b"].mean()])
    span = np.nanpercentile(usable["effect_a"], [2, 98])
    xs = np.linspace(span[0], span[1], 2)
    for k, (name, slope) in enumerate(slopes.items()):
        if np.isfinite(slope):
            ax.plot(xs, centre[1] + slope * (xs - centre[0]), color=PALETTE[(k + 3) % len(PALETTE)],
                    lw=1.6, label=f"{name}: slope {slope:+.2f}")
    ax.axhline(0, color="#bbbbbb", lw=0.6)
    ax.axvline(0, color="#bbbbbb", lw=0.6)
    ax.set_xlabel(f"effect on {metric_a}")
    ax.set_ylabel(f"effect on {metric_b}")
    ax.legend(fontsize=8, loc="best")
    fig.suptitle(title)
    return fig
