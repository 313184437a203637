"""paper_synthetic (lrl_core/synthetic/paper.py): the paper's Algorithm 2 and our reading of it."""
from __future__ import annotations

import numpy as np

from lrl_core.synthetic import paper_synthetic
from synthetic_layout import check_layout


def test_paper_shapes_and_layout(paper):
    check_layout(paper)
    K, n = 6, 40
    assert paper.X.shape == (2 * K * n, 20) and paper.Y.shape == (2 * K * n, 3)
    assert paper.X.dtype == np.float64
    assert np.array_equal(np.bincount(paper.arms), np.full(2 * K, n))  # balanced: n per arm
    assert paper.arm_names[:2] == ["control", "treatment"]
    assert paper.metrics == ["metric_0", "metric_1", "metric_2"]
    ev = paper.eval
    assert ev.Y_potential.shape == ev.mu_potential.shape == (2 * K * 30, 2, 3)
    assert np.array_equal(ev.arms[:, 0], paper.arm_controls[ev.arms[:, 1]])
    assert np.array_equal(np.bincount(ev.observed_arms), np.full(2 * K, 30))


def test_paper_noise_is_the_stated_sd(paper):
    resid = paper.Y - paper.true_outcomes(paper.units, paper.arms)
    assert abs(resid.std() - 0.1) < 0.01 and abs(resid.mean()) < 0.01
    ev = paper.eval
    assert abs((ev.Y_potential - ev.mu_potential).std() - 0.1) < 0.01
    # The eval truth is the same DGP: realised ITE minus noise-free CATE has variance 2 sd^2.
    assert abs((ev.ite - ev.cate).var() - 2 * 0.01) < 0.004


def test_paper_features_are_linear_in_latent_and_row_norm_scale(paper):
    # X = V L with one shared L: X has rank d, and the outcome variance is about 1.
    s = np.linalg.svd(paper.X, compute_uv=False)
    assert s[3] > 1e-6 * s[0] and s[4] < 1e-9 * s[0]
    assert 0.3 < paper.true_outcomes(paper.units, paper.arms).var() < 3.0


def test_paper_readings_differ_as_documented():
    kw = dict(n_experiments=4, n_features=20, n_metrics=2, d=4, seed=1)
    fro = paper_synthetic(50, latent_norm="frobenius", **kw)
    # Unit Frobenius norm over 2n = 100 rows: outcome variance about 1 / 100.
    assert fro.true_outcomes(fro.units, fro.arms).var() < 0.05
    own = paper_synthetic(50, shared_loading=False, **kw)
    # One loading per experiment: the pooled features span more than d directions.
    s = np.linalg.svd(own.X, compute_uv=False)
    assert s[4] > 1e-6 * s[0]
    bern = paper_synthetic(50, assignment="bernoulli", **kw)
    assert len(bern.Y) == 4 * 100 and not np.array_equal(np.bincount(bern.arms), np.full(8, 50))
