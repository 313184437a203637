"""Effective rank of an ITE matrix (units x experiments): singular values and bi-cross-validation.

The paper (section 7) checks its low-rank assumption on the matrix ``M^j`` of
independently estimated ITEs of metric ``j`` (rows: units, columns:
experiments) by its singular values and by the bi-cross-validated rank of
Owen and Perry (2009).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BCVResult", "singular_values", "bcv_rank"]

DEFAULT_MAX_RANK_CAP = 20


def _as_matrix(M, center: bool) -> np.ndarray:
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2:
        raise ValueError(f"M must be a 2-D matrix; got shape {M.shape}")
    if not np.isfinite(M).all():
        raise ValueError("M must be finite")
    return M - M.mean(axis=0) if center else M


def singular_values(M, center: bool = True) -> np.ndarray:
    """Singular values of ``M (n, K)`` in decreasing order -> ``(min(n, K),)``.

    ``center``: subtract each column's mean first, so the spectrum describes
    how effects vary across units rather than their average per experiment.
    """
    return np.linalg.svd(_as_matrix(M, center), compute_uv=False)


@dataclass(frozen=True)
class BCVResult:
    """Outcome of :func:`bcv_rank`."""

    rank: int
    """The rank with the smallest bi-cross-validation error."""
    errors: np.ndarray
    """``(max_rank + 1,)``: summed squared prediction error of the held-out blocks for rank 0..max_rank."""
    max_rank: int


def _folds(size: int, n_folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random, balanced partition of ``range(size)`` into ``n_folds`` index arrays."""
    return np.array_split(rng.permutation(size), n_folds)


def bcv_rank(
    M,
    max_rank: int | None = None,
    n_row_folds: int = 5,
    n_col_folds: int = 5,
    seed: int = 0,
    center: bool = True,
) -> BCVResult:
    """Rank of ``M (n, K)`` chosen by (h x l)-fold bi-cross-validation of the truncated SVD.

    Rows and columns are each split into random (seeded) balanced folds. For
    every block of held-out rows ``I`` and columns ``J`` (Gabriel-style: the
    ``n_row_folds * n_col_folds`` blocks tile the matrix, so every entry is
    held out once), with ``D = M[~I, ~J]`` the retained block and ``D_k^+``
    the pseudo-inverse of its rank-``k`` truncated SVD, the held-out block is
    predicted as ``M[I, ~J] D_k^+ M[~I, J]`` and its squared error
    ``||M[I, J] - M[I, ~J] D_k^+ M[~I, J]||^2`` is summed over blocks
    (Owen and Perry 2009). The rank is the ``k`` in ``0..max_rank`` with the
    smallest total; rank 0 predicts the block as zero.

    ``center``: subtract column means of the whole matrix first (the average
    effect of each experiment is not counted as a rank). ``max_rank`` defaults
    to one less than the smallest retained block's smaller side, capped at
    20, and may not exceed that side.
    """
    M = _as_matrix(M, center)
    n, K = M.shape
    if not (2 <= n_row_folds <= n and 2 <= n_col_folds <= K):
        raise ValueError(
            f"need 2 <= n_row_folds <= {n} and 2 <= n_col_folds <= {K}; "
            f"got {n_row_folds} and {n_col_folds}"
        )
    rng = np.random.default_rng(seed)
    row_folds = _folds(n, n_row_folds, rng)
    col_folds = _folds(K, n_col_folds, rng)
    # The largest held-out fold leaves the smallest retained block.
    retained = min(n - max(map(len, row_folds)), K - max(map(len, col_folds)))
    if max_rank is None:
        max_rank = max(0, min(retained - 1, DEFAULT_MAX_RANK_CAP))
    elif not 0 <= max_rank <= retained:
        raise ValueError(f"max_rank must lie in [0, {retained}] for these folds; got {max_rank}")

    errors = np.zeros(max_rank + 1)
    row_out = np.zeros(n, dtype=bool)
    col_out = np.zeros(K, dtype=bool)
    for rows in row_folds:
        row_out[:] = False
        row_out[rows] = True
        for cols in col_folds:
            col_out[:] = False
            col_out[cols] = True
            A = M[np.ix_(row_out, col_out)]
            B = M[np.ix_(row_out, ~col_out)]
            C = M[np.ix_(~row_out, col_out)]
            U, s, Vt = np.linalg.svd(M[np.ix_(~row_out, ~col_out)], full_matrices=False)
            # B D_k^+ C = sum over the first k components of (B v_l)(u_l' C) / s_l.
            left = B @ Vt[:max_rank].T  # (|I|, max_rank)
            right = U[:, :max_rank].T @ C  # (max_rank, |J|)
            residual = A.copy()
            errors[0] += np.sum(residual**2)
            for k in range(max_rank):
                if s[k] > np.finfo(np.float64).eps * max(U.shape[0], Vt.shape[1]) * s[0]:
                    residual -= np.outer(left[:, k], right[k]) / s[k]
                errors[k + 1] += np.sum(residual**2)
    return BCVResult(rank=int(np.argmin(errors)), errors=errors, max_rank=max_rank)
