"""nonlinear_synthetic (lrl_core/synthetic/nonlinear.py): overlap, multi-arm experiments, missingness."""
from __future__ import annotations

import numpy as np

from lrl_core.synthetic import nonlinear_synthetic
from synthetic_layout import check_layout


def test_nonlinear_overlap_multi_arm_and_missingness(nonlinear):
    data = nonlinear
    check_layout(data)
    assert data.X.dtype == np.float32
    per_unit = np.bincount(data.units, minlength=data.X.shape[0])
    assert per_unit.min() == 1 and per_unit.max() >= 2
    assert 0.25 < (per_unit >= 2).mean() < 0.55  # overlap = 0.4
    n_arms = np.bincount(data.arm_experiment)
    assert list(n_arms) == [2, 3, 2, 4, 2, 2]
    assert np.bincount(data.arms, minlength=data.n_arms).min() >= 60
    assert 0.15 < np.isnan(data.Y).mean() < 0.25
    assert 0.05 < np.isnan(data.X).mean() < 0.15
    obs = ~np.isnan(data.Y)
    resid = (data.Y - data.true_outcomes(data.units, data.arms))[obs]
    assert abs(resid.std() - 0.3) < 0.03
    # Effects are heterogeneous: the true CATE varies across units for every treated arm.
    treated = data.treatment_arms
    for g in treated:
        u = np.arange(200)
        assert data.true_cate(u, g, data.arm_controls[g]).std(axis=0).min() > 0.05


def test_nonlinear_without_overlap_puts_each_unit_once():
    data = nonlinear_synthetic(3, 20, 5, n_metrics=2, d=3, seed=0)
    assert np.array_equal(np.bincount(data.units), np.ones(data.X.shape[0], dtype=np.int64))
    assert not np.isnan(data.Y).any() and not np.isnan(data.X).any()
    assert data.arm_names == ["control", "treatment"] * 3
