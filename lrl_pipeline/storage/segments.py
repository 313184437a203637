"""Per-segment outcome statistics for Synthetic Interventions, computed inside DuckDB.

Segments are the levels of one column of ``raw.unit_features`` (as validated
into ``pipeline.valid_unit_features``), named by the user. The column's name
enters only as a DuckDB column expression, never as SQL text; it is renamed
``segment`` before any SQL touches it.
"""
from __future__ import annotations

import duckdb
import pandas as pd

from lrl_pipeline.storage.raw import arrow_to_pandas, table_exists

__all__ = ["read_segment_effects", "segment_columns", "segment_moments", "segment_units"]

# Outcome rows of the trained experiments with their arm: what SI averages per segment.
_OUTCOME_ROWS = """
    SELECT o.unit_id, CAST(o.experiment_id AS VARCHAR) AS experiment_id, CAST(e.arm AS VARCHAR) AS arm,
           CAST(o.metric AS VARCHAR) AS metric, o.value
    FROM pipeline.valid_outcomes o
    JOIN pipeline.valid_exposures e ON o.unit_id = e.unit_id AND o.experiment_id = e.experiment_id
    WHERE CAST(o.experiment_id AS VARCHAR) IN
          (SELECT DISTINCT CAST(experiment_id AS VARCHAR) FROM pipeline.training_examples)
"""


def segment_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Columns of the validated unit features a segmentation can use (every one but ``unit_id``)."""
    if not table_exists(con, "pipeline", "valid_unit_features"):
        return []
    return [c for c in con.table("pipeline.valid_unit_features").columns if c != "unit_id"]


def _segments(con: duckdb.DuckDBPyConnection, column: str) -> duckdb.DuckDBPyRelation:
    """``unit_id, segment`` (the column's value as text) of every unit whose value is not NULL."""
    known = segment_columns(con)
    if column not in known:
        raise ValueError(f"no unit feature column {column!r} to segment by; the columns are "
                         f"{', '.join(known[:20]) or '(none: run a retrain first)'}")
    values = duckdb.ColumnExpression(column)
    return (con.table("pipeline.valid_unit_features")
            .filter(values.isnotnull())
            .select(duckdb.ColumnExpression("unit_id"), values.cast("VARCHAR").alias("segment")))


def segment_moments(con: duckdb.DuckDBPyConnection, column: str) -> pd.DataFrame:
    """One row per (segment, experiment, arm, metric) of the trained experiments where the segment
    has outcomes: ``n``, ``mean`` and the sample variance ``var`` of the outcome (NULL with one row)."""
    rows = con.sql(_OUTCOME_ROWS).join(_segments(con, column), "unit_id")
    moments = rows.aggregate("segment, experiment_id, arm, metric, count(*) AS n, avg(value) AS mean, "
                             "var_samp(value) AS var", "segment, experiment_id, arm, metric")
    return arrow_to_pandas(moments.order("segment, experiment_id, arm, metric").to_arrow_table())


def segment_units(con: duckdb.DuckDBPyConnection, column: str) -> pd.DataFrame:
    """``unit_id, segment`` of every unit with a value in ``column``."""
    return arrow_to_pandas(_segments(con, column).to_arrow_table())


def read_segment_effects(con: duckdb.DuckDBPyConnection, version: str) -> pd.DataFrame | None:
    """``pipeline.segment_effects`` computed on extractor ``version``; None when there are none."""
    if not table_exists(con, "pipeline", "segment_effects"):
        return None
    rows = arrow_to_pandas(con.sql("SELECT * FROM pipeline.segment_effects WHERE extractor_version = ?",
                                   params=[version]).to_arrow_table())
    return rows if len(rows) else None
