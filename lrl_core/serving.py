"""Which estimator serves each (experiment, arm, metric): the pooled model unless validation says otherwise.

Pooling helps where experiments share low-rank structure and can hurt where
they share nothing (ten unrelated nonlinear effect surfaces: XGBoost
T-learners PEHE 2.5, a validated pooled model 8.9; issue 10). So for every
treated arm and metric of a trained experiment, the held-out units that no
model was fitted on compare the pooled CATE with each independent
T-learner's by the paired R-loss gain (:func:`lrl_core.metrics.r_loss_gain`).
A T-learner serves only where its gain exceeds ``z`` standard errors; with
few held-out units that never happens, and the pooled model, better in
expectation wherever structure is shared, keeps serving.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import r_loss_gain

__all__ = ["POOLED", "SERVE_Z", "choose_served_models"]

POOLED = "lr_learner"
SERVE_Z = 2.0
"""Standard errors of R-loss gain a T-learner needs to replace the pooled model (about 2%
one-sided per cell when the two are equally good)."""


def choose_served_models(pooled_model, baselines: dict, X: np.ndarray, units: np.ndarray, arms: np.ndarray,
                         Y: np.ndarray, control_arm: np.ndarray, arm_experiment: np.ndarray,
                         z: float = SERVE_Z) -> pd.DataFrame:
    """One row per (treated arm, metric) with held-out rows: the model to serve and the evidence.

    ``pooled_model`` and every value of ``baselines`` (name -> fitted T-learner) have
    ``predict_outcomes`` / ``predict_cate`` over global arms; ``units, arms, Y`` are the
    held-out exposure rows. Columns: ``arm`` (global index), ``metric`` (index),
    ``model`` (``POOLED`` or a baseline's name), ``gain`` and ``gain_se`` of the best
    baseline, ``best_baseline``, ``n`` rows compared.
    """
    records = []
    for g in np.flatnonzero(control_arm[arm_experiment] != np.arange(arm_experiment.size)):
        control = control_arm[arm_experiment[g]]
        rows = np.flatnonzero((arms == g) | (arms == control))
        if rows.size < 2:
            continue
        x, treated = X[units[rows]], arms[rows] == g
        outcomes = pooled_model.predict_outcomes(x, [g, control])  # (n, 2, J)
        tau_pooled = outcomes[:, 0] - outcomes[:, 1]
        m_hat = treated.mean() * outcomes[:, 0] + (1 - treated.mean()) * outcomes[:, 1]
        alternatives = {name: model.predict_cate(x, [g], [control])[:, 0] for name, model in baselines.items()}
        for j in range(Y.shape[1]):
            observed = np.isfinite(Y[rows, j])
            gains = {name: r_loss_gain(Y[rows, j], treated, m_hat[:, j], tau_pooled[:, j], tau[:, j])
                     for name, tau in alternatives.items()}
            best = max(gains, key=lambda name: -np.inf if np.isnan(gains[name][0]) else gains[name][0], default=None)
            gain, se = gains[best] if best is not None else (np.nan, np.nan)
            serve = best if best is not None and gain > z * se else POOLED
            records.append((int(g), j, serve, gain, se, best, int(observed.sum())))
    return pd.DataFrame(records, columns=["arm", "metric", "model", "gain", "gain_se", "best_baseline", "n"])
