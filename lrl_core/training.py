"""``LRLearner``: the sklearn-shaped LR-learner estimator and its training loop.

The shape is shared with the T-learner baselines (docs/ARCHITECTURE.md)::

    model = LRLearner(LRLConfig()).fit(X, units, arms, Y, n_arms=G)
    model.predict_outcomes(X, arms)            # (n, len(arms), J), original units
    model.predict_cate(X, arms, controls)      # (n, len(arms), J)
    model.transform(X)                         # (n, d): the extractor v(.)

Training minimises the masked squared error of the standardised metrics plus
an L2 penalty (see :meth:`lrl_core.trial._Trial._optimizer`) with Adam on minibatches and
stops early on validation rows, restoring the best epoch. Fields of the
config left unset (``None``: by default the extractor, ``d`` and the penalty)
are chosen on the validation rows by successive halving over one resumable
:class:`~lrl_core.trial._Trial` per candidate (:mod:`lrl_core.selection`); given the arms'
controls, two jackknife refits then measure the extractor's share of every
CATE's variance (:mod:`lrl_core.uncertainty`).

The resumable training run and its batching live in :mod:`lrl_core.trial`.
"""
from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import LRLConfig
from .distributed import DataParallel
from .metrics import location_scale
from .model import LowRankNet
from .selection import candidate_configs, successive_halving
from .memory import trim_heap
from .trial import SMALL_STEP_MACS, _Batches, _Trial, device_features, lay_out_batches, patience_epochs
from .uncertainty import jackknife_cate_variance, validation_ceiling

__all__ = ["LRLearner", "resolve_device", "patience_epochs", "SMALL_STEP_MACS"]

PREDICT_CHUNK = 65536
"""Units per forward pass when predicting; bounds memory, not results."""


