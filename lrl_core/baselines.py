"""Independent T-learners (the paper's Algorithm 1): one regression per arm and metric.

Both estimators share the shape of :class:`lrl_core.training.LRLearner`::

    model.fit(X, units, arms, Y, n_arms=G)      # -> self
    model.predict_outcomes(X, arms)             # (n, len(arms), J)
    model.predict_cate(X, arms, controls)       # (n, len(arms), J)

Fitting one outcome model per *arm* (rather than per experiment) is the
T-learner of every experiment at once: the CATE of an arm is its outcome
model minus that of its experiment's control arm. An (arm, metric) pair with
no observed outcome has no model, and its predictions are NaN.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = ["OLSTLearner", "XGBTLearner", "TLearners"]


def _check_fit_inputs(X, units, arms, Y, n_arms):
    """Validate and normalise the common ``fit`` arguments; returns them with ``G``."""
    X = np.asarray(X)
    units = np.asarray(units, dtype=np.int64)
    arms = np.asarray(arms, dtype=np.int64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be (n, p); got shape {X.shape}")
    if Y.ndim != 2:
        raise ValueError(f"Y must be (r, J); got shape {Y.shape}")
    r = Y.shape[0]
    if units.shape != (r,) or arms.shape != (r,):
        raise ValueError(
            f"units {units.shape} and arms {arms.shape} must both be ({r},), one entry per row of Y"
        )
    if r and (units.min() < 0 or units.max() >= X.shape[0]):
        raise ValueError(f"units must index rows of X, i.e. lie in [0, {X.shape[0]})")
    G = int(n_arms) if n_arms is not None else (int(arms.max()) + 1 if r else 0)
    if r and (arms.min() < 0 or arms.max() >= G):
        raise ValueError(f"arms must lie in [0, {G})")
    return X, units, arms, Y, G


def _check_arms(arms, n_arms: int) -> np.ndarray:
    arms = np.atleast_1d(np.asarray(arms, dtype=np.int64))
    if arms.ndim != 1:
        raise ValueError(f"arms must be 1-D; got shape {arms.shape}")
    if arms.size and (arms.min() < 0 or arms.max() >= n_arms):
        raise ValueError(f"arms must lie in [0, {n_arms})")
    return arms


def _svd_solve(Z: np.ndarray, Y: np.ndarray, ridge: float) -> np.ndarray:
    """Minimum-norm (ridge = 0) or ridge solution of ``Z b = Y`` for every column of ``Y``.

    ``Z (m, q)``, ``Y (m, c)`` -> ``(q, c)``. With ``ridge = 0`` singular values
    below ``eps * max(m, q) * s_max`` count as zero, the cut-off of
    ``numpy.linalg.lstsq``, so the result is what ``lstsq`` returns.
    """
    U, s, Vt = np.linalg.svd(Z, full_matrices=False)
    if ridge > 0:
        filt = s / (s * s + ridge)
    else:
        cutoff = np.finfo(np.float64).eps * max(Z.shape) * (s[0] if s.size else 0.0)
        keep = s > cutoff
        filt = np.zeros_like(s)
        filt[keep] = 1.0 / s[keep]
    return Vt.T @ (filt[:, None] * (U.T @ Y))


def _unique_masks(observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group metrics by their row-observation pattern.

    ``observed (m, J)`` bool -> ``(masks (u, m), group (J,))`` with metric ``j``
    observed exactly on ``masks[group[j]]``; metrics sharing a mask share a solve.
    """
    masks, group = np.unique(observed.T, axis=0, return_inverse=True)
    return masks, group.reshape(-1)


class _TLearner:
    """Shared prediction plumbing: the CATE is the arm's outcome minus its control's."""

    def predict_cate(self, X, arms, controls) -> np.ndarray:
        """CATE of each arm against its control.

        ``X (n, p)``, ``arms (a,)``, ``controls (a,)`` global arm indices ->
        ``(n, a, J)``: ``outcome(arm) - outcome(control)``.
        """
        arms = _check_arms(arms, self.n_arms_)
        controls = _check_arms(controls, self.n_arms_)
        if arms.shape != controls.shape:
            raise ValueError(f"arms {arms.shape} and controls {controls.shape} must match")
        both = self.predict_outcomes(X, np.concatenate([arms, controls]))
        return both[:, : arms.size] - both[:, arms.size :]

    def _check_predict_X(self, X) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must be (n, {self.n_features_in_}); got shape {X.shape}")
        return X


