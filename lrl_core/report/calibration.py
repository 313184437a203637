"""Calibration of estimated CATEs against randomised outcomes.

Two checks that need only the held-out rows of a randomised experiment:

- :func:`decile_calibration`: bin units by deciles of the predicted CATE and
  compare each bin's mean prediction with its observed treated-minus-control
  difference in means (with a 95% interval). A calibrated model puts the
  points on the 45 degree line.
- :func:`blp_calibration`: the best-linear-predictor test of Chernozhukov,
  Demirer, Duflo and Fernandez-Val ("generic machine learning inference on
  heterogeneous treatment effects"): the slope of the true CATE on the
  predicted one, estimated from ``y ~ 1 + (t - p) + (t - p)(s - mean(s))``.
  Slope 1: the predicted heterogeneity is right in size; 0: it carries no
  signal.

:func:`calibration_slopes` runs the BLP test per (experiment, arm, metric)
group of a long table. Everything here is numpy on arrays; no I/O.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["decile_calibration", "blp_calibration", "calibration_slopes", "CALIBRATION_COLUMNS"]

CALIBRATION_COLUMNS = ["experiment_id", "arm", "metric", "cate_hat", "y", "treated"]
"""Columns of the long calibration table that :func:`calibration_slopes` and the reports read."""

Z95 = 1.959963984540054
MIN_ARM_ROWS = 2
"""Rows of each arm a bin (or stratum within a bin) needs: the interval uses both arms' variances."""


def _finite_rows(cate_hat, y, treated, *extra):
    """Cast to 1-D arrays of one length and keep the rows where ``cate_hat`` and ``y`` are finite."""
    cate_hat = np.asarray(cate_hat, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    treated = np.asarray(treated).reshape(-1).astype(bool)
    extra = [None if e is None else np.asarray(e).reshape(-1) for e in extra]
    n = cate_hat.size
    if y.size != n or treated.size != n or any(e is not None and e.size != n for e in extra):
        raise ValueError("cate_hat, y, treated (and strata/propensity/baseline) must all have length n")
    keep = np.isfinite(cate_hat) & np.isfinite(y)
    return (cate_hat[keep], y[keep], treated[keep], *[None if e is None else e[keep] for e in extra])


def _quantile_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index in ``[0, n_bins)`` of each value, by rank: equal-count bins even with ties."""
    order = np.argsort(values, kind="stable")
    bins = np.empty(values.size, dtype=np.int64)
    bins[order] = np.arange(values.size) * n_bins // max(values.size, 1)
    return bins


def decile_calibration(cate_hat, y, treated, n_bins: int = 10, strata=None) -> pd.DataFrame:
    """Observed effect per quantile bin of the predicted CATE.

    Parameters
    ----------
    cate_hat, y, treated:
        ``(n,)`` predicted CATE, observed outcome and treatment indicator of
        each unit of a randomised comparison (one treated arm against its
        control). Rows where ``cate_hat`` or ``y`` is NaN are left out.
    n_bins:
        Number of equal-count bins, by rank of ``cate_hat`` (10: deciles).
    strata:
        Optional ``(n,)`` labels (e.g. experiment and arm when several
        comparisons are pooled). The difference in means is then taken
        within each stratum of a bin and averaged with weights equal to the
        stratum's rows in the bin, so differing treated shares or outcome
        levels between strata do not leak into the effect.

    Returns
    -------
    DataFrame with one row per bin and columns ``bin, n, mean_pred,
    observed_diff, ci_low, ci_high``: rows in the bin, mean predicted CATE,
    treated-minus-control difference in means and its normal 95% interval
    (from the two arms' sample variances). A bin (or stratum within a bin)
    with fewer than two rows in either arm contributes no difference; a bin
    left with none gets NaN.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive; got {n_bins}")
    cate_hat, y, treated, strata = _finite_rows(cate_hat, y, treated, strata)
    bins = _quantile_bins(cate_hat, n_bins)
    if strata is None:
        stratum = np.zeros(cate_hat.size, dtype=np.int64)
        n_strata = 1
    else:
        _, stratum = np.unique(strata, return_inverse=True)
        n_strata = int(stratum.max()) + 1 if stratum.size else 1

    # One cell per (bin, stratum); per-arm counts, sums and sums of squares by bincount.
    cell = bins * n_strata + stratum
    size = n_bins * n_strata
    stats = {}
    for arm, mask in (("t", treated), ("c", ~treated)):
        count = np.bincount(cell[mask], minlength=size).astype(np.float64)
        total = np.bincount(cell[mask], weights=y[mask], minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count
            # Centred second moment: numerically safer than sum(y^2) - n mean^2.
            dev2 = np.bincount(cell[mask], weights=(y[mask] - mean[cell[mask]]) ** 2, minlength=size)
            var = dev2 / (count - 1)
        stats[arm] = (count, mean, var)
    (n_t, mean_t, var_t), (n_c, mean_c, var_c) = stats["t"], stats["c"]
    usable = (n_t >= MIN_ARM_ROWS) & (n_c >= MIN_ARM_ROWS)
    weight = np.where(usable, n_t + n_c, 0.0).reshape(n_bins, n_strata)
    diff = np.where(usable, mean_t - mean_c, 0.0).reshape(n_bins, n_strata)
    var = np.where(usable, var_t / np.maximum(n_t, 1) + var_c / np.maximum(n_c, 1), 0.0).reshape(n_bins, n_strata)
    w_sum = weight.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.where(w_sum > 0, (weight * diff).sum(axis=1) / w_sum, np.nan)
        se = np.where(w_sum > 0, np.sqrt((weight**2 * var).sum(axis=1)) / w_sum, np.nan)
        n_bin = np.bincount(bins, minlength=n_bins)
        mean_pred = np.bincount(bins, weights=cate_hat, minlength=n_bins) / n_bin
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins),
            "n": n_bin.astype(np.int64),
            "mean_pred": mean_pred,
            "observed_diff": observed,
            "ci_low": observed - Z95 * se,
            "ci_high": observed + Z95 * se,
        }
    )