def resolve_device(requested: str | None = None) -> torch.device:
    """The training device: ``requested``, else ``$LRL_DEVICE``, else CUDA when available, else CPU."""
    name = requested or os.environ.get("LRL_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _as_rows(units, arms, Y, n_units: int, n_arms: int, n_metrics: int):
    """Validate one set of exposure rows; returns int64 units and arms, float64 ``Y``."""
    units = np.asarray(units, dtype=np.int64)
    arms = np.asarray(arms, dtype=np.int64)
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[1] != n_metrics:
        raise ValueError(f"Y must be (r, {n_metrics}); got shape {Y.shape}")
    if units.shape != (Y.shape[0],) or arms.shape != (Y.shape[0],):
        raise ValueError(f"units {units.shape} and arms {arms.shape} must be ({Y.shape[0]},)")
    if units.size and (units.min() < 0 or units.max() >= n_units):
        raise ValueError(f"units must index rows of X, i.e. lie in [0, {n_units})")
    if arms.size and (arms.min() < 0 or arms.max() >= n_arms):
        raise ValueError(f"arms must lie in [0, {n_arms})")
    return units, arms, Y


def _holdout_units(units: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean row mask of a random ``fraction`` of the distinct units (at least one, never all)."""
    distinct = np.unique(units)
    if fraction <= 0 or distinct.size < 2:
        return np.zeros(units.shape, dtype=bool)
    n_val = min(max(int(round(fraction * distinct.size)), 1), distinct.size - 1)
    return np.isin(units, rng.choice(distinct, size=n_val, replace=False))


class LRLearner:
    """The LR-learner: one low-rank model of every arm's outcomes on every metric.

    ``y_hat(x, g, j) = y_mean_j + y_scale_j * v(x)' A_j e_g``; see
    :class:`lrl_core.model.LowRankNet` and :class:`lrl_core.config.LRLConfig`.

    Fitted attributes: ``model_`` (on ``device_``), ``n_features_in_``,
    ``n_arms_``, ``n_metrics_``, ``metric_names_``, ``y_mean_`` and ``y_scale_``
    ``(J,)``, ``history_`` (one dict per epoch of the chosen configuration: ``epoch``,
    ``train_loss``, ``val_loss``, ``seconds`` of that epoch, ``candidate``), ``best_epoch_``, ``n_epochs_``,
    ``fit_seconds_`` (of which ``search_seconds_`` until the chosen configuration
    finished training; the rest is the jackknife). Losses are mean squared errors
    of standardised metrics.
    ``config_`` is the configuration trained: ``config`` with every field it
    left unset (``None``) chosen on the validation rows by successive halving
    (:mod:`lrl_core.selection`); ``selection_`` has one row per candidate
    (empty when nothing was searched). A field set in ``config`` is never searched.

    Predictions are float64 numpy arrays (the network computes in float32).
    """

    def __init__(self, config: LRLConfig = LRLConfig()) -> None:
        self.config = config

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X: np.ndarray,
        units: np.ndarray,
        arms: np.ndarray,
        Y: np.ndarray,
        n_arms: int | None = None,
        validation: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        metric_names: list[str] | None = None,
        callback: Callable[[dict], None] | None = None,
        controls: np.ndarray | None = None,
        parallel: DataParallel | None = None,
    ) -> "LRLearner":
        """Train on exposure rows.

        Parameters
        ----------
        X: ``(n, p)`` prepared unit features (float32 C-order avoids a copy).
        units, arms: ``(r,)`` int64: the unit (row of ``X``) and global arm of each exposure row.
        Y: ``(r, J)``, NaN where a metric is unobserved.
        n_arms: ``G``; default ``max(arms) + 1`` over training and validation rows.
        validation: ``(units_val, arms_val, Y_val)`` rows of the same ``X`` for early
            stopping; default: a seeded ``config.val_fraction`` of the units of the
            training rows is held out (all their rows).
        metric_names: ``J`` names, kept as ``metric_names_``; default ``m0, m1, ...``.
        callback: called with each epoch's history record of every candidate, e.g. to log progress.
        controls: ``(G,)`` the control arm of each arm's experiment. Given, and with
            ``config.interval_refits > 0``, the jackknife of :mod:`lrl_core.uncertainty`
            sets ``cate_var_ (G, J)`` and ``extractor_var_ (J,)``; otherwise they are
            NaN and 0 (standard errors then treat ``v`` as known).
        parallel: this process's rank among data-parallel ranks (:mod:`lrl_core.distributed`);
            every rank is given the same rows and computes its share of each batch, and the
            fit (selection and jackknife included) is the same on every rank.
        """
        cfg = self.config
        started = time.perf_counter()
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError(f"X must be (n, p); got shape {X.shape}")
        Y = np.asarray(Y, dtype=np.float64)
        if Y.ndim != 2:
            raise ValueError(f"Y must be (r, J); got shape {Y.shape}")
        n_metrics = Y.shape[1]
        if n_arms is None:
            seen = [arms] if validation is None else [arms, validation[1]]
            n_arms = max(int(np.max(a, initial=-1)) for a in seen) + 1
        units, arms, Y = _as_rows(units, arms, Y, X.shape[0], n_arms, n_metrics)
        rng = np.random.default_rng(cfg.seed)
        if validation is None:
            is_val = _holdout_units(units, cfg.val_fraction, rng)
            val_rows = (units[is_val], arms[is_val], Y[is_val])
            units, arms, Y = units[~is_val], arms[~is_val], Y[~is_val]
        else:
            val_rows = _as_rows(*validation, X.shape[0], n_arms, n_metrics)

        # Rows with nothing observed carry no information: leave them out.
        keep = np.isfinite(Y).any(axis=1)
        if not keep.all():
            units, arms, Y = units[keep], arms[keep], Y[keep]
        if not units.size:
            raise ValueError("no observed outcome in the training rows")
        self.y_mean_, self.y_scale_ = location_scale(Y)
        self.n_features_in_, self.n_arms_, self.n_metrics_ = X.shape[1], n_arms, n_metrics
        self.metric_names_ = _metric_names(metric_names, n_metrics)
        self.device_ = resolve_device(cfg.device)

        batch_size = max(1, min(cfg.batch_size, math.ceil(units.size / cfg.min_steps_per_epoch)))
        v_units, v_arms, v_Y = val_rows
        v_keep = np.isfinite(v_Y).any(axis=1)
        n_val = int(v_keep.sum())
        features = device_features(X, self.device_)
        # One gather buffer for every step, training and validation alike.
        largest = max(batch_size, min(cfg.batch_size, n_val))
        buffer = torch.empty((largest, X.shape[1]), dtype=torch.float32, device=features.device)
        train = self._batches(features, buffer, units, arms, Y, rng.permutation(units.size), batch_size)
        val = None
        if n_val:
            val = self._batches(
                features, buffer, v_units[v_keep], v_arms[v_keep], v_Y[v_keep], np.arange(n_val), cfg.batch_size
            )

        bar = tqdm(desc="LR-learner", unit="epoch", file=sys.stderr, disable=not cfg.progress,
                   mininterval=1.0, delay=2.0, leave=False)

        def on_epoch(record: dict) -> None:
            bar.set_postfix(train=f"{record['train_loss']:.4f}", val=f"{record['val_loss']:.4f}", refresh=False)
            bar.update(1)
            if callback is not None:
                callback(record)

        trials = [_Trial(config, train, val, self.device_, X.shape[1], n_arms, n_metrics, batch_size, on_epoch,
                         parallel) for config in candidate_configs(cfg)]
        try:
            winner, selection = successive_halving(trials, cfg.selection_rung_steps, len(train.bounds))
        finally:
            bar.close()
        self.selection_ = selection if len(trials) > 1 else []
        self.config_ = winner.config
        self.model_ = winner.model
        self.history_, self.best_epoch_, self.n_epochs_ = winner.history, winner.best_epoch, winner.epochs
        self.cate_var_, self.extractor_var_ = np.full((n_arms, n_metrics), np.nan), np.zeros(n_metrics)
        self.search_seconds_ = time.perf_counter() - started
        # The search's batches and candidates are done with: the jackknife's refits lay out their own.
        del trials, train, val, winner, features, buffer
        trim_heap()
        if controls is not None and cfg.interval_refits > 0:
            refit_config = self.config_.replace(interval_refits=0, max_epochs=self.n_epochs_, progress=False)

            def refit(keep: np.ndarray) -> LRLearner:
                return LRLearner(refit_config).fit(X, units[keep], arms[keep], Y[keep], n_arms=n_arms,
                                                   validation=val_rows, metric_names=self.metric_names_,
                                                   parallel=parallel)

            ceiling = validation_ceiling(self, X, *val_rows, controls) if val_rows[0].size else None
            jackknife = jackknife_cate_variance(refit, self, X, units, arms, controls, cfg.interval_refits,
                                                cfg.interval_drop, cfg.seed, ceiling)
            self.cate_var_, self.extractor_var_ = jackknife.cate_var, jackknife.extractor_var
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def patience_epochs(self, steps_per_epoch: int) -> int:
        """:func:`patience_epochs` of this learner's config."""
        return patience_epochs(self.config, steps_per_epoch)

    def _batches(self, features, buffer, units, arms, Y, order, batch_size) -> _Batches:
        """:func:`lrl_core.trial.lay_out_batches` with this learner's arms, standardisation and device."""
        return lay_out_batches(features, buffer, units, arms, Y, order, batch_size, self.n_arms_, self.y_mean_,
                               self.y_scale_, self.device_)

    # ------------------------------------------------------------ predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("LRLearner is not fitted: call fit() or from_state() first")

    def _arm_index(self, arms) -> torch.Tensor:
        arms = np.atleast_1d(np.asarray(arms, dtype=np.int64))
        if arms.ndim != 1 or (arms.size and (arms.min() < 0 or arms.max() >= self.n_arms_)):
            raise ValueError(f"arms must be a 1-D array of indices in [0, {self.n_arms_})")
        return torch.from_numpy(arms).to(self.device_)

    @torch.no_grad()
    def _map_units(self, X, weights: torch.Tensor | None) -> np.ndarray:
        """``v(X)`` (weights None) or ``v(X) @ weights'`` in chunks of units, as float64."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must be (n, {self.n_features_in_}); got shape {X.shape}")
        width = self.model_.d if weights is None else weights.shape[0]
        out = np.empty((X.shape[0], width), dtype=np.float64)
        for s in range(0, X.shape[0], PREDICT_CHUNK):
            v = self.model_.embed(torch.from_numpy(X[s : s + PREDICT_CHUNK]).to(self.device_))
            out[s : s + PREDICT_CHUNK] = (v if weights is None else v @ weights.T).cpu().numpy()
        return out

    def predict_outcomes(self, X: np.ndarray, arms) -> np.ndarray:
        """Predicted outcome of every unit under each arm: ``(n, len(arms), J)``, original units."""
        self._check_fitted()
        arms = self._arm_index(arms)
        weights = self.model_.arm_weights().detach()[arms]  # (L, J, d)
        out = self._map_units(X, weights.reshape(-1, weights.shape[-1]))
        return out.reshape(-1, arms.shape[0], self.n_metrics_) * self.y_scale_ + self.y_mean_

    def predict_cate(self, X: np.ndarray, arms, controls) -> np.ndarray:
        """``outcome(arm) - outcome(control)`` per unit: ``(n, len(arms), J)``, original units."""
        self._check_fitted()
        arms, controls = self._arm_index(arms), self._arm_index(controls)
        if arms.shape != controls.shape:
            raise ValueError("arms and controls must have the same length")
        w = self.model_.arm_weights().detach()
        weights = w[arms] - w[controls]
        out = self._map_units(X, weights.reshape(-1, weights.shape[-1]))
        return out.reshape(-1, arms.shape[0], self.n_metrics_) * self.y_scale_

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The extractor alone: ``v(X)``, ``(n, d)`` float64."""
        self._check_fitted()
        return self._map_units(X, None)

    # ------------------------------------------------------- introspection
    @property
    def metric_operators_(self) -> np.ndarray:
        """``A (J, d, d)``, acting on standardised metrics."""
        self._check_fitted()
        return self.model_.metric_operators.detach().cpu().numpy().astype(np.float64)

    @property
    def arm_embeddings_(self) -> np.ndarray:
        """``E (G, d)``."""
        self._check_fitted()
        return self.model_.arm_embeddings.detach().cpu().numpy().astype(np.float64)

    def effect_embeddings(self, arms, controls) -> np.ndarray:
        """``e_arm - e_control`` for each pair: ``(len(arms), d)``."""
        E = self.arm_embeddings_
        return E[self._arm_index(arms).cpu().numpy()] - E[self._arm_index(controls).cpu().numpy()]

    # -------------------------------------------------------------- state
    def to_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors (CPU, contiguous; safetensors-ready) and plain-JSON metadata of the fitted learner."""
        self._check_fitted()
        tensors = {f"model.{k}": t.detach().cpu().contiguous() for k, t in self.model_.state_dict().items()}
        tensors["y_mean"] = torch.from_numpy(np.asarray(self.y_mean_, dtype=np.float64).copy())
        tensors["y_scale"] = torch.from_numpy(np.asarray(self.y_scale_, dtype=np.float64).copy())
        tensors["cate_var"] = torch.from_numpy(np.asarray(self.cate_var_, dtype=np.float64).copy())
        tensors["extractor_var"] = torch.from_numpy(np.asarray(self.extractor_var_, dtype=np.float64).copy())
        meta = {
            "format": "lrl.LRLearner/1",
            "config": self.config_.to_dict(),
            "searched_config": self.config.to_dict(),
            "selection": list(self.selection_),
            "n_features": int(self.n_features_in_),
            "n_arms": int(self.n_arms_),
            "n_metrics": int(self.n_metrics_),
            "metric_names": list(self.metric_names_),
            "best_epoch": int(self.best_epoch_),
            "n_epochs": int(self.n_epochs_),
            "fit_seconds": float(self.fit_seconds_),
            "history": list(self.history_),
        }
        return tensors, meta

    @classmethod
    def from_state(
        cls, tensors: dict[str, torch.Tensor], meta: dict, device: str | torch.device | None = None
    ) -> "LRLearner":
        """Rebuild a fitted learner from :meth:`to_state` output, on ``device`` (default CPU)."""
        config = LRLConfig.from_dict(meta["config"])
        learner = cls(LRLConfig.from_dict(meta.get("searched_config", meta["config"])))
        learner.config_ = config
        learner.selection_ = list(meta.get("selection", []))
        model = LowRankNet(
            meta["n_features"], meta["n_arms"], meta["n_metrics"], config.d, config.extractor, config.hidden
        )
        prefix = "model."
        model.load_state_dict({k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)})
        learner.device_ = torch.device(device or "cpu")
        learner.model_ = model.to(learner.device_)
        learner.y_mean_ = tensors["y_mean"].numpy().astype(np.float64)
        learner.y_scale_ = tensors["y_scale"].numpy().astype(np.float64)
        # Versions saved before the jackknife have no extractor variance: v treated as known.
        learner.cate_var_ = (tensors["cate_var"].numpy().astype(np.float64) if "cate_var" in tensors
                             else np.full((meta["n_arms"], meta["n_metrics"]), np.nan))
        learner.extractor_var_ = (tensors["extractor_var"].numpy().astype(np.float64) if "extractor_var" in tensors
                                  else np.zeros(meta["n_metrics"]))
        learner.n_features_in_ = meta["n_features"]
        learner.n_arms_ = meta["n_arms"]
        learner.n_metrics_ = meta["n_metrics"]
        learner.metric_names_ = list(meta["metric_names"])
        learner.best_epoch_ = meta["best_epoch"]
        learner.n_epochs_ = meta["n_epochs"]
        learner.fit_seconds_ = meta["fit_seconds"]
        learner.history_ = list(meta["history"])
        return learner


def _metric_names(names, n_metrics: int) -> list[str]:
    if names is None:
        return [f"m{j}" for j in range(n_metrics)]
    names = [str(n) for n in names]
    if len(names) != n_metrics or len(set(names)) != n_metrics:
        raise ValueError(f"metric_names must be {n_metrics} distinct names")
    return names
