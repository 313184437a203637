"""The rows of some experiments, validated and embedded by the current extractor.

Head fits and head reports read the raw tables directly (a new experiment
has no validated copy until the next retrain), validate just these
experiments, prepare features with the transform saved *with the model*,
and map them through ``v(.)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lrl_core.artifacts import LoadedModel
from lrl_core.data import PooledData, ValidationResult, build_pooled_data, split_by_unit, validate_raw
from lrl_pipeline.storage import Connection, read_experiment_tables

__all__ = ["ExperimentRows", "read_experiment_rows", "FeatureMismatch"]


class FeatureMismatch(ValueError):
    """The raw feature columns no longer include those the extractor was trained on."""


@dataclass
class ExperimentRows:
    """Valid rows of some experiments: ``pooled`` (no raw features), ``X (n, p)`` prepared
    features, ``V (n, d)`` embeddings, ``split (n,)`` per unit (2 = test), and the
    ``quarantine`` of these experiments' rows."""

    pooled: PooledData | None
    X: np.ndarray
    V: np.ndarray
    split: np.ndarray
    quarantine: pd.DataFrame

    def experiment(self, experiment_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(rows (r_k,), arms (A,))`` of one experiment: its row indices and its global arms,
        control first; None when the experiment was quarantined."""
        if self.pooled is None or experiment_id not in self.pooled.experiments:
            return None
        k = self.pooled.experiments.index(experiment_id)
        return np.flatnonzero(self.pooled.row_experiment == k), np.flatnonzero(self.pooled.arm_experiment == k)

    def reasons(self, experiment_id: str) -> str:
        """Why an experiment was left out, from its quarantine rows."""
        rows = self.quarantine[(self.quarantine["experiment_id"] == experiment_id)
                               & self.quarantine["table"].isin(["experiments", "arms"])]
        return "; ".join(dict.fromkeys(rows["reason"])) or "not in raw.experiments or no valid rows"


def read_experiment_rows(con: Connection, experiment_ids: list[str],
                         model: LoadedModel) -> ExperimentRows:
    """Validate and embed the rows of ``experiment_ids`` (raises :class:`FeatureMismatch`)."""
    valid = validate_raw(**read_experiment_tables(con, experiment_ids))
    names = list(model.transform.feature_names_)
    missing = [name for name in names if name not in valid.unit_features.columns]
    if missing:
        raise FeatureMismatch(f"raw.unit_features lacks feature columns {missing} that extractor "
                              f"{model.version} was trained on: retrain (`lrl retrain`)")
    d = model.learner.config_.d
    if valid.exposures.empty:
        return ExperimentRows(None, np.empty((0, model.transform.n_features_out_)), np.empty((0, d)),
                              np.empty(0, np.int8), valid.quarantine)
    units = valid.unit_features[["unit_id", *names]]
    pooled = build_pooled_data(ValidationResult(
        unit_features=units[["unit_id"]], experiments=valid.experiments, exposures=valid.exposures,
        outcomes=valid.outcomes, quarantine=valid.quarantine))
    X = model.transform.transform_frame(units)
    return ExperimentRows(pooled, X, model.learner.transform(X), split_by_unit(pooled.unit_ids), valid.quarantine)
