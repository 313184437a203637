"""``validate_raw``: the four raw tables into their valid parts plus a quarantine with reasons.

Rules run table by table in dependency order (unit features, registry,
exposures, outcomes, then the group rules of :mod:`.group_rules`), so a
dropped unit, exposure, arm or experiment takes its dependent rows with it,
each with a reason that says why. Everything is vectorised over rows.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from .columns import _at, _duplicated, _is_numeric_feature, _take, column_as_float, is_categorical_feature
from .group_rules import _drop_incomplete_experiments, _drop_small_arms, _flag_constant_metrics, _flag_far_outliers
from .ids import _factorize_text_ids, _factorize_unit_ids, _id_problems, _Ids, _locate, _unit_ids_of_tables
from .verdicts import QUARANTINE_COLUMNS, _flag_bad_ids, _flag_bad_unit_ids, _Verdicts

REQUIRED_COLUMNS = {
    "unit_features": ("unit_id",),
    "experiments": ("experiment_id",),
    "exposures": ("unit_id", "experiment_id", "arm"),
    "outcomes": ("unit_id", "experiment_id", "metric", "value"),
}


def _check_columns(name: str, frame: pd.DataFrame) -> None:
    columns = list(frame.columns)
    required = REQUIRED_COLUMNS[name]
    for column in required:
        count = columns.count(column)
        if count == 0:
            raise ValueError(f"raw table {name!r} has no column {column!r} (required: {', '.join(required)})")
        if count > 1:
            raise ValueError(f"raw table {name!r} has {count} columns named {column!r}")


@dataclass
class ValidationResult:
    """Valid parts of the raw tables and the quarantine of everything left out.

    ``quarantine`` has columns ``table, unit_id, experiment_id, metric, column,
    reason`` (str or None); ``table`` is one of ``unit_features``,
    ``experiments``, ``arms``, ``exposures``, ``outcomes``; ``column`` is set
    only where a whole feature column was dropped. ``unit_features`` is None
    when :func:`validate_raw` was given a :class:`FeatureCheck` that keeps the
    whole table instead of the table itself.
    """

    unit_features: pd.DataFrame | None
    experiments: pd.DataFrame
    exposures: pd.DataFrame
    outcomes: pd.DataFrame
    quarantine: pd.DataFrame
    rows_in: dict[str, int] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Counts per table: ``rows in``, ``rows kept`` and ``quarantined`` per reason.

        Returns a DataFrame with columns ``table, kind, reason, count``;
        ``reason`` is None on the two total rows of a table.
        """
        counts = self.quarantine.groupby(["table", "reason"], sort=True).size()
        parts = []
        for table in ("unit_features", "experiments", "arms", "exposures", "outcomes"):
            if table in self.rows_in:
                parts.append({"table": table, "kind": "rows in", "reason": None, "count": self.rows_in[table]})
                kept = getattr(self, table)
                parts.append({"table": table, "kind": "rows kept", "reason": None,
                              "count": self.rows_in[table] if kept is None else len(kept)})
            if table in counts.index.get_level_values(0):
                parts.extend({"table": table, "kind": "quarantined", "reason": reason, "count": int(count)}
                             for reason, count in counts[table].items())
        return pd.DataFrame(parts, columns=["table", "kind", "reason", "count"])


