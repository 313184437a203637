"""digits_semi_synthetic (lrl_core/synthetic/digits.py): the paper's semi-synthetic design on scikit-learn's digits."""
from __future__ import annotations

import numpy as np

from lrl_core.synthetic import digits_semi_synthetic
from synthetic_layout import check_layout


def test_digits_semi_synthetic():
    data = digits_semi_synthetic(share=0.2, seed=0)
    check_layout(data)
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
