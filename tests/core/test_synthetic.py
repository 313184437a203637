"""Tests of the synthetic and semi-synthetic generators (lrl_core.synthetic)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lrl_core.synthetic import digits_semi_synthetic, nonlinear_synthetic, paper_synthetic


@pytest.fixture(scope="module")
def paper():
    return paper_synthetic(40, n_experiments=6, n_features=20, n_metrics=3, d=4,
                           noise_sd=0.1, seed=3, n_eval_per_arm=30)


@pytest.fixture(scope="module")
def nonlinear():
    return nonlinear_synthetic(6, 60, 12, n_metrics=3, d=4, n_arms_per_experiment=[2, 3, 2, 4, 2, 2],
                               overlap=0.4, missing_metric_rate=0.2, feature_missing_rate=0.1,
                               noise_sd=0.3, seed=5)


def _check_layout(data):
    """Structural invariants every generator must meet."""
    K, G = len(data.experiments), len(data.arm_names)
    r, J = data.Y.shape
    assert J == len(data.metrics)
    assert data.units.shape == data.arms.shape == (r,)
    assert data.arm_experiment.shape == (G,) and data.control_arm.shape == (K,)
    assert data.units.min() >= 0 and data.units.max() < data.X.shape[0]
    assert len(data.unit_ids) == data.X.shape[0] == len(np.unique(data.unit_ids))
    # Control first within each experiment, arms grouped by experiment in order.
    assert np.all(np.diff(data.arm_experiment) >= 0)
    assert np.array_equal(data.arm_experiment[data.control_arm], np.arange(K))
    assert all(data.arm_names[c] == "control" for c in data.control_arm)
    # A unit is in at most one arm of an experiment.
    pairs = np.stack([data.units, data.arm_experiment[data.arms]], axis=1)
    assert len(np.unique(pairs, axis=0)) == r


def test_paper_shapes_and_layout(paper):
    _check_layout(paper)
    K, n = 6, 40
    assert paper.X.shape == (2 * K * n, 20) and paper.Y.shape == (2 * K * n, 3)
    assert paper.X.dtype == np.float64
    assert np.array_equal(np.bincount(paper.arms), np.full(2 * K, n))  # balanced: n per arm
    assert paper.arm_names[:2] == ["control", "treatment"]
    assert paper.metrics == ["metric_0", "metric_1", "metric_2"]
    ev = paper.eval
    assert ev.Y_potential.shape == ev.mu_potential.shape == (2 * K * 30, 2, 3)
    assert np.array_equal(ev.arms[:, 0], paper.arm_controls[ev.arms[:, 1]])
    assert np.array_equal(np.bincount(ev.observed_arms), np.full(2 * K, 30))


def test_paper_noise_is_the_stated_sd(paper):
    resid = paper.Y - paper.true_outcomes(paper.units, paper.arms)
    assert abs(resid.std() - 0.1) < 0.01 and abs(resid.mean()) < 0.01
    ev = paper.eval
    assert abs((ev.Y_potential - ev.mu_potential).std() - 0.1) < 0.01
    # The eval truth is the same DGP: realised ITE minus noise-free CATE has variance 2 sd^2.
    assert abs((ev.ite - ev.cate).var() - 2 * 0.01) < 0.004


def test_paper_features_are_linear_in_latent_and_row_norm_scale(paper):
    # X = V L with one shared L: X has rank d, and the outcome variance is about 1.
    s = np.linalg.svd(paper.X, compute_uv=False)
    assert s[3] > 1e-6 * s[0] and s[4] < 1e-9 * s[0]
    assert 0.3 < paper.true_outcomes(paper.units, paper.arms).var() < 3.0


def test_paper_readings_differ_as_documented():
    kw = dict(n_experiments=4, n_features=20, n_metrics=2, d=4, seed=1)
    fro = paper_synthetic(50, latent_norm="frobenius", **kw)
    # Unit Frobenius norm over 2n = 100 rows: outcome variance about 1 / 100.
    assert fro.true_outcomes(fro.units, fro.arms).var() < 0.05
    own = paper_synthetic(50, shared_loading=False, **kw)
    # One loading per experiment: the pooled features span more than d directions.
    s = np.linalg.svd(own.X, compute_uv=False)
    assert s[4] > 1e-6 * s[0]
    bern = paper_synthetic(50, assignment="bernoulli", **kw)
    assert len(bern.Y) == 4 * 100 and not np.array_equal(np.bincount(bern.arms), np.full(8, 50))


def test_true_cate_is_difference_of_outcomes(paper):
    u = np.arange(10)
    arms = np.ones(10, dtype=np.int64)
    cate = paper.true_cate(u, arms, np.zeros(10, dtype=np.int64))
    assert cate.shape == (10, 3)
    np.testing.assert_allclose(cate, paper.true_outcomes(u, 1) - paper.true_outcomes(u, 0))


def test_raw_tables_round_trip(nonlinear):
    data = nonlinear
    tables = data.raw_tables()
    uf, ex, expo, out = (tables[k] for k in ("unit_features", "experiments", "exposures", "outcomes"))
    assert list(uf.columns) == ["unit_id"] + [f"x{i}" for i in range(12)]
    assert list(ex.columns) == ["experiment_id", "launched_at"]
    assert pd.api.types.is_datetime64_any_dtype(ex["launched_at"])
    assert list(expo.columns) == ["unit_id", "experiment_id", "arm"]
    assert list(out.columns) == ["unit_id", "experiment_id", "metric", "value"]
    assert out["value"].notna().all() and len(out) == (~np.isnan(data.Y)).sum()
    np.testing.assert_array_equal(uf.drop(columns="unit_id").to_numpy(), data.X)
    assert set(expo["arm"]) == {"control", "treatment", "treatment_1", "treatment_2", "treatment_3"}

    # Rebuild (unit, arm, metric) -> value from the tables alone and compare with Y.
    pos = pd.Series(np.arange(len(data.unit_ids)), index=data.unit_ids)
    arm_key = {(data.experiments[data.arm_experiment[g]], data.arm_names[g]): g for g in range(data.n_arms)}
    arms = np.array([arm_key[k] for k in zip(expo["experiment_id"], expo["arm"])])
    assert np.array_equal(pos[expo["unit_id"]].to_numpy(), data.units)
    assert np.array_equal(arms, data.arms)
    key = pd.MultiIndex.from_arrays([expo["unit_id"], expo["experiment_id"]])
    rows = key.get_indexer(pd.MultiIndex.from_arrays([out["unit_id"], out["experiment_id"]]))
    cols = pd.Index(data.metrics).get_indexer(out["metric"])
    assert (rows >= 0).all() and (cols >= 0).all()
    rebuilt = np.full(data.Y.shape, np.nan)
    rebuilt[rows, cols] = out["value"].to_numpy()
    np.testing.assert_array_equal(rebuilt, data.Y)


def test_raw_tables_pass_validation(paper):
    from lrl_core.data import build_pooled_data, validate_raw

    result = validate_raw(**paper.raw_tables())
    assert len(result.quarantine) == 0
    pooled = build_pooled_data(result)
    assert pooled.Y.shape == paper.Y.shape and pooled.experiments == paper.experiments
    assert np.nansum(pooled.Y) == pytest.approx(np.nansum(paper.Y))


def test_nonlinear_overlap_multi_arm_and_missingness(nonlinear):
    data = nonlinear
    _check_layout(data)
    assert data.X.dtype == np.float32
    per_unit = np.bincount(data.units, minlength=data.X.shape[0])
    assert per_unit.min() == 1 and per_unit.max() >= 2
    assert 0.25 < (per_unit >= 2).mean() < 0.55  # overlap = 0.4
    n_arms = np.bincount(data.arm_experiment)
    assert list(n_arms) == [2, 3, 2, 4, 2, 2]
    assert np.bincount(data.arms, minlength=data.n_arms).min() >= 60
    assert 0.15 < np.isnan(data.Y).mean() < 0.25
    assert 0.05 < np.isnan(data.X).mean() < 0.15
    obs = ~np.isnan(data.Y)
    resid = (data.Y - data.true_outcomes(data.units, data.arms))[obs]
    assert abs(resid.std() - 0.3) < 0.03
    # Effects are heterogeneous: the true CATE varies across units for every treated arm.
    treated = data.treatment_arms
    for g in treated:
        u = np.arange(200)
        assert data.true_cate(u, g, data.arm_controls[g]).std(axis=0).min() > 0.05


def test_nonlinear_without_overlap_puts_each_unit_once():
    data = nonlinear_synthetic(3, 20, 5, n_metrics=2, d=3, seed=0)
    assert np.array_equal(np.bincount(data.units), np.ones(data.X.shape[0], dtype=np.int64))
    assert not np.isnan(data.Y).any() and not np.isnan(data.X).any()
    assert data.arm_names == ["control", "treatment"] * 3


@pytest.mark.parametrize("make", [
    lambda s: paper_synthetic(10, n_experiments=3, n_features=8, n_metrics=2, d=3, seed=s, n_eval_per_arm=5),
    lambda s: nonlinear_synthetic(3, 10, 6, n_metrics=2, d=3, overlap=0.5, missing_metric_rate=0.1, seed=s),
])
def test_seeds_reproduce(make):
    a, b, c = make(7), make(7), make(8)
    for name in ("X", "units", "arms", "Y"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.allclose(np.nan_to_num(a.Y[:5]), np.nan_to_num(c.Y[:5]))


def test_digits_semi_synthetic():
    data = digits_semi_synthetic(share=0.2, seed=0)
    _check_layout(data)
    assert len(data.experiments) == 9 and data.metrics == ["logit"]
    assert data.X.shape[1] == 64  # first hidden layer of the classifier
    # Outcomes are noise-free logits by default; control (class 0) is arm 0 of every experiment.
    np.testing.assert_allclose(data.Y, data.true_outcomes(data.units, data.arms))
    assert np.allclose(data.true_outcomes(np.arange(5), 0), data.true_outcomes(np.arange(5), 2))
    # Each unit joins each experiment with probability `share`.
    rows_per_unit = len(data.units) / data.X.shape[0]
    assert 9 * 0.2 * 0.8 < rows_per_unit < 9 * 0.2 * 1.2
    ev = data.eval
    n_test = ev.X.shape[0]
    assert ev.Y_potential.shape == (9 * n_test, 2, 1)
    assert data.X.shape[0] + n_test == 1797  # every digit is either a training or a held-out unit
    # The ITE matrix (test units x 9 experiments) is far from rank one, and not constant.
    ite = ev.cate.reshape(n_test, 9)
    s = np.linalg.svd(ite - ite.mean(0), compute_uv=False)
    assert s[1] > 0.1 * s[0]
