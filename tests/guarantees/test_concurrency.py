"""Overlapping work waits instead of failing: a scheduled retrain, `lrl update`, `lrl score` and sensor ticks at once."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import dagster as dg
import duckdb
import numpy as np

from lrl_core.artifacts import ArtifactStore
from lrl_pipeline.storage import write_raw_tables, LRLDatabase
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.runner import score_units

from tests.helpers import REPO, raw_checksums


# What the schedule runs: retrain_job (validation, features, a new extractor), heads left to the sensor.
_CHILD_SCHEDULED_RETRAIN = textwrap.dedent("""
    import sys
    import dagster as dg
    from lrl_pipeline.definitions import build_definitions
    from lrl_pipeline.runs import PIPELINE_TAG
    job = build_definitions(sys.argv[1], sys.argv[2]).resolve_job_def("retrain_job")
    result = job.execute_in_process(instance=dg.DagsterInstance.get(), tags={PIPELINE_TAG: "retrain"},
        run_config={"ops": {"lr_learner": {"config": {"max_epochs": 3, "d": 4, "hidden": 16}},
                            "t_learners": {"config": {"n_estimators": 5, "max_depth": 2}}}})
    sys.exit(0 if result.success else 1)
""")


def test_scheduled_retrain_update_score_and_sensor_at_once_all_succeed(pipeline, tiny_raw, tmp_path):
    from lrl_pipeline.sensors import experiment_sensor

    write_raw_tables(pipeline.db, pipeline.new_rows, replace=False)  # update has an experiment to fit
    before = raw_checksums(pipeline.db)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("LRL_ARTIFACTS_DIR", "LRL_DUCKDB_PATH")}
    env.update(DAGSTER_HOME=str(home), PYTHONPATH=str(REPO))
    # The instance's storage exists before anything runs at once, as it does wherever the daemon has
    # ever run: two processes creating the SQLite storage of a brand-new home race in Dagster itself.
    subprocess.run([sys.executable, "-c", "import dagster; i = dagster.DagsterInstance.get(); "
                    "i.get_runs(limit=1); i.get_asset_keys(); i.all_instigator_state()"],
                   env=env, check=True, capture_output=True)
    commands = {
        "retrain": [sys.executable, "-c", _CHILD_SCHEDULED_RETRAIN, str(pipeline.db), str(pipeline.artifacts)],
        "update": [sys.executable, "-m", "lrl_pipeline.cli", "update", "--db", str(pipeline.db)],
    }
    children = {name: subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
                for name, command in commands.items()}
    resources = {"database": LRLDatabase(database=str(pipeline.db)),
                 "artifacts": ArtifactStoreResource(root=str(pipeline.artifacts))}
    units = tiny_raw["unit_features"].head(20)
    ticks, scored = [], []
    try:
        # Meanwhile this process plays the daemon's sensor and `lrl score` (both read-only), in turn.
        while any(child.poll() is None for child in children.values()):
            context = dg.build_sensor_context(instance=pipeline.instance, resources=resources)
            ticks.append(experiment_sensor(context))  # must not raise: it runs or skips
            scored.append(score_units(pipeline.db, pipeline.artifacts, units))  # must not raise: it waits
            time.sleep(2.0)
        outputs = {name: child.communicate(timeout=5)[0] for name, child in children.items()}
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
    for name, child in children.items():
        assert child.returncode == 0, (name, outputs[name])
    assert ticks and all(isinstance(t, (dg.SensorResult, dg.SkipReason)) for t in ticks)
    for scores in scored:
        assert set(pipeline.experiments) <= set(scores["experiment_id"]) and np.isfinite(scores["cate"]).all()

    assert raw_checksums(pipeline.db) == before
    store = ArtifactStore(pipeline.artifacts)
    assert store.current_version() != store.versions()[0]  # the retrain landed
    with duckdb.connect(str(pipeline.db), read_only=True) as con:
        heads = con.execute("SELECT experiment_id, extractor_version FROM pipeline.experiment_heads").df()
        registry = set(con.execute("SELECT experiment_id FROM raw.experiments").df()["experiment_id"])
    assert set(heads["experiment_id"]) == registry and set(heads["extractor_version"]) <= set(store.versions())
    # After the dust settles, scoring the same units sees every experiment, the new one included.
    assert set(score_units(pipeline.db, pipeline.artifacts, tiny_raw["unit_features"].head(5))["experiment_id"]) \
        == registry
