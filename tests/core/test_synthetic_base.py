"""SyntheticData (lrl_core/synthetic/base.py): true effects, raw tables, seeding, shared by every generator."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lrl_core.synthetic import nonlinear_synthetic, paper_synthetic


def test_true_cate_is_difference_of_outcomes(paper):
    u = np.arange(10)
    arms = np.ones(10, dtype=np.int64)
    cate = paper.true_cate(u, arms, np.zeros(10, dtype=np.int64))
    assert cate.shape == (10, 3)
    np.testing.assert_allclose(cate, paper.true_outcomes(u, 1) - paper.true_outcomes(u, 0))


def test_raw_tables_round_trip(nonlinear):
    data = nonlinear
    tables = data.raw_tables()
    uf, ex, expo, out = (tables[k] for k in ("unit_features", "experiments", "exposures", "outcomes"))
    assert list(uf.columns) == ["unit_id"] + [f"x{i}" for i in range(12)]
    assert list(ex.columns) == ["experiment_id", "launched_at"]
    assert pd.api.types.is_datetime64_any_dtype(ex["launched_at"])
    assert list(expo.columns) == ["unit_id", "experiment_id", "arm"]
    assert list(out.columns) == ["unit_id", "experiment_id", "metric", "value"]
    assert out["value"].notna().all() and len(out) == (~np.isnan(data.Y)).sum()
    np.testing.assert_array_equal(uf.drop(columns="unit_id").to_numpy(), data.X)
    assert set(expo["arm"]) == {"control", "treatment", "treatment_1", "treatment_2", "treatment_3"}

    # Rebuild (unit, arm, metric) -> value from the tables alone and compare with Y.
    pos = pd.Series(np.arange(len(data.unit_ids)), index=data.unit_ids)
    arm_key = {(data.experiments[data.arm_experiment[g]], data.arm_names[g]): g for g in range(data.n_arms)}
    arms = np.array([arm_key[k] for k in zip(expo["experiment_id"], expo["arm"])])
    assert np.array_equal(pos[expo["unit_id"]].to_numpy(), data.units)
    assert np.array_equal(arms, data.arms)
    key = pd.MultiIndex.from_arrays([expo["unit_id"], expo["experiment_id"]])
    rows = key.get_indexer(pd.MultiIndex.from_arrays([out["unit_id"], out["experiment_id"]]))
    cols = pd.Index(data.metrics).get_indexer(out["metric"])
    assert (rows >= 0).all() and (cols >= 0).all()
    rebuilt = np.full(data.Y.shape, np.nan)
    rebuilt[rows, cols] = out["value"].to_numpy()
    np.testing.assert_array_equal(rebuilt, data.Y)


def test_raw_tables_pass_validation(paper):
    from lrl_core.data import build_pooled_data, validate_raw

    result = validate_raw(**paper.raw_tables())
    assert len(result.quarantine) == 0
    pooled = build_pooled_data(result)
    assert pooled.Y.shape == paper.Y.shape and pooled.experiments == paper.experiments
    assert np.nansum(pooled.Y) == pytest.approx(np.nansum(paper.Y))


@pytest.mark.parametrize("make", [
    lambda s: paper_synthetic(10, n_experiments=3, n_features=8, n_metrics=2, d=3, seed=s, n_eval_per_arm=5),
    lambda s: nonlinear_synthetic(3, 10, 6, n_metrics=2, d=3, overlap=0.5, missing_metric_rate=0.1, seed=s),
])
def test_seeds_reproduce(make):
    a, b, c = make(7), make(7), make(8)
    for name in ("X", "units", "arms", "Y"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.allclose(np.nan_to_num(a.Y[:5]), np.nan_to_num(c.Y[:5]))
