from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from lrl_core.metrics import location_scale, mu_risk, pehe, risk_table, summarise_risks, tau_risk


def test_pehe_is_nan_aware_mean_squared_difference():
    cate_hat = np.array([[1.0, 2.0], [3.0, np.nan]])
    cate_true = np.array([[0.0, 2.0], [1.0, 5.0]])
    assert pehe(cate_hat, cate_true) == pytest.approx((1.0 + 0.0 + 4.0) / 3)
    assert np.isnan(pehe([np.nan], [1.0]))


def test_mu_risk_per_metric():
    y_hat = np.array([[1.0, 0.0], [2.0, 1.0], [0.0, 4.0]])
    y = np.array([[0.0, np.nan], [2.0, 3.0], [3.0, np.nan]])
    np.testing.assert_allclose(mu_risk(y_hat, y), [(1.0 + 0.0 + 9.0) / 3, 4.0])
    assert np.isnan(mu_risk(np.zeros((2, 1)), np.full((2, 1), np.nan))).all()
    with pytest.raises(ValueError):
        mu_risk(np.zeros((2, 2)), np.zeros((3, 2)))


def test_tau_risk_by_hand_with_constant_features():
    # Constant X: the nuisances are the means, m = 2.5 and p = 0.5.
    y = np.array([1.0, 2.0, 3.0, 4.0])
    t = np.array([0, 0, 1, 1])
    X = np.ones((4, 1))
    # Residuals y - m = [-1.5, -0.5, 0.5, 1.5]; t - p = [-0.5, -0.5, 0.5, 0.5].
    assert tau_risk(y, t, np.ones(4), X) == pytest.approx(np.mean([1.0, 0.0, 0.0, 1.0]))
    assert tau_risk(y, t, np.full(4, 3.0), X) == pytest.approx(np.mean([0.0, 1.0, 1.0, 0.0]))
    # A NaN outcome row is dropped, not propagated.
    with_nan = tau_risk(np.append(y, np.nan), np.append(t, 1), np.ones(5), np.ones((5, 1)))
    assert with_nan == pytest.approx(0.5)


def test_tau_risk_nuisances_are_least_squares_with_intercept():
    rng = np.random.default_rng(0)
    m = 300
    X = rng.standard_normal((m, 3)) * [1.0, 10.0, 0.1] + 5.0
    t = (rng.random(m) < 0.3 + 0.1 * (X[:, 0] > 5)).astype(float)
    y = X @ [1.0, -0.2, 3.0] + t + rng.standard_normal(m)
    tau = rng.standard_normal(m)
    m_hat = LinearRegression().fit(X, y).predict(X)
    p_hat = LinearRegression().fit(X, t).predict(X)
    expected = np.mean(((y - m_hat) - (t - p_hat) * tau) ** 2)
    assert tau_risk(y, t, tau, X) == pytest.approx(expected, rel=1e-5)


def test_true_tau_has_lower_tau_risk_than_a_wrong_one():
    rng = np.random.default_rng(1)
    m = 4000
    X = rng.standard_normal((m, 3))
    t = rng.random(m) < 0.5
    tau = 1.0 + X[:, 0]
    y = X[:, 1] + t * tau + rng.standard_normal(m)
    right = tau_risk(y, t, tau, X)
    # Expected gap: E[(t - p)^2] * E[x0^2] = 0.25.
    assert right < tau_risk(y, t, np.ones(m), X) - 0.1
    assert right < tau_risk(y, t, 1.0 - X[:, 0], X) - 0.5


class LinearDummy:
    """Outcome of arm g for metric j: ``x0 * (g + 1) + j`` (so CATEs are known exactly)."""

    def __init__(self):
        self.calls = 0

    def predict_outcomes(self, X, arms):
        self.calls += 1
        arms = np.asarray(arms)
        return X[:, :1, None] * (arms[None, :, None] + 1.0) + np.arange(2.0)[None, None, :]

    def predict_cate(self, X, arms, controls):
        self.calls += 1
        return self.predict_outcomes(X, arms) - self.predict_outcomes(X, controls)


@pytest.fixture
def two_experiments():
    rng = np.random.default_rng(2)
    n = 60
    X = rng.standard_normal((n, 2))
    # Experiment e0: arms 0 (control), 1, 2; experiment e1: arms 3 (control), 4.
    arm_experiment = np.array([0, 0, 0, 1, 1])
    control_arm = np.array([0, 3])
    units = np.concatenate([np.arange(30), np.arange(30, 60), np.arange(0, 20)])
    arms = np.concatenate([np.repeat([0, 1, 2], 10), np.repeat([3, 4], 15), np.repeat([3, 4], 10)])
    Y = rng.standard_normal((units.size, 2))
    Y[arm_experiment[arms] == 1, 1] = np.nan  # e1 does not report metric "b"
    Y[3, 0] = np.nan
    return dict(
        X=X,
        units=units,
        arms=arms,
        Y=Y,
        arm_experiment=arm_experiment,
        control_arm=control_arm,
        experiments=["e0", "e1"],
        arm_names=["control", "t1", "t2", "control", "t1"],
        metrics=["a", "b"],
    )


