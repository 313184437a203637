"""``PooledData``: all experiments as integer-coded arrays, and ``build_pooled_data`` that makes it.

One row per (unit, experiment), global arm indices, metrics as columns of
``Y``: the shapes every estimator takes. Built from the valid tables of
:func:`lrl_core.data.validate_raw`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from .columns import _at, column_as_float
from .ids import CONTROL, _factorize_text_ids, _Ids, _locate, _unit_ids_of_tables
from .validation import ValidationResult

PIVOT_CHUNK_ROWS = 1 << 20
"""Outcome rows whose keys :func:`_pivot_outcomes` computes at a time."""


@dataclass
class PooledData:
    """All experiments as integer-coded arrays, one row per (unit, experiment).

    Shapes: ``n`` units, ``m`` raw features, ``r`` rows, ``G`` arms over all
    experiments (control arms included), ``K`` experiments, ``J`` metrics.
    Arms are ordered by experiment (in ``experiments`` order), control first
    within each, then the treatment arms by name.
    """

    unit_ids: np.ndarray          # (n,) int64 or object(str), unit order of `features`
    features: np.ndarray          # (n, m) float64 raw features, NaN = missing
    feature_names: list[str]      # (m,)
    row_unit: np.ndarray          # (r,) int64 -> unit index
    row_arm: np.ndarray           # (r,) int64 -> global arm index
    Y: np.ndarray                 # (r, J) float64, NaN = unobserved
    experiments: list[str]        # (K,)
    arm_names: list[str]          # (G,) arm label ('control', 'treatment', ...)
    arm_experiment: np.ndarray    # (G,) int64 -> experiment index
    control_arm: np.ndarray       # (K,) int64 -> global arm index of each experiment's control
    metrics: list[str]            # (J,)

    @property
    def row_experiment(self) -> np.ndarray:
        """(r,) int64: experiment index of each row."""
        return self.arm_experiment[self.row_arm]

    @property
    def treated(self) -> np.ndarray:
        """(r,) bool: the row's arm is a treatment arm."""
        return self.row_arm != self.control_arm[self.row_experiment]

    def split_rows(self, split: np.ndarray, part: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(units, arms, Y)`` of the rows whose unit is in ``part`` of ``split (n,)`` (0 train, 1
        validation, 2 test; see :func:`~lrl_core.data.split_by_unit`)."""
        rows = split[self.row_unit] == part
        return self.row_unit[rows], self.row_arm[rows], self.Y[rows]

    @property
    def n_units(self) -> int:
        return len(self.unit_ids)

    @property
    def n_rows(self) -> int:
        return len(self.row_unit)

    @property
    def n_arms(self) -> int:
        return len(self.arm_names)

    def arm_label(self, g: int) -> str:
        """``"experiment_id/arm"`` for global arm ``g`` (ids never contain a slash)."""
        return f"{self.experiments[self.arm_experiment[g]]}/{self.arm_names[g]}"

    def take_rows(self, rows: np.ndarray) -> "PooledData":
        """The same units, arms and metrics with only ``rows`` (bool mask (r,) or indices)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return dataclasses.replace(self, row_unit=self.row_unit[rows], row_arm=self.row_arm[rows], Y=self.Y[rows])


def build_pooled_data(valid: ValidationResult) -> PooledData:
    """Pool the valid tables of ``validate_raw`` into integer-coded arrays.

    Units keep ``unit_features`` order (all valid units, exposed or not, so
    that any of them can be scored); rows follow the valid exposures' order;
    experiments keep registry order; metrics are sorted by name. ``Y`` is the
    long-to-wide pivot of outcomes onto the exposure rows, NaN where a metric
    was not reported.

    Raises
    ------
    ValueError
        If the tables are inconsistent (they did not come from ``validate_raw``).
    """
    unit_frame, exposures, outcomes = valid.unit_features, valid.exposures, valid.outcomes
    unit_ids = _unit_ids_of_tables({"unit_features": unit_frame, "exposures": exposures, "outcomes": outcomes})
    unit_ids_array = unit_ids["unit_features"].uniques[unit_ids["unit_features"].codes]
    unit_index = pd.Index(unit_ids_array)
    if not unit_index.is_unique:
        raise ValueError("unit_features has duplicate unit_id: validate with validate_raw first")

    feature_names = [str(c) for c in unit_frame.columns if c != "unit_id"]
    features = np.empty((len(unit_frame), len(feature_names)), dtype=np.float64)
    for j, name in enumerate(feature_names):
        features[:, j] = column_as_float(unit_frame[name])[0]

    experiments = [str(e) for e in valid.experiments["experiment_id"]]
    experiment_index = pd.Index(experiments)
    exp_ids = _factorize_text_ids(exposures["experiment_id"])
    arm_ids = _factorize_text_ids(exposures["arm"])
    row_exp = _locate(exp_ids, experiment_index)
    row_unit = _locate(unit_ids["exposures"], unit_index)
    if (row_exp < 0).any() or (row_unit < 0).any() or (arm_ids.codes < 0).any():
        raise ValueError("exposures refer to unknown units or experiments: validate with validate_raw first")

    n_arm_values = max(len(arm_ids.uniques), 1)
    pairs = np.unique(row_exp * n_arm_values + arm_ids.codes)
    pair_exp, pair_arm = np.divmod(pairs, n_arm_values)
    names = arm_ids.uniques[pair_arm]
    order = np.lexsort((names.astype(str), names != CONTROL, pair_exp))
    pairs, arm_experiment, arm_names = pairs[order], pair_exp[order], names[order]
    control_arm = np.full(len(experiments), -1, dtype=np.int64)
    is_control = arm_names == CONTROL
    control_arm[arm_experiment[is_control]] = np.flatnonzero(is_control)
    if (control_arm < 0).any():
        raise ValueError("an experiment has no control arm: validate with validate_raw first")
    row_arm = pd.Index(pairs).get_indexer(row_exp * n_arm_values + arm_ids.codes)

    metrics, Y = _pivot_outcomes(outcomes, unit_ids["outcomes"], unit_index, experiment_index,
                                 row_unit * max(len(experiments), 1) + row_exp)

    return PooledData(
        unit_ids=unit_ids_array,
        features=features,
        feature_names=feature_names,
        row_unit=row_unit.astype(np.int64),
        row_arm=row_arm.astype(np.int64),
        Y=Y,
        experiments=experiments,
        arm_names=[str(a) for a in arm_names],
        arm_experiment=arm_experiment.astype(np.int64),
        control_arm=control_arm,
        metrics=metrics,
    )


def _pivot_outcomes(outcomes: pd.DataFrame, out_units: _Ids, unit_index: pd.Index, experiment_index: pd.Index,
                    row_keys: np.ndarray) -> tuple[list[str], np.ndarray]:
    """``(metrics, Y)``: the long outcomes pivoted onto the rows whose key (unit index x experiments +
    experiment index) is ``row_keys``; metrics sorted by name, ``Y (rows, J)`` float64, NaN where
    not reported.

    Outcomes come by the tens of millions: the int64 keys of every outcome row, and their row
    and metric positions, are computed :data:`PIVOT_CHUNK_ROWS` rows at a time (only each row's
    position is kept, as int32 when it fits), with the same values and errors as whole columns.
    """
    n_experiments = max(len(experiment_index), 1)
    metric_ids = _factorize_text_ids(outcomes["metric"])
    metrics = sorted(metric_ids.uniques.tolist())
    metric_of = pd.Index(metrics).get_indexer(metric_ids.uniques)
    unit_of = unit_index.get_indexer(out_units.uniques)
    exp_ids = _factorize_text_ids(outcomes["experiment_id"])
    experiment_of = experiment_index.get_indexer(exp_ids.uniques)
    row_key = pd.Index(row_keys)
    if not row_key.is_unique:
        raise ValueError("a unit is exposed twice in one experiment: validate with validate_raw first")
    n = len(outcomes)
    out_row = np.empty(n, dtype=np.int32 if len(row_keys) <= np.iinfo(np.int32).max else np.int64)
    for start in range(0, n, PIVOT_CHUNK_ROWS):
        part = slice(start, start + PIVOT_CHUNK_ROWS)
        key = _at(unit_of, out_units.codes[part], -1) * n_experiments + _at(experiment_of, exp_ids.codes[part], -1)
        out_row[part] = found = row_key.get_indexer(key)
        if (found < 0).any():
            raise ValueError("outcomes of unexposed units: validate with validate_raw first")
    del row_key, exp_ids
    values = outcomes["value"]
    if not ptypes.is_numeric_dtype(values.dtype):
        values = pd.to_numeric(values)  # whole: what it infers (and refuses) depends on every value
    Y = np.full((len(row_keys), len(metrics)), np.nan)
    for start in range(0, n, PIVOT_CHUNK_ROWS):
        part = slice(start, start + PIVOT_CHUNK_ROWS)
        Y[out_row[part], _at(metric_of, metric_ids.codes[part], -1)] = column_as_float(
            pd.to_numeric(values.iloc[part]))[0]
    return metrics, Y
