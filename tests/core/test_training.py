"""LRLearner (lrl_core/training.py): fit, predictions, validation rows, state round trip, device choice."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrl_core.config import LRLConfig
from lrl_core.training import LRLearner, _holdout_units, resolve_device


def planted(n_exp=20, per_arm=100, p=16, J=3, rank=3, noise=0.5, seed=0, n_test=2000):
    """Nonlinear low-rank outcomes ``y = u(x)' A_j e_g + noise`` with known CATEs.

    ``u(x) = [1, tanh(xB) + 0.3 (xB)^2]``; experiment k has arms 2k (control) and 2k+1.
    """
    rng = np.random.default_rng(seed)
    B = 1.5 * rng.normal(size=(p, rank)) / np.sqrt(p)
    A = rng.normal(size=(J, rank + 1, rank + 1))
    G = 2 * n_exp
    E = rng.normal(size=(G, rank + 1)) / np.sqrt(rank + 1)

    def latent(X):
        z = X @ B
        return np.hstack([np.ones((len(X), 1)), np.tanh(z) + 0.3 * z**2])

    arms = np.repeat(np.arange(G), per_arm)
    X = rng.normal(size=(arms.size, p)).astype(np.float32)
    mean = np.einsum("nd,jde,ne->nj", latent(X), A, E[arms])
    Y = mean + noise * mean.std(0) * rng.normal(size=mean.shape)
    X_test = rng.normal(size=(n_test, p)).astype(np.float32)
    treated, controls = np.arange(1, G, 2), np.arange(0, G, 2)
    tau = np.einsum("nd,jde,ke->nkj", latent(X_test), A, E[treated] - E[controls])
    return dict(X=X, units=np.arange(arms.size), arms=arms, Y=Y, G=G, X_test=X_test,
                treated=treated, controls=controls, tau=tau)


def ols_t_learner_cate(data) -> np.ndarray:
    """Independent OLS per (arm, metric): the paper's Algorithm 1 with linear models."""
    Z = np.hstack([np.ones((len(data["X"]), 1)), data["X"]])
    Z_test = np.hstack([np.ones((len(data["X_test"]), 1)), data["X_test"]])
    coef = [np.linalg.lstsq(Z[data["arms"] == g], data["Y"][data["arms"] == g], rcond=None)[0]
            for g in range(data["G"])]
    return np.stack([Z_test @ (coef[t] - coef[c]) for t, c in zip(data["treated"], data["controls"])], axis=1)


def quick(**changes) -> LRLConfig:
    return LRLConfig(progress=False, device="cpu", extractor="mlp", d=32, weight_decay=100.0).replace(**changes)


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def default_fit(data):
    learner = LRLearner(LRLConfig(progress=False, device="cpu"))
    return learner.fit(data["X"], data["units"], data["arms"], data["Y"], n_arms=data["G"])


def test_default_lr_learner_beats_ols_t_learners(data, default_fit):
    cate = default_fit.predict_cate(data["X_test"], data["treated"], data["controls"])
    pehe_lr = np.mean((cate - data["tau"]) ** 2)
    pehe_ols = np.mean((ols_t_learner_cate(data) - data["tau"]) ** 2)
    assert pehe_lr < 0.5 * pehe_ols, (pehe_lr, pehe_ols)
    assert pehe_lr < 0.3 * np.mean(data["tau"] ** 2)


def test_history_and_early_stopping(default_fit):
    h = default_fit.history_
    assert [r["epoch"] for r in h] == list(range(1, default_fit.n_epochs_ + 1))
    assert set(h[0]) == {"epoch", "train_loss", "val_loss", "seconds", "candidate"}
    best = default_fit.best_epoch_
    assert h[best - 1]["val_loss"] == min(r["val_loss"] for r in h[: best])
    stopped_early = default_fit.n_epochs_ < default_fit.config.max_epochs
    assert not stopped_early or default_fit.n_epochs_ == best + default_fit.config.patience
    assert h[-1]["train_loss"] < h[0]["train_loss"]


def test_prediction_api_shapes_and_consistency(data, default_fit):
    m, X = default_fit, data["X_test"][:50]
    arms, controls = np.array([1, 3, 3]), np.array([0, 2, 2])
    outcomes = m.predict_outcomes(X, arms)
    assert outcomes.shape == (50, 3, 3) and outcomes.dtype == np.float64
    np.testing.assert_allclose(
        m.predict_cate(X, arms, controls), outcomes - m.predict_outcomes(X, controls), atol=1e-4
    )
    # The CATE is linear in v: y_scale_j * v' A_j (e_arm - e_control).
    V = m.transform(X)
    assert V.shape == (50, m.config_.d)
    by_hand = np.einsum("nd,jde,ke->nkj", V, m.metric_operators_, m.effect_embeddings(arms, controls))
    np.testing.assert_allclose(m.predict_cate(X, arms, controls), by_hand * m.y_scale_, rtol=1e-4, atol=1e-4)
    assert m.metric_names_ == ["m0", "m1", "m2"]
    assert m.arm_embeddings_.shape == (data["G"], m.config_.d)
    with pytest.raises(ValueError):
        m.predict_outcomes(X, [data["G"]])


