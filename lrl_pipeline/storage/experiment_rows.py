"""The valid rows of some experiments and their units' prepared features, as heads read them.

Every experiment's rows are validated once: by the full validation of a
retrain, or, for an experiment launched since, by its own partition run
(:func:`write_experiment_validation`), into the same ``pipeline.valid_*``
tables. Heads and their reports then read every experiment alike
(:func:`read_valid_experiment_rows`), with features computed inside DuckDB by
the pipeline's one implementation of the transform
(:func:`lrl_pipeline.storage.features.prepared_relation`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from lrl_core.data import QUARANTINE_COLUMNS, ValidationResult
from lrl_core.features import FeatureTransform
from lrl_pipeline.storage.database import Connection, transaction
from lrl_pipeline.storage.features import prepared_matrix, prepared_relation
from lrl_pipeline.storage.raw import arrow_to_pandas, table_exists
from lrl_pipeline.storage.registry import changed_arms, record_validated_arms
from lrl_pipeline.storage.tables import insert_rows, quarantine_rows, registered, utc_now

__all__ = ["needs_validation", "valid_feature_columns", "write_experiment_validation",
           "read_valid_experiment_rows", "ExperimentTables"]

_IN_KEYS = "CAST(experiment_id AS VARCHAR) IN (SELECT unnest(?::VARCHAR[]))"
_PARTS = ("experiments", "exposures", "outcomes")
_VALID_OF = {name: f"SELECT * FROM pipeline.valid_{name} WHERE {_IN_KEYS}" for name in _PARTS}
_DELETE_OF = {name: f"DELETE FROM pipeline.valid_{name} WHERE {_IN_KEYS}" for name in _PARTS}
_VALIDATED = f"SELECT DISTINCT CAST(experiment_id AS VARCHAR) FROM pipeline.valid_experiments WHERE {_IN_KEYS}"
_KNOWN_UNITS = "SELECT unit_id FROM pipeline.valid_unit_features WHERE unit_id IN (SELECT unit_id FROM _lrl_rows)"
_DELETE_QUARANTINE = f"DELETE FROM pipeline.quarantine WHERE {_IN_KEYS}"
_QUARANTINE_OF = ('SELECT table_name AS "table", unit_id, experiment_id, metric, column_name AS "column", reason '
                  f"FROM pipeline.quarantine WHERE {_IN_KEYS}")
_UNITS_OF = "SELECT DISTINCT unit_id FROM pipeline.valid_exposures WHERE " + _IN_KEYS


def needs_validation(con: Connection, keys: list[str]) -> list[str]:
    """Experiments of ``keys`` to validate now, in ``keys`` order: those with no rows in
    ``pipeline.valid_experiments`` (launched since the last full validation, or quarantined by
    it) and those whose raw rows have grown an arm since they were validated."""
    if not table_exists(con, "pipeline", "valid_experiments"):
        raise LookupError("no validated tables yet: run `lrl retrain` first")
    done = {row[0] for row in con.execute(_VALIDATED, [keys]).fetchall()}
    changed = changed_arms(con, keys)
    return [k for k in keys if k not in done or k in changed]


def valid_feature_columns(con: Connection) -> list[str]:
    """The feature columns the last full validation kept (``pipeline.valid_unit_features``)."""
    return [c for c in con.table("pipeline.valid_unit_features").columns if c != "unit_id"]


def write_experiment_validation(con: Connection, keys: list[str], valid: ValidationResult) -> None:
    """Replace the valid rows and the quarantine of experiments ``keys`` with ``valid``, the result
    of validating just their raw rows; add their units that the valid unit table lacks.

    Only the columns the full validation kept are written: a raw column added since waits for
    the next retrain, a kept one the subset lacks is NULL (imputed) for the new units.
    """
    kept = {"unit_id", *valid_feature_columns(con)}
    units = valid.unit_features[[c for c in valid.unit_features.columns if c in kept]]
    with transaction(con):
        for name in _PARTS:
            con.execute(_DELETE_OF[name], [keys])
            insert_rows(con, f"valid_{name}", getattr(valid, name))
        with registered(con, units[["unit_id"]]):
            known = arrow_to_pandas(con.sql(_KNOWN_UNITS).to_arrow_table())["unit_id"]
        insert_rows(con, "valid_unit_features", units[~units["unit_id"].isin(known)])
        record_validated_arms(con, keys)
        con.execute(_DELETE_QUARANTINE, [keys])
        insert_rows(con, "quarantine", quarantine_rows(valid.quarantine[valid.quarantine["experiment_id"].isin(keys)],
                                                       utc_now()))


@dataclass
class ExperimentTables:
    """What :func:`read_valid_experiment_rows` returns: the valid rows of some experiments, their
    ``quarantine`` rows (``QUARANTINE_COLUMNS``), and ``units`` (a ``unit_id`` frame) with
    ``X (n, p)``, the prepared features of their units in that order."""

    experiments: pd.DataFrame
    exposures: pd.DataFrame
    outcomes: pd.DataFrame
    quarantine: pd.DataFrame
    units: pd.DataFrame
    X: np.ndarray


def read_valid_experiment_rows(con: Connection, keys: list[str], transform: FeatureTransform) -> ExperimentTables:
    """The valid rows of experiments ``keys`` and their units' features prepared with ``transform``.

    ``LookupError`` naming the columns when ``pipeline.valid_unit_features`` lacks some the
    transform was fitted on.
    """
    units = con.table("pipeline.valid_unit_features")
    missing = [name for name in transform.columns_ if name not in set(units.columns)]
    if missing:
        raise LookupError(f"the valid unit features lack columns {missing}")
    parts = {name: arrow_to_pandas(con.sql(_VALID_OF[name], params=[keys]).to_arrow_table()) for name in _PARTS}
    quarantine = con.sql(_QUARANTINE_OF, params=[keys]).df()
    ids = con.sql(_UNITS_OF, params=[keys])
    mine = units.join(ids, "unit_id", how="semi")
    unit_ids, X = prepared_matrix(prepared_relation(con, transform, mine))
    return ExperimentTables(parts["experiments"], parts["exposures"], parts["outcomes"],
                            quarantine[QUARANTINE_COLUMNS], arrow_to_pandas(pa.table({"unit_id": unit_ids})), X)