class OLSTLearner(_TLearner):
    """Independent linear T-learners: least squares per (arm, metric), in closed form.

    Each arm's design ``[1, X]`` is decomposed once (thin SVD) and reused for
    every metric observed on the same rows; metrics missing on some rows get
    one further SVD per distinct observation pattern. Where an arm has fewer
    rows than coefficients the minimum-norm solution is returned, as
    ``numpy.linalg.lstsq`` does.

    Parameters
    ----------
    fit_intercept:
        Add an intercept column. Without it, ``coef_[..., 0]`` is zero.
    ridge:
        L2 penalty on the slopes (never on the intercept: with an intercept the
        features and outcomes are centred per arm first). ``0`` is plain least
        squares.

    Attributes
    ----------
    coef_ : (G, J, p + 1) float64
        ``[intercept, slopes]`` per arm and metric; NaN where the pair has no
        observed outcome.
    n_obs_ : (G, J) int64
        Observed outcomes behind each regression.
    """

    def __init__(self, fit_intercept: bool = True, ridge: float = 0.0):
        if ridge < 0:
            raise ValueError(f"ridge must be >= 0; got {ridge}")
        self.fit_intercept = fit_intercept
        self.ridge = ridge

    def fit(self, X, units, arms, Y, n_arms: int | None = None) -> "OLSTLearner":
        """Fit one regression per (arm, metric).

        ``X (n, p)`` features, ``units (r,)`` row -> unit, ``arms (r,)`` row ->
        global arm, ``Y (r, J)`` outcomes with NaN where unobserved; ``n_arms``
        is ``G`` (default ``arms.max() + 1``).
        """
        X, units, arms, Y, G = _check_fit_inputs(X, units, arms, Y, n_arms)
        p, J = X.shape[1], Y.shape[1]
        coef = np.full((G, J, p + 1), np.nan)
        n_obs = np.zeros((G, J), dtype=np.int64)
        order = np.argsort(arms, kind="stable")
        bounds = np.searchsorted(arms[order], np.arange(G + 1))
        for g in range(G):
            rows = order[bounds[g] : bounds[g + 1]]
            if rows.size == 0:
                continue
            Z = X[units[rows]].astype(np.float64)
            Yg = Y[rows]
            observed = ~np.isnan(Yg)
            n_obs[g] = observed.sum(axis=0)
            masks, group = _unique_masks(observed)
            for u, mask in enumerate(masks):
                if not mask.any():
                    continue
                cols = np.flatnonzero(group == u)
                coef[g, cols] = self._solve(Z[mask], Yg[np.ix_(mask, cols)]).T
        self.coef_ = coef
        self.n_obs_ = n_obs
        self.n_arms_ = G
        self.n_metrics_ = J
        self.n_features_in_ = p
        return self

    def to_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors and plain-JSON metadata of the fitted learner (see :meth:`from_state`)."""
        tensors = {"coef": torch.from_numpy(self.coef_.copy()), "n_obs": torch.from_numpy(self.n_obs_.copy())}
        return tensors, {"format": "lrl.OLSTLearner/1", "fit_intercept": self.fit_intercept, "ridge": self.ridge}

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], meta: dict) -> "OLSTLearner":
        """Inverse of :meth:`to_state`."""
        learner = cls(meta["fit_intercept"], meta["ridge"])
        learner.coef_ = tensors["coef"].numpy().astype(np.float64)
        learner.n_obs_ = tensors["n_obs"].numpy().astype(np.int64)
        learner.n_arms_, learner.n_metrics_ = learner.coef_.shape[:2]
        learner.n_features_in_ = learner.coef_.shape[2] - 1
        return learner

    def _solve(self, Z: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """``Z (m, p)``, ``Y (m, c)`` -> ``(p + 1, c)`` as ``[intercept, slopes]``."""
        if not self.fit_intercept:
            slopes = _svd_solve(Z, Y, self.ridge)
            return np.vstack([np.zeros((1, Y.shape[1])), slopes])
        if self.ridge == 0:
            # Minimum norm over intercept and slopes jointly, as lstsq on [1, X].
            return _svd_solve(np.hstack([np.ones((Z.shape[0], 1)), Z]), Y, 0.0)
        z_mean, y_mean = Z.mean(axis=0), Y.mean(axis=0)
        slopes = _svd_solve(Z - z_mean, Y - y_mean, self.ridge)
        return np.vstack([y_mean - z_mean @ slopes, slopes])

    def predict_outcomes(self, X, arms) -> np.ndarray:
        """Predicted outcome of every unit under each arm.

        ``X (n, p)``, ``arms (a,)`` global arm indices -> ``(n, a, J)``.
        """
        X = self._check_predict_X(X).astype(np.float64, copy=False)
        arms = _check_arms(arms, self.n_arms_)
        W = self.coef_[arms]  # (a, J, p + 1)
        a, J = W.shape[:2]
        out = X @ W[..., 1:].reshape(a * J, -1).T + W[..., 0].reshape(-1)
        return out.reshape(X.shape[0], a, J)

    def predict_cate(self, X, arms, controls) -> np.ndarray:
        """CATE of each arm against its control: ``X (n, p)``, ``arms, controls (a,)`` -> ``(n, a, J)``.

        Linear models subtract coefficients first, so this is one product.
        """
        X = self._check_predict_X(X).astype(np.float64, copy=False)
        arms = _check_arms(arms, self.n_arms_)
        controls = _check_arms(controls, self.n_arms_)
        if arms.shape != controls.shape:
            raise ValueError(f"arms {arms.shape} and controls {controls.shape} must match")
        W = self.coef_[arms] - self.coef_[controls]
        a, J = W.shape[:2]
        out = X @ W[..., 1:].reshape(a * J, -1).T + W[..., 0].reshape(-1)
        return out.reshape(X.shape[0], a, J)


class XGBTLearner(_TLearner):
    """Independent gradient-boosted T-learners: one ``XGBRegressor`` per (arm, metric).

    Each arm's feature matrix is gathered once and shared by its metrics'
    models. Pairs without observed outcomes get no model (NaN predictions).

    Parameters
    ----------
    n_estimators, max_depth, learning_rate:
        Passed to every ``xgboost.XGBRegressor`` (``tree_method="hist"``).
    n_jobs:
        Threads per model; ``None`` lets XGBoost use every core.
    min_rows:
        Fewest observed outcomes an (arm, metric) needs for a model; below it the pair gets
        none (NaN predictions), as a pair with no rows does. Boosting a few rows costs as much
        as boosting thousands (its fixed cost is per model: 200 experiments of 3 units per arm
        made a retrain's T-learners 10x slower, issue 18) and fits noise.
    seed:
        ``random_state`` of every model.
    progress:
        Show a progress bar over models when there are many of them.

    Attributes
    ----------
    models_ : dict[(int, int), xgboost.XGBRegressor]
        Fitted model per ``(arm, metric)``.
    n_obs_ : (G, J) int64
        Observed outcomes behind each model.
    """

    _PROGRESS_MIN_MODELS = 20

    def __init__(
        self,
        n_estimators: int = 100,
        max_depth: int = 6,
        learning_rate: float = 0.1,
        n_jobs: int | None = None,
        seed: int = 0,
        progress: bool = True,
        min_rows: int = 20,
    ):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.n_jobs = n_jobs
        self.min_rows = min_rows
        self.seed = seed
        self.progress = progress

    def _new_model(self):
        import xgboost

        return xgboost.XGBRegressor(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            tree_method="hist",
            n_jobs=self.n_jobs,
            random_state=self.seed,
        )

    def fit(self, X, units, arms, Y, n_arms: int | None = None) -> "XGBTLearner":
        """Fit one boosted regression per (arm, metric) with observed outcomes.

        ``X (n, p)``, ``units (r,)``, ``arms (r,)``, ``Y (r, J)`` (NaN =
        unobserved); ``n_arms`` is ``G`` (default ``arms.max() + 1``).
        """
        X, units, arms, Y, G = _check_fit_inputs(X, units, arms, Y, n_arms)
        J = Y.shape[1]
        observed = ~np.isnan(Y)
        n_obs = np.zeros((G, J), dtype=np.int64)
        np.add.at(n_obs, arms, observed.astype(np.int64))
        order = np.argsort(arms, kind="stable")
        bounds = np.searchsorted(arms[order], np.arange(G + 1))
        n_models = int((n_obs >= max(self.min_rows, 1)).sum())
        bar = tqdm(
            total=n_models,
            desc="XGB T-learners",
            unit="model",
            disable=not (self.progress and n_models >= self._PROGRESS_MIN_MODELS),
        )
        models = {}
        with bar:
            for g in range(G):
                rows = order[bounds[g] : bounds[g + 1]]
                if rows.size == 0:
                    continue
                Z = X[units[rows]].astype(np.float32)
                for j in np.flatnonzero(n_obs[g] >= max(self.min_rows, 1)):
                    mask = observed[rows, j]
                    models[(g, int(j))] = self._new_model().fit(Z[mask], Y[rows[mask], j])
                    bar.update()
        self.models_ = models
        self.n_obs_ = n_obs
        self.n_arms_ = G
        self.n_metrics_ = J
        self.n_features_in_ = X.shape[1]
        return self

    def to_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Each booster in XGBoost's own binary format (UBJSON, no pickle) as a byte tensor
        ``xgb.<arm>.<metric>``, and plain-JSON metadata."""
        tensors = {f"xgb.{g}.{j}": torch.frombuffer(bytearray(model.get_booster().save_raw("ubj")), dtype=torch.uint8)
                   for (g, j), model in self.models_.items()}
        tensors["n_obs"] = torch.from_numpy(self.n_obs_.copy())
        meta = {"format": "lrl.XGBTLearner/1", "n_estimators": self.n_estimators, "max_depth": self.max_depth,
                "learning_rate": self.learning_rate, "seed": self.seed, "n_features": self.n_features_in_,
                "min_rows": self.min_rows}
        return tensors, meta

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], meta: dict) -> "XGBTLearner":
        """Inverse of :meth:`to_state`: boosters loaded from their bytes, ready to predict."""
        import xgboost

        learner = cls(meta["n_estimators"], meta["max_depth"], meta["learning_rate"], n_jobs=1, seed=meta["seed"],
                      progress=False, min_rows=meta.get("min_rows", 1))
        learner.models_ = {}
        for key, tensor in tensors.items():
            if key.startswith("xgb."):
                g, j = (int(part) for part in key.split(".")[1:])
                model = xgboost.XGBRegressor()
                model.load_model(bytearray(tensor.numpy().tobytes()))
                learner.models_[(g, j)] = model
        learner.n_obs_ = tensors["n_obs"].numpy().astype(np.int64)
        learner.n_arms_, learner.n_metrics_ = learner.n_obs_.shape
        learner.n_features_in_ = meta["n_features"]
        return learner

    def predict_outcomes(self, X, arms) -> np.ndarray:
        """Predicted outcome of every unit under each arm.

        ``X (n, p)``, ``arms (a,)`` global arm indices -> ``(n, a, J)``; each
        distinct arm is predicted once however often it is listed.
        """
        X = self._check_predict_X(X).astype(np.float32)
        arms = _check_arms(arms, self.n_arms_)
        distinct, position = np.unique(arms, return_inverse=True)
        preds = np.full((X.shape[0], distinct.size, self.n_metrics_), np.nan)
        for i, g in enumerate(distinct):
            for j in range(self.n_metrics_):
                model = self.models_.get((int(g), j))
                if model is not None:
                    preds[:, i, j] = model.predict(X)
        return preds[:, position.reshape(-1)]


