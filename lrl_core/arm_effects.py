"""Each treated arm's estimated effects and their noise, from per-arm sufficient statistics.

The inputs are the small tables a database aggregates from the outcomes
(:func:`lrl_pipeline.storage.effects.arm_moments` and ``arm_covariances``):
per (experiment, arm, metric) the count and mean of the outcomes, on all the
arm's units and on two halves of them; per (experiment, arm, pair of metrics)
their within-arm covariance. The output is what the effect-covariance
estimators take (:class:`lrl_core.effect_covariance.ArmEffects`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lrl_core.effect_covariance import ArmEffects

__all__ = ["arm_effects"]


def arm_effects(moments: pd.DataFrame, covariances: pd.DataFrame, metrics: list[str],
                control: str = "control") -> tuple[list[tuple[str, str]], ArmEffects]:
    """``((experiment_id, arm) per treated arm, ArmEffects)`` of every treated arm whose experiment
    has a control arm in ``moments``.

    ``effect`` is the difference in means against the experiment's control; ``noise`` its
    sampling covariance ``C_t + C_c`` with ``C[j, k] = cov_jk n_jk / (n_j n_k)``, the covariance of
    two means over partly shared units (``var_j / n_j`` on the diagonal); ``half_a``/``half_b``
    the differences in means on each half of the units. NaN where an arm lacks a metric.
    """
    J, index = len(metrics), {m: j for j, m in enumerate(metrics)}
    cells = {}
    for row in moments.itertuples(index=False):
        if row.metric in index:
            cells.setdefault((row.experiment_id, row.arm), {})[index[row.metric]] = row
    mean_cov = {}
    for row in covariances.itertuples(index=False):
        if row.metric_a in index and row.metric_b in index:
            mean_cov.setdefault((row.experiment_id, row.arm), []).append(row)

    def vectors(key) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Means (all units, half a, half b) and the covariance of the means, of one arm."""
        means = np.full((3, J), np.nan)
        counts = np.zeros(J)
        for j, row in cells.get(key, {}).items():
            means[:, j] = [row.mean, row.mean_a, row.mean_b]
            counts[j] = row.n
        cov = np.full((J, J), np.nan)
        for row in mean_cov.get(key, []):
            a, b = index[row.metric_a], index[row.metric_b]
            if counts[a] > 0 and counts[b] > 0 and row.covariance is not None and np.isfinite(row.covariance):
                cov[a, b] = cov[b, a] = row.covariance * row.n / (counts[a] * counts[b])
        return means[0], means[1], means[2], cov

    labels, rows = [], []
    for experiment_id, arm in sorted(cells):
        if arm == control or (experiment_id, control) not in cells:
            continue
        treated, untreated = vectors((experiment_id, arm)), vectors((experiment_id, control))
        labels.append((experiment_id, arm))
        rows.append([t - c for t, c in zip(treated[:3], untreated[:3])] + [treated[3] + untreated[3]])
    if not rows:
        empty = np.zeros((0, J))
        return [], ArmEffects(effect=empty, noise=np.zeros((0, J, J)), half_a=empty, half_b=empty)
    effect, half_a, half_b, noise = (np.stack([r[i] for r in rows]) for i in range(4))
    return labels, ArmEffects(effect=effect, noise=noise, half_a=half_a, half_b=half_b)
