"""The rows of some experiments, as validated once, prepared by DuckDB and embedded by an extractor.

Head fits and head reports read the pipeline's valid tables
(:func:`lrl_pipeline.storage.read_valid_experiment_rows`): a trained
experiment's rows as the retrain's validation left them, a new one's as its
partition run validated them (the ``experiment_rows`` asset). Features come
from the transform saved *with the model*, computed inside DuckDB.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lrl_core.artifacts import LoadedModel
from lrl_core.data import PooledData, ValidationResult, build_pooled_data, split_by_unit
from lrl_pipeline.storage import Connection, read_valid_experiment_rows

__all__ = ["ExperimentRows", "ExperimentArrays", "read_experiment_rows", "FeatureMismatch"]


class FeatureMismatch(ValueError):
    """The valid feature columns no longer include those the extractor was trained on."""


@dataclass
class ExperimentArrays:
    """One experiment's rows as a head fits them: ``arm_names`` (control first), ``metrics``
    (those observed in it), per row ``unit`` (row of ``X``/``V``), ``arm`` (local, 0 = control),
    ``Y (r, J)`` and ``test`` (the unit is in the test split), and ``units``: every unit of it."""

    arm_names: list[str]
    metrics: list[str]
    unit: np.ndarray
    arm: np.ndarray
    Y: np.ndarray
    test: np.ndarray
    units: np.ndarray


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

    def arrays(self, experiment_id: str) -> ExperimentArrays:
        """The rows of one valid experiment (see :meth:`experiment`) as :class:`ExperimentArrays`."""
        index, arms = self.experiment(experiment_id)
        pooled = self.pooled
        observed = np.flatnonzero(np.isfinite(pooled.Y[index]).any(axis=0))
        unit = pooled.row_unit[index]
        return ExperimentArrays(
            arm_names=[pooled.arm_names[g] for g in arms], metrics=[pooled.metrics[j] for j in observed],
            unit=unit, arm=pooled.row_arm[index] - arms[0], Y=pooled.Y[np.ix_(index, observed)],
            test=self.split[unit] == 2, units=np.unique(unit))

    def reasons(self, experiment_id: str) -> str:
        """Why an experiment was left out, from its quarantine rows."""
        rows = self.quarantine[(self.quarantine["experiment_id"] == experiment_id)
                               & self.quarantine["table"].isin(["experiments", "arms"])]
        return "; ".join(dict.fromkeys(rows["reason"])) or "not in raw.experiments or no valid rows"


def read_experiment_rows(con: Connection, experiment_ids: list[str], model: LoadedModel) -> ExperimentRows:
    """The valid rows of ``experiment_ids``, embedded by ``model`` (raises :class:`FeatureMismatch`)."""
    try:
        tables = read_valid_experiment_rows(con, experiment_ids, model.transform)
    except LookupError as error:
        raise FeatureMismatch(f"{error} that extractor {model.version} was trained on: retrain (`lrl retrain`)") \
            from error
    d = model.learner.config_.d
    if tables.exposures.empty:
        return ExperimentRows(None, np.empty((0, model.transform.n_features_out_), np.float32), np.empty((0, d)),
                              np.empty(0, np.int8), tables.quarantine)
    pooled = build_pooled_data(ValidationResult(
        unit_features=tables.units, experiments=tables.experiments, exposures=tables.exposures,
        outcomes=tables.outcomes, quarantine=tables.quarantine))
    return ExperimentRows(pooled, tables.X, model.learner.transform(tables.X), split_by_unit(pooled.unit_ids),
                          tables.quarantine)
