"""Closed-form heads for a new experiment on the frozen extractor (paper section 6).

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
- :class:`ExperimentHead`: what the pipeline stores per experiment: structured
  heads for known metrics, ridge heads for the rest, as plain records.

Every head ends as a linear head per (arm, metric) on ``[1, v]`` in original
metric units: ``coef_ (A, J, d+1)`` and ``cov_ (A, J, d+1, d+1)``. Arms are
local to the experiment: ``0`` is control, ``1 .. A-1`` treatments. Where an
(arm, metric) head cannot be estimated (no observed row; for ridge heads, or
structured arms with no row at all) its coefficients, and every CATE that uses
it, are NaN; a covariance needs more rows than fitted degrees of freedom and
is NaN otherwise.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ExperimentHead", "RidgeHeads", "StructuredHeads", "ALPHA_GRID", "MIN_HEAD_ROWS"]

ALPHA_GRID = np.logspace(-6, 6, 49)
"""Candidate penalties for generalised cross-validation, as multiples of the
mean eigenvalue of the (centred) Gram matrix, so the grid follows the scale
of ``v`` and the number of rows."""

_CHUNK = 16384

MIN_HEAD_ROWS = 3
"""Fewest observed outcomes of an (arm, metric) for it to get a head: with none or one or two (a
metric reported only for control) the head would be carried over from the pooled model or fitted on
next to nothing, and its CATEs served as if estimated (issue 18: 0 treated rows gave CATEs with
median SE 0.003, 94.5% "significant"). Three is the fewest that leave a residual degree of freedom
beyond the intercept; small arms above it are fitted, and flagged by the pipeline."""


def _as_inputs(V, arm, Y, n_arms):
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


class _LinearHeads:
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

    def predict(self, V: np.ndarray) -> np.ndarray:
        """Outcome of every arm: ``V (n, d) -> (n, A, J)``, original units."""
        return np.einsum("nk,ajk->naj", self._check(V), self.coef_)

    def cate(self, V: np.ndarray) -> np.ndarray:
        """Treatment arm minus control: ``(n, A-1, J)``."""
        return np.einsum("nk,ajk->naj", self._check(V), self.coef_[1:] - self.coef_[:1])

    def cate_se(self, V: np.ndarray) -> np.ndarray:
        """Standard error of :meth:`cate`: ``sqrt(z' (cov_t + cov_c) z + cate_var_t)``, ``(n, A-1, J)``.

        ``cate_var_`` (0 unless set, see :class:`ExperimentHead`) is the extractor's share.
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


class RidgeHeads(_LinearHeads):
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
        V, arm, Y, n_arms = _as_inputs(V, arm, Y, n_arms)
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


class StructuredHeads(_LinearHeads):
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
        V, arm, Y, n_arms = _as_inputs(V, arm, Y, n_arms)
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


class ExperimentHead(_LinearHeads):
    """The heads of one experiment: structured for metrics the learner knows, ridge for the rest.

    For an experiment the learner was trained on (``arms`` given to :meth:`fit`),
    a known metric's head is the pooled model's own: ``w = A_j e_arm`` with the
    trained arm embeddings (kind ``"pooled"``). Refitting ``e`` by ridge on the
    frozen ``v`` throws away what the joint fit learned: on the paper's world at
    25 units per arm the refitted heads had 7 times the PEHE of the pooled
    model's (0.72 vs 0.11). The structured ridge fit still gives its covariance.

    An (arm, metric) with fewer than :data:`MIN_HEAD_ROWS` observed outcomes
    gets no head (NaN coefficients), and so no CATE.

    Fitted: ``metric_names_ (J,)``, ``kinds_ (J,)`` (``"pooled"``,
    ``"structured"`` or ``"ridge"``), and per (arm, metric) ``coef_``, ``cov_``,
    ``sigma2_``, ``n_``, ``alpha_`` as in :class:`RidgeHeads`, and ``cate_var_``:
    the extractor's share of each treated arm's CATE variance (0 for control),
    added in :meth:`cate_se`. For a pooled head it is the learner's jackknife
    variance (``learner.cate_var_``) less the head covariance's mean over the
    experiment's units, never below 0, so the two are not counted twice; for a
    new experiment ``learner.extractor_var_ * ||w||^2`` (see
    :mod:`lrl_core.uncertainty`). :meth:`to_records` and :meth:`from_records`
    turn all of it into plain rows and back, exactly.
    """

    def __init__(self, alpha: float | None = None) -> None:
        self.alpha = alpha

    def fit(self, V, arm_local, Y, metric_names, learner, n_arms: int | None = None,
            arms: np.ndarray | None = None) -> "ExperimentHead":
        """``V (n, d)`` from ``learner.transform``; ``arm_local (n,)``, 0 = control;
        ``Y (n, J)`` in original units with columns ``metric_names``; ``learner``: a
        fitted :class:`~lrl_core.training.LRLearner` (its ``metric_names_``,
        ``metric_operators_``, ``y_mean_``, ``y_scale_``, ``arm_embeddings_``,
        ``cate_var_``, ``extractor_var_``); ``arms (A,)``: the learner's global
        index of each local arm when it was trained on this experiment, else None."""
        V, arm_local, Y, n_arms = _as_inputs(V, arm_local, Y, n_arms)
        names = [str(m) for m in metric_names]
        if len(names) != Y.shape[1] or len(set(names)) != len(names):
            raise ValueError(f"metric_names must be {Y.shape[1]} distinct names")
        known = {m: j for j, m in enumerate(learner.metric_names_)}
        kinds = ["structured" if m in known else "ridge" for m in names]
        d = V.shape[1]
        J = len(names)
        self.coef_ = np.full((n_arms, J, d + 1), np.nan)
        self.cov_ = np.full((n_arms, J, d + 1, d + 1), np.nan)
        self.sigma2_ = np.full((n_arms, J), np.nan)
        self.alpha_ = np.full((n_arms, J), np.nan)
        self.n_ = np.zeros((n_arms, J), dtype=np.int64)
        self.cate_var_ = np.zeros((n_arms, J))
        cols = [j for j, k in enumerate(kinds) if k == "structured"]
        if cols:
            pooled = [known[names[j]] for j in cols]
            heads = StructuredHeads(
                learner.metric_operators_[pooled], learner.y_mean_[pooled], learner.y_scale_[pooled], self.alpha
            ).fit(V, arm_local, Y[:, cols], n_arms)
            self._put(cols, heads, np.repeat(heads.alpha_[:, None], len(cols), axis=1))
            if arms is not None:
                arms = np.asarray(arms, dtype=np.int64)
                e = learner.arm_embeddings_[arms]
                w = learner.y_scale_[pooled][None, :, None] * np.einsum("jde,ae->ajd", learner.metric_operators_[pooled], e)
                trained = np.isfinite(self.coef_[:, cols, 0])
                self.coef_[:, cols, 1:] = np.where(trained[..., None], w, np.nan)
                for j in cols:
                    kinds[j] = "pooled"
                head_var = np.nanmean(self._head_variance(V)[:, :, cols], axis=0) if len(V) else 0.0
                jackknife = learner.cate_var_[arms[1:]][:, pooled]
                self.cate_var_[1:, cols] = np.where(np.isfinite(jackknife), np.maximum(jackknife - head_var, 0.0), 0.0)
        cols = [j for j, k in enumerate(kinds) if k == "ridge"]
        if cols:
            heads = RidgeHeads(self.alpha).fit(V, arm_local, Y[:, cols], n_arms)
            self._put(cols, heads, heads.alpha_)
        fresh = [j for j, k in enumerate(kinds) if k != "pooled"]
        if fresh:
            # The extractor variance per unit length of w is one number per metric; a metric the
            # learner never saw takes the median over the ones it did.
            known_var = learner.extractor_var_
            s2 = np.array([known_var[known[names[j]]] if names[j] in known else
                           (float(np.median(known_var)) if known_var.size else 0.0) for j in fresh])
            w = self.coef_[1:, fresh, 1:] - self.coef_[:1, fresh, 1:]
            self.cate_var_[1:, fresh] = np.nan_to_num(s2 * (w**2).sum(-1))
        too_few = self.n_ < MIN_HEAD_ROWS
        self.coef_[too_few], self.cov_[too_few] = np.nan, np.nan
        self.metric_names_, self.kinds_ = names, kinds
        return self

    def _extractor_variance(self) -> np.ndarray:
        return self.cate_var_

    def _put(self, cols, heads, alpha) -> None:
        self.coef_[:, cols], self.cov_[:, cols] = heads.coef_, heads.cov_
        self.sigma2_[:, cols], self.n_[:, cols], self.alpha_[:, cols] = heads.sigma2_, heads.n_, alpha

    def to_records(self) -> list[dict]:
        """One plain dict per (arm, metric): ``arm``, ``metric``, ``kind``, ``coef`` (``d+1``
        floats, intercept first), ``cov`` (``(d+1)^2`` floats, row-major), ``sigma2``,
        ``alpha``, ``n``, ``cate_var``. NaN stays NaN."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("ExperimentHead is not fitted")
        return [
            {
                "arm": a,
                "metric": m,
                "kind": self.kinds_[j],
                "coef": self.coef_[a, j].tolist(),
                "cov": self.cov_[a, j].ravel().tolist(),
                "sigma2": float(self.sigma2_[a, j]),
                "alpha": float(self.alpha_[a, j]),
                "n": int(self.n_[a, j]),
                "cate_var": float(self.cate_var_[a, j]),
            }
            for a in range(self.coef_.shape[0])
            for j, m in enumerate(self.metric_names_)
        ]

    @classmethod
    def from_records(cls, records: list[dict], metric_names: list[str] | None = None) -> "ExperimentHead":
        """Inverse of :meth:`to_records`; metrics in ``metric_names`` order (default: first seen)."""
        records = list(records)
        if not records:
            raise ValueError("no records")
        names = list(dict.fromkeys(r["metric"] for r in records)) if metric_names is None else list(metric_names)
        col = {m: j for j, m in enumerate(names)}
        n_arms = max(int(r["arm"]) for r in records) + 1
        k = len(records[0]["coef"])
        head = cls()
        head.metric_names_ = names
        head.kinds_ = [""] * len(names)
        head.coef_ = np.full((n_arms, len(names), k), np.nan)
        head.cov_ = np.full((n_arms, len(names), k, k), np.nan)
        head.sigma2_ = np.full((n_arms, len(names)), np.nan)
        head.alpha_ = np.full((n_arms, len(names)), np.nan)
        head.n_ = np.zeros((n_arms, len(names)), dtype=np.int64)
        head.cate_var_ = np.zeros((n_arms, len(names)))
        for r in records:
            a, j = int(r["arm"]), col[r["metric"]]
            head.kinds_[j] = r["kind"]
            head.coef_[a, j] = r["coef"]
            head.cov_[a, j] = np.asarray(r["cov"], dtype=np.float64).reshape(k, k)
            head.sigma2_[a, j], head.alpha_[a, j], head.n_[a, j] = r["sigma2"], r["alpha"], r["n"]
            # Heads stored before the jackknife carry no extractor variance.
            cate_var = r.get("cate_var")
            head.cate_var_[a, j] = 0.0 if cate_var is None or not np.isfinite(cate_var) else cate_var
        return head
