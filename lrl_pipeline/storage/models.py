"""What each retrain recorded about its models: extractor versions, the choice, the served models."""
from __future__ import annotations

import pandas as pd

from lrl_pipeline.storage.database import Connection
from lrl_pipeline.storage.raw import table_exists
from lrl_pipeline.storage.tables import ensure_schema, insert_rows, read_table

__all__ = ["SERVED_COLUMNS", "record_extractor_version", "extractor_versions_in_use", "chosen_config",
           "served_counts", "read_served_models", "retrain_counts"]

SERVED_COLUMNS = ["experiment_id", "arm", "metric", "model", "pooled_weight", "extractor_version", "baseline_version",
                  "se_scale"]
_SERVED_BY_BASELINE = "SELECT * FROM pipeline.served_models WHERE model <> ?"
_SERVED_COUNTS = "SELECT model, count(*) FROM pipeline.served_models GROUP BY model ORDER BY count(*) DESC"
_CHOSEN = "SELECT chosen FROM pipeline.extractor_versions WHERE version = ?"
_COUNTS = {name: f"SELECT count(*) FROM pipeline.{name}"
           for name in ("valid_experiments", "training_examples", "quarantine")}


def record_extractor_version(con: Connection, row: dict) -> None:
    """Append one trained extractor to ``pipeline.extractor_versions``."""
    ensure_schema(con)
    insert_rows(con, "extractor_versions", pd.DataFrame([row]))


def extractor_versions_in_use(con: Connection) -> set[str]:
    """Extractor versions some stored head is fitted on (never pruned)."""
    ensure_schema(con)
    return set(read_table(con, "experiment_heads")["extractor_version"].dropna())


def chosen_config(con: Connection, version: str) -> str | None:
    """The one-line configuration model selection trained for ``version``."""
    found = con.execute(_CHOSEN, [version]).fetchall()
    return found[0][0] if found and found[0][0] else None


def served_counts(con: Connection) -> dict[str, int]:
    """(experiment, arm, metric) cells per serving model, most first."""
    return dict(con.execute(_SERVED_COUNTS).fetchall())


def read_served_models(con: Connection, pooled: str) -> pd.DataFrame:
    """The cells some model other than ``pooled`` serves (empty before the first evaluation)."""
    if not table_exists(con, "pipeline", "served_models"):
        return pd.DataFrame(columns=SERVED_COLUMNS)
    return con.sql(_SERVED_BY_BASELINE, params=[pooled]).df()


def retrain_counts(con: Connection) -> dict[str, int]:
    """Rows of the valid experiments, training examples and quarantine tables."""
    return {name: con.execute(sql).fetchall()[0][0] for name, sql in _COUNTS.items()}
