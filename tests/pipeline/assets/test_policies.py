"""Per-experiment policies after the heads (lrl_pipeline/assets/policies.py)."""
from __future__ import annotations

import dagster as dg
import pandas as pd

from lrl_pipeline.assets import policies
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.storage import LRLDatabase, read_table, write_raw_tables


def test_every_experiment_gets_a_policy_with_its_objective_and_values(pipeline):
    database = LRLDatabase(database=str(pipeline.db))
    with database.connect(read_only=True) as con:
        # The retrain's head runs fitted a policy for every experiment, with the default objective.
        values, segments = read_table(con, "policy_values"), read_table(con, "policy_segments")
        metrics = sorted(set(read_table(con, "valid_outcomes")["metric"]))
    assert set(values["experiment_id"]) == set(pipeline.experiments) == set(segments["experiment_id"])
    assert set(values["policy"]) == {"tree", "control", "best_arm", "argmax"} and set(values["estimator"]) == {"dr", "ips"}
    assert len(values) == len(pipeline.experiments) * 4 * 2 * len(metrics)
    assert (segments["objective"] == f"{metrics[0]} x 1").all()

    first, second = pipeline.experiments[:2]
    write_raw_tables(pipeline.db, {"policy_objectives": pd.DataFrame({
        "experiment_id": [first, first, second], "metric": [metrics[1], metrics[0], "not_a_metric"],
        "weight": [1.0, 0.0, 1.0], "guardrail_min": [None, -0.5, None]})})
    context = dg.build_asset_context(partition_key_range=dg.PartitionKeyRange(first, second),
                                     instance=pipeline.instance)
    result = policies.experiment_policies(context=context, database=database,
                                          artifacts=ArtifactStoreResource(root=str(pipeline.artifacts)))
    assert result.metadata["policies"] == 1 and result.metadata["skipped"] == 1
    # The one policy fitted has its page, named in the metadata.
    page = result.metadata["report"].path
    assert page.endswith(f"policy-{first}-{ArtifactStoreResource(root=str(pipeline.artifacts)).store().current_version()}.html")
    assert "Segments and the arm each gets" in open(page, encoding="utf-8").read()
    with database.connect(read_only=True) as con:
        segments = read_table(con, "policy_segments")
    assert set(segments.loc[segments["experiment_id"] == first, "objective"]) == {
        f"{metrics[1]} x 1; {metrics[0]} >= -0.5"}
    # An experiment whose objective names a metric it lacks gets no policy, and says why.
    assert second not in set(segments["experiment_id"])
    assert "not_a_metric" in result.metadata["skipped_reasons"].data[second]
