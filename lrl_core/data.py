"""Raw-table validation, the pooled data model and the stable unit split.

``validate_raw`` turns the four raw tables of the contract into their valid
parts plus a quarantine that names every dropped row, arm, experiment and
column with a reason. ``build_pooled_data`` turns valid tables into
``PooledData``: integer-coded arrays, one row per (unit, experiment), that the
estimators take. ``split_by_unit`` assigns each unit to train / validation /
test from a hash of its id, so the split never changes between retrains.

Everything is vectorised over rows: id columns are factorised once and rules
are evaluated on the (few) distinct values, then broadcast back by code.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api import types as ptypes

CONTROL = "control"
SPLIT_NAMES = ("train", "validation", "test")
MAX_ID_LENGTH = 200
MIN_UNITS_PER_ARM = 2

OUTLIER_SPANS = 10_000.0
"""An outcome further than this many interquartile ranges outside the quartiles of its metric's
valid values is quarantined as a broken feed, not a measurement: one 1e12 row among values of order
one made every experiment's CATEs of that metric about 1e9 (issue 18). Quartiles, unlike the 1st and
99th percentiles, stay put when a bad feed is a few percent of the rows; 10,000 ranges leave heavy
tails alone (a log-normal metric with sigma 2 passes it in all but about one row in ten million; a
Pareto tail of index 1.5 in all but one in a million). A metric with more than half its values
equal falls back to its 1st-99th percentile span."""
OUTLIER_MIN_ROWS = 50
"""Fewest valid values of a metric for its percentile range to be trusted by the outlier rule."""

QUARANTINE_COLUMNS = ["table", "unit_id", "experiment_id", "metric", "column", "reason"]
REQUIRED_COLUMNS = {
    "unit_features": ("unit_id",),
    "experiments": ("experiment_id",),
    "exposures": ("unit_id", "experiment_id", "arm"),
    "outcomes": ("unit_id", "experiment_id", "metric", "value"),
}

# Ids end up in SQL identifiers, file paths and "experiment/arm" labels, so
# anything that could quote, escape or separate is refused. Unicode letters
# are fine. C1 controls (0x80-0x9f) are as invisible as C0 ones.
_ID_PROBLEMS = (
    (r"['\"`]", "contains a quote"),
    (r"[/\\]", "contains a slash"),
    (r"\.", "contains a dot"),
    (r";", "contains a semicolon"),
    (r"[\x00-\x1f\x7f-\x9f]", "contains a control character"),
)
_ANY_ID_PROBLEM = "|".join(pattern for pattern, _ in _ID_PROBLEMS)


# --------------------------------------------------------------------------- helpers


def column_as_float(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Numeric column as float64, telling NULL apart from non-finite values.

    Parameters
    ----------
    series : numeric Series of any backing (numpy, pandas nullable, pyarrow).

    Returns
    -------
    values : (n,) float64, NaN where NULL.
    nonfinite : (n,) bool, True where the value is present but +-inf or NaN.
        In a plain float64 column NaN cannot be told from NULL and counts as
        NULL; in nullable / Arrow columns NaN is a real (bad) value.
    """
    missing = series.isna().to_numpy(dtype=bool)
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return values, ~missing & ~np.isfinite(values)


def _at(values: np.ndarray, positions: np.ndarray, fill) -> np.ndarray:
    """``values[positions]`` with ``fill`` where a position is -1 (``values`` may be empty)."""
    values = np.asarray(values)
    if len(values) == 0:
        return np.full(len(positions), fill, dtype=np.result_type(values.dtype, np.asarray(fill).dtype))
    taken = values.take(positions)
    absent = positions < 0
    return np.where(absent, fill, taken) if absent.any() else taken


def _duplicated(keys: np.ndarray, keep: str | bool) -> np.ndarray:
    """``Series.duplicated`` of int64 keys, fast in the usual case of no duplicates at all."""
    ordered = np.sort(keys)
    if not (ordered[1:] == ordered[:-1]).any():
        return np.zeros(len(keys), dtype=bool)
    return pd.Series(keys).duplicated(keep=keep).to_numpy()