def test_refit_is_identical_on_cpu_and_callback_sees_every_epoch(data):
    cfg = quick(max_epochs=4)
    seen = []
    a = LRLearner(cfg).fit(data["X"], data["units"], data["arms"], data["Y"], callback=seen.append)
    b = LRLearner(cfg).fit(data["X"], data["units"], data["arms"], data["Y"])
    assert seen == a.history_ and len(seen) == 4
    assert [r["val_loss"] for r in a.history_] == [r["val_loss"] for r in b.history_]
    assert np.array_equal(a.transform(data["X_test"]), b.transform(data["X_test"]))
    c = LRLearner(cfg.replace(seed=1)).fit(data["X"], data["units"], data["arms"], data["Y"])
    assert not np.array_equal(a.transform(data["X_test"]), c.transform(data["X_test"]))


def test_a_fit_on_a_memory_mapped_matrix_equals_the_fit_in_memory(data, tmp_path):
    """Issue 16: the pipeline spills a matrix past its memory budget to a mapped file; every batch
    is gathered from it, and the fit is the same."""
    cfg = quick(max_epochs=4, interval_refits=2)
    mapped = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float32, shape=data["X"].shape)
    mapped[:] = data["X"]
    controls = np.arange(data["G"]) // 2 * 2  # experiment k: control 2k, treatment 2k + 1
    a = LRLearner(cfg).fit(data["X"], data["units"], data["arms"], data["Y"], controls=controls)
    b = LRLearner(cfg).fit(mapped, data["units"], data["arms"], data["Y"], controls=controls)
    assert [r["val_loss"] for r in a.history_] == [r["val_loss"] for r in b.history_]
    assert np.array_equal(a.transform(data["X_test"]), b.transform(data["X_test"]))
    # The jackknife's refits read the mapped matrix too.
    assert np.isfinite(a.cate_var_[data["treated"]]).all()
    assert np.array_equal(a.cate_var_, b.cate_var_, equal_nan=True)


def test_metrics_are_standardised_and_predictions_in_original_units(data):
    cfg = quick(max_epochs=3)
    scale, shift = np.array([1000.0, 1.0, 0.01]), np.array([5.0, -3.0, 0.0])
    a = LRLearner(cfg).fit(data["X"], data["units"], data["arms"], data["Y"])
    b = LRLearner(cfg).fit(data["X"], data["units"], data["arms"], data["Y"] * scale + shift)
    np.testing.assert_allclose(b.y_scale_, a.y_scale_ * scale)
    pa = a.predict_outcomes(data["X_test"][:100], [0, 1])
    pb = b.predict_outcomes(data["X_test"][:100], [0, 1])
    np.testing.assert_allclose((pb - shift) / scale, pa, rtol=1e-3, atol=1e-4)


def test_unobserved_metrics_are_masked(data):
    Y = data["Y"].copy()
    Y[::2, 2] = np.nan  # half the rows miss metric 2
    Y[1::4, :] = np.nan  # a quarter of the rows observe nothing
    m = LRLearner(quick(max_epochs=3)).fit(data["X"], data["units"], data["arms"], Y)
    assert np.isfinite([r["train_loss"] for r in m.history_]).all()
    np.testing.assert_allclose(m.y_mean_[2], np.nanmean(Y[:, 2]), atol=0.2 * np.nanstd(Y[:, 2]))
    assert np.isfinite(m.predict_outcomes(data["X_test"][:10], [0, 5])).all()


def test_explicit_validation_and_unit_holdout(data):
    units, arms, Y = data["units"], data["arms"], data["Y"]
    val = units % 5 == 0
    m = LRLearner(quick(max_epochs=3)).fit(
        data["X"], units[~val], arms[~val], Y[~val], validation=(units[val], arms[val], Y[val])
    )
    assert m.n_arms_ == data["G"] and len(m.history_) == 3

    # The default holdout takes whole units: a unit in several rows is never split.
    rows_units = np.repeat(np.arange(200), 3)
    held = _holdout_units(rows_units, 0.1, np.random.default_rng(0))
    assert held.sum() == 60
    assert np.all(held.reshape(200, 3).all(1) == held.reshape(200, 3).any(1))


def test_state_round_trip_reproduces_predictions(data, default_fit):
    tensors, meta = default_fit.to_state()
    assert all(t.device.type == "cpu" and t.is_contiguous() for t in tensors.values())
    loaded = LRLearner.from_state(tensors, meta)
    X = data["X_test"][:100]
    assert np.array_equal(loaded.predict_cate(X, [1], [0]), default_fit.predict_cate(X, [1], [0]))
    assert loaded.metric_names_ == default_fit.metric_names_ and loaded.best_epoch_ == default_fit.best_epoch_


def test_device_resolution(monkeypatch):
    monkeypatch.setenv("LRL_DEVICE", "cpu")
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setenv("LRL_DEVICE", "meta")
    assert resolve_device("cpu") == torch.device("cpu")  # the config wins over the environment
    assert resolve_device(None) == torch.device("meta")
