"""Model selection (selection.py) and the jackknife intervals it feeds (uncertainty.py, heads.py)."""
from __future__ import annotations

import numpy as np
import pytest

from lrl_core.config import LRLConfig
from lrl_core.features import FeatureTransform
from lrl_core.heads import ExperimentHead
from lrl_core.selection import SEARCH_SPACE, candidate_configs, successive_halving
from lrl_core.synthetic import nonlinear_synthetic, paper_synthetic
from lrl_core.training import LRLearner


def test_only_unset_fields_are_searched():
    assert len(candidate_configs(LRLConfig())) == np.prod([len(v) for v in SEARCH_SPACE.values()])
    fixed = candidate_configs(LRLConfig(extractor="linear", weight_decay=3.0))
    assert {c.extractor for c in fixed} == {"linear"} and {c.weight_decay for c in fixed} == {3.0}
    assert {c.d for c in fixed} == set(SEARCH_SPACE["d"])
    full = LRLConfig(extractor="mlp", d=5, weight_decay=1.0)
    assert candidate_configs(full) == [full]


class FakeTrial:
    """Loss falls to ``floor`` at ``speed`` per step; counts the steps it was given."""

    def __init__(self, floor: float, speed: float, extractor: str):
        self.config = LRLConfig(extractor=extractor, d=4, weight_decay=1.0)
        self.floor, self.speed = floor, speed
        self.steps, self.epochs, self.done, self.finished = 0, 0, False, False

    @property
    def best_loss(self) -> float:
        return self.floor + np.exp(-self.speed * self.steps)

    def advance_to(self, steps):
        while not self.done and self.steps < steps:
            self.steps += 10
            self.epochs += 1
            self.done = self.steps >= 2000

    def finish(self):
        self.advance_to(np.inf)
        self.finished = True


def test_successive_halving_keeps_the_best_and_spends_little_on_the_rest():
    trials = [FakeTrial(floor, 0.01, "mlp" if i % 2 else "linear") for i, floor in enumerate([0.5, 0.1, 0.3, 0.2, 0.4])]
    winner, rows = successive_halving(trials, first_rung_steps=100, steps_per_epoch=10)
    assert winner is trials[1] and winner.finished and winner.steps == 2000
    assert [r["chosen"] for r in rows] == [False, True, False, False, False]
    # The worst were cut in the first rung, after its 100 steps.
    assert trials[0].steps == 100 and trials[4].steps == 100
    assert sum(t.steps for t in trials if t is not winner) < 2 * winner.steps


def _pooled_rows(data, X):
    """Training rows (every 5th unit held out for validation) as LRLearner.fit arguments."""
    val = np.isin(data.units, np.arange(0, X.shape[0], 5))
    return (data.units[~val], data.arms[~val], data.Y[~val]), (data.units[val], data.arms[val], data.Y[val])


def _prepared(data):
    X = np.asarray(data.X, dtype=np.float64)
    return FeatureTransform().fit(X, [f"x{i}" for i in range(X.shape[1])]).transform(X)


@pytest.mark.parametrize("world, expected", [("linear", "linear"), ("nonlinear", "mlp")])
def test_selection_picks_the_extractor_the_world_needs(world, expected):
    if world == "linear":
        data = paper_synthetic(60, n_experiments=12, n_features=24, n_metrics=3, d=6, seed=3)
    else:
        data = nonlinear_synthetic(12, 200, 10, 3, d=4, noise_sd=0.3, seed=3)
    X = _prepared(data)
    train, val = _pooled_rows(data, X)
    learner = LRLearner(LRLConfig(progress=False, device="cpu", interval_refits=0)).fit(
        X, *train, n_arms=data.n_arms, validation=val)
    assert learner.config_.extractor == expected
    chosen = [r for r in learner.selection_ if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["val_loss"] == min(r["val_loss"] for r in learner.selection_)
    assert learner.config.extractor is None  # the estimator's parameter is left as given


def test_jackknife_intervals_cover_the_true_cate_in_a_wide_band():
    data = nonlinear_synthetic(10, 250, 8, 2, d=4, noise_sd=0.5, seed=5)
    X = _prepared(data)
    held_out = np.isin(data.units, np.arange(1, X.shape[0], 7))
    fit_rows = ~held_out
    train, val = _pooled_rows(data, X)
    keep = ~np.isin(train[0], data.units[held_out])
    learner = LRLearner(LRLConfig(progress=False, device="cpu", extractor="mlp", d=16, weight_decay=10.0)).fit(
        X, *(a[keep] for a in train), n_arms=data.n_arms, validation=val, controls=data.arm_controls,
        metric_names=data.metrics)
    assert np.isfinite(learner.cate_var_[data.treatment_arms]).all()
    covered, naive = [], []
    V = learner.transform(X)
    for k in range(len(data.experiments)):
        arms = np.flatnonzero(data.arm_experiment == k)
        rows = np.flatnonzero(fit_rows & np.isin(data.arms, arms))
        head = ExperimentHead().fit(V[data.units[rows]], data.arms[rows] - arms[0], data.Y[rows], data.metrics,
                                    learner, n_arms=len(arms), arms=arms)
        assert set(head.kinds_) == {"pooled"}
        units = np.unique(data.units[held_out & np.isin(data.arms, arms)])
        truth = data.true_cate(units, arms[1], arms[0])
        error = np.abs(head.predict_cate(V[units])[:, 0] - truth)
        covered.append(error <= 1.96 * head.predict_cate_se(V[units])[:, 0])
        naive.append(error <= 1.96 * np.sqrt(head._head_variance(V[units])[:, 0]))
    coverage = np.concatenate(covered).mean()
    # Bias (here a smooth MLP on 250 units per arm) is beyond any resampling: 0.88 here.
    assert 0.75 <= coverage <= 0.995
    # The head covariance alone (v treated as known) covers less.
    assert np.concatenate(naive).mean() < coverage
