"""Summaries both reports show: the risk comparison table and the calibration section.

The risk table follows the paper's Tables 3-4 (one column per model, then
the relative improvement of the reference model over each baseline); the
calibration section pools decile plots and summarises BLP slopes.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lrl_core.report.calibration import Z95, calibration_slopes, decile_calibration
from lrl_core.report.calibration_figures import calibration_plot, calibration_slopes_plot
from lrl_core.report.html_parts import _details, _esc, _note, _Page, _table
from lrl_core.report.plotting import RISK_NAMES

RISK_COLUMNS = ("mu_risk", "tau_risk", "pehe")


def _models(risks: pd.DataFrame, reference: str | None) -> tuple[str, list[str]]:
    """The reference model and the others, in order of appearance."""
    models = list(dict.fromkeys(risks["model"]))
    if reference is None:
        reference = models[0]
    if reference not in models:
        raise ValueError(f"reference model {reference!r} not among the risk table's models {models}")
    return reference, [m for m in models if m != reference]


def _with_risk_columns(risks: pd.DataFrame) -> pd.DataFrame:
    """``risks`` with every risk column present (NaN where the caller had none, e.g. no PEHE)."""
    missing = {r: np.nan for r in RISK_COLUMNS if r not in risks}
    return risks.assign(**missing) if missing else risks


def _present_risks(risks: pd.DataFrame) -> list[str]:
    return [r for r in RISK_COLUMNS if r in risks and risks[r].notna().any()]


def _risk_comparison(risks: pd.DataFrame, keys: list[str], reference: str, others: list[str]) -> pd.DataFrame:
    """The paper's Tables 3-4 layout: one row per ``keys`` combination and risk, one column per model
    (mean over the remaining rows), then ``Δ vs <other>`` = ``1 - reference / other`` per baseline."""
    present = _present_risks(risks)
    long = risks.melt(id_vars=[*keys, "model"], value_vars=present, var_name="risk")
    wide = long.pivot_table(index=[*keys, "risk"], columns="model", values="value", aggfunc="mean",
                            sort=False, dropna=False)
    table = pd.DataFrame(index=wide.index)
    for model in [reference, *others]:
        table[model] = wide[model] if model in wide else np.nan
    for other in others:
        table[f"Δ vs {other}"] = 1.0 - table[reference] / table[other]
    table = table.reset_index()
    table["risk"] = table["risk"].map(lambda r: RISK_NAMES.get(r, r))
    return table


def _improvement_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if str(c).startswith("Δ vs")]


def _pooled_calibration(frame: pd.DataFrame, by: Sequence[str], strata: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Decile tables per group of ``by``, bins shared across ``strata`` but differences taken within them."""
    tables = {}
    for key, group in frame.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        labels = group[list(strata)].astype(str).agg("/".join, axis=1) if strata else None
        tables[" / ".join(map(str, key))] = decile_calibration(
            group["cate_hat"].to_numpy(), group["y"].to_numpy(), group["treated"].to_numpy(), strata=labels
        )
    return tables


def _slope_summary(slopes: pd.DataFrame, by: str = "metric") -> pd.DataFrame:
    """Per ``by`` group: how many slopes, their median, and how many intervals exclude 0 / include 1."""
    s = slopes[slopes["slope"].notna()].copy()
    s["signal"] = (s["slope"] - Z95 * s["slope_se"]) > 0
    s["covers_one"] = (s["slope"] - Z95 * s["slope_se"] <= 1) & (s["slope"] + Z95 * s["slope_se"] >= 1)
    return (
        s.groupby(by, sort=False)
        .agg(comparisons=("slope", "size"), median_slope=("slope", "median"),
             ci_above_zero=("signal", "sum"), ci_covers_one=("covers_one", "sum"))
        .reset_index()
        .astype({"comparisons": "int64", "ci_above_zero": "int64", "ci_covers_one": "int64"})
    )


def _slopes_display(slopes: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    shown = slopes[[*keys, "n", "slope", "slope_se", "ate", "ate_se", "p_value"]].copy()
    return shown.rename(columns={"slope_se": "slope SE", "ate": "ATE", "ate_se": "ATE SE", "p_value": "p (slope = 0)"})


def _calibration_section(page: _Page, frame: pd.DataFrame | None, keys: list[str], pooled_by: list[str],
                         strata: list[str], section_title: str, slopes_title: str) -> list[str]:
    if frame is None or frame.empty:
        page.section("calibration", section_title, "calibration needs held-out randomised outcomes.",
                     _note("No held-out units were supplied for calibration."))
        return []
    deciles = _pooled_calibration(frame, pooled_by, strata)
    slopes = calibration_slopes(frame, by=keys)
    summary = _slope_summary(slopes, by="metric")
    body = (
        page.figure(calibration_plot(deciles),
                    "Units binned by decile of predicted CATE; points: observed treated − control difference in "
                    "means (95% interval), differences taken within each experiment arm and averaged.",
                    key="calibration")
        + "<h3>Calibration slope (best linear predictor)</h3>"
        + _table(summary.rename(columns={"comparisons": "comparisons", "median_slope": "median slope",
                                         "ci_above_zero": "95% CI above 0", "ci_covers_one": "95% CI covers 1"}))
        + page.figure(calibration_slopes_plot(slopes, title=slopes_title),
                      "Slope of the true CATE on the predicted one per comparison with its 95% interval (HC1).")
        + _details(f"Show all {len(slopes)} slopes", _table(_slopes_display(slopes, keys)))
    )
    page.section(
        "calibration", section_title,
        "points near the dashed 45° line mean predicted effects match observed ones in size; a slope near 1 "
        "means the predicted heterogeneity is right, near 0 that it carries no signal, above 1 that it is "
        "understated.",
        body,
    )
    if summary.empty:
        return ["Calibration slopes could not be estimated (too few treated or control units)."]
    median = summary.set_index("metric")["median_slope"]
    return ["Median calibration slope per metric (1 = calibrated): "
            + ", ".join(f"{_esc(m)} {v:.2f}" for m, v in median.items()) + "."]
