"""Experiment heads, their status and their evaluation: the SQL of the per-experiment partitions.

A head run owns its experiments' rows in ``experiment_heads``, ``head_status``,
``head_evaluation`` and their experiment-level ``quarantine`` rows: it
replaces them whole, in one transaction, so a rerun never duplicates a head.
"""
from __future__ import annotations

import pandas as pd

from lrl_pipeline.storage.database import Connection, transaction
from lrl_pipeline.storage.raw import table_exists
from lrl_pipeline.storage.tables import ensure_schema, insert_rows, quarantine_rows, utc_now

__all__ = ["exposure_counts", "read_heads", "write_head_run", "write_head_evaluation", "heads_fitted_since",
           "read_policy_objectives", "write_policies"]

_IN_KEYS = "experiment_id IN (SELECT unnest(?::VARCHAR[]))"
_DELETE = {table: f"DELETE FROM pipeline.{table} WHERE {_IN_KEYS}"
           for table in ("experiment_heads", "head_status", "head_evaluation", "policy_segments", "policy_values")}
# Unit-level quarantine rows (no experiment) belong to the full validation, not to a head run.
_DELETE["quarantine"] = f"DELETE FROM pipeline.quarantine WHERE {_IN_KEYS}"
_EXPOSURE_COUNTS = ("SELECT CAST(experiment_id AS VARCHAR) AS e, count(*) FROM raw.exposures "
                    "WHERE CAST(experiment_id AS VARCHAR) IN (SELECT unnest(?::VARCHAR[])) GROUP BY e")
_HEADS = "SELECT * FROM pipeline.experiment_heads"
_FITTED_SINCE = (f"SELECT experiment_id, updated_at FROM pipeline.head_status WHERE {_IN_KEYS} "
                 "AND extractor_version = ? AND updated_at >= ?")
_HEADS_OF = f"{_HEADS} WHERE {_IN_KEYS} AND extractor_version = ?"
_OBJECTIVES = ("SELECT CAST(experiment_id AS VARCHAR) AS experiment_id, CAST(metric AS VARCHAR) AS metric, "
               "CAST(weight AS DOUBLE) AS weight, CAST(guardrail_min AS DOUBLE) AS guardrail_min "
               "FROM raw.policy_objectives WHERE CAST(experiment_id AS VARCHAR) IN (SELECT unnest(?::VARCHAR[]))")


def exposure_counts(con: Connection, keys: list[str]) -> dict[str, int]:
    """Raw exposure rows per experiment of ``keys`` (missing: none)."""
    if not table_exists(con, "raw", "exposures"):
        return {}
    return dict(con.execute(_EXPOSURE_COUNTS, [keys]).fetchall())


def heads_fitted_since(con: Connection, keys: list[str], version: str, since) -> dict:
    """Experiments of ``keys`` whose head run on ``version`` ended at or after ``since`` (naive UTC) -> when."""
    if not table_exists(con, "pipeline", "head_status"):
        return {}
    return dict(con.execute(_FITTED_SINCE, [keys, version, since]).fetchall())


def read_heads(con: Connection, keys: list[str] | None = None, version: str | None = None) -> pd.DataFrame:
    """Stored heads: all of them, or those of experiments ``keys`` on extractor ``version``."""
    if keys is None:
        return con.sql(_HEADS).df()
    return con.sql(_HEADS_OF, params=[keys, version]).df()


def write_head_run(con: Connection, keys: list[str], heads: pd.DataFrame, status: pd.DataFrame,
                   quarantine: pd.DataFrame) -> None:
    """Replace the heads, status and experiment-level quarantine rows of experiments ``keys``."""
    ensure_schema(con)
    with transaction(con):
        for table in ("experiment_heads", "head_status", "quarantine"):
            con.execute(_DELETE[table], [keys])
        if len(heads):
            insert_rows(con, "experiment_heads", heads)
        insert_rows(con, "head_status", status)
        insert_rows(con, "quarantine", quarantine_rows(quarantine, utc_now()))


def write_head_evaluation(con: Connection, keys: list[str], rows: pd.DataFrame) -> None:
    """Replace the head evaluation rows of experiments ``keys``."""
    ensure_schema(con)
    with transaction(con):
        con.execute(_DELETE["head_evaluation"], [keys])
        if len(rows):
            insert_rows(con, "head_evaluation", rows)


def read_policy_objectives(con: Connection, keys: list[str]) -> pd.DataFrame:
    """The optional ``raw.policy_objectives`` rows of experiments ``keys`` (``experiment_id, metric,
    weight, guardrail_min``); empty when the platform keeps no such table."""
    if not table_exists(con, "raw", "policy_objectives"):
        return pd.DataFrame(columns=["experiment_id", "metric", "weight", "guardrail_min"])
    return con.sql(_OBJECTIVES, params=[keys]).df()


def write_policies(con: Connection, keys: list[str], segments: pd.DataFrame, values: pd.DataFrame) -> None:
    """Replace the policy segments and values of experiments ``keys``."""
    ensure_schema(con)
    with transaction(con):
        for table, rows in (("policy_segments", segments), ("policy_values", values)):
            con.execute(_DELETE[table], [keys])
            if len(rows):
                insert_rows(con, table, rows)
