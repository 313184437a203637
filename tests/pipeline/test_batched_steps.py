"""The steps that work in batches to bound memory at scale give what one batch gives."""
from __future__ import annotations

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from lrl_pipeline.assets import features, heads
from lrl_pipeline.resources import ArtifactStoreResource, LRLDatabase
from lrl_pipeline import tables


def _heads(db) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        frame = con.execute("SELECT experiment_id, arm, metric, kind, coef, cov, alpha, n "
                            "FROM pipeline.experiment_heads").df()
    return frame.sort_values(["experiment_id", "arm", "metric"]).reset_index(drop=True)


def test_heads_fitted_in_groups_equal_heads_fitted_at_once(pipeline, monkeypatch):
    database, artifacts = LRLDatabase(path=str(pipeline.db)), ArtifactStoreResource(root=str(pipeline.artifacts))
    keys = pipeline.experiments
    assert len(heads._experiment_groups(database, keys)) == 1
    monkeypatch.setattr(heads, "HEAD_BATCH_ROWS", 1)
    assert heads._experiment_groups(database, keys) == [[k] for k in keys]
    before = _heads(pipeline.db)
    context = dg.build_asset_context(partition_key_range=dg.PartitionKeyRange(keys[0], keys[-1]),
                                     instance=pipeline.instance)
    result = heads.experiment_heads(context=context, database=database, artifacts=artifacts)
    assert result.metadata["experiments_fitted"] == len(keys)
    after = _heads(pipeline.db)
    pd.testing.assert_frame_equal(after.drop(columns=["coef", "cov"]), before.drop(columns=["coef", "cov"]))
    for column in ("coef", "cov"):
        for got, want in zip(after[column], before[column]):
            np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float), rtol=1e-9)


def test_prepared_features_written_and_read_in_small_batches_are_unchanged(pipeline, monkeypatch):
    database = LRLDatabase(path=str(pipeline.db))
    with database.connect(read_only=True) as con:
        pooled, X, split = tables.load_pooled(con)
    monkeypatch.setattr(features, "PREPARE_ROWS", 7)
    monkeypatch.setattr(tables, "PREPARED_BATCH_ROWS", 5)
    features.unit_features(context=dg.build_asset_context(), database=database)
    with database.connect(read_only=True) as con:
        again, X_again, split_again = tables.load_pooled(con)
    assert X.shape[0] == pooled.n_units > 7 * 5
    np.testing.assert_array_equal(X_again, X)
    np.testing.assert_array_equal(again.unit_ids, pooled.unit_ids)
    np.testing.assert_array_equal(split_again, split)


def test_prepared_features_that_no_longer_match_the_pooled_units_are_refused(pipeline, monkeypatch):
    # The matrix is streamed separately from the unit ids the rows were pooled on; a table that
    # changed in between must not silently give units the wrong features.
    import pyarrow as pa
    import pytest

    monkeypatch.setattr(tables, "PREPARED_BATCH_ROWS", 5)
    with LRLDatabase(path=str(pipeline.db)).connect(read_only=True) as con:
        ids = con.sql("SELECT unit_id FROM pipeline.unit_features").to_arrow_table().column(0)
        assert tables._prepared_matrix(con, ids).shape[0] == len(ids)
        for changed in (pa.chunked_array([ids.to_numpy()[::-1].copy()]), ids.slice(0, len(ids) - 1)):
            with pytest.raises(RuntimeError, match="changed while it was read"):
                tables._prepared_matrix(con, changed)
