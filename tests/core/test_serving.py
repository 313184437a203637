"""Choosing the served estimator per (arm, metric) on held-out rows (serving.py, metrics.r_loss_gain)."""
from __future__ import annotations

import numpy as np

from lrl_core.metrics import r_loss_gain
from lrl_core.serving import POOLED, blend_weight, choose_served_models, served_se_scale


class Linear:
    """Outcome of arm g: X @ beta[g] (a stand-in for any fitted model)."""

    def __init__(self, beta):
        self.beta = np.asarray(beta, dtype=np.float64)  # (G, p, J)

    def predict_outcomes(self, X, arms):
        return np.einsum("np,gpj->ngj", X, self.beta[np.asarray(arms)])

    def predict_cate(self, X, arms, controls):
        return self.predict_outcomes(X, arms) - self.predict_outcomes(X, controls)


def _world(seed=0, n=400):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    beta = rng.normal(size=(4, 3, 2))  # two experiments: arms (0 control, 1), (2 control, 3)
    arms = rng.choice(4, size=n)
    Y = np.einsum("np,npj->nj", X, beta[arms]) + 0.3 * rng.normal(size=(n, 2))
    return X, np.arange(n), arms, Y, beta


def test_gain_is_positive_for_the_better_cate_and_its_se_shrinks_with_rows():
    rng = np.random.default_rng(1)
    n = 4000
    t = rng.random(n) < 0.5
    tau = rng.normal(size=n)
    y = t * tau + rng.normal(size=n)
    gain, se = r_loss_gain(y, t, np.zeros(n), np.zeros(n), tau)
    assert gain > 4 * se > 0
    # Expected gain p (1 - p) (MSE_ref - MSE_alt) = 0.25 * E[tau^2] = 0.25.
    assert abs(gain - 0.25) < 0.05
    _, se_small = r_loss_gain(y[:400], t[:400], np.zeros(400), np.zeros(400), tau[:400])
    assert se_small > 2 * se


def test_a_t_learner_serves_only_where_it_is_clearly_better():
    X, units, arms, Y, beta = _world()
    control_arm, arm_experiment = np.array([0, 2]), np.array([0, 0, 1, 1])
    truth = Linear(beta)
    # The "pooled" model knows experiment 0 exactly and gives experiment 1 no effect at all.
    wrong = beta.copy()
    wrong[3] = wrong[2]
    served = choose_served_models(Linear(wrong), {"exact_t": truth}, X, units, arms, Y, control_arm, arm_experiment)
    assert list(served["arm"]) == [1, 1, 3, 3] and list(served["metric"]) == [0, 1, 0, 1]
    assert list(served["model"][:2]) == [POOLED, POOLED]
    # The exact T-learner takes (nearly) all the weight where the pooled model is wrong.
    assert all(m in ("exact_t", f"{POOLED}+exact_t") for m in served["model"][2:])
    assert (served["pooled_weight"][2:] < 0.2).all() and (served["pooled_weight"][:2] == 1.0).all()
    # Identical models: never switched.
    same = choose_served_models(truth, {"exact_t": truth}, X, units, arms, Y, control_arm, arm_experiment)
    assert (same["model"] == POOLED).all()


def test_blend_weight_is_one_without_evidence_and_finds_the_mix_with_it():
    rng = np.random.default_rng(2)
    n = 20000
    t = rng.random(n) < 0.5
    tau = rng.normal(size=n)
    y = t * tau + 0.5 * rng.normal(size=n)
    # Two estimators with independent errors of equal size: the best blend is half and half.
    a, b = tau + 0.5 * rng.normal(size=n), tau + 0.5 * rng.normal(size=n)
    w, se = blend_weight(y, t, np.zeros(n), a, b)
    assert abs(w - 0.5) < 0.1 and se < 0.05
    # On 30 rows the same comparison cannot tell: the pooled model keeps its whole weight.
    assert blend_weight(y[:30], t[:30], np.zeros(30), tau[:30] + 0.05, tau[:30])[0] == 1.0


def test_served_se_scale_recovers_the_blends_error_from_the_pooled_variance_and_the_gain():
    rng = np.random.default_rng(3)
    n = 40000
    x = rng.normal(size=n)
    t = rng.random(n) < 0.3
    tau = np.sin(2 * x)
    y = x + t * tau + 0.5 * rng.normal(size=n)
    pooled = tau + 0.5 * x  # a biased pooled CATE
    alt = tau + 0.4 * rng.normal(size=n)  # an unbiased, noisier one
    w, _ = blend_weight(y, t, x + t.mean() * pooled, pooled, alt)
    blend = w * pooled + (1 - w) * alt
    gain, _ = r_loss_gain(y, t, x + t.mean() * pooled, pooled, blend)
    mse_pooled, mse_blend = np.mean((pooled - tau) ** 2), np.mean((blend - tau) ** 2)
    scale = served_se_scale(mse_pooled, gain, t.mean(), w)
    assert 0 < w < 1 and 0 < scale < 1
    assert 0.7 < scale**2 * mse_pooled / mse_blend < 1.4
    # Nothing known: the pooled standard error stands; a gain beyond the pooled variance: unknown.
    assert served_se_scale(float("nan"), gain, 0.3, w) == 1.0
    assert np.isnan(served_se_scale(0.5 * gain / 0.21, gain, 0.3, w))
    # Never below the pooled model's share of the blend.
    assert served_se_scale(1.0, 0.2, 0.5, 0.9) == 0.9


def test_choose_served_models_scales_the_se_of_blended_cells_only():
    X, units, arms, Y, beta = _world(n=4000)
    control_arm, arm_experiment = np.array([0, 2]), np.array([0, 0, 1, 1])
    wrong = beta.copy()
    wrong[3] = wrong[2]
    pooled = Linear(wrong)
    pooled.cate_var_ = np.full((4, 2), 3.0)
    served = choose_served_models(pooled, {"exact_t": Linear(beta)}, X, units, arms, Y, control_arm, arm_experiment)
    assert (served.loc[served["model"] == POOLED, "se_scale"] == 1.0).all()
    blended = served[served["model"] != POOLED]
    assert len(blended) and ((blended["se_scale"] < 1.0) | blended["se_scale"].isna()).all()
