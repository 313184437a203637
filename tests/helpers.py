"""Helpers shared by the pipeline tests and the guarantees (imported as ``tests.helpers``)."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from lrl_pipeline.storage import RAW_TABLES, read_raw_table

REPO = Path(__file__).resolve().parents[1]


FAST = {"ops": {
    "lr_learner": {"config": {"max_epochs": 15, "patience": 5, "d": 4, "hidden": 16}},
    "t_learners": {"config": {"n_estimators": 10, "max_depth": 2, "n_jobs": 1}},
}}
"""Run config of the retrain job that keeps a retrain of the tiny data set to seconds."""


def query(db, sql, params=None):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).df()


def units_of(db) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return read_raw_table(con, "unit_features")


def raw_checksums(db: Path) -> dict[str, str]:
    """md5 of every raw table's rows (ordered) and of its columns and types, by table."""
    with duckdb.connect(str(db), read_only=True) as con:
        present = [row[0] for row in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw'").fetchall()]
        sums = {}
        for name in sorted(set(present) & set(RAW_TABLES)):
            # Names from RAW_TABLES only.
            rows = con.execute(f"SELECT md5(coalesce(string_agg(t::VARCHAR, '|' ORDER BY t::VARCHAR), '')) "
                               f"FROM raw.{name} t").fetchall()[0][0]
            columns = con.execute("SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position) "
                                  "FROM information_schema.columns WHERE table_schema = 'raw' AND table_name = ?",
                                  [name]).fetchall()[0][0]
            sums[name] = f"{rows}/{columns}"
        return sums
