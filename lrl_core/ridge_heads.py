"""Closed-form linear heads on the frozen extractor: ridge per (arm, metric), or structured (paper section 6).

With ``v(.)`` frozen, every arm's outcome model is linear in ``z = [1, v(x)]``,
so a head is a ridge regression solved from ``d x d`` moment matrices in
milliseconds, and the standard error of a CATE follows from the coefficient
covariance: ``se(x) = sqrt(z' (cov_t + cov_c) z)``, the arms being independent
samples.

- :class:`RidgeHeads`: one ridge per (arm, metric) with an unpenalised
  intercept; the only choice for a metric the pooled model has never seen.
- :class:`StructuredHeads`: for metrics the pooled model knows, keeps its
  structure ``y_std = v' A_j e``: one ``d``-vector ``e`` per arm, shared across
  metrics, so the metrics pool their rows.

Every head ends as a linear head per (arm, metric) on ``[1, v]`` in original
metric units: ``coef_ (A, J, d+1)`` and ``cov_ (A, J, d+1, d+1)``, with the
estimator shape of the rest of the core (``predict_outcomes``,
``predict_cate``). Arms are local to the experiment: ``0`` is control,
``1 .. A-1`` treatments. Where an (arm, metric) head cannot be estimated (no
observed row; for ridge heads, or structured arms with no row at all) its
coefficients, and every CATE that uses it, are NaN; a covariance needs more
rows than fitted degrees of freedom and is NaN otherwise.
"""
from __future__ import annotations

import numpy as np

__all__ = ["LinearHeads", "RidgeHeads", "StructuredHeads", "ALPHA_GRID", "as_head_inputs"]

ALPHA_GRID = np.logspace(-6, 6, 49)
"""Candidate penalties for generalised cross-validation, as multiples of the
mean eigenvalue of the (centred) Gram matrix, so the grid follows the scale
of ``v`` and the number of rows."""

_CHUNK = 16384

def as_head_inputs(V, arm, Y, n_arms):
    V = np.asarray(V, dtype=np.float64)
    arm = np.asarray(arm, dtype=np.int64)
    Y = np.asarray(Y, dtype=np.float64)
    if V.ndim != 2 or Y.ndim != 2 or arm.shape != (V.shape[0],) or Y.shape[0] != V.shape[0]:
        raise ValueError(f"need V (n, d), arm (n,), Y (n, J); got {V.shape}, {arm.shape}, {Y.shape}")
    n_arms = int(arm.max(initial=0)) + 1 if n_arms is None else int(n_arms)
    if n_arms < 2:
        raise ValueError("an experiment needs a control (arm 0) and at least one treatment arm")
    if arm.size and (arm.min() < 0 or arm.max() >= n_arms):
        raise ValueError(f"arm must lie in [0, {n_arms})")
    return V, arm, Y, n_arms


def _moments(V: np.ndarray, Y: np.ndarray):
    """Masked moments per metric over the rows of one arm.

    Returns ``n (J,)`` observed counts, ``s (J, d) = sum v``, ``S (J, d, d) =
    sum v v'``, ``t (J, d) = sum v y``, ``ysum (J,)``, ``yy (J,)``, each sum over
    the rows where that metric is observed. Rows are taken in chunks so memory
    stays at ``chunk * J * d``.
    """
    observed = np.isfinite(Y)
    M = observed.astype(np.float64)
    Y0 = np.where(observed, Y, 0.0)
    J, d = Y.shape[1], V.shape[1]
    S = np.zeros((J, d, d))
    for s in range(0, V.shape[0], _CHUNK):
        v, m = V[s : s + _CHUNK], M[s : s + _CHUNK]
        # One BLAS product per metric: einsum runs this three-operand sum in
        # C loops, 10-20x slower (0.5 s instead of 0.03 s for 50k rows).
        for j in range(J):
            S[j] += (v * m[:, j, None]).T @ v
    return M.sum(0), M.T @ V, S, Y0.T @ V, Y0.sum(0), (Y0**2).sum(0)


