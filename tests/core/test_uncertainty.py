"""The validation ceiling on the jackknife's CATE variances (uncertainty.py)."""
import numpy as np

from lrl_core.uncertainty import jackknife_cate_variance, validation_ceiling


class _ConstantLearner:
    """Predicts every outcome as 0, so a residual is minus the observed value."""

    def predict_outcomes(self, X, arms):
        return np.zeros((len(X), len(arms), 2))


def test_ceiling_is_the_arm_and_control_residuals_floored_at_the_metric_mean():
    # Arms 0 (control) and 1 of one experiment; arm 2 (control) and 3 of another, 3 without rows.
    controls = np.array([0, 0, 2, 2])
    arms = np.array([0, 0, 1, 1, 2, 2])
    Y = np.array([[1.0, 2.0], [1.0, np.nan], [3.0, 0.0], [3.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    X = np.zeros((6, 1))
    ceiling = validation_ceiling(_ConstantLearner(), X, np.arange(6), arms, Y, controls)

    overall = np.array([(1 + 1 + 9 + 9) / 6, 4 / 5])
    per_arm = np.array([[1.0, 4.0], [9.0, 0.0], [0.0, 0.0], [np.nan, np.nan]])
    per_arm = np.fmax(per_arm, overall)
    assert np.isnan(ceiling[[0, 2]]).all()  # controls have no CATE
    np.testing.assert_allclose(ceiling[1], per_arm[1] + per_arm[0])
    # An arm with no validation row, and its control with small residuals, fall back to the metric mean.
    np.testing.assert_allclose(ceiling[3], 2 * overall)


class _MeanEffect:
    """The difference of two arms' outcome means over the rows it was fitted on: variance sigma^2 / n."""

    n_metrics_ = 1
    y_scale_ = np.ones(1)

    def __init__(self, arms, Y):
        self.means = np.array([Y[arms == g, 0].mean() for g in (0, 1)])

    def predict_cate(self, X, arms, controls):
        return np.full((len(X), 1, 1), self.means[arms[0]] - self.means[controls[0]])

    class model_:  # noqa: N801 - the attribute the jackknife reads the arms' weights from
        @staticmethod
        def arm_weights():
            import torch
            return torch.tensor([[[0.0]], [[1.0]]])


def test_jackknife_of_a_mean_effect_is_unbiased_for_its_variance():
    # Two arms of 100 units each, outcome sd 1: the effect's variance is 1/100 + 1/100.
    rng = np.random.default_rng(0)
    n, estimates = 200, []
    arms = np.repeat([0, 1], n // 2)
    X, units, controls = np.zeros((n, 1)), np.arange(n), np.array([0, 0])
    for repeat in range(2000):
        Y = rng.normal(size=(n, 1))
        result = jackknife_cate_variance(lambda keep: _MeanEffect(arms[keep], Y[keep]), _MeanEffect(arms, Y),
                                         X, units, arms, controls, n_refits=5, drop=0.1, seed=repeat)
        estimates.append(result.cate_var[1, 0])
    assert np.isnan(result.cate_var[0]).all()  # the control has no effect
    # 2000 draws of a 4-dof estimate: the mean is within about 2% of its expectation.
    assert abs(np.mean(estimates) / 0.02 - 1) < 0.06
