"""The training run of lrl_core/trial.py, through LRLearner: patience in steps, learning-rate halving,
zero-copy batches."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from lrl_core.config import LRLConfig
from lrl_core.synthetic import nonlinear_synthetic
from lrl_core.training import LRLearner


def quick(**changes) -> LRLConfig:
    return LRLConfig(d=4, hidden=16, extractor="mlp", weight_decay=100.0, progress=False, device="cpu").replace(**changes)


@pytest.fixture(scope="module")
def planted():
    data = nonlinear_synthetic(4, 150, 6, 2, d=3, seed=0)
    X = np.ascontiguousarray(data.X, dtype=np.float32)
    val = np.isin(data.units, np.arange(0, X.shape[0], 10))
    train = (data.units[~val], data.arms[~val], data.Y[~val])
    return X, train, (data.units[val], data.arms[val], data.Y[val]), data.n_arms


def test_patience_is_counted_in_steps_within_its_bounds():
    learner = LRLearner(LRLConfig(patience=20, min_patience=4, min_steps_per_epoch=8))
    # Small data (8 steps per epoch) keep 20 epochs; large data get the floor, not 20 x 517 steps.
    assert [learner.patience_epochs(s) for s in (1, 8, 16, 30, 52, 517)] == [20, 20, 10, 6, 4, 4]
    assert LRLearner(LRLConfig(patience=50)).patience_epochs(52) == 8  # 400 steps
    assert LRLearner(LRLConfig(patience=3, min_patience=4)).patience_epochs(8) == 3


def test_stops_patience_epochs_after_the_best_and_restores_it(planted):
    X, train, val, n_arms = planted
    cfg = quick(lr=0.05, patience=6, min_patience=6, max_epochs=500)
    m = LRLearner(cfg).fit(X, *train, n_arms=n_arms, validation=val)
    losses = [r["val_loss"] for r in m.history_]
    assert m.n_epochs_ < cfg.max_epochs
    assert m.n_epochs_ == m.best_epoch_ + m.patience_epochs(8)
    assert losses[m.best_epoch_ - 1] == min(losses)
    # The restored model is the best epoch's: its validation error is that epoch's.
    units, arms, Y = val
    pred = m.predict_outcomes(X[units], np.arange(n_arms))[np.arange(units.size), arms]
    observed = np.isfinite(Y)
    standardised = np.where(observed, (pred - Y) / m.y_scale_, 0.0)
    assert np.sum(standardised**2) / observed.sum() == pytest.approx(min(losses), rel=1e-4)


def test_learning_rate_is_reduced_on_a_plateau(planted):
    """With ``lr_factor=0`` the first reduction freezes the model: the loss stays put until the stop."""
    X, train, val, n_arms = planted
    cfg = quick(lr=0.05, patience=6, min_patience=6, lr_reductions=1, lr_factor=0.0, max_epochs=500)
    m = LRLearner(cfg).fit(X, *train, n_arms=n_arms, validation=val)
    frozen = [r["val_loss"] for r in m.history_[m.best_epoch_ + 3 :]]  # reduced after 6 // 2 stale epochs
    assert len(frozen) == 3 and len(set(frozen)) == 1
    moving = [r["val_loss"] for r in m.history_[m.best_epoch_ : m.best_epoch_ + 3]]
    assert len(set(moving)) == 3


def test_training_reads_the_callers_features_without_a_copy(planted, monkeypatch):
    X, train, val, n_arms = planted
    X = X.copy()
    X.setflags(write=False)  # read-only input (e.g. a memory map) is fine and stays silent
    seen = []
    batches = LRLearner._batches

    def spy(self, *args):
        seen.append(batches(self, *args))
        return seen[-1]

    monkeypatch.setattr(LRLearner, "_batches", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LRLearner(quick(max_epochs=2)).fit(X, *train, n_arms=n_arms, validation=val)
    assert len(seen) == 2 and seen[0].buffer is seen[1].buffer  # one gather buffer for all steps
    for data in seen:
        assert data.features.data_ptr() == X.ctypes.data
        # Per row only indices, outcomes and layout: nothing of the width of X.
        assert data.rows.ndim == 1 and data.y.shape[1] == train[2].shape[1]


def test_each_batch_gathers_its_feature_rows_in_ascending_order_with_their_page_slots():
    import torch

    from lrl_core.model import LowRankNet
    from lrl_core.trial import lay_out_batches

    rng = np.random.default_rng(5)
    n_units, n_arms, batch = 400, 7, 64
    X = rng.standard_normal((n_units, 5)).astype(np.float32)
    units, arms = rng.permutation(n_units)[:300], rng.integers(0, n_arms, size=300)
    Y = rng.standard_normal((300, 2))
    order = rng.permutation(300)
    features = torch.from_numpy(X)
    data = lay_out_batches(features, torch.empty(batch, 5), units, arms, Y, order, batch, n_arms,
                           np.zeros(2), np.ones(2), torch.device("cpu"))
    net = LowRankNet(5, n_arms, 2, d=3, generator=torch.Generator().manual_seed(0))
    row_of_unit = {u: i for i, u in enumerate(units)}
    for b, (s, e) in enumerate(data.bounds):
        rows = data.rows[s:e].numpy()
        assert np.all(np.diff(rows) > 0)  # ascending: the gather walks X forwards
        # Every batch holds the rows `order` put in it, and each row still finds its own arm's outcome.
        assert set(rows) == set(units[order[s:e]])
        batch_arms = torch.from_numpy(arms[[row_of_unit[u] for u in rows]])
        v = net.embed(features[rows])
        paged = net.paged_outcomes(v, data.slots[s:e], data.page_arms[b], data.page_rows)
        torch.testing.assert_close(paged, net.outcomes(v, batch_arms))
        expected_y = torch.from_numpy(Y[[row_of_unit[u] for u in rows]].astype(np.float32))
        torch.testing.assert_close(data.y[s:e], expected_y)


def test_laying_out_in_pieces_gives_the_layout_of_one_piece(monkeypatch):
    import torch

    import lrl_core.trial as trial

    rng = np.random.default_rng(6)
    n_units, n_arms, batch, r = 500, 9, 32, 450
    units, arms = rng.integers(0, n_units, size=r), rng.integers(0, n_arms, size=r)
    Y = rng.standard_normal((r, 3))
    Y[rng.random((r, 3)) < 0.2] = np.nan
    order = rng.permutation(r)

    def layout(rows_at_a_time: int):
        monkeypatch.setattr(trial, "LAYOUT_ROWS", rows_at_a_time)
        return trial.lay_out_batches(torch.zeros(n_units, 4), torch.empty(batch, 4), units, arms, Y, order, batch,
                                     n_arms, np.full(3, 0.5), np.full(3, 2.0), torch.device("cpu"))

    whole, pieces = layout(10 * r), layout(3 * batch + 5)  # pieces of 3 batches; the last one short
    for name in ("rows", "y", "mask", "slots"):
        torch.testing.assert_close(getattr(pieces, name), getattr(whole, name))
    assert whole.page_rows == pieces.page_rows and whole.bounds == pieces.bounds
    assert whole.observed == pieces.observed and whole.n_observed == pieces.n_observed
    # Pages past a batch's own are padding: the pieces may pad less, never differently.
    width = whole.page_arms.shape[1]
    assert pieces.page_arms.shape[1] <= width
    torch.testing.assert_close(pieces.page_arms, whole.page_arms[:, : pieces.page_arms.shape[1]])
    assert not whole.page_arms[:, pieces.page_arms.shape[1]:].any()
    assert torch.allclose(whole.y[whole.mask == 0], torch.zeros(())) and (whole.mask == 0).any()