def _is_numeric_feature(dtype) -> bool:
    return (
        ptypes.is_numeric_dtype(dtype)
        and not ptypes.is_bool_dtype(dtype)
        and not ptypes.is_complex_dtype(dtype)
    )


def _id_problem(text: str) -> str | None:
    if not text.strip():
        return "is empty"
    if len(text) > MAX_ID_LENGTH:
        return f"is longer than {MAX_ID_LENGTH} characters"
    return next((problem for pattern, problem in _ID_PROBLEMS if re.search(pattern, text)), None)


def _id_problems(values: np.ndarray, what: str) -> np.ndarray:
    """Reason per distinct id (object array, None where the id is fine); ``values`` are non-NULL str."""
    # Arrow's regex kernels screen millions of ids in C++; only the few
    # suspects are classified in Python.
    text = pa.array(values, type=pa.large_string())
    suspect = pc.or_(pc.match_substring_regex(text, _ANY_ID_PROBLEM),
                     pc.or_(pc.greater(pc.utf8_length(text), MAX_ID_LENGTH),
                            pc.equal(pc.utf8_trim_whitespace(text), "")))
    reasons = np.full(len(values), None, dtype=object)
    for i in np.flatnonzero(suspect.to_numpy(zero_copy_only=False)):
        value = values[i]
        shown = value if len(value) <= 60 else value[:57] + "..."
        reasons[i] = f"invalid {what} {shown!r}: {_id_problem(value)}"
    return reasons


@dataclass
class _Ids:
    """A factorised id column: ``codes`` (rows,) int64 with -1 for NULL, ``uniques`` canonical."""

    codes: np.ndarray
    uniques: np.ndarray  # int64, or object array of str

    def rows(self, per_unique: np.ndarray, fill=-1) -> np.ndarray:
        """Broadcast a per-unique array to rows; NULL rows get ``fill``."""
        return _at(per_unique, self.codes, fill)

    def text(self, rows: np.ndarray) -> np.ndarray:
        """The ids of ``rows`` as str (object array, None for NULL)."""
        codes = self.codes[rows]
        out = np.full(len(rows), None, dtype=object)
        present = codes >= 0
        out[present] = self.uniques[codes[present]].astype(str).astype(object)
        return out


def _factorize_text_ids(series: pd.Series) -> _Ids:
    codes, uniques = pd.factorize(series)
    canonical = np.array([v if isinstance(v, str) else str(v) for v in uniques], dtype=object)
    return _Ids(codes.astype(np.int64), canonical)


def _factorize_unit_ids(series: pd.Series, table: str) -> tuple[_Ids, str]:
    """Factorise a unit_id column; kind is ``"integer"``, ``"string"`` or ``"empty"``."""
    codes, uniques = pd.factorize(series)
    codes = codes.astype(np.int64)
    dtype = series.dtype
    if len(uniques) == 0:
        return _Ids(codes, np.empty(0, dtype=object)), "empty"
    if ptypes.is_bool_dtype(dtype):
        raise ValueError(f"{table}.unit_id must be BIGINT or VARCHAR, got {dtype}")
    if ptypes.is_integer_dtype(dtype):
        return _Ids(codes, uniques.to_numpy(dtype=np.int64)), "integer"
    if ptypes.is_float_dtype(dtype):
        # An integer column with NULLs read without nullable dtypes arrives as float.
        values = uniques.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(values) & (values == np.round(values))):
            raise ValueError(f"{table}.unit_id has non-integer float values; ids must be BIGINT or VARCHAR")
        return _Ids(codes, values.astype(np.int64)), "integer"
    inferred = pd.api.types.infer_dtype(uniques, skipna=True)
    if inferred == "string":
        return _Ids(codes, uniques.to_numpy(dtype=object)), "string"
    if inferred == "integer":
        return _Ids(codes, uniques.to_numpy(dtype=np.int64)), "integer"
    raise ValueError(f"{table}.unit_id must be BIGINT or VARCHAR, got values of type {inferred!r}")


