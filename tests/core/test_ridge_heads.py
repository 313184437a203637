"""Closed-form ridge and structured heads on a frozen extractor (ridge_heads.py)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from lrl_core.ridge_heads import RidgeHeads, StructuredHeads


def linear_experiment(rng, n_per_arm=(60, 50, 40), d=5, J=3, noise=0.3, v_mean=0.5):
    """Arms 0..A-1 with linear outcome models on ``v``; returns V, arm, Y and the true coefficients."""
    arm = np.repeat(np.arange(len(n_per_arm)), n_per_arm)
    V = v_mean + rng.normal(size=(arm.size, d))
    coef = rng.normal(size=(len(n_per_arm), J, d + 1))
    Z = np.hstack([np.ones((arm.size, 1)), V])
    Y = np.einsum("nk,njk->nj", Z, coef[arm]) + noise * rng.normal(size=(arm.size, J))
    return V, arm, Y, coef


def test_ridge_with_fixed_alpha_equals_reference_fits_and_formulas():
    rng = np.random.default_rng(0)
    V, arm, Y, _ = linear_experiment(rng)
    Y[rng.random(Y.shape) < 0.2] = np.nan
    alpha = 3.0
    heads = RidgeHeads(alpha=alpha).fit(V, arm, Y)
    d = V.shape[1]
    P = np.diag([0.0] + [1.0] * d)
    for a in range(3):
        for j in range(3):
            rows = (arm == a) & np.isfinite(Y[:, j])
            ref = Ridge(alpha=alpha, fit_intercept=True, solver="cholesky").fit(V[rows], Y[rows, j])
            np.testing.assert_allclose(heads.coef_[a, j, 0], ref.intercept_, rtol=0, atol=1e-8)
            np.testing.assert_allclose(heads.coef_[a, j, 1:], ref.coef_, rtol=0, atol=1e-8)
            # sigma2 on n - trace(hat) degrees of freedom; cov = s2 (Z'Z+aP)^-1 Z'Z (Z'Z+aP)^-1.
            Z = np.hstack([np.ones((rows.sum(), 1)), V[rows]])
            K = np.linalg.inv(Z.T @ Z + alpha * P)
            hat = Z @ K @ Z.T
            resid = Y[rows, j] - hat @ Y[rows, j]
            sigma2 = resid @ resid / (rows.sum() - np.trace(hat))
            np.testing.assert_allclose(heads.sigma2_[a, j], sigma2, rtol=1e-8)
            np.testing.assert_allclose(heads.cov_[a, j], sigma2 * K @ Z.T @ Z @ K, rtol=1e-7, atol=1e-12)
            assert heads.n_[a, j] == rows.sum()


def test_cate_is_predicted_difference_and_se_is_the_quadratic_form():
    rng = np.random.default_rng(1)
    V, arm, Y, _ = linear_experiment(rng)
    heads = RidgeHeads().fit(V, arm, Y)
    V_new = rng.normal(size=(30, V.shape[1]))
    pred = heads.predict_outcomes(V_new)
    assert pred.shape == (30, 3, 3)
    np.testing.assert_allclose(heads.predict_cate(V_new), pred[:, 1:] - pred[:, :1], atol=1e-10)
    z = np.hstack([1.0, V_new[0]])
    by_hand = np.sqrt(z @ (heads.cov_[2, 1] + heads.cov_[0, 1]) @ z)
    np.testing.assert_allclose(heads.predict_cate_se(V_new)[0, 1, 1], by_hand, rtol=1e-10)


@pytest.mark.parametrize("kind", ["ridge", "structured"])
def test_standard_errors_match_the_spread_of_refits(kind):
    rng = np.random.default_rng(2)
    d, J, n_per_arm = 4, 3, 40
    A = rng.normal(size=(J, d, d))
    arm = np.repeat([0, 1], n_per_arm)
    V = rng.normal(size=(arm.size, d))  # fixed design: the covariance is conditional on it
    e = rng.normal(size=(2, d))
    mean = np.einsum("nd,jde,ne->nj", V, A, e[arm])
    noise = np.array([0.5, 1.0, 2.0])  # the metrics' noise differs
    V_new = rng.normal(size=(5, d))
    cates, ses = [], []
    for _ in range(400):
        Y = mean + noise * rng.normal(size=mean.shape)
        if kind == "ridge":
            heads = RidgeHeads(alpha=1.0).fit(V, arm, Y)
        else:
            heads = StructuredHeads(A, np.zeros(J), np.ones(J), alpha=1.0).fit(V, arm, Y)
        cates.append(heads.predict_cate(V_new))
        ses.append(heads.predict_cate_se(V_new))
    ratio = np.mean(ses, axis=0) / np.std(cates, axis=0)
    assert np.all((ratio > 0.7) & (ratio < 1.4)), ratio


def test_gcv_penalty_is_small_on_clean_signal_and_large_on_noise():
    rng = np.random.default_rng(3)
    V, arm, Y, _ = linear_experiment(rng, n_per_arm=(200, 200), noise=0.01)
    clean = RidgeHeads().fit(V, arm, Y)
    noise = RidgeHeads().fit(V, arm, rng.normal(size=Y.shape))
    # Penalties relative to the Gram's mean eigenvalue (~ n): tiny vs heavy shrinkage.
    assert np.all(clean.alpha_ / 200 < 1e-2)
    assert np.all(noise.alpha_ / 200 > 0.1)
    assert np.all(clean.alpha_ < noise.alpha_ / 100)


def test_unobserved_arm_metric_gives_nan_only_there():
    rng = np.random.default_rng(4)
    V, arm, Y, _ = linear_experiment(rng)
    Y[arm == 2, 1] = np.nan  # arm 2 never reports metric 1
    heads = RidgeHeads().fit(V, arm, Y)
    assert np.isnan(heads.coef_[2, 1]).all() and heads.n_[2, 1] == 0
    cate, se = heads.predict_cate(V[:5]), heads.predict_cate_se(V[:5])
    assert np.isnan(cate[:, 1, 1]).all() and np.isnan(se[:, 1, 1]).all()
    cate[:, 1, 1] = se[:, 1, 1] = 0.0
    assert np.isfinite(cate).all() and np.isfinite(se).all()


def structured_experiment(rng, n_per_arm, d=6, J=4, noise=0.5):
    A = rng.normal(size=(J, d, d)) / np.sqrt(d)
    y_mean, y_scale = rng.normal(size=J), np.exp(rng.normal(size=J))
    e = rng.normal(size=(2, d))
    arm = np.repeat([0, 1], n_per_arm)
    V = rng.normal(size=(arm.size, d))
    std = np.einsum("nd,jde,ne->nj", V, A, e[arm])
    Y = y_mean + y_scale * (std + noise * rng.normal(size=std.shape))
    V_test = rng.normal(size=(500, d))
    tau = y_scale * np.einsum("nd,jde,e->nj", V_test, A, e[1] - e[0])
    return A, y_mean, y_scale, e, V, arm, Y, V_test, tau


def test_structured_heads_recover_planted_arm_embeddings():
    rng = np.random.default_rng(5)
    A, y_mean, y_scale, e, V, arm, Y, V_test, tau = structured_experiment(rng, 400, noise=0.1)
    heads = StructuredHeads(A, y_mean, y_scale).fit(V, arm, Y)
    assert np.linalg.norm(heads.e_ - e) / np.linalg.norm(e) < 0.02
    np.testing.assert_allclose(heads.predict_cate(V_test)[:, 0], tau, atol=0.05 * np.abs(tau).max())


def test_structured_heads_beat_ridge_heads_on_few_rows():
    rng = np.random.default_rng(6)
    errors = {"ridge": [], "structured": []}
    for _ in range(20):
        A, y_mean, y_scale, e, V, arm, Y, V_test, tau = structured_experiment(rng, 15)
        err = lambda heads: np.mean(((heads.predict_cate(V_test)[:, 0] - tau) / y_scale) ** 2)
        errors["ridge"].append(err(RidgeHeads().fit(V, arm, Y)))
        errors["structured"].append(err(StructuredHeads(A, y_mean, y_scale).fit(V, arm, Y)))
    assert np.mean(errors["structured"]) < 0.5 * np.mean(errors["ridge"]), errors
