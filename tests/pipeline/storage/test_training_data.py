"""The prepared feature matrix, streamed in batches, is what one batch gives (lrl_pipeline/storage/training_data.py)."""
from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pytest

from lrl_core.features import FeatureTransform

from lrl_pipeline.assets import features
from lrl_pipeline.storage import LRLDatabase
from lrl_pipeline.storage import training_data


def test_prepared_table_equals_the_transform_bit_for_bit(pipeline, monkeypatch):
    # DuckDB computes pipeline.unit_features; scoring and new experiments use FeatureTransform in
    # numpy. Both must agree exactly, NULLs (imputed, with indicators) and clipped values included.
    database = LRLDatabase(database=str(pipeline.db))
    with database.connect() as con:
        con.execute("UPDATE pipeline.valid_unit_features SET x0 = 1e6 WHERE unit_id = "
                    "(SELECT min(unit_id) FROM pipeline.valid_unit_features)")
        # Categorical columns: text with a rare level and NULLs, a boolean, an ENUM.
        con.execute("CREATE TYPE IF NOT EXISTS mood AS ENUM ('calm', 'busy')")
        con.execute("ALTER TABLE pipeline.valid_unit_features ADD COLUMN tier VARCHAR")
        con.execute("ALTER TABLE pipeline.valid_unit_features ADD COLUMN mobile BOOLEAN")
        con.execute("ALTER TABLE pipeline.valid_unit_features ADD COLUMN mood mood")
        con.execute("UPDATE pipeline.valid_unit_features SET "
                    "tier = CASE WHEN unit_id % 7 = 0 THEN NULL WHEN unit_id % 211 = 1 THEN 'rare' "
                    "ELSE ['free', 'gold', 'pro'][unit_id % 3 + 1] END, mobile = unit_id % 2 = 0, "
                    "mood = CASE WHEN unit_id % 5 = 0 THEN 'busy' ELSE 'calm' END")
    features.unit_features(context=dg.build_asset_context(), database=database)
    with database.connect(read_only=True) as con:
        valid = training_data.read_table(con, "valid_unit_features")
        prepared = training_data.read_table(con, "unit_features")
        transform = FeatureTransform.from_dict(json.loads(
            training_data.read_table(con, "feature_transform")["transform_json"].iloc[0]))
        monkeypatch.setattr(training_data, "PREPARED_BATCH_ROWS", 5)
        pooled, X, _ = training_data.load_pooled(con)
    expected = transform.transform_frame(valid)
    assert transform.has_missing_.any() and (expected == transform.clip).any()
    assert sorted(transform.categories_) == ["mobile", "mood", "tier"]
    assert sorted(transform.categories_["tier"]) == ["free", "gold", "pro"]  # 'rare' is "other"
    assert transform.level_counts_["tier"]["(other)"] > 0 and transform.level_counts_["tier"]["(null)"] > 0
    assert prepared.shape[1] == 1 + len(transform.output_names_)
    np.testing.assert_array_equal(prepared.drop(columns="unit_id").to_numpy(dtype=np.float32), expected)
    np.testing.assert_array_equal(prepared["unit_id"].to_numpy(), valid["unit_id"].to_numpy())
    # Streamed back in batches of 5 rows, in the same order.
    assert X.shape[0] == pooled.n_units > 5 * 5
    np.testing.assert_array_equal(X, expected)


def test_prepared_features_that_no_longer_match_the_pooled_units_are_refused(pipeline, monkeypatch):
    # The matrix is streamed separately from the unit ids the rows were pooled on; a table that
    # changed in between must not silently give units the wrong features.
    import pyarrow as pa
    import pytest

    monkeypatch.setattr(training_data, "PREPARED_BATCH_ROWS", 5)
    with LRLDatabase(database=str(pipeline.db)).connect(read_only=True) as con:
        ids = con.sql("SELECT unit_id FROM pipeline.unit_features").to_arrow_table().column(0)
        assert training_data._prepared_matrix(con, ids).shape[0] == len(ids)
        for changed in (pa.chunked_array([ids.to_numpy()[::-1].copy()]), ids.slice(0, len(ids) - 1)):
            with pytest.raises(RuntimeError, match="changed while it was read"):
                training_data._prepared_matrix(con, changed)