def _unit_ids_of_tables(tables: dict[str, pd.DataFrame]) -> dict[str, _Ids]:
    """Factorise unit_id in every table and check that they share one type."""
    ids, kinds = {}, {}
    for name, frame in tables.items():
        ids[name], kinds[name] = _factorize_unit_ids(frame["unit_id"], name)
    used = {k for k in kinds.values() if k != "empty"}
    if len(used) > 1:
        listed = ", ".join(f"{name}: {kind}" for name, kind in kinds.items())
        raise ValueError(f"unit_id must have the same type in every table, got {listed}")
    dtype = np.int64 if used == {"integer"} else object
    for name, kind in kinds.items():
        if kind == "empty":
            ids[name].uniques = ids[name].uniques.astype(dtype)
    return ids


def _check_columns(tables: dict[str, pd.DataFrame]) -> None:
    for name, required in REQUIRED_COLUMNS.items():
        columns = list(tables[name].columns)
        for column in required:
            count = columns.count(column)
            if count == 0:
                raise ValueError(f"raw table {name!r} has no column {column!r} (required: {', '.join(required)})")
            if count > 1:
                raise ValueError(f"raw table {name!r} has {count} columns named {column!r}")


class _Verdicts:
    """Per-row reason codes of one table: 0 keeps the row, and the first reason wins."""

    def __init__(self, n: int):
        self.code = np.zeros(n, dtype=np.int64)
        self.reasons: list[str | None] = [None]

    @property
    def kept(self) -> np.ndarray:
        return self.code == 0

    def flag(self, mask: np.ndarray, reason: str) -> None:
        """Drop the still-kept rows of ``mask`` for ``reason``."""
        new = mask & self.kept
        if new.any():
            self.reasons.append(reason)
            self.code[new] = len(self.reasons) - 1

    def flag_each(self, mask: np.ndarray, reasons: np.ndarray) -> None:
        """Drop the still-kept rows of ``mask``, each for its own entry of ``reasons`` (rows,)."""
        new = np.flatnonzero(mask & self.kept)
        if len(new):
            distinct, which = np.unique(reasons[new].astype(str), return_inverse=True)
            self.code[new] = len(self.reasons) + which
            self.reasons.extend(distinct.tolist())

    def cascade(self, rows_of_other: np.ndarray, other: "_Verdicts", prefix: str = "") -> None:
        """Drop rows whose row in ``other`` (index, -1 = none) was dropped, with its reason."""
        other_code = _at(other.code, rows_of_other, 0)
        new = (other_code > 0) & self.kept
        if new.any():
            offset = len(self.reasons)
            self.reasons.extend(f"{prefix}{r}" for r in other.reasons)
            self.code[new] = offset + other_code[new]

    def quarantine(self, table: str, unit_ids: _Ids | None = None, experiment_ids: _Ids | None = None,
                   metrics: _Ids | None = None) -> pd.DataFrame:
        """One quarantine row per dropped row."""
        rows = np.flatnonzero(~self.kept)
        none = np.full(len(rows), None, dtype=object)
        return pd.DataFrame({
            "table": np.full(len(rows), table, dtype=object),
            "unit_id": unit_ids.text(rows) if unit_ids is not None else none,
            "experiment_id": experiment_ids.text(rows) if experiment_ids is not None else none,
            "metric": metrics.text(rows) if metrics is not None else none,
            "column": none,
            "reason": np.asarray(self.reasons, dtype=object)[self.code[rows]],
        })


def _flag_bad_ids(verdicts: _Verdicts, ids: _Ids, column: str, problems: np.ndarray | None = None) -> None:
    """Flag NULL and invalid ids; ``problems`` (per unique) may be given when already known."""
    verdicts.flag(ids.codes < 0, f"{column} is NULL")
    if ids.uniques.dtype == object:  # integer unit ids can only be NULL
        if problems is None:
            problems = _id_problems(ids.uniques, column)
        problems = ids.rows(problems, fill=None)
        verdicts.flag_each(pd.notna(problems), problems)


def _flag_bad_unit_ids(verdicts: _Verdicts, units: _Ids, feat: "_FeatureCheck") -> np.ndarray:
    """Flag NULL and invalid unit ids of exposures / outcomes; return row -> position in unit_features.

    Ids also found in unit_features reuse its verdict, so only the strays are
    checked again (millions of ids otherwise, in every table).
    """
    position = feat.unit_index.get_indexer(units.uniques)
    if units.uniques.dtype == object:
        problems = _at(feat.unit_problems, position, None)
        stray = np.flatnonzero(position < 0)
        problems[stray] = _id_problems(units.uniques[stray], "unit_id")
    else:
        problems = None
    _flag_bad_ids(verdicts, units, "unit_id", problems)
    return units.rows(position)


