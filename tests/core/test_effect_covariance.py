"""The covariance of effects across weak experiments and metric proxies (effect_covariance.py)."""
from __future__ import annotations

import numpy as np
import pytest

from lrl_core.effect_covariance import (
    ESTIMATORS, ArmEffects, CovarianceEstimate, effect_covariance, effect_covariances, proxy_weights,
)

# Issue 14's world, after the paper's simulation: metric 0 the north star, whose true effect is
# BETA' the proxies' (metrics 1, 2) plus, optionally, a direct effect of its own. The effects are
# as small as the noise of arms of 5k-200k units, whose metrics correlate within units (OMEGA)
# more than their effects do, so the noise alone makes a naive covariance look like signal.
SIGMA = np.array([[1.0, 0.3], [0.3, 0.5]]) * 1e-4
BETA = np.array([0.6, 0.6])
OMEGA = np.array([[1.0, 0.8, 0.5], [0.8, 1.0, 0.4], [0.5, 0.4, 1.0]])
DIRECT = 0.4e-4
SEEDS = range(10)


def true_covariance(direct: float) -> np.ndarray:
    """``Lambda`` of (north star, proxy 1, proxy 2) with a direct effect of variance ``direct``."""
    covariance = np.zeros((3, 3))
    covariance[1:, 1:] = SIGMA
    covariance[0, 1:] = covariance[1:, 0] = SIGMA @ BETA
    covariance[0, 0] = BETA @ SIGMA @ BETA + direct
    return covariance


def weak_experiments(seed: int, direct: float, n_arms: int = 300) -> ArmEffects:
    """Sufficient statistics of ``n_arms`` treated arms, each against its own control."""
    rng = np.random.default_rng(seed)
    n_t, n_c = np.exp(rng.uniform(np.log(5e3), np.log(2e5), (2, n_arms)))
    proxies = rng.multivariate_normal(np.zeros(2), SIGMA, n_arms)
    true = np.column_stack([proxies @ BETA + rng.normal(0.0, np.sqrt(direct), n_arms), proxies])
    scale = 1 / n_t + 1 / n_c
    root = np.linalg.cholesky(OMEGA)

    def noise(share: float) -> np.ndarray:
        """Noise of a difference in means over ``share`` of each arm's units."""
        return rng.normal(size=(n_arms, 3)) @ root.T * np.sqrt(scale / share)[:, None]

    half_a, half_b = true + noise(0.5), true + noise(0.5)
    return ArmEffects(effect=(half_a + half_b) / 2, noise=OMEGA[None] * scale[:, None, None],
                      half_a=half_a, half_b=half_b, pooled=true + noise(100.0))


def coverage(direct: float, covariance: list[str], proxies: list[str]) -> tuple[dict, dict]:
    """Per estimator, the share of SEEDS whose 2.5-se interval holds the truth: of each covariance
    entry, and of (proxy weight 1, proxy weight 2, r2)."""
    truth = true_covariance(direct)
    r2 = BETA @ SIGMA @ BETA / truth[0, 0]
    entries = {name: [] for name in covariance}
    fits = {name: [] for name in proxies}
    for seed in SEEDS:
        arms = weak_experiments(seed, direct)
        for name in covariance:
            estimate = effect_covariance(arms, name)
            entries[name].append(np.abs(estimate.covariance - truth) <= 2.5 * estimate.se)
        for name in proxies:
            fit = proxy_weights(arms, 0, [1, 2], name)
            fits[name].append(np.abs(np.append(fit.weight - BETA, fit.r2 - r2))
                              <= 2.5 * np.append(fit.weight_se, fit.r2_se))
    return ({name: np.mean(hits, axis=0) for name, hits in entries.items()},
            {name: np.mean(hits, axis=0) for name, hits in fits.items()})


def test_in_the_surrogacy_world_naive_is_biased_and_tc_jive_liml_pooled_recover_covariance_and_weights():
    """Issue 14's simulation (the paper's model: no direct effect, a singular ``Lambda``)."""
    entries, fits = coverage(0.0, list(ESTIMATORS), list(ESTIMATORS))
    # The noise's covariance (0.8 of the noise variance between metrics 0 and 1) swamps the effects'.
    assert entries["naive"][0, 1] <= 0.2 and entries["naive"][0, 0] <= 0.2, entries["naive"]
    assert fits["naive"][1] <= 0.3, fits["naive"]
    for name in ("tc", "jive", "liml", "pooled"):
        assert (entries[name] >= 0.7).all(), (name, entries[name])
        assert (fits[name][:2] >= 0.7).all(), (name, fits[name])


