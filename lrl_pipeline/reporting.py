"""HTML reports: gather a retrain's or a new experiment's results for ``lrl_core.report``.

Files go to ``<artifacts>/reports/``: ``retrain-<version>.html`` per
extractor and ``experiment-<id>-<version>.html`` per experiment that joined
after the extractor was trained. Everything here arranges arrays already
computed by the assets; the maths and the HTML live in ``lrl_core``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lrl_core.artifacts import LoadedModel
from lrl_core.baselines import OLSTLearner
from lrl_core.data import PooledData
from lrl_core.report import ExperimentReportData, RetrainReportData

__all__ = ["reports_dir", "retrain_report_path", "experiment_report_path", "policy_report_path", "latest_retrain_report",
           "retrain_report_data", "experiment_report_data"]

MAX_ITE_UNITS = 5000
"""Test units on which the T-learner ITE matrix (singular values, BCV rank) is computed."""


def reports_dir(artifacts: str | Path) -> Path:
    return Path(artifacts) / "reports"


def retrain_report_path(artifacts: str | Path, version: str) -> Path:
    return reports_dir(artifacts) / f"retrain-{version}.html"


def experiment_report_path(artifacts: str | Path, experiment_id: str, version: str) -> Path:
    # validate_raw refuses ids with slashes, dots or quotes, so an id is a safe file-name part.
    return reports_dir(artifacts) / f"experiment-{experiment_id}-{version}.html"


def policy_report_path(artifacts: str | Path, experiment_id: str, version: str) -> Path:
    """Where the policy page of ``experiment_id`` on extractor ``version`` is written."""
    return reports_dir(artifacts) / f"policy-{experiment_id}-{version}.html"


def latest_retrain_report(artifacts: str | Path) -> Path | None:
    """The newest retrain report (versions sort by time), or None."""
    found = sorted(reports_dir(artifacts).glob("retrain-*.html"))
    return found[-1] if found else None


def _calibration(learner, X, pooled: PooledData, rows: np.ndarray) -> pd.DataFrame:
    """LR-learner CATEs of each treated arm on ``rows`` (its rows and its control's), long form."""
    parts = []
    experiment = pooled.row_experiment[rows]
    for k in np.unique(experiment):
        here = rows[experiment == k]
        control = pooled.control_arm[k]
        treated = np.flatnonzero((pooled.arm_experiment == k) & (np.arange(pooled.n_arms) != control))
        cates = learner.predict_cate(X[pooled.row_unit[here]], treated, np.full(treated.size, control))
        for i, a in enumerate(treated):
            mine = (pooled.row_arm[here] == a) | (pooled.row_arm[here] == control)
            for j, metric in enumerate(pooled.metrics):
                parts.append(pd.DataFrame({
                    "experiment_id": pooled.experiments[k], "arm": pooled.arm_names[a], "metric": metric,
                    "cate_hat": cates[mine, i, j], "y": pooled.Y[here[mine], j],
                    "treated": pooled.row_arm[here[mine]] == a}))
    return pd.concat(parts, ignore_index=True) if parts else None


def retrain_report_data(model: LoadedModel, pooled: PooledData, X: np.ndarray, split: np.ndarray,
                        risks: pd.DataFrame, quarantine: pd.DataFrame, rows_in: dict[str, int],
                        served: pd.DataFrame | None = None,
                        effects: tuple[pd.DataFrame, pd.DataFrame] | None = None,
                        segment_effects: pd.DataFrame | None = None) -> RetrainReportData:
    """Inputs of the retrain report: test-split risks, T-learner ITEs, calibration, embeddings, training;
    ``effects``: ``pipeline.arm_effects`` and ``pipeline.effect_covariance`` of this extractor;
    ``segment_effects``: ``pipeline.segment_effects`` of this extractor."""
    treated = np.flatnonzero(pooled.control_arm[pooled.arm_experiment] != np.arange(pooled.n_arms))
    controls = pooled.control_arm[pooled.arm_experiment[treated]]
    labels = [f"{pooled.experiments[pooled.arm_experiment[a]]}/{pooled.arm_names[a]}" for a in treated]
    train = split[pooled.row_unit] == 0
    test_units = np.flatnonzero(split == 2)
    if test_units.size > MAX_ITE_UNITS:
        test_units = np.random.default_rng(0).choice(test_units, MAX_ITE_UNITS, replace=False)
    ols = OLSTLearner().fit(X, pooled.row_unit[train], pooled.row_arm[train], pooled.Y[train], n_arms=pooled.n_arms)
    ite = ols.predict_cate(X[test_units], treated, controls)  # (units, arms, J)
    learner = model.learner
    return RetrainReportData(
        risks=risks[risks["split"] == "test"].drop(columns=["split"]),
        reference_model="lr_learner",
        ite_matrices={m: ite[:, :, j] for j, m in enumerate(pooled.metrics)},
        ite_labels=labels,
        calibration=_calibration(learner, X, pooled, np.flatnonzero(split[pooled.row_unit] == 2)),
        embeddings=learner.effect_embeddings(treated, controls),
        embedding_labels=labels,
        history=learner.history_,
        best_epoch=learner.best_epoch_,
        quarantine=quarantine.rename(columns={"table_name": "table", "column_name": "column"}),
        rows_in=rows_in,
        selection=pd.DataFrame(learner.selection_),
        served=served,
        categories=model.transform.level_counts_,
        arm_effects=effects[0] if effects else None,
        effect_covariance=effects[1] if effects else None,
        segment_effects=segment_effects,
        meta={"extractor version": model.version, "trained at": model.metadata.get("trained_at"),
              "epochs": learner.n_epochs_, "fit seconds": f"{learner.fit_seconds_:.1f}",
              "experiments": len(pooled.experiments), "exposure rows": f"{pooled.n_rows:,}",
              # The pipeline reads observed outcomes only; `lrl demo` prints PEHE against its generator.
              "true effects": "unknown to the pipeline, so no PEHE here (`lrl demo` prints it on the console)"},
    )


def experiment_report_data(experiment_id: str, cates: pd.DataFrame, calibration: pd.DataFrame,
                           risks: pd.DataFrame, version: str) -> ExperimentReportData:
    """Inputs of a new experiment's report (tables built by the head-evaluation asset)."""
    return ExperimentReportData(experiment_id=experiment_id, cates=cates, calibration=calibration, risks=risks,
                                reference_model="head", meta={"extractor version": version})