def _take(frame: pd.DataFrame, rows: np.ndarray, columns: list[int] | None = None) -> pd.DataFrame:
    """``frame``'s ``rows`` (sorted positions) and ``columns``; shares the data when that is all of it."""
    if len(rows) == len(frame) and (columns is None or columns == list(range(frame.shape[1]))):
        # Clean input is the common case: a view, not a second copy of millions of rows.
        return frame.copy(deep=False).reset_index(drop=True)
    taken = frame.iloc[rows] if columns is None else frame.iloc[rows, columns]
    return taken.reset_index(drop=True)


# --------------------------------------------------------------------------- validation


@dataclass
class ValidationResult:
    """Valid parts of the raw tables and the quarantine of everything left out.

    ``quarantine`` has columns ``table, unit_id, experiment_id, metric, column,
    reason`` (str or None); ``table`` is one of ``unit_features``,
    ``experiments``, ``arms``, ``exposures``, ``outcomes``; ``column`` is set
    only where a whole feature column was dropped.
    """

    unit_features: pd.DataFrame
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
                parts.append({"table": table, "kind": "rows kept", "reason": None,
                              "count": len(getattr(self, table))})
            if table in counts.index.get_level_values(0):
                parts.extend({"table": table, "kind": "quarantined", "reason": reason, "count": int(count)}
                             for reason, count in counts[table].items())
        return pd.DataFrame(parts, columns=["table", "kind", "reason", "count"])


def validate_raw(unit_features: pd.DataFrame, experiments: pd.DataFrame, exposures: pd.DataFrame,
                 outcomes: pd.DataFrame) -> ValidationResult:
    """Split the four raw tables into valid parts and a quarantine with reasons.

    Rules are applied table by table in dependency order (unit features,
    registry, exposures, outcomes, then arm and experiment level) so that a
    dropped unit, exposure, arm or experiment takes its dependent rows with
    it, each with a reason that says why. The inputs are never modified.

    Parameters
    ----------
    unit_features : ``unit_id`` and numeric feature columns, one row per unit.
    experiments : ``experiment_id`` (+ any other columns), the registry.
    exposures : ``unit_id, experiment_id, arm``; ``arm == "control"`` is control.
    outcomes : ``unit_id, experiment_id, metric, value``, long form.

    Raises
    ------
    ValueError
        If a required column is missing, or unit_id has different types in
        different tables.
    """
    tables = {"unit_features": unit_features, "experiments": experiments,
              "exposures": exposures, "outcomes": outcomes}
    _check_columns(tables)
    units = _unit_ids_of_tables({k: v for k, v in tables.items() if k != "experiments"})

    feat = _validate_unit_features(unit_features, units["unit_features"])
    reg = _validate_registry(experiments)
    expo = _validate_exposures(exposures, units["exposures"], feat, reg)
    outc = _validate_outcomes(outcomes, units["outcomes"], feat, reg, expo)
    arm_quarantine = _drop_small_arms(expo, outc, reg)
    _drop_incomplete_experiments(expo, outc, reg)

    quarantine = pd.concat([
        feat.column_quarantine,
        feat.verdicts.quarantine("unit_features", unit_ids=units["unit_features"]),
        reg.verdicts.quarantine("experiments", experiment_ids=reg.ids),
        arm_quarantine,
        expo.verdicts.quarantine("exposures", unit_ids=units["exposures"], experiment_ids=expo.experiment_ids),
        outc.verdicts.quarantine("outcomes", unit_ids=units["outcomes"], experiment_ids=outc.experiment_ids,
                                 metrics=outc.metrics),
    ], ignore_index=True)
    return ValidationResult(
        unit_features=_take(unit_features, np.flatnonzero(feat.verdicts.kept), feat.kept_columns),
        experiments=_take(experiments, np.flatnonzero(reg.verdicts.kept)),
        exposures=_take(exposures, np.flatnonzero(expo.verdicts.kept)),
        outcomes=_take(outcomes, np.flatnonzero(outc.verdicts.kept)),
        quarantine=quarantine[QUARANTINE_COLUMNS].astype(object).where(quarantine.notna(), None),
        rows_in={name: len(frame) for name, frame in tables.items()},
    )