def blp_calibration(cate_hat, y, treated, propensity=None, baseline=None) -> dict:
    """Best-linear-predictor calibration test of a CATE predictor on randomised data.

    Fits by least squares ``y = a + b * B + ate * (t - p) + slope * (t - p) * (s - mean(s))``
    with ``s = cate_hat`` and ``B`` an optional baseline (control-outcome)
    prediction that only reduces noise. In a randomised experiment
    ``slope`` estimates ``cov(tau, s) / var(s)``: 1 when the predicted
    heterogeneity is right in size, below 1 when it is overstated, 0 when it
    carries no signal. ``ate`` estimates the average effect.

    Parameters
    ----------
    cate_hat, y, treated:
        ``(n,)``; rows where ``cate_hat`` or ``y`` is NaN are left out.
    propensity:
        ``(n,)`` known treatment probabilities, or ``None`` for the share of
        treated rows (the randomisation ratio).
    baseline:
        Optional ``(n,)`` predicted outcome under control, used as a control
        variable.

    Returns
    -------
    dict with ``slope, slope_se, ate, ate_se, intercept, p_value, n``:
    HC1 (heteroscedasticity-robust) standard errors and the two-sided normal
    p-value of ``slope = 0``. NaN estimates when the design is degenerate
    (fewer than two rows in an arm, or constant ``cate_hat``).
    """
    cate_hat, y, treated, propensity, baseline = _finite_rows(cate_hat, y, treated, propensity, baseline)
    n = y.size
    nan = {"slope": np.nan, "slope_se": np.nan, "ate": np.nan, "ate_se": np.nan,
           "intercept": np.nan, "p_value": np.nan, "n": int(n)}
    n_t = int(treated.sum())
    if n_t < MIN_ARM_ROWS or n - n_t < MIN_ARM_ROWS:
        return nan
    t = treated.astype(np.float64)
    p = t.mean() if propensity is None else np.asarray(propensity, dtype=np.float64)
    s = cate_hat - cate_hat.mean()
    if not np.any(np.abs(s) > 1e-12 * max(1.0, float(np.abs(cate_hat).max()))):
        return nan
    columns = [np.ones(n), t - p, (t - p) * s]
    if baseline is not None:
        columns.insert(1, np.asarray(baseline, dtype=np.float64))
    X = np.column_stack(columns)
    k = X.shape[1]
    if n <= k:
        return nan
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    xtx_inv = np.linalg.pinv(X.T @ X)
    meat = (X * resid[:, None] ** 2).T @ X
    cov = xtx_inv @ meat @ xtx_inv * (n / (n - k))
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    slope, slope_se = float(coef[-1]), float(se[-1])
    p_value = math.erfc(abs(slope / slope_se) / math.sqrt(2.0)) if slope_se > 0 else np.nan
    return {
        "slope": slope,
        "slope_se": slope_se,
        "ate": float(coef[-2]),
        "ate_se": float(se[-2]),
        "intercept": float(coef[0]),
        "p_value": float(p_value),
        "n": int(n),
    }


def calibration_slopes(frame: pd.DataFrame, by=("experiment_id", "arm", "metric")) -> pd.DataFrame:
    """:func:`blp_calibration` per group of a long calibration table.

    ``frame``: one row per (unit, comparison), with at least the columns
    ``cate_hat, y, treated`` and those in ``by`` (see
    :data:`CALIBRATION_COLUMNS`); an optional ``propensity`` column is used
    where present. Returns one row per group: the ``by`` columns, then
    ``n, slope, slope_se, ate, ate_se, p_value``.
    """
    by = list(by)
    out_columns = [*by, "n", "slope", "slope_se", "ate", "ate_se", "p_value"]
    records = []
    for key, group in frame.groupby(by, sort=False, observed=True):
        result = blp_calibration(
            group["cate_hat"].to_numpy(),
            group["y"].to_numpy(),
            group["treated"].to_numpy(),
            propensity=group["propensity"].to_numpy() if "propensity" in group else None,
        )
        key = key if isinstance(key, tuple) else (key,)
        records.append((*key, *(result[c] for c in out_columns[len(by):])))
    return pd.DataFrame.from_records(records, columns=out_columns)
