"""Figures of effects by segment: observed cells and the cells Synthetic Interventions extrapolated."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lrl_core.report.plotting import _message_figure, _styled, figure_to_markdown

__all__ = ["segment_heatmap", "segment_heatmap_markdown"]

MAX_COLUMNS = 60
"""Experiment arms shown at most (the first ones by name); the table has them all."""


@_styled
def segment_heatmap(rows: pd.DataFrame, metric: str | None = None) -> Figure:
    """Segments x treated arms, coloured by the effect on ``metric`` (default: the first metric):
    observed where the segment was in the experiment, Synthetic Interventions' estimate where
    it was not (marked ``·``), ``×`` where SI's subspace test failed, blank where nothing is known.

    ``rows``: ``pipeline.segment_effects`` (``segment, experiment_id, arm, metric, source,
    effect, si_test_passed``).
    """
    if rows.empty:
        return _message_figure("Effects by segment", "No segment effects")
    metric = metric or sorted(rows["metric"].unique())[0]
    part = rows[(rows["metric"] == metric) & rows["source"].isin(["observed", "si"])].copy()
    part["column"] = part["experiment_id"].astype(str) + " / " + part["arm"].astype(str)
    columns = sorted(part["column"].unique())[:MAX_COLUMNS]
    segments = sorted(part["segment"].unique())
    if not columns or not segments:
        return _message_figure(f"Effects on {metric} by segment", "No observed or extrapolated cell")
    part = part[part["column"].isin(columns)]
    grid = part.pivot_table(index="segment", columns="column", values="effect", aggfunc="first").reindex(
        index=segments, columns=columns)
    source = part.pivot_table(index="segment", columns="column", values="source", aggfunc="first").reindex(
        index=segments, columns=columns)
    failed = part[part["si_test_passed"] == False].pivot_table(  # noqa: E712 (nullable boolean)
        index="segment", columns="column", values="effect", aggfunc="size").reindex(index=segments, columns=columns)
    values = grid.to_numpy(dtype=float)
    bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    fig = Figure(figsize=(min(3.0 + 0.28 * len(columns), 18.0), min(2.0 + 0.25 * len(segments), 14.0)),
                 layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto",
                      interpolation="nearest")
    for i, j in np.argwhere((source.to_numpy() == "si") & np.isfinite(values)):
        ax.text(j, i, "·", ha="center", va="center", fontsize=9, color="black")
    for i, j in np.argwhere(failed.notna().to_numpy()):
        ax.text(j, i, "×", ha="center", va="center", fontsize=8, color="black")
    ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=6)
    ax.set_yticks(range(len(segments)), segments, fontsize=7)
    ax.set_xlabel("experiment / treated arm")
    ax.set_ylabel("segment")
    fig.colorbar(image, ax=ax, shrink=0.8, label=f"effect on {metric}")
    fig.suptitle(f"Effects on {metric} by segment (· extrapolated by SI, × SI test failed)")
    return fig


def segment_heatmap_markdown(rows: pd.DataFrame, metric: str | None = None) -> str:
    """:func:`segment_heatmap` inline, for Dagster markdown metadata."""
    return figure_to_markdown(segment_heatmap(rows, metric))
