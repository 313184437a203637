"""Calibration maths of the reports (lrl_core/report/calibration.py): BLP slopes and decile tables."""
from __future__ import annotations

import numpy as np

from lrl_core.report import blp_calibration, calibration_slopes, decile_calibration
from test_report import calibration_frame


def simulated_rct(n: int, seed: int = 0):
    """A randomised experiment with known, strongly heterogeneous effect ``tau = 1 + 2 x``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    treated = rng.random(n) < 0.4
    tau = 1.0 + 2.0 * x
    y = 0.5 * x + treated * tau + rng.normal(size=n)
    return tau, y, treated


def test_blp_slope_is_one_for_true_cate_and_zero_for_shuffled():
    tau, y, treated = simulated_rct(20_000)
    rng = np.random.default_rng(1)
    true = blp_calibration(tau, y, treated)
    assert abs(true["slope"] - 1.0) < 0.15
    assert 0 < true["slope_se"] < 0.1
    assert abs(true["ate"] - tau.mean()) < 0.15
    assert true["p_value"] < 1e-6
    shuffled = blp_calibration(rng.permutation(tau), y, treated)
    assert abs(shuffled["slope"]) < 0.15
    # Doubling the predicted spread halves the slope: the test measures the size of heterogeneity.
    overstated = blp_calibration(3.0 * tau, y, treated)
    assert abs(overstated["slope"] - 1.0 / 3.0) < 0.1


def test_blp_degenerate_inputs_give_nan_not_errors():
    tau, y, treated = simulated_rct(200)
    assert np.isnan(blp_calibration(np.ones_like(tau), y, treated)["slope"])
    assert np.isnan(blp_calibration(tau, y, np.zeros_like(treated))["slope"])
    y_missing = y.copy()
    y_missing[:50] = np.nan
    assert blp_calibration(tau, y_missing, treated)["n"] == 150


def test_decile_calibration_tracks_the_true_cate():
    tau, y, treated = simulated_rct(20_000, seed=2)
    table = decile_calibration(tau, y, treated)
    assert list(table.columns) == ["bin", "n", "mean_pred", "observed_diff", "ci_low", "ci_high"]
    assert table["n"].tolist() == [2000] * 10
    assert np.all(np.diff(table["mean_pred"]) > 0)
    assert np.all(np.diff(table["observed_diff"]) > 0)
    assert np.all(table["ci_low"] < table["observed_diff"]) and np.all(table["observed_diff"] < table["ci_high"])
    covered = (table["ci_low"] <= table["mean_pred"]) & (table["mean_pred"] <= table["ci_high"])
    assert covered.sum() >= 7
    # An uninformative prediction leaves every bin near the average effect.
    flat = decile_calibration(np.random.default_rng(3).permutation(tau), y, treated)
    assert flat["observed_diff"].max() - flat["observed_diff"].min() < 1.0 < (
        table["observed_diff"].max() - table["observed_diff"].min())


def test_decile_calibration_strata_remove_between_stratum_confounding():
    rng = np.random.default_rng(4)
    n = 4000
    stratum = np.repeat([0, 1], n // 2)
    treated = rng.random(n) < np.where(stratum == 0, 0.2, 0.8)
    y = 10.0 * stratum + 1.0 * treated + rng.normal(scale=0.3, size=n)
    cate_hat = rng.normal(size=n)
    pooled = decile_calibration(cate_hat, y, treated, n_bins=2)
    stratified = decile_calibration(cate_hat, y, treated, n_bins=2, strata=stratum)
    assert np.all(np.abs(pooled["observed_diff"] - 1.0) > 3.0)
    assert np.all(np.abs(stratified["observed_diff"] - 1.0) < 0.1)


def test_decile_bins_without_both_arms_are_nan():
    cate_hat = np.arange(100, dtype=float)
    treated = cate_hat >= 90  # the top decile has no control units, the others no treated ones
    treated[[3, 5, 7, 15, 17]] = True
    table = decile_calibration(cate_hat, cate_hat, treated)
    assert np.isnan(table["observed_diff"].iloc[9]) and np.isnan(table["ci_low"].iloc[9])
    assert np.isfinite(table["observed_diff"].iloc[0]) and np.isnan(table["observed_diff"].iloc[1:9]).sum() == 7


def test_calibration_slopes_per_group():
    rng = np.random.default_rng(5)
    frame = calibration_frame(rng, ["a", "b"], {"a": ["t"], "b": ["t", "u"]}, ["m1"], n=2000)
    slopes = calibration_slopes(frame)
    assert slopes[["experiment_id", "arm", "metric"]].values.tolist() == [["a", "t", "m1"], ["b", "t", "m1"],
                                                                          ["b", "u", "m1"]]
    # cate_hat = tau + noise: attenuated a little (var(tau) / (var(tau) + 0.09)), never far from 1.
    assert np.all(np.abs(slopes["slope"] - 0.92) < 0.2)
    assert (slopes["n"] == 2000).all()