def validate_raw(unit_features: pd.DataFrame | None, experiments: pd.DataFrame, exposures: pd.DataFrame,
                 outcomes: pd.DataFrame, known_columns: Collection[str] = (),
                 features: FeatureCheck | None = None) -> ValidationResult:
    """Split the four raw tables into valid parts and a quarantine with reasons.

    Rules are applied table by table in dependency order (unit features,
    registry, exposures, outcomes, then arm and experiment level) so that a
    dropped unit, exposure, arm or experiment takes its dependent rows with
    it, each with a reason that says why. The inputs are never modified.

    Parameters
    ----------
    unit_features : ``unit_id`` and feature columns, numeric or categorical (text, boolean,
        category), one row per unit. A categorical column with more than
        :data:`ID_LIKE_SHARE` of its values distinct (and over :data:`ID_LIKE_MIN_DISTINCT`) is an
        id or free text, not a feature: left out with that reason. None when ``features``
        is given and keeps the whole table (the result's ``unit_features`` is then None).
    experiments : ``experiment_id`` (+ any other columns), the registry.
    exposures : ``unit_id, experiment_id, arm``; ``arm == "control"`` is control.
    outcomes : ``unit_id, experiment_id, metric, value``, long form.
    known_columns : categorical columns a full validation already kept; validating a few new
        experiments' units, whose sample is too small to judge, keeps them without the id test.
    features : :func:`check_unit_features` of ``unit_features``, when already run: a caller
        that learns the feature table is kept whole can let it go before the other tables
        are validated (at the paper's scale, 3 GB that need not sit beside the outcome rules).

    Raises
    ------
    ValueError
        If a required column is missing, or unit_id has different types in
        different tables, or ``unit_features`` is None while ``features`` drops part of it.
    """
    if features is None:
        if unit_features is None:
            raise ValueError("validate_raw needs the unit_features table or its check_unit_features")
        features = check_unit_features(unit_features, known_columns)
    elif unit_features is None and not features.keeps_all:
        raise ValueError("check_unit_features drops rows or columns of unit_features: pass the table too")
    others = {"experiments": experiments, "exposures": exposures, "outcomes": outcomes}
    for name, frame in others.items():
        _check_columns(name, frame)
    units = _unit_ids_of_tables({"exposures": exposures, "outcomes": outcomes},
                                known={"unit_features": features.unit_kind})

    reg = _validate_registry(experiments)
    expo = _validate_exposures(exposures, units["exposures"], features, reg)
    outc = _validate_outcomes(outcomes, units["outcomes"], features, reg, expo)
    arm_quarantine = _drop_small_arms(expo, outc, reg)
    _drop_incomplete_experiments(expo, outc, reg)

    quarantine = pd.concat([
        features.column_quarantine,
        features.verdicts.quarantine("unit_features", unit_ids=features.unit_ids),
        reg.verdicts.quarantine("experiments", experiment_ids=reg.ids),
        arm_quarantine,
        expo.verdicts.quarantine("exposures", unit_ids=units["exposures"], experiment_ids=expo.experiment_ids),
        outc.verdicts.quarantine("outcomes", unit_ids=units["outcomes"], experiment_ids=outc.experiment_ids,
                                 metrics=outc.metrics),
    ], ignore_index=True)
    return ValidationResult(
        unit_features=None if unit_features is None
        else _take(unit_features, np.flatnonzero(features.verdicts.kept), features.kept_columns),
        experiments=_take(experiments, np.flatnonzero(reg.verdicts.kept)),
        exposures=_take(exposures, np.flatnonzero(expo.verdicts.kept)),
        outcomes=_take(outcomes, np.flatnonzero(outc.verdicts.kept)),
        quarantine=quarantine[QUARANTINE_COLUMNS].astype(object).where(quarantine.notna(), None),
        rows_in={"unit_features": features.n_rows, **{name: len(frame) for name, frame in others.items()}},
    )


def check_unit_features(unit_features: pd.DataFrame, known_columns: Collection[str] = ()) -> FeatureCheck:
    """The feature table's own rules, the first step of :func:`validate_raw`: which rows and columns
    it keeps, and why it drops the others (parameters as there).

    ``ValueError`` when ``unit_id`` is missing or not BIGINT or VARCHAR.
    """
    _check_columns("unit_features", unit_features)
    ids, kind = _factorize_unit_ids(unit_features["unit_id"], "unit_features")
    return _validate_unit_features(unit_features, ids, kind, set(known_columns))


ID_LIKE_SHARE = 0.5
"""A categorical column with more distinct values than this share of its non-NULL values (and more
than :data:`ID_LIKE_MIN_DISTINCT`) is an id, an e-mail or free text: left out of the features."""
ID_LIKE_MIN_DISTINCT = 50
"""Fewer distinct values than this never make a column id-like: a country column of a small table."""


def _id_like(name: str, series: pd.Series) -> str | None:
    """The quarantine reason of a categorical column that identifies units instead of grouping them."""
    present = int(series.notna().sum())
    distinct = int(series.nunique(dropna=True))
    if distinct > max(ID_LIKE_MIN_DISTINCT, ID_LIKE_SHARE * present):
        return (f"categorical feature column {name!r} looks like an id or free text: {distinct} distinct values "
                f"among {present} units")
    return None


@dataclass
class FeatureCheck:
    """What :func:`check_unit_features` decided about each row and column of the feature table."""

    verdicts: _Verdicts
    kept_columns: list[int]         # positions in the input frame, unit_id first
    column_quarantine: pd.DataFrame
    unit_ids: _Ids                  # the table's factorised unit_id
    unit_kind: str                  # "integer", "string" or "empty"
    unit_index: pd.Index            # distinct unit ids of the raw table
    unit_kept: np.ndarray           # (len(unit_index),) bool: has a valid row
    unit_problems: np.ndarray | None  # (len(unit_index),) invalid-id reason or None; None for integer ids
    n_rows: int
    n_columns: int

    @property
    def keeps_all(self) -> bool:
        """Whether every row and every column of the table is valid."""
        return bool(self.verdicts.kept.all()) and self.kept_columns == list(range(self.n_columns))


