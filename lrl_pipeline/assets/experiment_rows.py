"""A new experiment's rows, validated once by its own partition run into the pipeline's valid tables.

An experiment that the last full validation saw is left as it was (its rows
were validated and its units' features prepared by the retrain); one
launched since, or one that has grown an arm since, is validated here, by the same rules (``validate_raw`` on
its raw rows and units), so that heads read every experiment from one place.
"""
# No `from __future__ import annotations`: Dagster reads the context and resource
# annotations at definition time to inject them.
import time

import dagster as dg

from lrl_core.data import validate_raw
from lrl_pipeline.partitions import experiment_partitions
from lrl_pipeline.storage import (
    RAW_TABLES, LRLDatabase, needs_validation, read_experiment_tables, valid_feature_columns,
    write_experiment_validation,
)


@dg.asset(
    group_name="heads", kinds={"duckdb"}, pool="duckdb", code_version="1", partitions_def=experiment_partitions,
    deps=[["raw", name] for name in RAW_TABLES],
)
def experiment_rows(context: dg.AssetExecutionContext, database: LRLDatabase) -> dg.MaterializeResult:
    """The valid rows of each experiment of the run (pipeline.valid_*): validated here when the
    experiment launched (or grew an arm) after the last full validation, else as it left them."""
    keys = list(context.partition_keys)
    start = time.perf_counter()
    with database.connect() as con:
        try:
            fresh = needs_validation(con, keys)
        except LookupError as error:
            raise dg.Failure(str(error)) from error
        if fresh:
            # The full validation judged which columns are features; a few experiments' units cannot.
            try:
                valid = validate_raw(**read_experiment_tables(con, fresh), known_columns=valid_feature_columns(con))
            except ValueError as error:  # tables that break the contract as a whole (unit_id types)
                raise dg.Failure(str(error)) from error
            write_experiment_validation(con, fresh, valid)
    metadata = {"experiments": len(keys), "validated_here": len(fresh),
                "validated_by_the_retrain": len(keys) - len(fresh), "seconds": round(time.perf_counter() - start, 3)}
    if fresh:
        dropped = valid.quarantine[valid.quarantine["experiment_id"].isin(fresh)]
        metadata.update({
            "exposure_rows": len(valid.exposures), "outcome_rows": len(valid.outcomes),
            "rows_quarantined": len(dropped),
            "experiments_quarantined": int((dropped["table"] == "experiments").sum()),
        })
        context.log.info(f"validated {len(fresh)} new experiment(s): {len(valid.exposures)} exposure rows kept, "
                         f"{len(dropped)} quarantine rows")
    return dg.MaterializeResult(metadata=metadata)
