from __future__ import annotations

import numpy as np
import pytest

from lrl_core.baselines import OLSTLearner, XGBTLearner


def rows_for(arm_sizes, n_units, rng):
    """Row layout: ``arm_sizes[g]`` rows in arm g, each on a random unit."""
    arms = np.repeat(np.arange(len(arm_sizes)), arm_sizes).astype(np.int64)
    units = rng.integers(0, n_units, size=arms.size).astype(np.int64)
    return units, arms


@pytest.fixture
def linear_setup():
    rng = np.random.default_rng(0)
    n, p, J = 200, 5, 3
    X = rng.standard_normal((n, p)).astype(np.float32)
    # Arm 2 has 4 rows for 6 coefficients: under-determined.
    units, arms = rows_for([60, 50, 4], n, rng)
    Y = rng.standard_normal((arms.size, J))
    Y[rng.random(arms.size) < 0.3, 1] = np.nan  # metric 1 missing on some rows
    Y[arms == 1, 2] = np.nan  # metric 2 never observed in arm 1
    return X, units, arms, Y


def test_ols_coefficients_match_lstsq(linear_setup):
    X, units, arms, Y = linear_setup
    model = OLSTLearner().fit(X, units, arms, Y, n_arms=3)
    assert model.coef_.shape == (3, 3, X.shape[1] + 1)
    for g in range(3):
        for j in range(3):
            keep = (arms == g) & ~np.isnan(Y[:, j])
            if not keep.any():
                assert np.isnan(model.coef_[g, j]).all()
                continue
            design = np.column_stack([np.ones(keep.sum()), X[units[keep]].astype(np.float64)])
            expected = np.linalg.lstsq(design, Y[keep, j], rcond=None)[0]
            np.testing.assert_allclose(model.coef_[g, j], expected, atol=1e-8, rtol=0)
            assert model.n_obs_[g, j] == keep.sum()


def test_ols_without_intercept_matches_lstsq(linear_setup):
    X, units, arms, Y = linear_setup
    model = OLSTLearner(fit_intercept=False).fit(X, units, arms, Y)
    keep = (arms == 0) & ~np.isnan(Y[:, 1])
    expected = np.linalg.lstsq(X[units[keep]].astype(np.float64), Y[keep, 1], rcond=None)[0]
    np.testing.assert_allclose(model.coef_[0, 1, 1:], expected, atol=1e-8, rtol=0)
    assert model.coef_[0, 1, 0] == 0.0


def test_ols_ridge_matches_normal_equations_with_unpenalised_intercept(linear_setup):
    X, units, arms, Y = linear_setup
    ridge = 3.0
    model = OLSTLearner(ridge=ridge).fit(X, units, arms, Y)
    keep = arms == 0
    Z = X[units[keep]].astype(np.float64)
    Zc, yc = Z - Z.mean(0), Y[keep, 0] - Y[keep, 0].mean()
    slopes = np.linalg.solve(Zc.T @ Zc + ridge * np.eye(Z.shape[1]), Zc.T @ yc)
    np.testing.assert_allclose(model.coef_[0, 0, 1:], slopes, atol=1e-10)
    np.testing.assert_allclose(model.coef_[0, 0, 0], Y[keep, 0].mean() - Z.mean(0) @ slopes, atol=1e-10)


def test_ols_predictions_and_cate(linear_setup):
    X, units, arms, Y = linear_setup
    model = OLSTLearner().fit(X, units, arms, Y, n_arms=3)
    out = model.predict_outcomes(X, [0, 1, 2, 0])
    assert out.shape == (X.shape[0], 4, 3)
    np.testing.assert_allclose(
        out[:, 1, 0], model.coef_[1, 0, 0] + X.astype(np.float64) @ model.coef_[1, 0, 1:], atol=1e-10
    )
    np.testing.assert_array_equal(out[:, 0], out[:, 3])
    assert np.isnan(out[:, 1, 2]).all() and np.isfinite(out[:, 0, 2]).all()
    cate = model.predict_cate(X, [1, 2], [0, 0])
    np.testing.assert_allclose(cate, out[:, [1, 2]] - out[:, [0, 0]], atol=1e-10, equal_nan=True)


