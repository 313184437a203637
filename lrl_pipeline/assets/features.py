"""Features: standardised unit features and the pooled training examples with their split.

The split is a hash of ``unit_id`` (``split_by_unit``), so a unit stays in
train, validation or test across retrains, and the feature transform is
fitted on training units only.
"""
# No `from __future__ import annotations`: Dagster reads the context and resource
# annotations at definition time to inject them.

import json
import time

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from lrl_core.data import SPLIT_NAMES, build_pooled_data, column_as_float, split_by_unit
from lrl_core.features import FeatureTransform
from lrl_pipeline.resources import LRLDatabase
from lrl_pipeline.tables import ensure_schema, load_validated, read_table, replace_table, utc_now

GROUP = "features"


PREPARE_ROWS = 262_144
"""Units prepared and written per Arrow batch: bounds memory to the valid table plus one batch."""


def _arrow_column(series: pd.Series) -> pa.Array:
    column = pa.Array.from_pandas(series)
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _prepared_batches(frame: pd.DataFrame, transform: FeatureTransform) -> pa.RecordBatchReader:
    """The prepared features of ``frame`` (``unit_id`` first), produced batch by batch as DuckDB reads them."""
    names = ["unit_id", *transform.output_names_]
    first = transform.transform_frame(frame.iloc[:0])
    schema = pa.schema([pa.field("unit_id", _arrow_column(frame["unit_id"].iloc[:0]).type),
                        *(pa.field(name, pa.from_numpy_dtype(first.dtype)) for name in names[1:])])

    def batches():
        for start in range(0, len(frame), PREPARE_ROWS):
            rows = frame.iloc[start:start + PREPARE_ROWS]
            prepared = transform.transform_frame(rows)
            yield pa.RecordBatch.from_arrays(
                [_arrow_column(rows["unit_id"]), *(prepared[:, j] for j in range(prepared.shape[1]))],
                schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


@dg.asset(group_name=GROUP, kinds={"duckdb", "python"}, pool="duckdb", code_version="1",
          deps=["valid_unit_features"])
def unit_features(context: dg.AssetExecutionContext, database: LRLDatabase) -> dg.MaterializeResult:
    """Imputed, standardised features with missing indicators (pipeline.unit_features); the transform
    is kept in pipeline.feature_transform and saved with the model that is trained on it."""
    with database.connect() as con:
        frame = read_table(con, "valid_unit_features")
        names = [str(c) for c in frame.columns if c != "unit_id"]
        train = split_by_unit(frame["unit_id"].to_numpy(dtype=object)) == 0
        start = time.perf_counter()
        transform = FeatureTransform().fit_columns(
            (column_as_float(frame[name])[0][train] for name in names), names)
        ensure_schema(con)
        con.execute("BEGIN TRANSACTION")
        n = replace_table(con, "unit_features", _prepared_batches(frame, transform))
        seconds = time.perf_counter() - start
        replace_table(con, "feature_transform", pd.DataFrame({
            "fitted_at": [utc_now()], "n_units": [int(train.sum())],
            "transform_json": [json.dumps(transform.to_dict())]}))
        con.execute("COMMIT")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": n,
        "raw_features": len(names),
        "prepared_columns": transform.n_features_out_,
        "missing_indicators": int(transform.has_missing_.sum()),
        "fitted_on_units": int(train.sum()),
        "transform_and_write_seconds": round(seconds, 3),
    })


@dg.asset(group_name=GROUP, kinds={"duckdb", "python"}, pool="duckdb", code_version="1",
          deps=["valid_experiments", "valid_exposures", "valid_outcomes", "unit_features"])
def training_examples(context: dg.AssetExecutionContext, database: LRLDatabase) -> dg.MaterializeResult:
    """One row per (unit, experiment): its arm and its split (pipeline.training_examples)."""
    with database.connect() as con:
        valid = load_validated(con, unit_columns=False)
        pooled = build_pooled_data(valid)
        split = split_by_unit(pooled.unit_ids)[pooled.row_unit]
        rows = pd.DataFrame({
            "unit_id": valid.unit_features["unit_id"].take(pooled.row_unit).reset_index(drop=True),
            "experiment_id": np.asarray(pooled.experiments, dtype=object)[pooled.row_experiment],
            "arm": np.asarray(pooled.arm_names, dtype=object)[pooled.row_arm],
            "split": np.asarray(SPLIT_NAMES, dtype=object)[split],
        })
        n = replace_table(con, "training_examples", rows)

    observed = pd.DataFrame({
        "metric": pooled.metrics,
        "observed_rows": (~np.isnan(pooled.Y)).sum(axis=0),
    })
    per_split = pd.Series(split).value_counts().reindex(range(3), fill_value=0)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": n,
        **{f"rows_{name}": int(per_split[i]) for i, name in enumerate(SPLIT_NAMES)},
        "units": pooled.n_units,
        "experiments": len(pooled.experiments),
        "arms": pooled.n_arms,
        "metrics": dg.MetadataValue.md(observed.to_markdown(index=False)),
    })
