"""Column conversion and the array helpers every table rule uses.

``column_as_float`` reads a numeric column of any backing (numpy, pandas
nullable, Arrow) as float64 and tells NULL apart from non-finite values; the
private helpers gather by position, find duplicate keys and slice frames
without copying clean input.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api import types as ptypes


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


def is_categorical_feature(dtype) -> bool:
    """Whether a feature column of this dtype is categorical: text (object, pandas or Arrow
    strings), boolean, or categorical (DuckDB's ENUM arrives as a pandas category)."""
    return (ptypes.is_object_dtype(dtype) or ptypes.is_string_dtype(dtype) or ptypes.is_bool_dtype(dtype)
            or isinstance(dtype, pd.CategoricalDtype)
            or (isinstance(dtype, pd.ArrowDtype) and pa.types.is_dictionary(dtype.pyarrow_dtype)))


def level_text(series: pd.Series) -> np.ndarray:
    """``(n,)`` object array: each value of a categorical column as the text of its level (None for
    NULL), written as DuckDB's ``CAST(x AS VARCHAR)`` writes it (``true``/``false`` for booleans), so
    levels learnt in one engine match values read in the other."""
    missing = series.isna().to_numpy(dtype=bool)
    if ptypes.is_bool_dtype(series.dtype):
        text = np.where(series.to_numpy(dtype=bool, na_value=False), "true", "false").astype(object)
    else:
        text = np.array([str(v) for v in series.to_numpy(dtype=object)], dtype=object)
    text[missing] = None
    return text


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


def _take(frame: pd.DataFrame, rows: np.ndarray, columns: list[int] | None = None) -> pd.DataFrame:
    """``frame``'s ``rows`` (sorted positions) and ``columns``; shares the data when that is all of it."""
    if len(rows) == len(frame) and (columns is None or columns == list(range(frame.shape[1]))):
        # Clean input is the common case: a view, not a second copy of millions of rows.
        return frame.copy(deep=False).reset_index(drop=True)
    taken = frame.iloc[rows] if columns is None else frame.iloc[rows, columns]
    return taken.reset_index(drop=True)
