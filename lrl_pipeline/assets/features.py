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

from lrl_core.data import SPLIT_NAMES, build_pooled_data, split_by_unit
from lrl_pipeline.storage import (
    ensure_schema, fit_transform, load_validated, LRLDatabase, prepared_relation, replace_table,
    replace_table_with, transaction, utc_now,
)

GROUP = "features"


@dg.asset(group_name=GROUP, kinds={"duckdb", "python"}, pool="duckdb", code_version="1",
          deps=["valid_unit_features"])
def unit_features(context: dg.AssetExecutionContext, database: LRLDatabase) -> dg.MaterializeResult:
    """Imputed, standardised features with missing indicators, and categorical columns as indicators
    of their frequent levels, "other" and NULL (pipeline.unit_features); the transform is kept in
    pipeline.feature_transform and saved with the model that is trained on it."""
    with database.connect() as con:
        start = time.perf_counter()
        transform, n_train = fit_transform(con)
        ensure_schema(con)
        with transaction(con):
            n = replace_table_with(con, "unit_features", prepared_relation(con, transform))
            seconds = time.perf_counter() - start
            replace_table(con, "feature_transform", pd.DataFrame({
                "fitted_at": [utc_now()], "n_units": [n_train],
                "transform_json": [json.dumps(transform.to_dict())]}))
    return dg.MaterializeResult(metadata={
        "dagster/row_count": n,
        "raw_features": len(transform.columns_),
        "categorical_features": len(transform.categories_),
        "prepared_columns": transform.n_features_out_,
        "missing_indicators": int(transform.has_missing_.sum()),
        "categorical_levels": dg.MetadataValue.json(transform.categories_),
        "fitted_on_units": n_train,
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
