"""The pipeline's own tables (schema ``pipeline``): fixed DDL, Arrow writes, Arrow-backed reads.

The schema is not called ``lrl``: the default database file is
``lrl.duckdb``, whose catalog is named ``lrl``, and DuckDB then refuses
``lrl.<table>`` as ambiguous. Table names come only from the constants below, never from data; values go
in as parameters or as a registered Arrow table, so user-named columns
(features, metrics) never pass through SQL text.
"""
from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

import duckdb
import pandas as pd
import pyarrow as pa

from lrl_core.data import QUARANTINE_COLUMNS
from lrl_pipeline.storage.raw import arrow_to_pandas, table_exists

__all__ = [
    "FIXED_TABLES", "VALID_TABLES", "ensure_schema", "replace_table", "replace_table_with", "insert_rows", "read_table", "registered",
    "quarantine_rows", "utc_now", "kept_whole", "copy_raw_table",
]

FIXED_TABLES = {
    "quarantine": "table_name VARCHAR, unit_id VARCHAR, experiment_id VARCHAR, metric VARCHAR, "
                  "column_name VARCHAR, reason VARCHAR, detected_at TIMESTAMP",
    "experiment_heads": "experiment_id VARCHAR, arm VARCHAR, arm_index BIGINT, metric VARCHAR, kind VARCHAR, "
                        "extractor_version VARCHAR, coef DOUBLE[], cov DOUBLE[], sigma2 DOUBLE, alpha DOUBLE, "
                        "n BIGINT, fitted_at TIMESTAMP, cate_var DOUBLE",
    "evaluation": "model VARCHAR, split VARCHAR, experiment_id VARCHAR, arm VARCHAR, metric VARCHAR, n BIGINT, "
                  "mu_risk DOUBLE, tau_risk DOUBLE, pehe DOUBLE, extractor_version VARCHAR, evaluated_at TIMESTAMP",
    "head_evaluation": "experiment_id VARCHAR, arm VARCHAR, metric VARCHAR, model VARCHAR, n BIGINT, "
                       "mu_risk DOUBLE, tau_risk DOUBLE, pehe DOUBLE, extractor_version VARCHAR, "
                       "evaluated_at TIMESTAMP",
    "t_learner_risks": "model VARCHAR, split VARCHAR, experiment_id VARCHAR, arm VARCHAR, metric VARCHAR, n BIGINT, "
                       "mu_risk DOUBLE, tau_risk DOUBLE, pehe DOUBLE, evaluated_at TIMESTAMP",
    "extractor_versions": "version VARCHAR, trained_at TIMESTAMP, n_units BIGINT, n_rows BIGINT, "
                          "n_experiments BIGINT, n_metrics BIGINT, epochs BIGINT, best_val_loss DOUBLE, "
                          "seconds DOUBLE, device VARCHAR, chosen VARCHAR",
    "head_status": "experiment_id VARCHAR, extractor_version VARCHAR, status VARCHAR, detail VARCHAR, "
                   "n_heads BIGINT, updated_at TIMESTAMP",
    "feature_transform": "fitted_at TIMESTAMP, n_units BIGINT, transform_json VARCHAR",
    "validated_arms": "experiment_id VARCHAR, arms BIGINT, validated_at TIMESTAMP",
    "served_models": "experiment_id VARCHAR, arm VARCHAR, metric VARCHAR, model VARCHAR, gain DOUBLE, "
                     "gain_se DOUBLE, pooled_weight DOUBLE, n BIGINT, extractor_version VARCHAR, "
                     "baseline_version VARCHAR, chosen_at TIMESTAMP, se_scale DOUBLE",
    "policy_segments": "experiment_id VARCHAR, segment BIGINT, rule VARCHAR, units BIGINT, arm VARCHAR, "
                       "objective VARCHAR, extractor_version VARCHAR, computed_at TIMESTAMP",
    "policy_values": "experiment_id VARCHAR, policy VARCHAR, metric VARCHAR, estimator VARCHAR, value DOUBLE, "
                     "se DOUBLE, extractor_version VARCHAR, computed_at TIMESTAMP",
    "arm_effects": "experiment_id VARCHAR, arm VARCHAR, metric VARCHAR, effect DOUBLE, effect_se DOUBLE, "
                   "half_a DOUBLE, half_b DOUBLE, pooled DOUBLE, extractor_version VARCHAR, computed_at TIMESTAMP",
    "effect_covariance": "metric_a VARCHAR, metric_b VARCHAR, estimator VARCHAR, covariance DOUBLE, "
                         "correlation DOUBLE, se DOUBLE, n_arms BIGINT, extractor_version VARCHAR, "
                         "computed_at TIMESTAMP",
    "segment_effects": "segment VARCHAR, experiment_id VARCHAR, arm VARCHAR, metric VARCHAR, source VARCHAR, "
                       "effect DOUBLE, se DOUBLE, si_test_passed BOOLEAN, segment_by VARCHAR, "
                       "extractor_version VARCHAR, computed_at TIMESTAMP",
    "metric_proxies": "north_star VARCHAR, proxy VARCHAR, estimator VARCHAR, weight DOUBLE, weight_se DOUBLE, "
                      "r2 DOUBLE, r2_se DOUBLE, n_arms BIGINT, extractor_version VARCHAR, computed_at TIMESTAMP",
}
"""Tables with a fixed schema, created on first use."""

VALID_TABLES = ("unit_features", "experiments", "exposures", "outcomes")
"""``pipeline.valid_<name>`` holds the valid part of ``raw.<name>`` (same columns)."""

_FLEXIBLE = {f"valid_{name}" for name in VALID_TABLES} | {"unit_features", "training_examples"}
_KNOWN = set(FIXED_TABLES) | _FLEXIBLE


