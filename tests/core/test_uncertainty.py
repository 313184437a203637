"""The validation ceiling on the jackknife's CATE variances (uncertainty.py)."""
import numpy as np

from lrl_core.uncertainty import validation_ceiling


class _ConstantLearner:
    """Predicts every outcome as 0, so a residual is minus the observed value."""

    def predict_outcomes(self, X, arms):
        return np.zeros((len(X), len(arms), 2))


def test_ceiling_is_twice_the_arm_and_control_residuals_floored_at_the_metric_mean():
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
    np.testing.assert_allclose(ceiling[1], 2 * (per_arm[1] + per_arm[0]))
    # An arm with no validation row, and its control with small residuals, fall back to the metric mean.
    np.testing.assert_allclose(ceiling[3], 4 * overall)
