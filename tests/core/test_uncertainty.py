"""The validation ceiling on the jackknife's CATE variances (uncertainty.py)."""
import numpy as np

from lrl_core.uncertainty import jackknife_cate_variance, shrunk_means, validation_ceiling


class _ConstantLearner:
    """Predicts every outcome as 0, so a residual is minus the observed value."""

    def predict_outcomes(self, X, arms):
        return np.zeros((len(X), len(arms), 2))


def test_ceiling_is_the_arm_and_control_residuals_shrunk_to_the_metric_mean():
    # Arms 0 (control) and 1 of one experiment; arm 2 (control) and 3 of another, 3 without rows.
    controls = np.array([0, 0, 2, 2])
    arms = np.array([0, 0, 1, 1, 2, 2])
    Y = np.array([[1.0, 2.0], [1.0, np.nan], [3.0, 0.0], [3.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    X = np.zeros((6, 1))
    ceiling = validation_ceiling(_ConstantLearner(), X, np.arange(6), arms, Y, controls)

    squared = np.where(np.isnan(Y), 0.0, Y**2)
    counts = np.array([[np.isfinite(Y[arms == g, j]).sum() for j in range(2)] for g in range(4)], dtype=float)
    sums = np.array([squared[arms == g].sum(axis=0) for g in range(4)])
    fourth = np.array([(squared[arms == g] ** 2).sum(axis=0) for g in range(4)])
    per_arm = np.column_stack([shrunk_means(sums[:, j], fourth[:, j], counts[:, j]) for j in range(2)])
    assert np.isnan(ceiling[[0, 2]]).all()  # controls have no CATE
    np.testing.assert_allclose(ceiling[1], per_arm[1] + per_arm[0])
    # Every arm's squared residuals are constant within it, so the means are exact and kept.
    np.testing.assert_allclose(per_arm[:3, 0], [1.0, 9.0, 0.0])
    # An arm without a validation row gets the metric's mean over all rows.
    overall = np.array([(1 + 1 + 9 + 9) / 6, 4 / 5])
    np.testing.assert_allclose(ceiling[3], overall + per_arm[2])


def test_shrunk_means_keep_well_measured_groups_and_pull_noisy_ones_to_the_grand_mean():
    rng = np.random.default_rng(3)
    truth = rng.gamma(4.0, 0.25, size=200)  # group means around 1
    raw_err, shrunk_err = [], []
    for counts in (np.full(200, 3), np.full(200, 400)):
        values = [rng.exponential(t, size=n) for t, n in zip(truth, counts)]
        sums = np.array([v.sum() for v in values])
        squares = np.array([(v**2).sum() for v in values])
        shrunk = shrunk_means(sums, squares, counts.astype(float))
        raw_err.append(np.mean((sums / counts - truth) ** 2))
        shrunk_err.append(np.mean((shrunk - truth) ** 2))
    # Three values per group: shrinking beats the raw means by a wide margin.
    assert shrunk_err[0] < 0.6 * raw_err[0]
    # 400 values per group: the means are kept (within a tenth of their own error).
    assert shrunk_err[1] < 1.1 * raw_err[1]
    # No group with a value: NaN; a group without values: the grand mean.
    assert np.isnan(shrunk_means(np.zeros(2), np.zeros(2), np.zeros(2))).all()
    np.testing.assert_allclose(shrunk_means(np.array([2.0, 0.0]), np.array([4.0, 0.0]), np.array([2.0, 0.0])),
                               [1.0, 1.0])


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


class _UnitEffects(_MeanEffect):
    """A different CATE for every unit and metric, drawn afresh by every refit."""

    n_metrics_ = 2
    y_scale_ = np.ones(2)

    def __init__(self, rng):
        self.rng = rng

    def predict_cate(self, X, arms, controls):
        return self.rng.normal(size=(len(X), 1, 2)) * (1 + np.arange(len(X)))[:, None, None]

    class model_:  # noqa: N801
        @staticmethod
        def arm_weights():
            import torch
            return torch.arange(3.0).repeat_interleave(2).reshape(3, 2, 1)


def test_jackknife_variance_is_the_delete_d_formula_over_the_refits_stacked():
    # Arms 0 (control) and 1 of one experiment, arm 2 (its own control) of another; 4 refits.
    units, arms, controls = np.arange(40), np.repeat([0, 1, 2], [15, 15, 10]), np.array([0, 0, 2])
    draws, taus = np.random.default_rng(4), []

    def refit(keep):
        model = _UnitEffects(draws)
        state = draws.bit_generator.state
        taus.append(model.predict_cate(np.zeros((30, 1)), [1], [0])[:, 0])
        draws.bit_generator.state = state  # the jackknife draws the same CATEs again
        return model

    result = jackknife_cate_variance(refit, _UnitEffects(draws), np.zeros((40, 1)), units, arms, controls,
                                     n_refits=4, drop=0.25, seed=0)
    stacked = np.stack(taus)  # (m, units of the experiment, J)
    expected = (4 - 1) ** 2 / 4 / (4 - 1) * ((stacked - stacked.mean(axis=0)) ** 2).sum(axis=0).mean(axis=0)
    np.testing.assert_allclose(result.cate_var[1], expected, rtol=1e-12)
    assert np.isnan(result.cate_var[[0, 2]]).all()
