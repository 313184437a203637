"""Fixtures shared by the tests of lrl_core.synthetic (``test_synthetic_*.py``): one data set per generator."""
from __future__ import annotations

import pytest

from lrl_core.synthetic import nonlinear_synthetic, paper_synthetic


@pytest.fixture(scope="module")
def paper():
    return paper_synthetic(40, n_experiments=6, n_features=20, n_metrics=3, d=4,
                           noise_sd=0.1, seed=3, n_eval_per_arm=30)


@pytest.fixture(scope="module")
def nonlinear():
    return nonlinear_synthetic(6, 60, 12, n_metrics=3, d=4, n_arms_per_experiment=[2, 3, 2, 4, 2, 2],
                               overlap=0.4, missing_metric_rate=0.2, feature_missing_rate=0.1,
                               noise_sd=0.3, seed=5)
