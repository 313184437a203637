"""Which estimator serves each (experiment, arm, metric): the pooled model, or a validated blend.

Pooling helps where experiments share low-rank structure and can hurt where
they share nothing (ten unrelated nonlinear effect surfaces: XGBoost
T-learners PEHE 2.5, a validated pooled model 8.9; issue 10). So for every
treated arm and metric of a trained experiment, the held-out units that no
model was fitted on choose between the pooled CATE and each independent
T-learner's, by the R-loss of their blend ``w tau_pooled + (1 - w) tau_t``
(Nie and Wager's R-learner objective, minimised over the one weight ``w`` in
closed form; see :func:`blend_weight`). The weight is shrunk towards the
pooled model in proportion to its own uncertainty (zero shift within ``z``
standard errors, positive-part shrinkage beyond), so with few held-out units
or no evidence the pooled model keeps serving alone.

Measured once with the product's defaults on three of ``benchmarks/defaults.py``'s
worlds (its builders, seed 31422, ``--quick`` sizes but for the paper world). PEHE
of the pooled model / the XGBoost T-learner / switching to it at 2 SE of R-loss
gain / this shrunk blend: unrelated experiments 0.332 / 0.308 / 0.331 / 0.259;
the paper's world at 100 units per arm 0.00468 / 1.20 / 0.00468 / 0.00467; a
nonlinear world 0.1221 / 0.557 / 0.1221 / 0.1223. An unshrunk blend gave 0.231
on the first but cost 10% on the other two.

A served blend's standard error (:func:`served_se_scale`) is the pooled model's,
less what validation says the blend removed: a CATE's mean squared error is
not identified from one outcome per unit, but the difference between two
CATEs' is (the R-loss gain is ``p (1 - p) (MSE_pooled - MSE_served)``), so
the pooled model's own variance (the jackknife of :mod:`lrl_core.uncertainty`)
anchors it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import r_loss_gain

__all__ = ["POOLED", "SERVE_Z", "blend_weight", "choose_served_models", "served_se_scale"]

POOLED = "lr_learner"
SERVE_Z = 2.0
"""Standard errors of the blend weight within which the pooled model serves alone."""


def blend_weight(y, treated, m_hat, tau_pooled, tau_alt, z: float = SERVE_Z) -> tuple[float, float]:
    """The pooled model's weight in the blend with ``tau_alt`` that minimises the held-out R-loss.

    With ``u = (y - m) - (t - p) tau_alt`` and ``v = (t - p)(tau_pooled - tau_alt)`` the R-loss
    of the blend is ``mean((u - w v)^2)``, least at ``w* = mean(u v) / mean(v^2)``, with a
    heteroscedasticity-robust standard error ``se``. Returned: ``(w, se)`` with ``w`` shrunk
    towards 1 by ``max(0, 1 - (z se / (1 - w*))^2)`` and clipped to ``[0, 1]``; ``(1, nan)``
    when the rows cannot tell (fewer than 10, one arm, identical CATEs).
    """
    y, m_hat, tau_pooled, tau_alt = (np.asarray(a, dtype=np.float64) for a in (y, m_hat, tau_pooled, tau_alt))
    t = np.asarray(treated, dtype=np.float64)
    keep = np.isfinite(y) & np.isfinite(m_hat) & np.isfinite(tau_pooled) & np.isfinite(tau_alt)
    if keep.sum() < 10 or t[keep].min() == t[keep].max():
        return 1.0, float("nan")
    w_t = t[keep] - t[keep].mean()
    u = (y[keep] - m_hat[keep]) - w_t * tau_alt[keep]
    v = w_t * (tau_pooled[keep] - tau_alt[keep])
    vv = float((v * v).mean())
    if vv <= 1e-300:
        return 1.0, float("nan")
    w = float((u * v).mean() / vv)
    se = float(np.sqrt(((u - w * v) ** 2 * v * v).mean()) / vv / np.sqrt(v.size))
    shift = 1.0 - w
    shrink = max(0.0, 1.0 - (z * se) ** 2 / shift**2) if shift != 0 else 0.0
    return float(np.clip(1.0 - shift * shrink, 0.0, 1.0)), se


def served_se_scale(pooled_var: float, gain: float, treated_share: float, pooled_weight: float) -> float:
    """By how much to scale the pooled model's ``cate_se`` for the blend that replaced it.

    ``pooled_var``: the pooled CATE's mean variance over the cell's units (the
    learner's ``cate_var_``); ``gain``: the served blend's held-out R-loss gain
    over the pooled model, an estimate of ``p (1 - p) (MSE_pooled - MSE_served)``
    with ``p = treated_share``. The served mean squared error is then
    ``pooled_var - gain / (p (1 - p))``, and the scale its square root relative to
    ``pooled_var``, at least ``pooled_weight`` (the pooled model's share of the
    blend). NaN (no standard error) where the gain reaches the pooled variance:
    the variance then missed a bias of the pooled model, and the served error is
    not known. 1 where nothing is known (no variance, no gain, a single arm).

    Measured (benchmarks/README.md, "Defaults"): on a world of unrelated
    experiments where 96% of the rows are served by a blend with XGBoost,
    coverage of all rows 0.954 where the unscaled pooled ``cate_se`` gave 0.988.
    What it cannot see: a bias of the served blend that neither estimator shows.
    """
    spread = treated_share * (1.0 - treated_share)
    if not (np.isfinite(pooled_var) and pooled_var > 0 and np.isfinite(gain) and spread > 0):
        return 1.0
    ratio = 1.0 - gain / spread / pooled_var
    if ratio <= 0:
        return float("nan")
    return float(np.sqrt(np.clip(ratio, pooled_weight**2, 1.0)))


def choose_served_models(pooled_model, baselines: dict, X: np.ndarray, units: np.ndarray, arms: np.ndarray,
                         Y: np.ndarray, control_arm: np.ndarray, arm_experiment: np.ndarray,
                         z: float = SERVE_Z) -> pd.DataFrame:
    """One row per (treated arm, metric) with held-out rows: what to serve and the evidence.

    ``pooled_model`` and every value of ``baselines`` (name -> fitted T-learner) have
    ``predict_outcomes`` / ``predict_cate`` over global arms; ``units, arms, Y`` are the
    held-out exposure rows. Columns: ``arm`` (global index), ``metric`` (index),
    ``model`` (``POOLED``; a baseline's name when its weight is all; ``POOLED+name``
    for a blend), ``pooled_weight``, ``gain`` and ``gain_se`` (held-out R-loss gain of
    what is served over the pooled model alone, :func:`lrl_core.metrics.r_loss_gain`),
    ``n`` rows compared, ``se_scale`` (:func:`served_se_scale`, from the pooled
    model's ``cate_var_`` where it has one; 1 where the pooled model serves alone).
    """
    pooled_var = getattr(pooled_model, "cate_var_", None)
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
            y = Y[rows, j]
            compared = np.isfinite(y)
            model, weight, gain, se = POOLED, 1.0, 0.0, float("nan")
            for name, tau in alternatives.items():
                w, _ = blend_weight(y, treated, m_hat[:, j], tau_pooled[:, j], tau[:, j], z)
                if w < 1.0:
                    blend = w * tau_pooled[:, j] + (1 - w) * tau[:, j]
                    g_mean, g_se = r_loss_gain(y, treated, m_hat[:, j], tau_pooled[:, j], blend)
                    if g_mean > gain:
                        model, weight, gain, se = (name if w == 0.0 else f"{POOLED}+{name}"), w, g_mean, g_se
            scale = 1.0
            if model != POOLED and pooled_var is not None:
                scale = served_se_scale(float(pooled_var[g, j]), gain, float(treated[compared].mean()), weight)
            records.append((int(g), j, model, weight, gain, se, int(compared.sum()), scale))
    return pd.DataFrame(records, columns=["arm", "metric", "model", "pooled_weight", "gain", "gain_se", "n",
                                          "se_scale"])
