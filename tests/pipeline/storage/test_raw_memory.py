"""The validate step's memory savers: DuckDB's page cache dropped, clean tables copied in DuckDB."""
from __future__ import annotations

import numpy as np
import pandas as pd

from lrl_core.data import validate_raw
from lrl_pipeline.storage import LRLDatabase, ensure_schema, read_raw_tables, replace_table, transaction, write_raw_tables
from lrl_pipeline.storage.raw import drop_cached_pages
from lrl_pipeline.storage.tables import copy_raw_table, kept_whole



def clean_raw_tables() -> dict[str, pd.DataFrame]:
    """Raw tables that validate whole: two experiments, two units per arm, a NULL feature value."""
    units = list(range(1, 9))
    experiment = ["a"] * 4 + ["b"] * 4
    arm = ["control", "control", "treatment", "treatment"] * 2
    return {
        "unit_features": pd.DataFrame({
            "unit_id": units,
            "x": pd.array([0.5, None, 1.5, 2.0, 1.0, 3.0, 2.5, 0.0], dtype="Float64"),
            "flag": pd.array([True, None, False, True, False, False, True, True], dtype="boolean"),
            "f32": np.arange(8, dtype=np.float32) / 2,
            "n": np.arange(8, dtype=np.int32),
        }),
        "experiments": pd.DataFrame({"experiment_id": ["a", "b"],
                                     "launched_at": pd.to_datetime(["2024-01-01", "2024-01-02"])}),
        "exposures": pd.DataFrame({"unit_id": units, "experiment_id": experiment, "arm": arm}),
        "outcomes": pd.DataFrame({"unit_id": units, "experiment_id": experiment, "metric": ["m"] * 8,
                                  "value": [1.0, 2.0, 3.0, 4.5, 5.0, 6.0, 7.0, 8.5]}),
    }


def test_dropping_cached_pages_keeps_the_limit_and_an_open_transaction(tmp_path):
    db = tmp_path / "x.duckdb"
    write_raw_tables(db, clean_raw_tables())
    with LRLDatabase(database=str(db)).connect() as con:
        limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        with transaction(con):
            con.execute("CREATE SCHEMA IF NOT EXISTS pipeline")
            con.execute("CREATE TABLE pipeline.valid_outcomes AS SELECT * FROM raw.outcomes")
            drop_cached_pages(con)  # inside an open transaction: the eviction runs on a cursor of its own
            drop_cached_pages(con)
            assert con.execute("SELECT count(*) FROM pipeline.valid_outcomes").fetchall() == [(8,)]
        assert con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == limit
        assert con.execute("SELECT count(*) FROM pipeline.valid_outcomes").fetchall() == [(8,)]


def _table(con, name: str) -> tuple[list, list]:
    relation = con.sql(f"SELECT * FROM pipeline.{name}")
    return [str(t) for t in relation.types], relation.fetchall()


def test_a_table_kept_whole_is_copied_with_the_types_and_values_of_its_frame(tmp_path):
    db = tmp_path / "x.duckdb"
    tables = clean_raw_tables()
    write_raw_tables(db, tables)
    with LRLDatabase(database=str(db)).connect() as con:
        raw = read_raw_tables(con)
        result = validate_raw(**raw)
        ensure_schema(con)
        copied, written = {}, {}
        for name in ("unit_features", "exposures", "outcomes"):
            frame = getattr(result, name)
            assert kept_whole(con, name, frame, len(raw[name])), name
            assert copy_raw_table(con, name) == len(frame)
            copied[name] = _table(con, f"valid_{name}")
            replace_table(con, f"valid_{name}", frame)  # the frame's way: the reference
            written[name] = _table(con, f"valid_{name}")
        assert copied.keys() == written.keys()
        for name in copied:
            assert copied[name][0] == written[name][0], name
            assert repr(copied[name][1]) == repr(written[name][1]), name  # repr: None stays None
        assert "None" in repr(copied["unit_features"][1])
        # A TIMESTAMP column is not copied (its trip through pandas is not the identity in general),
        # nor is a table that lost rows or columns.
        assert not kept_whole(con, "experiments", result.experiments, len(raw["experiments"]))
        assert not kept_whole(con, "outcomes", result.outcomes.iloc[:3], len(raw["outcomes"]))
        assert not kept_whole(con, "unit_features", result.unit_features.drop(columns="f32"),
                              len(raw["unit_features"]))
