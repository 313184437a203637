"""Feature preparation inside DuckDB: fit the transform column by column, compute the table in SQL.

At the paper's scale the valid feature table is 5.3M x 142; neither it nor
the prepared table ever passes through Python whole. Helpers of the
``unit_features`` asset, kept apart from the asset module because that one
cannot postpone its annotations (Dagster reads them), and DuckDB's types
held in module-level annotations are reported as leaked at interpreter exit.
"""
from __future__ import annotations

from collections.abc import Iterator

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from lrl_core.data import column_as_float, is_categorical_feature, level_text, split_by_unit
from lrl_core.features import FeatureTransform, count_levels
from lrl_pipeline.storage.raw import arrow_to_pandas, table_exists

__all__ = ["fit_transform", "prepared_relation", "prepared_matrix", "prepare_frame"]


def _training_columns(con: duckdb.DuckDBPyConnection, names: list[str], unit_ids: pa.ChunkedArray,
                      train: np.ndarray) -> Iterator[pd.Series]:
    """Each feature of ``pipeline.valid_unit_features`` on the training units, one column read at a time.

    One column in memory instead of the table (3 GB of float32 at the paper's
    scale); ``unit_id`` comes along to prove the rows are in ``unit_ids``' order.
    """
    table = con.table("pipeline.valid_unit_features")
    for name in names:
        columns = table.select(duckdb.ColumnExpression("unit_id"), duckdb.ColumnExpression(name)).to_arrow_table()
        if not columns.column(0).equals(unit_ids):
            raise RuntimeError("pipeline.valid_unit_features changed while it was read: rerun the retrain")
        yield arrow_to_pandas(columns.select([1])).iloc[:, 0][train].reset_index(drop=True)


def fit_transform(con: duckdb.DuckDBPyConnection) -> tuple[FeatureTransform, int]:
    """The feature transform fitted on the training units of ``pipeline.valid_unit_features``, and their count.

    Numeric columns give their medians, means and scales; categorical ones (text, boolean, ENUM)
    their units per level, from which the transform keeps the frequent levels."""
    if not table_exists(con, "pipeline", "valid_unit_features"):
        raise LookupError("table pipeline.valid_unit_features does not exist yet: run `lrl retrain` first")
    valid = con.table("pipeline.valid_unit_features")
    names = [str(c) for c in valid.columns if c != "unit_id"]
    unit_ids = valid.select(duckdb.ColumnExpression("unit_id")).to_arrow_table().column(0)
    train = split_by_unit(unit_ids.to_numpy(zero_copy_only=False)) == 0
    # Column kinds from the table's types (no rows read), decided as validation decided them.
    dtypes = arrow_to_pandas(valid.limit(0).to_arrow_table()).dtypes
    categorical = [name for name in names if is_categorical_feature(dtypes[name])]
    numeric = [name for name in names if name not in set(categorical)]
    counts = {name: count_levels(column)
              for name, column in zip(categorical, _training_columns(con, categorical, unit_ids, train))}
    columns = (column_as_float(column)[0] for column in _training_columns(con, numeric, unit_ids, train))
    return FeatureTransform().fit_columns(columns, numeric, counts), int(train.sum())


def prepared_relation(con: duckdb.DuckDBPyConnection, transform: FeatureTransform,
                      units: duckdb.DuckDBPyRelation | None = None) -> duckdb.DuckDBPyRelation:
    """``unit_id`` and the prepared features of ``units`` (default: every valid unit), as a DuckDB
    relation (nothing computed yet). The one implementation of the transform in the pipeline:
    the training table, the heads' units and the units ``lrl score`` is given all go through it."""
    units = con.table("pipeline.valid_unit_features") if units is None else units
    return units.select(duckdb.ColumnExpression("unit_id"), *_prepared_columns(transform))


def prepared_matrix(relation: duckdb.DuckDBPyRelation) -> tuple[pa.ChunkedArray, np.ndarray]:
    """``(unit_id, X (n, p) float32)`` of a :func:`prepared_relation` small enough to hold twice."""
    table = relation.to_arrow_table()
    X = np.empty((table.num_rows, table.num_columns - 1), dtype=np.float32)
    for j, column in enumerate(table.columns[1:]):
        X[:, j] = column.to_numpy()
    return table.column(0), X


def prepare_frame(units: pd.DataFrame, transform: FeatureTransform) -> np.ndarray:
    """The prepared features of units given as a DataFrame (``lrl score``), computed by DuckDB in
    memory with :func:`prepared_relation`: ``(n, p)`` float32 in the frame's row order."""
    with duckdb.connect() as con:
        frame = units[["unit_id", *transform.columns_]].reset_index(drop=True)
        # Categorical values as the text of their levels: the SQL compares text, and a column of
        # mixed Python types would not convert to Arrow.
        typed = frame.assign(**{name: column_as_float(frame[name])[0] for name in transform.feature_names_},
                             **{name: pd.array(level_text(frame[name]), dtype="string")
                                for name in transform.categories_})
        relation = con.from_arrow(pa.Table.from_pandas(typed, preserve_index=False))
        return prepared_matrix(prepared_relation(con, transform, relation))[1]


def _prepared_columns(transform: FeatureTransform) -> list[duckdb.Expression]:
    """``FeatureTransform.transform_frame`` as DuckDB expressions over the raw feature columns.

    The same float64 operations in the same order (impute the median, subtract
    the mean, divide by the scale, clip, round to float32; indicators 1.0 where
    NULL), so the table equals ``transform_frame`` bit for bit (tested), while
    DuckDB computes and writes it in parallel without the table passing
    through Python. At 5.3M units x 142 features (``benchmarks/scale.py
    --scale 1``) ``unit_features`` took 67 s (35 s of it this table) and the
    features process peaked at 4.55 GB, against 80 s and 6.06 GB when Python
    prepared the table in batches.
    """
    column, constant = duckdb.ColumnExpression, duckdb.ConstantExpression
    prepared = []
    for name, median, mean, scale in zip(transform.feature_names_, transform.median_, transform.mean_,
                                         transform.scale_):
        raw = duckdb.CoalesceOperator(column(name).cast("DOUBLE"), constant(float(median)))
        z = (raw - constant(float(mean))) / constant(float(scale))
        clipped = duckdb.FunctionExpression(
            "least", duckdb.FunctionExpression("greatest", z, constant(-float(transform.clip))),
            constant(float(transform.clip)))
        prepared.append(clipped.cast("FLOAT").alias(name))
    for name, gap in zip(transform.feature_names_, transform.has_missing_):
        if gap:
            prepared.append(column(name).isnull().cast("FLOAT").alias(f"{name}__missing"))
    for name, levels in transform.categories_.items():
        # Compared as text, as FeatureTransform.transform_frame compares level_text; levels are
        # constants, never SQL text, and the output columns are named by position.
        text = column(name).cast("VARCHAR")
        for i, level in enumerate(levels):
            prepared.append(duckdb.CoalesceOperator(text == constant(level), constant(False))
                            .cast("FLOAT").alias(f"{name}__level{i}"))
        known = text.isin(*map(constant, levels)) if levels else constant(False)
        prepared.append((column(name).isnotnull() & ~known).cast("FLOAT").alias(f"{name}__other"))
        prepared.append(column(name).isnull().cast("FLOAT").alias(f"{name}__null"))
    return prepared
