"""Materializing twice changes nothing."""
from __future__ import annotations

import dagster as dg
import duckdb
import pandas as pd

from lrl_pipeline.assets import features, ingest
from lrl_pipeline.definitions import build_definitions
from lrl_pipeline.storage import LRLDatabase
from lrl_pipeline.resources import ArtifactStoreResource


def test_materializing_twice_gives_the_same_tables_and_the_same_head(pipeline):
    """Ingest and features rebuilt give identical tables; a head refitted on the same extractor is identical."""
    names = ["valid_unit_features", "valid_experiments", "valid_exposures", "valid_outcomes", "quarantine",
             "unit_features", "training_examples"]

    def snapshot() -> dict[str, pd.DataFrame]:
        with duckdb.connect(str(pipeline.db), read_only=True) as con:
            out = {}
            for name in names:
                frame = con.execute(f"SELECT * FROM pipeline.{name}").df()  # fixed names above
                frame = frame.drop(columns=[c for c in frame.columns if c.endswith("_at")])
                out[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
            return out

    first = snapshot()  # the fixture's retrain materialized them once
    assets = [ingest.validated_tables, features.unit_features, features.training_examples]
    resources = {"database": LRLDatabase(database=str(pipeline.db)),
                 "artifacts": ArtifactStoreResource(root=str(pipeline.artifacts))}
    assert dg.materialize(assets, resources=resources, instance=pipeline.instance).success
    for name, frame in snapshot().items():
        pd.testing.assert_frame_equal(first[name], frame, obj=name)

    defs = build_definitions(pipeline.db, pipeline.artifacts)
    experiment = pipeline.experiments[0]
    query = ("SELECT * EXCLUDE (fitted_at) FROM pipeline.experiment_heads WHERE experiment_id = ? "
             "ORDER BY arm_index, metric")

    def heads() -> pd.DataFrame:
        with duckdb.connect(str(pipeline.db), read_only=True) as con:
            return con.execute(query, [experiment]).df()

    first = heads()
    result = defs.resolve_job_def("head_job").execute_in_process(instance=pipeline.instance, partition_key=experiment)
    assert result.success
    second = heads()
    assert len(first) > 0
    pd.testing.assert_frame_equal(first, second)