def test_with_direct_effects_tc_and_jive_still_recover_r2_and_liml_subtracts_too_much_noise():
    entries, fits = coverage(DIRECT, ["tc", "jive", "liml", "pooled"], ["tc", "jive", "pooled"])
    for name in ("tc", "jive", "pooled"):
        assert (entries[name] >= 0.7).all(), (name, entries[name])
        assert (fits[name] >= 0.7).all(), (name, fits[name])
    # Full-rank Lambda: kappa > 1, so liml's variances come out too small.
    assert entries["liml"][2, 2] <= 0.5, entries["liml"]
    arms = weak_experiments(0, DIRECT)
    assert np.all(np.diag(effect_covariance(arms, "liml").covariance) < np.diag(effect_covariance(arms, "tc").covariance))
    assert proxy_weights(arms, 0, [1, 2], "liml").r2 == pytest.approx(1.0)


def test_tc_and_jive_are_unbiased_with_few_arms_and_unequal_weights():
    """Fixed true effects, many noise draws: tc's small-sample noise term and jive's cross products
    leave exactly the weighted covariance of the true effects in expectation."""
    rng = np.random.default_rng(5)
    n_arms, draws = 12, 2000
    true = rng.multivariate_normal(np.zeros(3), true_covariance(DIRECT), n_arms)
    size = np.append(np.full(n_arms - 1, 5e3), 2e5)  # one large arm: the weights far from equal
    weight, noise = size, OMEGA[None] * (4 / size)[:, None, None]  # weights n_eff, as in the paper's code
    target = np.cov(true, aweights=weight, rowvar=False)
    root = np.linalg.cholesky(OMEGA)
    estimates = {"naive": [], "tc": [], "jive": []}
    for _ in range(draws):
        half_a, half_b = (true + rng.normal(size=(n_arms, 3)) @ root.T * np.sqrt(8 / size)[:, None]
                          for _ in range(2))
        arms = ArmEffects((half_a + half_b) / 2, noise, half_a, half_b, weight=weight)
        for name, values in estimates.items():
            values.append(effect_covariance(arms, name, groups=1).covariance)
    error = {name: np.mean(values, axis=0) - target for name, values in estimates.items()}
    tolerance = {name: 4 * np.std(values, axis=0) / np.sqrt(draws) for name, values in estimates.items()}
    assert (np.abs(error["tc"]) <= tolerance["tc"]).all(), error["tc"] / tolerance["tc"]
    assert (np.abs(error["jive"]) <= tolerance["jive"]).all(), error["jive"] / tolerance["jive"]
    assert (error["naive"] > 3 * tolerance["naive"]).all()
    # The plain weighted mean of the noise would leave a bias far beyond the tolerance.
    plain = (weight[:, None, None] * noise).sum(axis=0) / weight.sum()
    assert (np.abs(error["naive"] - plain) > 3 * tolerance["tc"]).all()


def test_correlation_and_proxy_algebra_follow_a_known_covariance():
    rng = np.random.default_rng(2)
    truth = true_covariance(DIRECT)
    raw = rng.normal(size=(50, 3))
    raw -= raw.mean(axis=0)
    # Arm effects whose sample covariance is exactly ``truth``: the pooled estimator returns it.
    exact = raw @ np.linalg.inv(np.linalg.cholesky(np.cov(raw, rowvar=False))).T @ np.linalg.cholesky(truth).T
    arms = ArmEffects(exact, np.zeros((50, 3, 3)), exact, exact, pooled=exact)
    estimate = effect_covariance(arms, "pooled")
    np.testing.assert_allclose(estimate.covariance, truth, rtol=1e-10)
    sd = np.sqrt(np.diag(truth))
    np.testing.assert_allclose(estimate.correlation, truth / np.outer(sd, sd), rtol=1e-10)
    assert (estimate.n_arms == 50).all() and (estimate.se > 0).all()
    fit = proxy_weights(arms, 0, [1, 2], "pooled")
    np.testing.assert_allclose(fit.weight, BETA, rtol=1e-8)
    assert fit.r2 == pytest.approx(BETA @ SIGMA @ BETA / truth[0, 0], rel=1e-8)
    reverse = proxy_weights(arms, 2, [0], "pooled")
    assert reverse.weight[0] == pytest.approx(truth[0, 2] / truth[0, 0], rel=1e-8)
    assert reverse.r2 == pytest.approx(truth[0, 2] ** 2 / (truth[0, 0] * truth[2, 2]), rel=1e-8)
    # Weighted: the naive estimator is numpy's reliability-weighted covariance.
    weight = rng.uniform(0.1, 3.0, 50)
    weighted = ArmEffects(exact, np.zeros((50, 3, 3)), exact, exact, weight=weight)
    np.testing.assert_allclose(effect_covariance(weighted, "naive").covariance,
                               np.cov(exact, aweights=weight, rowvar=False), rtol=1e-10)


