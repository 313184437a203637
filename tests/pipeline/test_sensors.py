"""The experiment sensor: new partitions, idempotent head requests, refits after a retrain, the report."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import dagster as dg
import pytest

from lrl_core.artifacts import ArtifactStore
from lrl_pipeline.definitions import build_definitions
from lrl_pipeline.storage import write_raw_tables, LRLDatabase
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.planning import RANGE_END, RANGE_START
from lrl_pipeline.runner import run_retrain
from lrl_pipeline.sensors import experiment_sensor


def tick(pipeline, cursor=None) -> dg.SensorResult:
    """One evaluation, applying its partition requests as the daemon would."""
    resources = {"database": LRLDatabase(database=str(pipeline.db)),
                 "artifacts": ArtifactStoreResource(root=str(pipeline.artifacts))}
    context = dg.build_sensor_context(instance=pipeline.instance, cursor=cursor, resources=resources)
    result = experiment_sensor(context)
    if isinstance(result, dg.SensorResult):
        for request in result.dynamic_partitions_requests or []:
            pipeline.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def added(result) -> list[str]:
    return [key for request in (result.dynamic_partitions_requests or []) for key in request.partition_keys]


def execute(pipeline, request: dg.RunRequest) -> None:
    """Run what the sensor asked for, in process."""
    defs = build_definitions(pipeline.db, pipeline.artifacts)
    result = defs.resolve_job_def(request.job_name).execute_in_process(
        instance=pipeline.instance, partition_key=request.partition_key, tags=request.tags)
    assert result.success


def test_a_new_experiment_gets_one_partition_and_one_run_request_once(pipeline):
    version = ArtifactStore(pipeline.artifacts).current_version()
    first = tick(pipeline)
    assert not first.run_requests and added(first) == []  # heads and report already current

    write_raw_tables(pipeline.db, pipeline.new_rows, replace=False)
    second = tick(pipeline, first.cursor)
    assert added(second) == [pipeline.new_experiment]
    assert [(r.job_name, r.partition_key, r.run_key) for r in second.run_requests] == [
        ("head_job", pipeline.new_experiment, f"{pipeline.new_experiment}:{version}")]

    # A second tick (or a restart: the cursor is stored by the instance) adds and requests nothing.
    third = tick(pipeline, second.cursor)
    assert added(third) == [] and not third.run_requests

    execute(pipeline, second.run_requests[0])
    fourth = tick(pipeline, third.cursor)
    assert added(fourth) == [] and not fourth.run_requests


def test_a_new_extractor_version_requests_every_refit_then_the_report(pipeline, fast_run_config):
    old = ArtifactStore(pipeline.artifacts).current_version()
    cursor = tick(pipeline).cursor
    # The scheduled path: the retrain job trains a new extractor and leaves the heads to the sensor.
    defs = build_definitions(pipeline.db, pipeline.artifacts)
    assert defs.resolve_job_def("retrain_job").execute_in_process(
        instance=pipeline.instance, run_config=fast_run_config).success
    new = ArtifactStore(pipeline.artifacts).current_version()
    assert new != old

    refits = tick(pipeline, cursor)
    assert len(refits.run_requests) == 1  # neighbouring partitions share one run
    request = refits.run_requests[0]
    assert request.job_name == "head_job" and request.run_key.endswith(f":{new}")
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == (pipeline.experiments[0], pipeline.experiments[-1])
    assert json.loads(refits.cursor)["requested"] == pipeline.experiments
    assert not tick(pipeline, refits.cursor).run_requests  # requested once per version

    execute(pipeline, request)
    report = tick(pipeline, refits.cursor)
    assert [(r.job_name, r.run_key) for r in report.run_requests] == [("report_job", f"report:{new}")]
    execute(pipeline, report.run_requests[0])
    assert not tick(pipeline, report.cursor).run_requests


def test_a_new_experiment_gets_its_head_at_the_first_tick_after_a_command_line_retrain(pipeline, fast_run_config):
    # `lrl retrain` fits every head itself; nothing of the old grace period keeps the sensor away.
    run_retrain(pipeline.db, pipeline.artifacts, progress=lambda _: None, instance=pipeline.instance,
                run_config=fast_run_config)
    version = ArtifactStore(pipeline.artifacts).current_version()
    assert not tick(pipeline).run_requests  # every head is on the new extractor: nothing fitted twice

    write_raw_tables(pipeline.db, pipeline.new_rows, replace=False)
    first = tick(pipeline)
    assert [(r.job_name, r.partition_key, r.run_key) for r in first.run_requests] == [
        ("head_job", pipeline.new_experiment, f"{pipeline.new_experiment}:{version}")]


def test_an_arm_launched_in_a_trained_experiment_is_requested_at_the_next_tick(pipeline):
    import pandas as pd

    from lrl_pipeline.storage import read_raw_table

    version = ArtifactStore(pipeline.artifacts).current_version()
    cursor = tick(pipeline).cursor  # nothing to do
    experiment = pipeline.experiments[1]
    with LRLDatabase(database=str(pipeline.db)).connect(read_only=True) as con:
        exposures = read_raw_table(con, "exposures")
    unit = exposures.loc[exposures["experiment_id"] != experiment, "unit_id"].iloc[:1]
    grown = pd.DataFrame({"unit_id": unit.to_numpy(), "experiment_id": experiment, "arm": "treatment_b"})
    write_raw_tables(pipeline.db, {"exposures": grown.astype(exposures.dtypes.to_dict())}, replace=False)

    first = tick(pipeline, cursor)
    assert [(r.partition_key, r.run_key) for r in first.run_requests] == [
        (experiment, f"{experiment}:{version}:{experiment}@arms=3")]
    assert not tick(pipeline, first.cursor).run_requests  # asked for once


def test_experiments_a_live_run_is_fitting_are_not_requested_again(pipeline):
    from dagster._core.test_utils import create_run_for_test

    from lrl_pipeline.planning import head_run_tags

    write_raw_tables(pipeline.db, pipeline.new_rows, replace=False)
    tick(pipeline)  # adds the partition
    version = ArtifactStore(pipeline.artifacts).current_version()
    live = create_run_for_test(pipeline.instance, job_name="head_job", status=dg.DagsterRunStatus.STARTED,
                               tags=head_run_tags([pipeline.new_experiment], version))
    waiting = tick(pipeline)
    assert not waiting.run_requests and "runs in flight" in waiting.skip_reason.skip_message
    pipeline.instance.report_run_failed(live)
    assert [r.partition_key for r in tick(pipeline).run_requests] == [pipeline.new_experiment]


def test_a_tick_skips_while_another_process_holds_the_database(pipeline):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(pipeline.db)!r})
        print("locked", flush=True)
        time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = tick(pipeline)
    finally:
        holder.kill()
        holder.wait()
    skip = result.skip_reason if isinstance(result, dg.SensorResult) else result
    assert isinstance(skip, dg.SkipReason) and "holds the database" in skip.skip_message


def test_a_tick_without_a_database_skips(pipeline, tmp_path):
    pipeline.db = tmp_path / "missing.duckdb"
    result = tick(pipeline)
    assert isinstance(result, dg.SkipReason) and "no database" in result.skip_message


@pytest.mark.parametrize("status", [dg.DefaultSensorStatus.RUNNING])
def test_the_sensor_runs_by_default(status):
    assert experiment_sensor.default_status == status
