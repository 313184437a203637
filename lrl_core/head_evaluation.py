"""A new experiment's heads judged on its own held-out units, against an OLS T-learner on the same rows.

For an experiment the extractor was not trained on, this is the only evidence
that its heads are any good: test-split risks of both models, and, for the
report, every unit's CATE and standard error beside the T-learner's, and the
test rows behind the calibration plot. Arrays in, frames out.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lrl_core.baselines import OLSTLearner
from lrl_core.heads import ExperimentHead
from lrl_core.metrics import location_scale, risk_table

__all__ = ["ExperimentScores", "evaluate_head"]


def _long(arm_names: list[str], metrics: list[str], **values: np.ndarray) -> pd.DataFrame:
    """``(n, A-1, J)`` arrays -> long form with ``arm`` (treated arms) and ``metric`` columns."""
    n, a, j = next(iter(values.values())).shape
    arm_index, metric_index = np.meshgrid(np.arange(a), np.arange(j), indexing="ij")
    frame = pd.DataFrame({"arm": np.tile(np.asarray(arm_names[1:], dtype=object)[arm_index.ravel()], n),
                          "metric": np.tile(np.asarray(metrics, dtype=object)[metric_index.ravel()], n)})
    return frame.assign(**{name: v.reshape(-1) for name, v in values.items()})


@dataclass
class ExperimentScores:
    """``risks``: test-split risks of the head and an OLS T-learner; ``cates`` (per unit, both models)
    and ``calibration`` (test rows) only when asked for."""

    risks: pd.DataFrame
    cates: pd.DataFrame | None = None
    calibration: pd.DataFrame | None = None


def evaluate_head(head: ExperimentHead, X: np.ndarray, V: np.ndarray, unit: np.ndarray, arm: np.ndarray,
                  Y: np.ndarray, test: np.ndarray, arm_names: list[str], experiment_id: str,
                  detail: bool = False) -> ExperimentScores:
    """Test-split risks of ``head`` and of an OLS T-learner fitted on the same non-test rows.

    ``X (n, p)``, ``V (n, d)``: the units' prepared features and embeddings; per row ``unit``
    (row of ``X``), ``arm`` (local, 0 = control), ``Y (r, J)`` in ``head.metric_names_`` order,
    ``test`` (bool). ``detail`` adds every unit's CATEs and the calibration rows.
    """
    metrics = head.metric_names_
    layout = dict(arm_experiment=np.zeros(len(arm_names), dtype=np.int64), control_arm=np.zeros(1, dtype=np.int64),
                  experiments=[experiment_id], arm_names=arm_names, metrics=metrics, y_scale=location_scale(Y[~test])[1])
    ols = OLSTLearner().fit(X, unit[~test], arm[~test], Y[~test], n_arms=len(arm_names))
    risks = pd.concat([
        risk_table(head, V, unit[test], arm[test], Y[test], **layout).assign(model="head"),
        risk_table(ols, X, unit[test], arm[test], Y[test], **layout).assign(model="ols_t"),
    ], ignore_index=True)
    if not detail:
        return ExperimentScores(risks)
    everyone = np.unique(unit)
    treated = np.arange(1, len(arm_names))
    cates = _long(arm_names, metrics, cate=head.predict_cate(V[everyone]), cate_se=head.predict_cate_se(V[everyone]),
                  tlearner_cate=ols.predict_cate(X[everyone], treated, np.zeros_like(treated)))
    parts = []
    cate_hat = head.predict_cate(V[unit[test]])
    for i, name in enumerate(arm_names[1:]):
        mine = np.isin(arm[test], [0, i + 1])
        for j, metric in enumerate(metrics):
            parts.append(pd.DataFrame({"arm": name, "metric": metric, "cate_hat": cate_hat[mine, i, j],
                                       "y": Y[test][mine, j], "treated": arm[test][mine] == i + 1}))
    return ExperimentScores(risks, cates, pd.concat(parts, ignore_index=True))