def _validate_unit_features(frame: pd.DataFrame, ids: _Ids, kind: str, known_columns: set[str]) -> FeatureCheck:
    verdicts = _Verdicts(len(frame))
    problems = _id_problems(ids.uniques, "unit_id") if ids.uniques.dtype == object else None
    _flag_bad_ids(verdicts, ids, "unit_id", problems)
    present = ids.codes >= 0
    counts = np.bincount(ids.codes[present], minlength=len(ids.uniques))
    verdicts.flag(present & (ids.rows(counts) > 1), "duplicate unit_id in unit_features")

    names = list(frame.columns)
    kept_columns, dropped = [names.index("unit_id")], []
    name_counts = pd.Series([str(n) for n in names]).value_counts()
    for position, name in enumerate(names):
        if name == "unit_id":
            continue
        series = frame.iloc[:, position]
        if not isinstance(name, str):
            reason = f"feature column name {name!r} is not a string"
        elif name_counts[name] > 1:
            reason = f"duplicate feature column name {name!r}"
        elif (problem := _id_problems(np.array([name], dtype=object), "feature column name")[0]) is not None:
            reason = problem
        elif is_categorical_feature(series.dtype) and not _is_numeric_feature(series.dtype):
            reason = None if name in known_columns else _id_like(name, series)
            if reason is None:
                kept_columns.append(position)
                continue
        elif not _is_numeric_feature(series.dtype):
            reason = f"non-numeric feature column {name!r} (dtype {series.dtype})"
        else:
            kept_columns.append(position)
            _, nonfinite = column_as_float(series)
            verdicts.flag(nonfinite, f"non-finite value in feature {name!r}")
            continue
        dropped.append({"table": "unit_features", "unit_id": None, "experiment_id": None, "metric": None,
                        "column": str(name), "reason": reason})

    unit_kept = np.zeros(len(ids.uniques), dtype=bool)
    unit_kept[ids.codes[verdicts.kept]] = True
    return FeatureCheck(verdicts, kept_columns, pd.DataFrame(dropped, columns=QUARANTINE_COLUMNS), ids, kind,
                        pd.Index(ids.uniques), unit_kept, problems, len(frame), frame.shape[1])


@dataclass
class _RegistryCheck:
    verdicts: _Verdicts
    ids: _Ids
    index: pd.Index          # valid experiment ids, registry order
    row_of: np.ndarray       # (len(index),) registry row of each valid experiment


def _validate_registry(frame: pd.DataFrame) -> _RegistryCheck:
    ids = _factorize_text_ids(frame["experiment_id"])
    verdicts = _Verdicts(len(frame))
    _flag_bad_ids(verdicts, ids, "experiment_id")
    repeated = pd.Series(ids.codes).duplicated(keep="first").to_numpy() & (ids.codes >= 0)
    verdicts.flag(repeated, "duplicate registry row")
    rows = np.flatnonzero(verdicts.kept)
    return _RegistryCheck(verdicts, ids, pd.Index(ids.uniques[ids.codes[rows]]), rows)


def _flag_unit_and_experiment(verdicts: _Verdicts, unit_pos: np.ndarray, exp_pos: np.ndarray,
                              feat: FeatureCheck) -> None:
    verdicts.flag(exp_pos < 0, "unknown experiment (not in the valid registry)")
    verdicts.flag(unit_pos < 0, "unit has no row in unit_features")
    verdicts.flag(~_at(feat.unit_kept, unit_pos, True), "unit quarantined in unit_features")


@dataclass
class _ExposureCheck:
    verdicts: _Verdicts
    experiment_ids: _Ids
    exp_pos: np.ndarray      # (rows,) valid-registry position, -1 = unknown
    arm_ids: _Ids
    row_of_key: np.ndarray   # for each distinct (unit, experiment) key in key_index: its representative row
    key_index: pd.Index


