from __future__ import annotations

import numpy as np
import pytest

from lrl_core.rank import BCVResult, bcv_rank, singular_values


def planted(rank: int, n: int = 500, K: int = 40, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, K))
    return signal + noise * rng.standard_normal((n, K))


def test_singular_values_of_a_known_matrix():
    # Orthogonal columns of norms 3 and 2: the singular values are those norms.
    M = np.array([[3.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    np.testing.assert_allclose(singular_values(M, center=False), [3.0, 2.0], atol=1e-12)


def test_singular_values_center_removes_column_means():
    rng = np.random.default_rng(1)
    M = rng.standard_normal((30, 4))
    shifted = M + np.array([10.0, -5.0, 3.0, 7.0])
    np.testing.assert_allclose(singular_values(shifted), singular_values(M), rtol=1e-10)
    assert singular_values(shifted, center=False)[0] > 2 * singular_values(M, center=False)[0]
    assert singular_values(M).shape == (4,)


@pytest.mark.parametrize("rank", [3, 6])
@pytest.mark.parametrize("seed", [0, 1])
def test_bcv_recovers_planted_rank(rank, seed):
    result = bcv_rank(planted(rank, seed=seed), seed=seed)
    assert isinstance(result, BCVResult)
    assert result.rank == rank
    assert result.errors.shape == (result.max_rank + 1,)
    # Each true component removes held-out error; extra ones do not.
    assert np.all(np.diff(result.errors[: rank + 1]) < 0)


def test_bcv_picks_no_structure_in_pure_noise():
    rng = np.random.default_rng(3)
    assert bcv_rank(rng.standard_normal((300, 30))).rank <= 1


def test_bcv_column_means_are_not_a_rank_when_centering():
    rng = np.random.default_rng(4)
    M = planted(2, n=200, K=20, seed=4) + rng.normal(5.0, 3.0, size=20)
    assert bcv_rank(M).rank == 2
    assert bcv_rank(M, center=False).rank == 3


def test_bcv_default_and_explicit_max_rank():
    M = planted(2, n=100, K=12, seed=5)
    # 12 columns in 5 folds: the largest held-out fold has 3, so 9 retained -> default 8.
    assert bcv_rank(M).max_rank == 8
    assert bcv_rank(M, max_rank=4).errors.shape == (5,)
    with pytest.raises(ValueError):
        bcv_rank(M, max_rank=10)
    with pytest.raises(ValueError):
        bcv_rank(M, n_col_folds=13)


def test_bcv_is_seeded():
    M = planted(3, n=120, K=15, noise=1.0, seed=6)
    np.testing.assert_array_equal(bcv_rank(M, seed=7).errors, bcv_rank(M, seed=7).errors)
    assert not np.array_equal(bcv_rank(M, seed=7).errors, bcv_rank(M, seed=8).errors)