def _gcv_alpha(lam, q, yy, n, intercept: int) -> np.ndarray:
    """Penalty minimising generalised cross-validation, for a batch of ridge problems.

    ``lam (..., d)``: eigenvalues of the Gram; ``q (..., d)``: the right-hand
    side in the eigenbasis; ``yy (...)``: total sum of squares; ``n (...)``:
    rows; ``intercept``: 1 if an unpenalised intercept was centred out.
    ``GCV(a) = n RSS(a) / (n - df(a))^2`` with ``df = intercept + sum lam / (lam + a)``.
    Problems with no valid grid point get the largest penalty.
    """
    scale = lam.mean(-1, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    alpha = scale[..., None] * ALPHA_GRID[:, None]  # (..., L, 1)
    lam_, q2 = lam[..., None, :], q[..., None, :] ** 2
    rss = yy[..., None] - (q2 * (lam_ + 2 * alpha) / (lam_ + alpha) ** 2).sum(-1)
    rss = np.maximum(rss, 0.0)
    resid_df = n[..., None] - intercept - (lam_ / (lam_ + alpha)).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gcv = np.where(resid_df > 1e-9, n[..., None] * rss / resid_df**2, np.inf)
    best = np.where(np.isfinite(gcv).any(-1), np.argmin(gcv, -1), len(ALPHA_GRID) - 1)
    return np.take_along_axis(alpha[..., 0], best[..., None], -1)[..., 0]


def _eigh(C):
    """Eigen-decomposition of a batch of symmetric PSD matrices, rounding negatives up to 0."""
    lam, U = np.linalg.eigh(C)
    return np.maximum(lam, 0.0), U


def _eigen_ridge(lam, U, q, alpha):
    """Ridge solution ``(C + a I)^+ c`` and the matrix ``K = (C + a I)^+``, from ``C = U diag(lam) U'``, ``q = U'c``."""
    denom = lam + alpha[..., None]
    tiny = 1e-12 * np.maximum(lam.max(-1, keepdims=True), 1e-300)
    inv = np.where(denom > tiny, 1.0 / np.where(denom > tiny, denom, 1.0), 0.0)
    w = np.einsum("...dk,...k->...d", U, inv * q)
    K = np.einsum("...ik,...k,...jk->...ij", U, inv, U)
    return w, K


class LinearHeads:
    """Prediction from per-(arm, metric) linear heads on ``z = [1, v]``: ``coef_``, ``cov_``."""

    coef_: np.ndarray
    cov_: np.ndarray

    @staticmethod
    def _design(V) -> np.ndarray:
        V = np.asarray(V, dtype=np.float64)
        return np.hstack([np.ones((V.shape[0], 1)), V])

    def _check(self, V) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        Z = self._design(V)
        if Z.shape[1] != self.coef_.shape[-1]:
            raise ValueError(f"V must have {self.coef_.shape[-1] - 1} columns; got {Z.shape[1] - 1}")
        return Z

    def predict_outcomes(self, V: np.ndarray, arms=None) -> np.ndarray:
        """Outcome under each of ``arms`` (local; default: all): ``V (n, d) -> (n, len(arms), J)``, original units."""
        coef = self.coef_ if arms is None else self.coef_[np.asarray(arms, dtype=np.int64)]
        return np.einsum("nk,ajk->naj", self._check(V), coef)

    def predict_cate(self, V: np.ndarray, arms=None, controls=None) -> np.ndarray:
        """Outcome under each of ``arms`` minus under its control: ``(n, len(arms), J)``;
        default: every treatment arm against control 0, ``(n, A-1, J)``."""
        arms = np.arange(1, self.coef_.shape[0]) if arms is None else np.asarray(arms, dtype=np.int64)
        controls = np.zeros_like(arms) if controls is None else np.asarray(controls, dtype=np.int64)
        return np.einsum("nk,ajk->naj", self._check(V), self.coef_[arms] - self.coef_[controls])

    def predict_cate_se(self, V: np.ndarray) -> np.ndarray:
        """Standard error of :meth:`predict_cate` (every treatment arm against control):
        ``sqrt(z' (cov_t + cov_c) z + cate_var_t)``, ``(n, A-1, J)``.

        ``cate_var_`` (0 unless set, see :class:`lrl_core.heads.ExperimentHead`) is the extractor's share.
        """
        return np.sqrt(self._head_variance(V) + self._extractor_variance()[1:])

    def _extractor_variance(self) -> np.ndarray:
        """``(A, J)`` variance added to each arm's CATE for the extractor's error: none here."""
        return np.zeros(self.coef_.shape[:2])

    def _head_variance(self, V: np.ndarray) -> np.ndarray:
        """``z' (cov_t + cov_c) z``: the CATE's variance with ``v`` known, ``(n, A-1, J)``."""
        Z = self._check(V)
        cov = self.cov_[1:] + self.cov_[:1]
        out = np.empty((Z.shape[0],) + cov.shape[:2])
        for s in range(0, Z.shape[0], _CHUNK):
            z = Z[s : s + _CHUNK]
            # z' C z as one BLAS product z C' and a row-wise dot: einsum's
            # three-operand path is about 10x slower.
            zc = (z @ cov.reshape(-1, cov.shape[-1]).T).reshape(z.shape[0], *cov.shape[:3])
            out[s : s + _CHUNK] = np.einsum("najl,nl->naj", zc, z)
        return np.maximum(out, 0.0)


class RidgeHeads(LinearHeads):
    """Closed-form ridge per (arm, metric) on ``[1, v]`` with an unpenalised intercept.

    Parameters
    ----------
    alpha:
        Fixed penalty, or ``None`` to choose one per (arm, metric) by
        generalised cross-validation over :data:`ALPHA_GRID` (one
        eigendecomposition per Gram matrix serves the whole grid).

    Fitted: ``coef_ (A, J, d+1)`` (intercept first), ``cov_ (A, J, d+1, d+1)`` =
    ``sigma2 (Z'Z + a P)^-1 Z'Z (Z'Z + a P)^-1`` with ``P = diag(0, 1, ..., 1)``,
    ``sigma2_ (A, J)`` residual variance on ``n - trace(hat)`` degrees of
    freedom, ``alpha_ (A, J)``, ``n_ (A, J)`` observed rows.
    """

    def __init__(self, alpha: float | None = None) -> None:
        self.alpha = alpha

    def fit(self, V: np.ndarray, arm: np.ndarray, Y: np.ndarray, n_arms: int | None = None) -> "RidgeHeads":
        """``V (n, d)``, ``arm (n,)`` local arm (0 = control), ``Y (n, J)`` NaN = unobserved."""
        V, arm, Y, n_arms = as_head_inputs(V, arm, Y, n_arms)
        n, s, S, t, ysum, yy = (np.stack(m) for m in zip(*(_moments(V[arm == a], Y[arm == a]) for a in range(n_arms))))
        valid = n > 0
        nn = np.where(valid, n, 1.0)
        vbar, ybar = s / nn[..., None], ysum / nn
        # Centring removes the unpenalised intercept from the ridge problem.
        C = S - nn[..., None, None] * vbar[..., :, None] * vbar[..., None, :]
        c = t - nn[..., None] * vbar * ybar[..., None]
        yyc = yy - nn * ybar**2
        lam, U = _eigh(C)
        q = np.einsum("...dk,...d->...k", U, c)
        if self.alpha is None:
            alpha = _gcv_alpha(lam, q, yyc, nn, intercept=1)
        else:
            alpha = np.full(n.shape, float(self.alpha))
        w, K = _eigen_ridge(lam, U, q, alpha)
        rss = np.maximum(yyc - 2 * (w * c).sum(-1) + np.einsum("...i,...ij,...j->...", w, C, w), 0.0)
        shrink = np.einsum("...ik,...kj->...ij", K, C)
        resid_df = nn - 1 - np.trace(shrink, axis1=-2, axis2=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            sigma2 = np.where(resid_df > 1e-9, rss / resid_df, np.nan)
        cov_w = sigma2[..., None, None] * (shrink @ K)
        d = V.shape[1]
        cov = np.empty(n.shape + (d + 1, d + 1))
        # b0 = ybar - vbar'w, with ybar uncorrelated with w because v is centred.
        cov[..., 1:, 1:] = cov_w
        cov[..., 1:, 0] = -np.einsum("...ij,...j->...i", cov_w, vbar)
        cov[..., 0, 1:] = cov[..., 1:, 0]
        cov[..., 0, 0] = sigma2 / nn + np.einsum("...i,...ij,...j->...", vbar, cov_w, vbar)
        coef = np.concatenate([(ybar - (vbar * w).sum(-1))[..., None], w], axis=-1)
        coef[~valid], cov[~valid], sigma2[~valid] = np.nan, np.nan, np.nan
        self.coef_, self.cov_, self.sigma2_ = coef, cov, sigma2
        self.alpha_, self.n_ = np.where(valid, alpha, np.nan), n.astype(np.int64)
        return self


class StructuredHeads(LinearHeads):
    """Heads that keep the pooled model's structure: ``y_std,j = v' A_j e_arm``.

    One ``d``-vector per arm, shared by all metrics, fitted by ridge (no
    intercept: ``v`` carries the constant, as in the pooled model) on the
    stacked design ``z_ij = A_j' v_i`` over every observed (row, metric). The
    metrics are standardised with the pooled model's ``y_mean``, ``y_scale``.

    Parameters
    ----------
    metric_operators: ``(J, d, d)`` the pooled model's ``A`` of these metrics.
    y_mean, y_scale: ``(J,)`` the pooled model's standardisation of these metrics.
    alpha: fixed penalty or ``None`` for generalised cross-validation per arm.

    Fitted: ``e_ (A, d)``, ``e_cov_ (A, d, d)`` (a sandwich with one residual
    variance per metric, since the metrics' noise differs), ``alpha_ (A,)``,
    and the equivalent linear heads in original units, ``coef_ (A, J, d+1) =
    [y_mean_j, y_scale_j A_j e]``, ``cov_``, ``sigma2_ (A, J)``, ``n_ (A, J)``.
    """

    def __init__(self, metric_operators, y_mean, y_scale, alpha: float | None = None) -> None:
        self.metric_operators = np.asarray(metric_operators, dtype=np.float64)
        self.y_mean = np.asarray(y_mean, dtype=np.float64)
        self.y_scale = np.asarray(y_scale, dtype=np.float64)
        self.alpha = alpha

    def fit(self, V: np.ndarray, arm: np.ndarray, Y: np.ndarray, n_arms: int | None = None) -> "StructuredHeads":
        """``V (n, d)``, ``arm (n,)`` local arm (0 = control), ``Y (n, J)`` original units, NaN = unobserved."""
        V, arm, Y, n_arms = as_head_inputs(V, arm, Y, n_arms)
        A = self.metric_operators
        J, d = A.shape[0], A.shape[1]
        if A.shape != (J, d, d) or Y.shape[1] != J or V.shape[1] != d:
            raise ValueError(f"need A (J, d, d), Y (n, J), V (n, d); got {A.shape}, {Y.shape}, {V.shape}")
        Ystd = (Y - self.y_mean) / self.y_scale
        n, _, S, t, _, yy = (np.stack(m) for m in zip(*(_moments(V[arm == a], Ystd[arm == a]) for a in range(n_arms))))
        # Per arm and metric, the stacked design's Gram and moments: A_j' S_j A_j, A_j' t_j.
        S_z = np.einsum("jkd,ajkl,jle->ajde", A, S, A)
        t_z = np.einsum("jkd,ajk->ajd", A, t)
        gram, rhs, total = S_z.sum(1), t_z.sum(1), n.sum(1)
        valid = total > 0
        lam, U = _eigh(gram)
        q = np.einsum("adk,ad->ak", U, rhs)
        if self.alpha is None:
            alpha = _gcv_alpha(lam, q, yy.sum(1), total, intercept=0)
        else:
            alpha = np.full(n_arms, float(self.alpha))
        e, K = _eigen_ridge(lam, U, q, alpha)
        rss = yy - 2 * np.einsum("ad,ajd->aj", e, t_z) + np.einsum("ad,ajde,ae->aj", e, S_z, e)
        df = np.einsum("ade,ajed->aj", K, S_z)
        with np.errstate(divide="ignore", invalid="ignore"):
            sigma2 = np.where(n - df > 1e-9, np.maximum(rss, 0.0) / (n - df), np.nan)
        # A metric with no rows adds nothing to the sandwich's meat.
        meat = np.einsum("aj,ajde->ade", np.where(n > 0, sigma2, 0.0), S_z)
        e_cov = K @ meat @ K
        e[~valid], e_cov[~valid] = np.nan, np.nan

        w = self.y_scale[None, :, None] * np.einsum("jde,ae->ajd", A, e)
        coef = np.concatenate([np.broadcast_to(self.y_mean, (n_arms, J))[..., None], w], axis=-1)
        coef[~valid] = np.nan
        cov = np.zeros((n_arms, J, d + 1, d + 1))
        cov[..., 1:, 1:] = self.y_scale[None, :, None, None] ** 2 * np.einsum("jdk,akl,jel->ajde", A, e_cov, A)
        cov[~valid] = np.nan
        self.e_, self.e_cov_, self.alpha_ = e, e_cov, np.where(valid, alpha, np.nan)
        self.coef_, self.cov_ = coef, cov
        self.sigma2_ = sigma2 * self.y_scale**2
        self.n_ = n.astype(np.int64)
        return self