@dataclass
class _FeatureCheck:
    verdicts: _Verdicts
    kept_columns: list[int]         # positions in the input frame, unit_id first
    column_quarantine: pd.DataFrame
    unit_index: pd.Index            # distinct unit ids of the raw table
    unit_kept: np.ndarray           # (len(unit_index),) bool: has a valid row
    unit_problems: np.ndarray | None  # (len(unit_index),) invalid-id reason or None; None for integer ids


def _validate_unit_features(frame: pd.DataFrame, ids: _Ids) -> _FeatureCheck:
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
    return _FeatureCheck(verdicts, kept_columns, pd.DataFrame(dropped, columns=QUARANTINE_COLUMNS),
                         pd.Index(ids.uniques), unit_kept, problems)


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


def _locate(ids: _Ids, index: pd.Index) -> np.ndarray:
    """Row -> position in ``index`` (-1 for NULL or absent)."""
    return ids.rows(index.get_indexer(ids.uniques))


def _flag_unit_and_experiment(verdicts: _Verdicts, unit_pos: np.ndarray, exp_pos: np.ndarray,
                              feat: _FeatureCheck) -> None:
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


def _validate_exposures(frame: pd.DataFrame, units: _Ids, feat: _FeatureCheck,
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


def _validate_outcomes(frame: pd.DataFrame, units: _Ids, feat: _FeatureCheck, reg: _RegistryCheck,
                       expo: _ExposureCheck) -> _OutcomeCheck:
    experiment_ids = _factorize_text_ids(frame["experiment_id"])
    metrics = _factorize_text_ids(frame["metric"])
    verdicts = _Verdicts(len(frame))
    unit_pos = _flag_bad_unit_ids(verdicts, units, feat)
    _flag_bad_ids(verdicts, experiment_ids, "experiment_id")
    _flag_bad_ids(verdicts, metrics, "metric")

    exp_pos = _locate(experiment_ids, reg.index)
    _flag_unit_and_experiment(verdicts, unit_pos, exp_pos, feat)

    key = unit_pos * max(len(reg.index), 1) + exp_pos
    with_metric = key * max(len(metrics.uniques), 1) + metrics.codes
    kept = verdicts.kept
    ambiguous = np.zeros(len(frame), dtype=bool)
    ambiguous[kept] = _duplicated(with_metric[kept], keep=False)
    verdicts.flag(ambiguous, "duplicate outcome (same unit, experiment and metric; ambiguous)")

    value = frame["value"]
    if not ptypes.is_numeric_dtype(value.dtype) or ptypes.is_complex_dtype(value.dtype):
        numeric = pd.to_numeric(value, errors="coerce")
        verdicts.flag(numeric.isna().to_numpy() & value.notna().to_numpy(), "non-numeric outcome value")
        value = numeric.astype(np.float64)
    values, nonfinite = column_as_float(value)
    verdicts.flag(np.isnan(values) & ~nonfinite, "outcome value is NULL or NaN")
    verdicts.flag(nonfinite, "outcome value is not finite")

    found = np.where((unit_pos >= 0) & (exp_pos >= 0), expo.key_index.get_indexer(key), -1)
    exposure_row = _at(expo.row_of_key, found, -1)
    verdicts.flag(exposure_row < 0, "outcome of an unexposed unit")
    verdicts.cascade(exposure_row, expo.verdicts, prefix="its exposure was quarantined: ")
    _flag_far_outliers(verdicts, values, metrics)
    _flag_constant_metrics(verdicts, values, metrics, exp_pos, reg)
    return _OutcomeCheck(verdicts, experiment_ids, metrics, exposure_row, exp_pos)


def _flag_far_outliers(verdicts: _Verdicts, values: np.ndarray, metrics: _Ids) -> None:
    """Quarantine values beyond ``OUTLIER_SPANS`` percentile spans of their metric (see there)."""
    kept = verdicts.kept
    bad = np.zeros(len(values), dtype=bool)
    reasons = np.full(len(values), None, dtype=object)
    for code, name in enumerate(metrics.uniques):
        rows = np.flatnonzero(kept & (metrics.codes == code))
        if rows.size < OUTLIER_MIN_ROWS:
            continue
        q01, low, high, q99 = np.quantile(values[rows], [0.01, 0.25, 0.75, 0.99])
        span = high - low if high > low else q99 - q01
        if not span > 0:
            continue  # (near-)constant: the constant-metric rule speaks for it
        lo, hi = low - OUTLIER_SPANS * span, high + OUTLIER_SPANS * span
        far = rows[(values[rows] < lo) | (values[rows] > hi)]
        bad[far] = True
        reasons[far] = (f"outcome value far outside metric {name!r}'s range: more than {OUTLIER_SPANS:,.0f} "
                        f"times its spread ({span:.4g}) beyond its quartiles ({low:.4g}, {high:.4g})")
    verdicts.flag_each(bad, reasons)


def _flag_constant_metrics(verdicts: _Verdicts, values: np.ndarray, metrics: _Ids, exp_pos: np.ndarray,
                           reg: "_RegistryCheck") -> None:
    """Quarantine the values of a metric that is constant within an experiment: it has no effect to
    estimate, and a head fitted to it would report noise as effects."""
    kept = np.flatnonzero(verdicts.kept & (exp_pos >= 0))
    if not kept.size:
        return
    n_metrics = max(len(metrics.uniques), 1)
    group = exp_pos[kept] * n_metrics + metrics.codes[kept]
    keys, inverse = np.unique(group, return_inverse=True)
    low = np.full(keys.size, np.inf)
    high = np.full(keys.size, -np.inf)
    np.minimum.at(low, inverse, values[kept])
    np.maximum.at(high, inverse, values[kept])
    counts = np.bincount(inverse, minlength=keys.size)
    constant = (counts >= 2) & (high - low <= 1e-12 * np.maximum(1.0, np.abs(high)))
    if not constant.any():
        return
    exps, codes = np.divmod(keys, n_metrics)
    messages = np.array([f"metric {metrics.uniques[c]!r} is constant ({v:.6g}) in experiment "
                         f"{reg.index[e]!r}: no effect to estimate" for e, c, v in zip(exps, codes, low)], dtype=object)
    bad = np.zeros(len(values), dtype=bool)
    bad[kept[constant[inverse]]] = True
    reasons = np.full(len(values), None, dtype=object)
    reasons[kept] = messages[inverse]
    verdicts.flag_each(bad, reasons)


def _drop_small_arms(expo: _ExposureCheck, outc: _OutcomeCheck, reg: _RegistryCheck) -> pd.DataFrame:
    """Drop arms with fewer than ``MIN_UNITS_PER_ARM`` valid units; one quarantine row per arm."""
    kept = expo.verdicts.kept
    arm_key = expo.exp_pos * max(len(expo.arm_ids.uniques), 1) + expo.arm_ids.codes
    keys, counts = np.unique(arm_key[kept], return_counts=True)
    small = keys[counts < MIN_UNITS_PER_ARM]
    exps, arms = np.divmod(small, max(len(expo.arm_ids.uniques), 1))
    messages = np.array([f"arm {a!r} of experiment {e!r} has fewer than {MIN_UNITS_PER_ARM} valid units"
                         for e, a in zip(reg.index[exps], expo.arm_ids.uniques[arms])], dtype=object)
    in_small = np.isin(arm_key, small) & kept
    if in_small.any():
        expo.verdicts.flag_each(in_small, messages[np.searchsorted(small, np.where(in_small, arm_key, small[0]))])
        outc.verdicts.cascade(outc.exposure_row, expo.verdicts)
    return pd.DataFrame({"table": "arms", "unit_id": None, "experiment_id": reg.index[exps].astype(object),
                         "metric": None, "column": None, "reason": messages}, columns=QUARANTINE_COLUMNS)


def _drop_incomplete_experiments(expo: _ExposureCheck, outc: _OutcomeCheck, reg: _RegistryCheck) -> None:
    """Drop registry experiments with no valid exposures, no control, no treated unit or no outcome."""
    n_exp = len(reg.index)
    kept = expo.verdicts.kept
    pos = expo.exp_pos[kept]
    control = expo.arm_ids.rows(expo.arm_ids.uniques == CONTROL, fill=False)[kept]
    exposures = np.bincount(pos, minlength=n_exp)
    controls = np.bincount(pos[control], minlength=n_exp)
    treated = np.bincount(pos[~control], minlength=n_exp)
    outcomes = np.bincount(outc.exp_pos[outc.verdicts.kept], minlength=n_exp)
    problem = np.select(
        [exposures == 0, controls == 0, treated == 0, outcomes == 0],
        ["no valid exposures", "no control arm", "no treated arm", "no valid outcomes"], default="")
    bad = np.flatnonzero(problem != "")
    if not len(bad):
        return
    is_bad = np.zeros(n_exp, dtype=bool)
    is_bad[bad] = True
    registry_mask = np.zeros(len(reg.verdicts.code), dtype=bool)
    registry_mask[reg.row_of[bad]] = True
    registry_reasons = np.full(len(registry_mask), None, dtype=object)
    registry_reasons[reg.row_of[bad]] = problem[bad]
    reg.verdicts.flag_each(registry_mask, registry_reasons)

    cascade = np.array([f"experiment {e!r} quarantined: {p}" for e, p in zip(reg.index, problem)], dtype=object)
    expo.verdicts.flag_each(_at(is_bad, expo.exp_pos, False), _at(cascade, expo.exp_pos, None))
    outc.verdicts.flag_each(_at(is_bad, outc.exp_pos, False), _at(cascade, outc.exp_pos, None))


# --------------------------------------------------------------------------- pooled data


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

    metric_ids = _factorize_text_ids(outcomes["metric"])
    metrics = sorted(metric_ids.uniques.tolist())
    out_metric = _locate(metric_ids, pd.Index(metrics))
    out_key = _locate(unit_ids["outcomes"], unit_index) * max(len(experiments), 1) + _locate(
        _factorize_text_ids(outcomes["experiment_id"]), experiment_index)
    row_key = pd.Index(row_unit * max(len(experiments), 1) + row_exp)
    if not row_key.is_unique:
        raise ValueError("a unit is exposed twice in one experiment: validate with validate_raw first")
    out_row = row_key.get_indexer(out_key)
    if (out_row < 0).any():
        raise ValueError("outcomes of unexposed units: validate with validate_raw first")
    Y = np.full((len(row_unit), len(metrics)), np.nan)
    Y[out_row, out_metric] = column_as_float(pd.to_numeric(outcomes["value"]))[0]

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


# --------------------------------------------------------------------------- split


def split_by_unit(unit_ids, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                  salt: str = "lrl-split-v1") -> np.ndarray:
    """Assign units to train (0), validation (1) or test (2) by a stable hash of their id.

    The hash is SipHash (``pd.util.hash_array``) of ``str(unit_id)`` keyed by
    ``salt``, which does not depend on the process, the platform,
    ``PYTHONHASHSEED``, the order of the ids or their type (``17`` and
    ``"17"`` land together): a unit stays in its split across retrains.

    Parameters
    ----------
    unit_ids : (n,) array-like of int or str.
    fractions : shares of train, validation and test; non-negative, summing to 1.
    salt : changes the whole assignment; keep it fixed to keep splits stable.

    Returns
    -------
    (n,) int8 with values in {0, 1, 2}; see ``SPLIT_NAMES``.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be three non-negative shares summing to 1, got {fractions.tolist()}")
    # hash_array takes a 16-character key; derive it from the salt.
    key = hashlib.blake2b(salt.encode("utf-8"), digest_size=8).hexdigest()
    text = pd.Series(np.asarray(unit_ids, dtype=object)).map(str).to_numpy(dtype=object)
    hashed = pd.util.hash_array(text, hash_key=key, categorize=True)
    uniform = (hashed >> np.uint64(11)).astype(np.float64) * 2.0 ** -53  # top 53 bits -> [0, 1)
    edges = np.cumsum(fractions)[:2]
    return np.searchsorted(edges, uniform, side="right").astype(np.int8)