def test_ols_recovers_noise_free_linear_effects():
    rng = np.random.default_rng(1)
    n, p = 300, 4
    X = rng.standard_normal((n, p))
    units, arms = rows_for([150, 150], n, rng)
    beta = rng.standard_normal((2, p))
    Y = (X[units] * beta[arms]).sum(1, keepdims=True) + np.where(arms == 1, 2.0, 0.0)[:, None]
    cate = OLSTLearner().fit(X, units, arms, Y).predict_cate(X, [1], [0])[:, 0, 0]
    np.testing.assert_allclose(cate, 2.0 + X @ (beta[1] - beta[0]), atol=1e-8)


def test_unfitted_arm_and_bad_inputs():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((20, 3))
    units, arms = rows_for([10, 10], 20, rng)
    Y = rng.standard_normal((20, 1))
    model = OLSTLearner().fit(X, units, arms, Y, n_arms=3)  # arm 2 has no rows
    assert np.isnan(model.predict_outcomes(X, [2])).all()
    with pytest.raises(ValueError):
        model.predict_outcomes(X, [3])
    with pytest.raises(ValueError):
        model.predict_outcomes(X[:, :2], [0])
    with pytest.raises(ValueError):
        OLSTLearner().fit(X, units[:-1], arms, Y)
    with pytest.raises(ValueError):
        OLSTLearner().fit(X, units, arms, Y, n_arms=1)


def test_xgb_beats_ols_on_a_nonlinear_surface():
    rng = np.random.default_rng(3)
    n = 800
    X = rng.uniform(-2, 2, size=(n, 2)).astype(np.float32)
    units, arms = rows_for([300, 300], n, rng)

    def mu(x, arm):
        return np.where(arm == 1, np.sin(3 * x[:, 0]) + (x[:, 1] > 0), np.abs(x[:, 0]) * 2 - 1)

    Y = (mu(X[units], arms) + 0.1 * rng.standard_normal(arms.size))[:, None]
    truth = mu(X, np.ones(n)) - mu(X, np.zeros(n))
    xgb = XGBTLearner(n_estimators=40, max_depth=3, learning_rate=0.3, n_jobs=1, progress=False)
    xgb.fit(X, units, arms, Y)
    ols = OLSTLearner().fit(X, units, arms, Y)
    err_xgb = np.mean((xgb.predict_cate(X, [1], [0])[:, 0, 0] - truth) ** 2)
    err_ols = np.mean((ols.predict_cate(X, [1], [0])[:, 0, 0] - truth) ** 2)
    assert err_xgb < 0.3 * err_ols


def test_xgb_shapes_missing_metrics_and_models():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((60, 3)).astype(np.float32)
    units, arms = rows_for([30, 30], 60, rng)
    Y = rng.standard_normal((60, 2))
    Y[arms == 1, 1] = np.nan
    Y[:5, 0] = np.nan
    model = XGBTLearner(n_estimators=5, n_jobs=1, progress=False).fit(X, units, arms, Y, n_arms=3)
    assert set(model.models_) == {(0, 0), (0, 1), (1, 0)}
    assert model.n_obs_[0, 0] == 25
    out = model.predict_outcomes(X, [1, 0, 1])
    assert out.shape == (60, 3, 2)
    assert np.isnan(out[:, 0, 1]).all() and np.isfinite(out[:, 1]).all()
    np.testing.assert_array_equal(out[:, 0], out[:, 2])
    cate = model.predict_cate(X, [1], [0])
    np.testing.assert_allclose(cate[:, 0, 0], out[:, 0, 0] - out[:, 1, 0], rtol=1e-6)


def test_xgboost_t_learner_skips_pairs_with_too_few_rows():
    rng = np.random.default_rng(4)
    arms = np.repeat([0, 1, 2], [40, 40, 5])  # arm 2 has five units
    X = rng.normal(size=(arms.size, 3))
    Y = rng.normal(size=(arms.size, 2))
    model = XGBTLearner(n_estimators=5, n_jobs=1, progress=False, min_rows=20).fit(
        X, np.arange(arms.size), arms, Y, n_arms=3)
    assert sorted(model.models_) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert np.isnan(model.predict_outcomes(X[:3], [2])).all() and np.isfinite(model.predict_outcomes(X[:3], [1])).all()
