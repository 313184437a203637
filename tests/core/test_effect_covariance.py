"""The covariance of effects across weak experiments and metric proxies (effect_covariance.py)."""
from __future__ import annotations

import numpy as np
import pytest

from lrl_core.effect_covariance import ArmEffects, effect_covariance, effect_covariances, proxy_weights

# True effects' covariance across arms (metric 0 the north star), small against the noise of
# arms of 5k-200k units whose metrics correlate within units more than their effects do.
LAMBDA = np.array([[1.0, 0.6, 0.3], [0.6, 1.0, 0.0], [0.3, 0.0, 0.5]]) * 1e-4
OMEGA = np.array([[1.0, 0.8, 0.5], [0.8, 1.0, 0.4], [0.5, 0.4, 1.0]])
BETA = np.linalg.solve(LAMBDA[1:, 1:], LAMBDA[1:, 0])


def weak_experiments(seed: int, n_arms: int = 300) -> ArmEffects:
    """Sufficient statistics of ``n_arms`` two-arm experiments of ``n`` units per arm."""
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(5e3), np.log(2e5), n_arms))
    true = rng.multivariate_normal(np.zeros(3), LAMBDA, n_arms)
    factor = np.linalg.cholesky(OMEGA)

    def noise(share: float) -> np.ndarray:
        """Noise of a difference in means over ``1 / share`` of each arm's units."""
        return (rng.normal(size=(n_arms, 3)) @ factor.T) * np.sqrt(share * 2 / n)[:, None]

    half_a, half_b = true + noise(2), true + noise(2)
    return ArmEffects(effect=(half_a + half_b) / 2, noise=OMEGA[None] * (2 / n)[:, None, None],
                      half_a=half_a, half_b=half_b, pooled=true + noise(0.01))


def test_naive_is_biased_and_tc_jive_liml_recover_covariance_and_proxies_within_their_intervals():
    """Issue 14's simulation: 10 seeds of 300 weak experiments."""
    covered = {name: [] for name in ("naive", "tc", "jive", "pooled")}
    proxied = {name: [] for name in ("naive", "tc", "jive", "liml")}
    for seed in range(10):
        arms = weak_experiments(seed)
        for name, estimate in effect_covariances(arms).items():
            covered[name].append(np.abs(estimate.covariance - LAMBDA) <= 2.5 * estimate.se)
        for name in proxied:
            fit = proxy_weights(arms, 0, [1, 2], name)
            proxied[name].append(np.abs(fit.weight - BETA) <= 2.5 * fit.weight_se)
    share = {name: np.mean(hits, axis=0) for name, hits in covered.items()}
    # The noise's covariance (0.8 x noise variance between metrics 0 and 1) swamps the effects'.
    assert share["naive"][0, 1] <= 0.2 and share["naive"][0, 0] <= 0.2
    for name in ("tc", "jive", "pooled"):
        assert (share[name] >= 0.7).all(), (name, share[name])
    proxy_share = {name: np.mean(hits, axis=0) for name, hits in proxied.items()}
    assert proxy_share["naive"].min() <= 0.3
    for name in ("tc", "jive", "liml"):
        assert (proxy_share[name] >= 0.7).all(), (name, proxy_share[name])


def test_correlations_and_r2_follow_from_the_covariance():
    arms = weak_experiments(11, n_arms=2000)  # pooled effects carry almost no noise: nearly the truth
    pooled = effect_covariance(arms, "pooled")
    truth_corr = LAMBDA / np.sqrt(np.outer(np.diag(LAMBDA), np.diag(LAMBDA)))
    np.testing.assert_allclose(pooled.correlation, truth_corr, atol=0.08)
    fit = proxy_weights(arms, 0, [1, 2], "pooled")
    r2 = LAMBDA[0, 1:] @ BETA / LAMBDA[0, 0]
    assert abs(fit.r2 - r2) < 0.08 and np.all(fit.weight_se > 0) and fit.n_arms == 2000


def test_an_arm_without_a_metric_leaves_only_that_metrics_pairs():
    arms = weak_experiments(3, n_arms=60)
    arms.effect[:10, 2] = np.nan
    arms.half_a[:10, 2] = arms.half_b[:10, 2] = np.nan
    estimate = effect_covariance(arms, "tc")
    assert estimate.n_arms[0, 1] == 60 and estimate.n_arms[0, 2] == 50 and estimate.n_arms[2, 2] == 50
    assert np.isfinite(estimate.covariance).all()
    without = effect_covariance(arms.subset(np.arange(10, 60)), "tc")
    np.testing.assert_allclose(estimate.covariance[2], without.covariance[2])
    assert proxy_weights(arms, 0, [1, 2], "jive").n_arms == 50


def test_bad_requests_are_named():
    arms = weak_experiments(0, n_arms=20)
    with pytest.raises(ValueError, match="unknown estimator"):
        effect_covariance(arms, "ols")
    with pytest.raises(ValueError, match="noise must have shape"):
        effect_covariance(ArmEffects(arms.effect, arms.noise[:, :2], arms.half_a, arms.half_b), "tc")
    with pytest.raises(ValueError, match="needs ArmEffects.pooled"):
        effect_covariance(ArmEffects(arms.effect, arms.noise, arms.half_a, arms.half_b), "pooled")
    with pytest.raises(ValueError, match="not the north star"):
        proxy_weights(arms, 0, [0, 1], "tc")
    assert "liml" not in effect_covariances(arms)
