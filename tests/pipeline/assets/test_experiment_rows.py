"""A new experiment's rows are validated once, by its own partition run (lrl_pipeline/assets/experiment_rows.py)."""
from __future__ import annotations

import dagster as dg

from lrl_pipeline.storage import write_raw_tables
from lrl_pipeline.runner import run_retrain, run_update

from tests.helpers import query


def test_each_raw_row_is_validated_once_a_new_experiment_by_its_own_partition(pipeline, fast_run_config):
    def validated_here() -> int:
        event = pipeline.instance.get_latest_materialization_event(dg.AssetKey("experiment_rows"))
        return event.asset_materialization.metadata["validated_here"].value

    write_raw_tables(pipeline.db, pipeline.new_rows, replace=False)
    run_update(pipeline.db, pipeline.artifacts, progress=lambda _: None, instance=pipeline.instance)
    assert validated_here() == 1  # the new experiment, validated by its partition run
    valid = query(pipeline.db, "SELECT count(*) AS n FROM pipeline.valid_exposures WHERE experiment_id = ?",
                  [pipeline.new_experiment])
    raw = query(pipeline.db, "SELECT count(*) AS n FROM raw.exposures WHERE experiment_id = ?",
                [pipeline.new_experiment])
    assert int(valid["n"][0]) == int(raw["n"][0]) > 0
    # A retrain validates everything once; its heads read those rows and validate none again.
    run_retrain(pipeline.db, pipeline.artifacts, progress=lambda _: None, instance=pipeline.instance,
                run_config=fast_run_config)
    assert validated_here() == 0
