"""Raw-table I/O against real files (lrl_pipeline/storage/raw.py)."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from lrl_pipeline.storage import read_experiment_tables, read_raw_table, write_raw_tables


def raw_tables() -> dict[str, pd.DataFrame]:
    features = pd.DataFrame({
        "unit_id": [1, 2, 3, 4],
        'odd "name"; x': pd.array([0.5, None, 1.5, 2.0], dtype="Float64"),
        "plain": [1.0, 2.0, 3.0, 4.0],
    })
    return {
        "unit_features": features,
        "experiments": pd.DataFrame({"experiment_id": ["a", "b"],
                                     "launched_at": pd.to_datetime(["2024-01-01", "2024-01-02"])}),
        "exposures": pd.DataFrame({"unit_id": [1, 2, 3, 4], "experiment_id": ["a", "a", "b", "b"],
                                   "arm": ["control", "treatment", "control", "treatment"]}),
        "outcomes": pd.DataFrame({"unit_id": [1, 2, 3, 4], "experiment_id": ["a", "a", "b", "b"],
                                  "metric": ["m"] * 4, "value": [1.0, 2.0, 3.0, 4.0]}),
    }


def test_raw_tables_round_trip_with_null_and_nan_apart(tmp_path):
    db = tmp_path / "x.duckdb"
    assert write_raw_tables(db, raw_tables()) == {"unit_features": 4, "experiments": 2, "exposures": 4, "outcomes": 4}
    with duckdb.connect(str(db)) as con:  # the platform may store a NaN, which pandas cannot write apart from NULL
        con.execute("""UPDATE raw.unit_features SET "odd ""name""; x" = 'NaN'::DOUBLE WHERE unit_id = 3""")
    with duckdb.connect(str(db), read_only=True) as con:
        features = read_raw_table(con, "unit_features")
    column = features['odd "name"; x']
    assert list(features.columns) == ["unit_id", 'odd "name"; x', "plain"]
    assert column.isna().tolist() == [False, True, False, False]  # NULL only where NULL was written
    values = column.to_numpy(dtype=np.float64, na_value=-1.0)
    assert np.isnan(values[2]) and values[1] == -1.0  # NaN stays NaN, NULL stays NULL


def test_appending_and_reading_one_experiment(tmp_path):
    db = tmp_path / "x.duckdb"
    write_raw_tables(db, raw_tables())
    extra = {"experiments": pd.DataFrame({"experiment_id": ["c"], "launched_at": pd.to_datetime(["2024-01-03"])}),
             "exposures": pd.DataFrame({"unit_id": [1], "experiment_id": ["c"], "arm": ["control"]})}
    write_raw_tables(db, extra, replace=False)
    with duckdb.connect(str(db), read_only=True) as con:
        subset = read_experiment_tables(con, ["c", "b"])
    assert sorted(subset["experiments"]["experiment_id"]) == ["b", "c"]
    assert sorted(subset["exposures"]["unit_id"]) == [1, 3, 4]
    assert sorted(subset["unit_features"]["unit_id"]) == [1, 3, 4]
    assert len(subset["outcomes"]) == 2