def test_correlation_is_nan_without_a_positive_variance_and_clipped_otherwise():
    covariance = np.array([[1.0, 1.2, 0.1], [1.2, 1.0, 0.1], [0.1, 0.1, -0.2]])
    correlation = CovarianceEstimate("tc", covariance, np.zeros((3, 3)), np.full((3, 3), 9)).correlation
    assert correlation[0, 1] == 1.0 and np.isnan(correlation[2]).all() and np.isnan(correlation[:, 2]).all()


def test_an_arm_without_a_metric_leaves_only_that_metrics_pairs():
    arms = weak_experiments(3, DIRECT, n_arms=60)
    for metric, lacking in ((2, slice(0, 10)), (1, slice(10, 15))):
        for values in (arms.effect, arms.half_a, arms.half_b, arms.pooled):
            values[lacking, metric] = np.nan
        arms.noise[lacking, metric, :] = arms.noise[lacking, :, metric] = np.nan
    seen = np.isfinite(arms.effect)
    for name in ("naive", "tc", "jive", "pooled"):
        estimate = effect_covariance(arms, name)
        np.testing.assert_array_equal(estimate.n_arms, seen.T.astype(int) @ seen)
        for a in range(3):
            for b in range(a, 3):
                both = arms.subset(seen[:, a] & seen[:, b])
                assert estimate.covariance[a, b] == pytest.approx(effect_covariance(both, name).covariance[a, b])
    assert effect_covariance(arms, "naive").n_arms[1, 2] == 45
    fit = proxy_weights(arms, 0, [1, 2], "jive")
    assert fit.n_arms == 45
    np.testing.assert_allclose(fit.weight, proxy_weights(arms.subset(seen.all(axis=1)), 0, [1, 2], "jive").weight)
    assert proxy_weights(arms, 0, [1], "jive").n_arms == 55
    assert np.isfinite(effect_covariance(arms, "liml").covariance).all()


def test_fewer_than_three_arms_give_nan():
    arms = weak_experiments(4, DIRECT, n_arms=30)
    arms.effect[2:, 2] = np.nan
    estimate = effect_covariance(arms, "tc")
    assert estimate.n_arms[2, 2] == 2 and np.isnan(estimate.covariance[2]).all()
    assert np.isfinite(estimate.covariance[:2, :2]).all()
    fit = proxy_weights(arms, 0, [1, 2], "tc")
    assert fit.n_arms == 2 and np.isnan(fit.weight).all() and np.isnan(fit.r2)


def test_effect_covariances_runs_every_estimator_the_inputs_allow():
    arms = weak_experiments(0, DIRECT, n_arms=40)
    assert tuple(effect_covariances(arms)) == ESTIMATORS
    arms.pooled = None
    assert tuple(effect_covariances(arms)) == tuple(name for name in ESTIMATORS if name != "pooled")


def test_bad_requests_are_named():
    arms = weak_experiments(0, DIRECT, n_arms=20)
    with pytest.raises(ValueError, match="unknown estimator"):
        effect_covariance(arms, "ols")
    with pytest.raises(ValueError, match="noise must have shape"):
        effect_covariance(ArmEffects(arms.effect, arms.noise[:, :2], arms.half_a, arms.half_b), "tc")
    with pytest.raises(ValueError, match="half_b must have shape"):
        effect_covariance(ArmEffects(arms.effect, arms.noise, arms.half_a, arms.half_b[:10]), "jive")
    with pytest.raises(ValueError, match="weight must have shape"):
        effect_covariance(ArmEffects(arms.effect, arms.noise, arms.half_a, arms.half_b, weight=np.ones(3)), "tc")
    with pytest.raises(ValueError, match="needs ArmEffects.pooled"):
        effect_covariance(ArmEffects(arms.effect, arms.noise, arms.half_a, arms.half_b), "pooled")
    with pytest.raises(ValueError, match="not the north star"):
        proxy_weights(arms, 0, [0, 1], "tc")
    with pytest.raises(ValueError, match="must lie in"):
        proxy_weights(arms, 0, [1, 3], "tc")