def _checked(name: str) -> str:
    if name not in _KNOWN:
        raise ValueError(f"unknown pipeline table {name!r}")
    return name


def utc_now() -> dt.datetime:
    """Naive UTC timestamp (DuckDB TIMESTAMP has no zone)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create schema ``pipeline`` and every fixed-schema table that does not exist yet."""
    con.execute("CREATE SCHEMA IF NOT EXISTS pipeline")
    for name, columns in FIXED_TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS pipeline.{name} ({columns})")
        # A database from an older version gains the columns added since (as NULL).
        for column in columns.split(", "):
            con.execute(f"ALTER TABLE pipeline.{name} ADD COLUMN IF NOT EXISTS {column}")


def _as_arrow(rows: pd.DataFrame | pa.Table) -> pa.Table:
    return rows if isinstance(rows, pa.Table) else pa.Table.from_pandas(rows, preserve_index=False)


@contextlib.contextmanager
def registered(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame | pa.Table) -> Iterator[pa.Table]:
    """``rows`` visible to SQL as ``_lrl_rows`` inside the block (as Arrow, without a copy where it can)."""
    incoming = _as_arrow(rows)
    con.register("_lrl_rows", incoming)
    try:
        yield incoming
    finally:
        con.unregister("_lrl_rows")


def replace_table(con: duckdb.DuckDBPyConnection, name: str, rows: pd.DataFrame | pa.Table) -> int:
    """Replace ``pipeline.<name>`` with ``rows`` (fixed tables keep their DDL types); returns the row count."""
    name = _checked(name)
    with registered(con, rows) as incoming:
        if name in FIXED_TABLES:
            con.execute(f"DELETE FROM pipeline.{name}")
            con.execute(f"INSERT INTO pipeline.{name} BY NAME SELECT * FROM _lrl_rows")
        else:
            con.execute(f"CREATE OR REPLACE TABLE pipeline.{name} AS SELECT * FROM _lrl_rows")
    return incoming.num_rows


def replace_table_with(con: duckdb.DuckDBPyConnection, name: str, relation: duckdb.DuckDBPyRelation) -> int:
    """Replace the flexible table ``pipeline.<name>`` with a relation of ``con``, computed inside DuckDB
    (nothing passes through Python); returns the row count."""
    name = _checked(name)
    if name in FIXED_TABLES:
        raise ValueError(f"replace_table_with is for flexible tables, not {name!r}")
    con.execute(f"DROP TABLE IF EXISTS pipeline.{name}")
    relation.create(f"pipeline.{name}")
    return con.execute(f"SELECT count(*) FROM pipeline.{name}").fetchall()[0][0]


# DuckDB types whose trip through Arrow and pandas (``read_raw_table`` then ``replace_table``) gives
# back the same type and values: for these, a raw table that validation kept whole can be copied
# inside DuckDB instead.
_ROUND_TRIP_TYPES = {"BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT",
                     "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "VARCHAR"}
_COPY_RAW = {name: f"CREATE OR REPLACE TABLE pipeline.valid_{name} AS SELECT * FROM raw.{name}"
             for name in VALID_TABLES}


def kept_whole(con: duckdb.DuckDBPyConnection, name: str, valid: pd.DataFrame, rows_in: int) -> bool:
    """Whether ``valid``, the valid part of ``raw.<name>``, is all of it: every row and every column,
    of types that :func:`copy_raw_table` copies unchanged."""
    if name not in _COPY_RAW or len(valid) != rows_in:
        return False
    relation = con.table(f"raw.{name}")
    return (list(valid.columns) == list(relation.columns)
            and all(str(kind) in _ROUND_TRIP_TYPES for kind in relation.types))


def copy_raw_table(con: duckdb.DuckDBPyConnection, name: str) -> int:
    """``pipeline.valid_<name>`` := ``raw.<name>``, copied inside DuckDB (for a table validation kept
    whole, see :func:`kept_whole`: the same rows, columns, types and values as writing its frame,
    without holding the frame while DuckDB writes); returns the row count."""
    con.execute(_COPY_RAW[name])
    return con.execute(f"SELECT count(*) FROM pipeline.valid_{name}").fetchall()[0][0]


def insert_rows(con: duckdb.DuckDBPyConnection, name: str, rows: pd.DataFrame | pa.Table) -> int:
    """Append ``rows`` by column name to ``pipeline.<name>``: a fixed-schema table, or a valid table
    (a new experiment's rows; columns it lacks are NULL)."""
    name = _checked(name)
    if name not in FIXED_TABLES and not name.startswith("valid_"):
        raise ValueError(f"insert_rows is for fixed-schema and valid tables, not {name!r}")
    with registered(con, rows) as incoming:
        con.execute(f"INSERT INTO pipeline.{name} BY NAME SELECT * FROM _lrl_rows")
    return incoming.num_rows


def read_table(con: duckdb.DuckDBPyConnection, name: str) -> pd.DataFrame:
    """``pipeline.<name>`` as an Arrow-backed DataFrame (NULL is ``pd.NA``); ``LookupError`` when it has not been built yet."""
    name = _checked(name)
    if not table_exists(con, "pipeline", name):
        raise LookupError(f"table pipeline.{name} does not exist yet: run `lrl retrain` first")
    return arrow_to_pandas(con.sql(f"SELECT * FROM pipeline.{name}").to_arrow_table())


def quarantine_rows(quarantine: pd.DataFrame, detected_at: dt.datetime) -> pd.DataFrame:
    """``validate_raw``'s quarantine in the ``pipeline.quarantine`` layout."""
    rows = quarantine[QUARANTINE_COLUMNS].rename(columns={"table": "table_name", "column": "column_name"})
    rows = rows.astype(object).where(rows.notna(), None)
    return rows.assign(detected_at=detected_at)