class TLearners:
    """Named fitted T-learners saved and loaded together (the pipeline's baselines), e.g.
    ``TLearners({"ols_t": OLSTLearner().fit(...), "xgb_t": XGBTLearner().fit(...)})``.

    The kinds are fixed here, never read from a file: loading runs no code an artifact names.
    """

    KINDS = {"lrl.OLSTLearner/1": OLSTLearner, "lrl.XGBTLearner/1": XGBTLearner}

    def __init__(self, models: dict[str, _TLearner]) -> None:
        self.models = dict(models)

    def to_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Every model's tensors under ``<name>/``, their metadata by name."""
        tensors, meta = {}, {"format": "lrl.TLearners/1", "models": {}}
        for name, model in self.models.items():
            own, meta["models"][name] = model.to_state()
            tensors.update({f"{name}/{key}": t for key, t in own.items()})
        return tensors, meta

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], meta: dict, device=None) -> "TLearners":
        """Inverse of :meth:`to_state` (``device`` is accepted for the store's sake and unused)."""
        models = {}
        for name, own in meta["models"].items():
            prefix = f"{name}/"
            mine = {key[len(prefix):]: t for key, t in tensors.items() if key.startswith(prefix)}
            models[name] = cls.KINDS[own["format"]].from_state(mine, own)
        return cls(models)
