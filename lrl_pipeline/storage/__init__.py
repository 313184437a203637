"""The storage layer: every line of SQL and every DuckDB connection of the pipeline.

Modules by what they store: ``database`` (the resource, its connections and
transactions), ``raw`` (the platform's four input tables), ``tables`` (the
pipeline's own tables, their DDL and generic reads and writes),
``features`` (the feature transform fitted column by column and the one
implementation of the prepared features, inside DuckDB), ``experiment_rows``
(a new experiment's validation, and the valid rows heads read), ``training_data`` (the pooled rows and the
prepared matrix as the model reads them), ``registry`` (the experiment
registry and the version of each head), ``heads`` (the per-experiment
partitions' tables), ``models`` (extractor versions and served models),
``effects`` (per-arm outcome statistics for the effect covariance),
``segments`` (per-segment outcome statistics for Synthetic Interventions).
Everything else in ``lrl_pipeline`` imports from here and writes no SQL.
"""
from lrl_pipeline.storage.database import Connection, DatabaseBusy, LRLDatabase, is_lock_error, transaction
from lrl_pipeline.storage.effects import arm_covariances, arm_moments, read_effects
from lrl_pipeline.storage.experiment_rows import (
    ExperimentTables, needs_validation, read_valid_experiment_rows, valid_feature_columns,
    write_experiment_validation,
)
from lrl_pipeline.storage.features import fit_transform, prepare_frame, prepared_matrix, prepared_relation
from lrl_pipeline.storage.heads import (
    exposure_counts, heads_fitted_since, read_heads, read_policy_objectives, write_head_evaluation, write_head_run,
    write_policies,
)
from lrl_pipeline.storage.models import (
    SERVED_COLUMNS, chosen_config, extractor_versions_in_use, read_served_models, record_extractor_version,
    retrain_counts, served_counts,
)
from lrl_pipeline.storage.raw import (
    RAW_TABLES, arrow_to_pandas, attach_parquet_sources, count_raw_rows, experiment_ids, raw_arms, read_experiment_tables, read_raw_table,
    read_raw_tables, table_exists, write_raw_tables,
)
from lrl_pipeline.storage.segments import read_segment_effects, segment_columns, segment_moments, segment_units
from lrl_pipeline.storage.registry import (
    HeadState, changed_arms, is_partition_key, read_head_state, record_validated_arms,
)
from lrl_pipeline.storage.tables import (
    FIXED_TABLES, VALID_TABLES, ensure_schema, insert_rows, quarantine_rows,
    read_table, registered, replace_table, replace_table_with, utc_now,
)
from lrl_pipeline.storage.training_data import load_pooled, load_validated

__all__ = [
    "Connection", "DatabaseBusy", "LRLDatabase", "is_lock_error", "transaction",
    "arm_covariances", "arm_moments", "read_effects",
    "ExperimentTables", "needs_validation", "valid_feature_columns", "read_valid_experiment_rows",
    "write_experiment_validation",
    "fit_transform", "prepare_frame", "prepared_matrix", "prepared_relation",
    "exposure_counts", "heads_fitted_since", "read_heads", "write_head_evaluation", "write_head_run",
    "read_policy_objectives", "write_policies",
    "SERVED_COLUMNS", "chosen_config", "extractor_versions_in_use", "read_served_models",
    "record_extractor_version", "retrain_counts", "served_counts",
    "RAW_TABLES", "arrow_to_pandas", "attach_parquet_sources", "count_raw_rows", "experiment_ids", "raw_arms", "read_experiment_tables",
    "read_raw_table", "read_raw_tables", "table_exists", "write_raw_tables",
    "HeadState", "changed_arms", "is_partition_key", "read_head_state", "record_validated_arms",
    "read_segment_effects", "segment_columns", "segment_moments", "segment_units",
    "FIXED_TABLES", "VALID_TABLES", "ensure_schema", "insert_rows",
    "quarantine_rows", "read_table", "registered", "replace_table", "replace_table_with", "utc_now",
    "load_pooled", "load_validated",
]