def _validate_exposures(frame: pd.DataFrame, units: _Ids, feat: FeatureCheck,
                        reg: _RegistryCheck) -> _ExposureCheck:
    experiment_ids = _factorize_text_ids(frame["experiment_id"])
    arm_ids = _factorize_text_ids(frame["arm"])
    verdicts = _Verdicts(len(frame))
    unit_pos = _flag_bad_unit_ids(verdicts, units, feat)
    _flag_bad_ids(verdicts, experiment_ids, "experiment_id")
    _flag_bad_ids(verdicts, arm_ids, "arm")

    exp_pos = _locate(experiment_ids, reg.index)
    _flag_unit_and_experiment(verdicts, unit_pos, exp_pos, feat)

    key = unit_pos * max(len(reg.index), 1) + exp_pos
    with_arm = key * max(len(arm_ids.uniques), 1) + arm_ids.codes
    kept = verdicts.kept
    extra = np.zeros(len(frame), dtype=bool)
    extra[kept] = _duplicated(with_arm[kept], keep="first")
    verdicts.flag(extra, "duplicate assignment")
    kept = verdicts.kept
    several = np.zeros(len(frame), dtype=bool)
    several[kept] = _duplicated(key[kept], keep=False)
    verdicts.flag(several, "unit in several arms of experiment")

    # A representative exposure row per (unit, experiment), the kept one where
    # there is one, lets outcomes inherit the fate of their exposure.
    keyed = (unit_pos >= 0) & (exp_pos >= 0)
    candidates = np.concatenate([np.flatnonzero(keyed & verdicts.kept), np.flatnonzero(keyed & ~verdicts.kept)])
    first = ~_duplicated(key[candidates], keep="first")
    return _ExposureCheck(verdicts, experiment_ids, exp_pos, arm_ids, candidates[first],
                          pd.Index(key[candidates[first]]))


@dataclass
class _OutcomeCheck:
    verdicts: _Verdicts
    experiment_ids: _Ids
    metrics: _Ids
    exposure_row: np.ndarray  # (rows,) row in exposures, -1 = none
    exp_pos: np.ndarray


def _validate_outcomes(frame: pd.DataFrame, units: _Ids, feat: FeatureCheck, reg: _RegistryCheck,
                       expo: _ExposureCheck) -> _OutcomeCheck:
    # The longest table (26.5M rows at the benchmark's scale 1, where each int64
    # array is 212 MB): per-row arrays are int32 where they index something small,
    # and each intermediate is released as soon as its rule has run.
    experiment_ids = _factorize_text_ids(frame["experiment_id"])
    metrics = _factorize_text_ids(frame["metric"])
    verdicts = _Verdicts(len(frame))
    unit_pos = _flag_bad_unit_ids(verdicts, units, feat)
    _flag_bad_ids(verdicts, experiment_ids, "experiment_id")
    _flag_bad_ids(verdicts, metrics, "metric")

    exp_pos = _narrow(_locate(experiment_ids, reg.index))
    _flag_unit_and_experiment(verdicts, unit_pos, exp_pos, feat)

    key = unit_pos * max(len(reg.index), 1) + exp_pos  # unit_pos is int64, so is the key
    keyed = (unit_pos >= 0) & (exp_pos >= 0)
    del unit_pos
    kept = verdicts.kept
    with_metric = (key * max(len(metrics.uniques), 1) + metrics.codes)[kept]
    ambiguous = np.zeros(len(frame), dtype=bool)
    ambiguous[kept] = _duplicated(with_metric, keep=False)
    del with_metric, kept
    verdicts.flag(ambiguous, "duplicate outcome (same unit, experiment and metric; ambiguous)")
    del ambiguous

    value = frame["value"]
    if not ptypes.is_numeric_dtype(value.dtype) or ptypes.is_complex_dtype(value.dtype):
        numeric = pd.to_numeric(value, errors="coerce")
        verdicts.flag(numeric.isna().to_numpy() & value.notna().to_numpy(), "non-numeric outcome value")
        value = numeric.astype(np.float64)
    values, nonfinite = column_as_float(value)
    del value
    verdicts.flag(np.isnan(values) & ~nonfinite, "outcome value is NULL or NaN")
    verdicts.flag(nonfinite, "outcome value is not finite")
    del nonfinite

    found = expo.key_index.get_indexer(key)
    del key
    found[~keyed] = -1
    del keyed
    exposure_row = _narrow(_at(expo.row_of_key, found, -1))
    del found
    verdicts.flag(exposure_row < 0, "outcome of an unexposed unit")
    verdicts.cascade(exposure_row, expo.verdicts, prefix="its exposure was quarantined: ")
    _flag_far_outliers(verdicts, values, metrics)
    _flag_constant_metrics(verdicts, values, metrics, exp_pos, reg)
    return _OutcomeCheck(verdicts, experiment_ids, metrics, exposure_row, exp_pos)


def _narrow(positions: np.ndarray) -> np.ndarray:
    """Positions (-1 = none) as int32 when they fit: half the memory of a per-row int64 array."""
    if len(positions) and positions.max(initial=-1) < np.iinfo(np.int32).max:
        return positions.astype(np.int32)
    return positions
