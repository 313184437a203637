"""Per-arm sufficient statistics of the validated outcomes, computed inside DuckDB.

The effect-covariance estimators (:mod:`lrl_core.effect_covariance`) need, per
experiment arm and metric, the count and mean of the arm's outcomes (on all its
units and on each of two halves of them) and, per pair of metrics, their
covariance within the arm. At the paper's scale that is 26.5M outcome rows;
DuckDB aggregates them where they lie and returns a few hundred rows, so the
outcome table never becomes a pandas pivot.
"""
from __future__ import annotations

import duckdb
import pandas as pd

from lrl_pipeline.storage.raw import arrow_to_pandas, table_exists

__all__ = ["arm_moments", "arm_covariances", "read_effects"]

# Units are halved by a hash of their id: fixed across runs, independent of the arm.
_ROWS = """
    SELECT CAST(o.experiment_id AS VARCHAR) AS experiment_id, CAST(e.arm AS VARCHAR) AS arm,
           CAST(o.metric AS VARCHAR) AS metric, o.unit_id, o.value,
           hash(CAST(o.unit_id AS VARCHAR)) % 2 AS half
    FROM pipeline.valid_outcomes o
    JOIN pipeline.valid_exposures e ON o.unit_id = e.unit_id AND o.experiment_id = e.experiment_id
    WHERE CAST(o.experiment_id AS VARCHAR) IN
          (SELECT DISTINCT CAST(experiment_id AS VARCHAR) FROM pipeline.training_examples)
"""

_MOMENTS = f"""
    WITH r AS ({_ROWS})
    SELECT experiment_id, arm, metric, count(*) AS n, avg(value) AS mean,
           count(*) FILTER (WHERE half = 0) AS n_a, avg(value) FILTER (WHERE half = 0) AS mean_a,
           count(*) FILTER (WHERE half = 1) AS n_b, avg(value) FILTER (WHERE half = 1) AS mean_b
    FROM r GROUP BY ALL ORDER BY ALL
"""

_COVARIANCES = f"""
    WITH r AS ({_ROWS})
    SELECT a.experiment_id, a.arm, a.metric AS metric_a, b.metric AS metric_b,
           count(*) AS n, covar_samp(a.value, b.value) AS covariance
    FROM r a JOIN r b ON a.unit_id = b.unit_id AND a.experiment_id = b.experiment_id AND a.metric <= b.metric
    GROUP BY ALL ORDER BY ALL
"""


def arm_moments(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per (experiment, arm, metric) of the trained experiments: ``n, mean`` over the
    arm's units with that metric, and ``n_a, mean_a, n_b, mean_b`` over each half of them."""
    return arrow_to_pandas(con.sql(_MOMENTS).to_arrow_table())


def arm_covariances(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per (experiment, arm, metric_a <= metric_b): ``n`` units with both metrics and the
    within-arm sample ``covariance`` of the two (a metric's variance where ``metric_a = metric_b``)."""
    return arrow_to_pandas(con.sql(_COVARIANCES).to_arrow_table())


def read_effects(con: duckdb.DuckDBPyConnection, version: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """``(pipeline.arm_effects, pipeline.effect_covariance)`` computed on extractor ``version``;
    None when the retrain that wrote them was of another version, or none has yet."""
    if not (table_exists(con, "pipeline", "arm_effects") and table_exists(con, "pipeline", "effect_covariance")):
        return None
    frames = tuple(arrow_to_pandas(con.sql(f"SELECT * FROM pipeline.{name} WHERE extractor_version = ?",
                                           params=[version]).to_arrow_table())
                   for name in ("arm_effects", "effect_covariance"))
    return frames if all(len(f) for f in frames) else None