def test_a_matrix_past_the_memory_budget_is_memory_mapped_with_the_same_values(pipeline, monkeypatch):
    from lrl_pipeline import paths

    with LRLDatabase(database=str(pipeline.db)).connect(read_only=True) as con:
        _, in_memory, _ = training_data.load_pooled(con)
        monkeypatch.setenv("LRL_TRAIN_MEMORY", "1KB")
        _, mapped, _ = training_data.load_pooled(con)
    assert not isinstance(in_memory, np.memmap) and isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, in_memory)
    assert paths.train_memory_bytes() == 1000
    for bad in ("lots", "8XB"):
        monkeypatch.setenv("LRL_TRAIN_MEMORY", bad)
        with pytest.raises(ValueError, match="LRL_TRAIN_MEMORY must be a size"):
            paths.train_memory_bytes()


def test_load_pooled_equals_the_whole_tables_read_at_once(pipeline, monkeypatch):
    # load_pooled reads the matrix in rowid ranges, evicting DuckDB's pages after each, and pools
    # the outcomes chunk by chunk: every value must be what whole-table reads give. Rows moved to
    # the end of the table leave rowid gaps and a new order, which the ranges must follow.
    import pandas as pd

    from lrl_core.data import QUARANTINE_COLUMNS, ValidationResult, build_pooled_data, split_by_unit
    from lrl_core.data import pooling

    with LRLDatabase(database=str(pipeline.db)).connect() as con:
        con.execute("CREATE TEMP TABLE moved AS SELECT * FROM pipeline.unit_features WHERE unit_id % 3 = 1")
        con.execute("DELETE FROM pipeline.unit_features WHERE unit_id % 3 = 1")
        con.execute("INSERT INTO pipeline.unit_features SELECT * FROM moved")
        prepared = training_data.read_table(con, "unit_features")
        examples = training_data.read_table(con, "training_examples")
        expected = build_pooled_data(ValidationResult(
            unit_features=prepared[["unit_id"]],
            experiments=training_data.arrow_to_pandas(
                con.sql(training_data._TRAINED_OF["experiments"]).to_arrow_table()),
            exposures=examples[["unit_id", "experiment_id", "arm"]],
            outcomes=training_data.arrow_to_pandas(con.sql(training_data._TRAINED_OF["outcomes"]).to_arrow_table()),
            quarantine=pd.DataFrame(columns=QUARANTINE_COLUMNS)))
        monkeypatch.setattr(training_data, "PREPARED_BATCH_ROWS", 7)
        monkeypatch.setattr(pooling, "PIVOT_CHUNK_ROWS", 13)
        pooled, X, split = training_data.load_pooled(con)
        gaps = con.execute("SELECT max(rowid) + 1 - count(*) FROM pipeline.unit_features").fetchall()[0][0]
    assert gaps > 0 and pooled.n_units > 7 * 5 and expected.Y.shape[0] > 13 * 5
    assert X.dtype == np.float32 and split.dtype == np.int8
    np.testing.assert_array_equal(X, prepared.drop(columns="unit_id").to_numpy(dtype=np.float32))
    np.testing.assert_array_equal(pooled.unit_ids, prepared["unit_id"].to_numpy())
    np.testing.assert_array_equal(split, split_by_unit(expected.unit_ids))
    for field in ("unit_ids", "row_unit", "row_arm", "Y", "arm_experiment", "control_arm", "features"):
        np.testing.assert_array_equal(getattr(pooled, field), getattr(expected, field))
    assert (pooled.experiments, pooled.arm_names, pooled.metrics) == (
        expected.experiments, expected.arm_names, expected.metrics)
    assert np.isfinite(pooled.Y).any()
