"""Heads fitted in groups, to bound memory at scale, equal heads fitted at once (lrl_pipeline/assets/heads.py)."""
from __future__ import annotations

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from lrl_pipeline.assets import heads
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.storage import LRLDatabase


def _heads(db) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        frame = con.execute("SELECT experiment_id, arm, metric, kind, coef, cov, alpha, n "
                            "FROM pipeline.experiment_heads").df()
    return frame.sort_values(["experiment_id", "arm", "metric"]).reset_index(drop=True)


def test_heads_fitted_in_groups_equal_heads_fitted_at_once(pipeline, monkeypatch):
    database, artifacts = LRLDatabase(database=str(pipeline.db)), ArtifactStoreResource(root=str(pipeline.artifacts))
    keys = pipeline.experiments
    assert len(heads.experiment_groups(database, keys)) == 1
    monkeypatch.setattr(heads, "HEAD_BATCH_ROWS", 1)
    assert heads.experiment_groups(database, keys) == [[k] for k in keys]
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
