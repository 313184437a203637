"""The heads of one experiment: kinds, records, a fitted learner (heads.py)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from lrl_core.heads import ExperimentHead
from lrl_core.ridge_heads import StructuredHeads


def test_experiment_head_mixes_kinds_and_round_trips_through_records():
    rng = np.random.default_rng(7)
    d = 4
    learner = SimpleNamespace(
        metric_names_=["clicks", "revenue", "time"],
        metric_operators_=rng.normal(size=(3, d, d)),
        y_mean_=np.array([1.0, 2.0, 3.0]),
        y_scale_=np.array([0.5, 2.0, 1.5]),
        extractor_var_=np.zeros(3),
    )
    arm = np.repeat([0, 1, 2], 30)
    V = rng.normal(size=(arm.size, d))
    Y = rng.normal(size=(arm.size, 3))
    Y[arm == 1, 1] = np.nan  # the new metric: arm 1 never reports it
    names = ["time", "brand_new", "clicks"]
    head = ExperimentHead().fit(V, arm, Y, names, learner)
    assert head.kinds_ == ["structured", "ridge", "structured"]
    assert head.predict_cate(V).shape == head.predict_cate_se(V).shape == (arm.size, 2, 3)
    # The structured columns equal a StructuredHeads fit on just those metrics.
    alone = StructuredHeads(learner.metric_operators_[[2, 0]], learner.y_mean_[[2, 0]], learner.y_scale_[[2, 0]])
    alone.fit(V, arm, Y[:, [0, 2]])
    np.testing.assert_allclose(head.predict_cate(V)[..., [0, 2]], alone.predict_cate(V), rtol=1e-12)

    records = head.to_records()
    assert len(records) == 9
    assert {r["kind"] for r in records} == {"structured", "ridge"}
    assert all(len(r["coef"]) == d + 1 and len(r["cov"]) == (d + 1) ** 2 for r in records)
    back = ExperimentHead.from_records(records)
    assert back.metric_names_ == names and back.kinds_ == head.kinds_
    for attr in ("coef_", "cov_", "sigma2_", "alpha_", "n_"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(head, attr))
    np.testing.assert_array_equal(back.predict_cate_se(V), head.predict_cate_se(V))
    # Arm 1 never observed "brand_new": NaN there only.
    assert np.isnan(head.predict_cate(V)[:, 0, 1]).all() and np.isfinite(head.predict_cate(V)[:, 1, 1]).all()


def test_experiment_head_on_a_fitted_learner():
    from lrl_core.config import LRLConfig
    from lrl_core.training import LRLearner

    rng = np.random.default_rng(8)
    X = rng.normal(size=(400, 5)).astype(np.float32)
    arms = rng.integers(0, 4, size=400)
    Y = X[:, :2] * (1 + arms[:, None]) + rng.normal(size=(400, 2))
    cfg = LRLConfig(d=4, hidden=8, extractor="mlp", weight_decay=100.0, max_epochs=2, progress=False, device="cpu")
    learner = LRLearner(cfg).fit(X, np.arange(400), arms, Y, metric_names=["a", "b"])

    X_new = rng.normal(size=(60, 5)).astype(np.float32)
    arm_new = np.repeat([0, 1], 30)
    Y_new = np.column_stack([X_new[:, 1] * (1 + arm_new), rng.normal(size=60)])
    head = ExperimentHead().fit(learner.transform(X_new), arm_new, Y_new, ["b", "new"], learner)
    assert head.kinds_ == ["structured", "ridge"]
    cate, se = head.predict_cate(learner.transform(X_new)), head.predict_cate_se(learner.transform(X_new))
    assert cate.shape == se.shape == (60, 1, 2)
    assert np.isfinite(cate).all() and (se > 0).all()


def test_a_tiny_experiment_is_fitted_but_flagged():
    """Issue 18: an experiment of 3 units per arm gets heads that say they lean on the pooled model."""
    from lrl_core.heads import TINY_ARM_ROWS, fit_experiment_head

    rng = np.random.default_rng(9)
    d = 3
    learner = SimpleNamespace(metric_names_=["clicks"], metric_operators_=rng.normal(size=(1, d, d)),
                              y_mean_=np.zeros(1), y_scale_=np.ones(1), extractor_var_=np.zeros(1))
    for per_arm, flagged in ((3, True), (TINY_ARM_ROWS, False)):
        arm = np.repeat([0, 1], per_arm)
        V = rng.normal(size=(arm.size, d))
        fit = fit_experiment_head(V, arm, rng.normal(size=(arm.size, 1)), ["clicks"], learner, V, n_arms=2)
        assert fit.status == "fitted" and np.isfinite(fit.head.predict_cate(V)).all()
        assert ("tiny: its smallest arm has 3 observed rows" in fit.detail) is flagged, fit.detail