def test_risk_table_layout_and_values(two_experiments):
    d = two_experiments
    model = LinearDummy()
    kwargs = {k: d[k] for k in ("arm_experiment", "control_arm", "experiments", "arm_names", "metrics")}
    table = risk_table(model, d["X"], d["units"], d["arms"], d["Y"], **kwargs)
    assert list(table.columns) == ["experiment_id", "arm", "metric", "n", "mu_risk", "tau_risk", "pehe"]
    assert list(zip(table.experiment_id, table.arm, table.metric)) == [
        ("e0", "t1", "a"),
        ("e0", "t1", "b"),
        ("e0", "t2", "a"),
        ("e0", "t2", "b"),
        ("e1", "t1", "a"),
    ]
    assert model.calls <= 2 * 2 * 3  # a bounded number of calls per experiment, not per metric
    assert table.pehe.isna().all()

    # e0, arm t1, metric a: rows of arms 0 and 1, one of them (row 3) unobserved.
    rows = np.flatnonzero(np.isin(d["arms"], [0, 1]) & ~np.isnan(d["Y"][:, 0]))
    x0 = d["X"][d["units"][rows], 0]
    y = d["Y"][rows, 0]
    expected_mu = np.mean((x0 * (d["arms"][rows] + 1) - y) ** 2)
    expected_tau = tau_risk(y, d["arms"][rows] == 1, x0, d["X"][d["units"][rows]])
    first = table.iloc[0]
    assert first.n == rows.size == 19
    assert first.mu_risk == pytest.approx(expected_mu)
    assert first.tau_risk == pytest.approx(expected_tau)


def test_risk_table_scaling_and_pehe(two_experiments):
    d = two_experiments
    kwargs = {k: d[k] for k in ("arm_experiment", "control_arm", "experiments", "arm_names", "metrics")}
    plain = risk_table(LinearDummy(), d["X"], d["units"], d["arms"], d["Y"], **kwargs)

    def truth(unit_index, arm_index):
        # The dummy's outcomes plus an arm effect of 0.5 per arm for metric 0 only.
        x0 = d["X"][unit_index, 0]
        base = x0[:, None] * (arm_index[:, None] + 1.0) + np.arange(2.0)
        return base + np.column_stack([0.5 * arm_index, np.zeros(arm_index.size)])

    scaled = risk_table(
        LinearDummy(),
        d["X"],
        d["units"],
        d["arms"],
        d["Y"],
        y_scale=np.array([2.0, 1.0]),
        true_outcomes=truth,
        **kwargs,
    )
    np.testing.assert_allclose(scaled.mu_risk, plain.mu_risk / np.where(plain.metric == "a", 4.0, 1.0))
    np.testing.assert_allclose(scaled.tau_risk, plain.tau_risk / np.where(plain.metric == "a", 4.0, 1.0))
    # CATE errors: 0.5 * (arm - control) on metric a (scaled by 1/4), none on metric b.
    arm_gap = np.array([1, 1, 2, 2, 1])
    expected = np.where(scaled.metric == "a", (0.5 * arm_gap) ** 2 / 4.0, 0.0)
    np.testing.assert_allclose(scaled.pehe, expected, atol=1e-12)


def test_summarise_risks_means_and_improvement():
    def table(mu, tau):
        return pd.DataFrame(
            {
                "experiment_id": ["e0", "e1", "e0", "e1"],
                "arm": ["t"] * 4,
                "metric": ["a", "a", "b", "b"],
                "n": [10] * 4,
                "mu_risk": mu,
                "tau_risk": tau,
                "pehe": [np.nan] * 4,
            }
        )

    lr, ols = table([1.0, 3.0, 2.0, 2.0], [1.0] * 4), table([4.0] * 4, [2.0] * 4)
    summary = summarise_risks({"lr": lr, "ols": ols})
    assert list(summary.index) == ["a", "b"]
    assert "pehe" not in summary.columns.get_level_values("risk")
    np.testing.assert_allclose(summary[("mu_risk", "lr")], [2.0, 2.0])
    np.testing.assert_allclose(summary[("mu_risk", "ols")], [4.0, 4.0])
    np.testing.assert_allclose(summary[("mu_risk", "improvement_vs_ols")], [0.5, 0.5])
    np.testing.assert_allclose(summary[("tau_risk", "improvement_vs_ols")], [0.5, 0.5])


def test_location_scale_is_the_plain_one_on_clean_data_and_ignores_a_bad_feed():
    """Issue 18 item 2: one experiment's 1e12 feed cannot set the scale every experiment trains in."""
    rng = np.random.default_rng(0)
    clean = np.column_stack([rng.normal(3.0, 2.0, 5000), (rng.random(5000) < 0.1).astype(float),
                             rng.lognormal(0.0, 1.0, 5000)])
    clean[::7, 0] = np.nan
    mean, scale = location_scale(clean)
    observed = [clean[np.isfinite(clean[:, j]), j] for j in range(3)]
    np.testing.assert_allclose(mean[:2], [o.mean() for o in observed[:2]])
    np.testing.assert_allclose(scale[:2], [o.std() for o in observed[:2]])
    # A heavy right tail is kept nearly whole (lognormal: only values beyond 50 robust sd are left out).
    assert abs(scale[2] / observed[2].std() - 1) < 0.1

    broken = clean.copy()
    broken[:20] = 1e12
    broken_mean, broken_scale = location_scale(broken)
    np.testing.assert_allclose(broken_mean, mean, rtol=0.02)
    np.testing.assert_allclose(broken_scale, scale, rtol=0.02)
    # Nothing observed, or one value only: the identity.
    empty = location_scale(np.array([[np.nan, 1.0], [np.nan, 1.0]]))
    np.testing.assert_array_equal(np.concatenate(empty), [0.0, 1.0, 1.0, 1.0])
