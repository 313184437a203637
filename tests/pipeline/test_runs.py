"""Runs of a killed `lrl` process neither block the duckdb pool nor keep the sensor waiting."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from lrl_core.artifacts import ArtifactStore
from lrl_pipeline.planning import head_run_tags
from lrl_pipeline.storage import write_raw_tables, LRLDatabase
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.runner import run_update
from lrl_pipeline.runs import PIPELINE_TAG, reap_dead_cli_runs
from lrl_pipeline.sensors import experiment_sensor

POOLED = {"concurrency": {"pools": {"default_limit": 1, "granularity": "op"}}}


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def cli_run(instance, pid: int, extra: dict | None = None):
    tags = {PIPELINE_TAG: "cli", "lrl/pid": str(pid), "lrl/host": socket.gethostname(), **(extra or {})}
    return create_run_for_test(instance, job_name="head_job", status=dg.DagsterRunStatus.STARTED, tags=tags)


@pytest.mark.timeout(240)
def test_a_dead_runs_pool_slot_is_freed_before_the_next_command(pipeline):
    write_raw_tables(pipeline.db, pipeline.new_rows, replace=False)
    with dg.instance_for_test(overrides=POOLED) as instance:
        instance.add_dynamic_partitions("experiment", pipeline.experiments)
        instance.event_log_storage.set_concurrency_slots("duckdb", 1)
        dead = cli_run(instance, dead_pid())
        instance.event_log_storage.claim_concurrency_slot("duckdb", dead.run_id, "experiment_heads")

        fitted = run_update(pipeline.db, pipeline.artifacts, progress=lambda _: None, instance=instance)

        assert fitted == [pipeline.new_experiment]  # would wait forever on the dead run's slot
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE


def test_the_sensor_waits_for_a_live_command_line_run_only(pipeline):
    write_raw_tables(pipeline.db, pipeline.new_rows, replace=False)
    resources = {"database": LRLDatabase(database=str(pipeline.db)),
                 "artifacts": ArtifactStoreResource(root=str(pipeline.artifacts))}
    version = ArtifactStore(pipeline.artifacts).current_version()

    def tick():
        return experiment_sensor(dg.build_sensor_context(instance=pipeline.instance, resources=resources))

    live = cli_run(pipeline.instance, os.getpid(), head_run_tags([pipeline.new_experiment], version))
    waiting = tick()
    assert not waiting.run_requests and "in flight" in waiting.skip_reason.skip_message

    pipeline.instance.report_run_failed(live)
    # Killed: it never reports its end, but its pid is gone, so its experiment is free again.
    cli_run(pipeline.instance, dead_pid(), head_run_tags([pipeline.new_experiment], version))
    assert [r.partition_key for r in tick().run_requests] == [pipeline.new_experiment]
    assert reap_dead_cli_runs(pipeline.instance)


def test_a_failed_run_says_one_line_and_leaves_its_full_log_in_a_file(pipeline, tiny_raw):
    import re

    from lrl_pipeline.runner import PipelineError, run_retrain

    write_raw_tables(pipeline.db, {name: frame.iloc[:0] for name, frame in tiny_raw.items()})
    with pytest.raises(PipelineError) as failure:
        run_retrain(pipeline.db, pipeline.artifacts, progress=lambda _: None, instance=pipeline.instance)
    message = str(failure.value)
    assert "\n" not in message and "validated_tables: no valid experiment" in message
    log = Path(re.search(r"full log: (\S+)\)$", message).group(1))
    text = log.read_text()
    assert log.parent == Path(pipeline.instance.root_directory) / "logs"
    # The failed step, its whole error with the stack, and the steps it stopped, in the file.
    assert 'Execution of step "validated_tables" failed' in text and "no valid experiment" in text
    assert 'File "' in text and "unit_features" in text
