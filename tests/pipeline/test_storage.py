"""Paths, the DuckDB resource and raw-table I/O against real files."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import duckdb
import numpy as np
import pandas as pd
import pytest

from lrl_pipeline import paths
from lrl_pipeline.storage import (
    read_experiment_tables, read_raw_table, write_raw_tables, DatabaseBusy, LRLDatabase,
)


def test_paths_prefer_argument_then_environment_then_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LRL_DUCKDB_PATH", raising=False)
    monkeypatch.delenv("LRL_ARTIFACTS_DIR", raising=False)
    assert paths.db_path() == tmp_path / "data" / "lrl.duckdb"
    assert paths.artifacts_dir(paths.db_path()) == tmp_path / "data" / "artifacts"
    monkeypatch.setenv("LRL_DUCKDB_PATH", str(tmp_path / "env.duckdb"))
    monkeypatch.setenv("LRL_ARTIFACTS_DIR", str(tmp_path / "models"))
    assert paths.db_path() == tmp_path / "env.duckdb"
    assert paths.db_path("rel/x.duckdb") == tmp_path / "rel" / "x.duckdb"
    assert paths.artifacts_dir(tmp_path / "env.duckdb") == tmp_path / "models"


def test_dagster_home_defaults_to_the_project(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert paths.dagster_home() == paths.project_root() / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert paths.ensure_dagster_home() == tmp_path / "home" and (tmp_path / "home").is_dir()
    # A fresh home gets the project's settings (no banner, the one-writer pool); an existing one is kept.
    written = (tmp_path / "home" / "dagster.yaml").read_text()
    assert written == (paths.project_root() / "dagster_home" / "dagster.yaml").read_text()
    (tmp_path / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    paths.ensure_dagster_home()
    assert (tmp_path / "home" / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def hold_lock(db, seconds: float) -> subprocess.Popen:
    """Another process that holds the database file for ``seconds``."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, time
        con = duckdb.connect({str(db)!r})
        print("locked", flush=True)
        time.sleep({seconds})
        con.close()
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_connect_waits_for_another_writer_then_gives_up(tmp_path):
    db = tmp_path / "x.duckdb"
    duckdb.connect(str(db)).close()
    database = LRLDatabase(database=str(db), read_timeout_s=0.3)
    holder = hold_lock(db, 1.5)
    try:
        with pytest.raises(DatabaseBusy):
            with database.connect(read_only=True):
                pass
        start = time.monotonic()
        with database.connect(timeout_s=30) as con:  # retried with backoff until the holder exits
            assert con.execute("SELECT 42").fetchall() == [(42,)]
        assert time.monotonic() - start > 0.2
    finally:
        holder.kill()
        holder.wait()


def test_read_only_connect_of_a_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        with LRLDatabase(database=str(tmp_path / "none.duckdb")).connect(read_only=True):
            pass


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
