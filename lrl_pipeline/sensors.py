"""The experiment sensor: partitions for new experiments, heads for stale ones, then the report.

One mechanism keeps heads current. Each tick reads ``raw.experiments`` and
``pipeline.head_status`` (read-only, with a short retry) and the current
extractor version, then:

- adds a dynamic partition for every experiment it has not seen;
- requests a head run for every experiment whose head is not on the current
  extractor: a new experiment, or all of them after a retrain. Neighbouring
  partitions go in one run (a partition range), and the run key carries the
  extractor version, so a restart, a repeated tick or a retried tick never
  fits the same head on the same extractor twice;
- once no head is stale, requests the evaluation report for that version.

It stands aside while a retrain or a command-line run is in flight, and for
versions whose command-line retrain fits its own heads.
"""
# No `from __future__ import annotations`: Dagster reads the context and resource
# annotations at definition time to inject them.
import json
import time

import dagster as dg

from lrl_pipeline.jobs import head_job, report_job
from lrl_pipeline.partitions import EXPERIMENT_PARTITIONS, experiment_partitions
from lrl_pipeline.resources import ArtifactStoreResource, DatabaseBusy, LRLDatabase
from lrl_pipeline.runs import HEADS_BY_TAG, IN_FLIGHT, PIPELINE_TAG, is_alive
from lrl_pipeline.state import contiguous_blocks, read_head_state

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
RUNNER_GRACE_S = 900
"""How long a command-line retrain owns its version's heads before the sensor takes over (a crash)."""


def head_run_request(keys: list[str], version: str) -> dg.RunRequest:
    """One head run over neighbouring partitions ``keys``; the run key names them and the version."""
    if len(keys) == 1:
        return dg.RunRequest(job_name=head_job.name, partition_key=keys[0], run_key=f"{keys[0]}:{version}")
    return dg.RunRequest(
        job_name=head_job.name,
        run_key=f"{keys[0]}..{keys[-1]}:{version}",
        tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
    )


def busy_reason(instance: dg.DagsterInstance, version: str) -> str | None:
    """Why the sensor should not request work now, or None."""
    records = instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT, tags={PIPELINE_TAG: ["retrain", "cli"]}))
    for record in records:
        if is_alive(record.dagster_run.tags):
            return f"run {record.dagster_run.run_id} ({record.dagster_run.job_name}) is in flight"
    event = instance.get_latest_materialization_event(dg.AssetKey("lr_learner"))
    if event is not None:
        landed = event.asset_materialization.metadata.get("extractor_version")
        run = instance.get_run_by_id(event.run_id)
        if (landed is not None and landed.value == version and run is not None
                and run.tags.get(HEADS_BY_TAG) == "runner" and time.time() - event.timestamp < RUNNER_GRACE_S):
            return f"the command-line retrain that trained {version} fits its heads itself"
    return None


@dg.sensor(
    name="experiment_sensor",
    jobs=[head_job, report_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="New experiments get a partition and a head; after a retrain every head is refitted.",
)
def experiment_sensor(context: dg.SensorEvaluationContext, database: LRLDatabase,
                      artifacts: ArtifactStoreResource):
    try:
        with database.connect(read_only=True) as con:
            state = read_head_state(con)
    except FileNotFoundError:
        return dg.SkipReason(f"no database at {database.path} yet")
    except DatabaseBusy:
        return dg.SkipReason("a run holds the database; trying again next tick")
    except LookupError as error:
        return dg.SkipReason(str(error))

    known = context.instance.get_dynamic_partitions(EXPERIMENT_PARTITIONS)
    new = [e for e in state.registry if e not in set(known)]
    adds = [experiment_partitions.build_add_request(new)] if new else []
    version = artifacts.store().current_version()
    cursor = json.loads(context.cursor) if context.cursor else {}
    if version is None:
        return dg.SensorResult(dynamic_partitions_requests=adds, cursor=context.cursor,
                               skip_reason="no extractor yet: run `lrl retrain` first")
    busy = busy_reason(context.instance, version)
    if busy:
        return dg.SensorResult(dynamic_partitions_requests=adds, cursor=context.cursor, skip_reason=busy)

    requested = set(cursor.get("requested", [])) if cursor.get("version") == version else set()
    stale = state.stale(version)
    todo = [e for e in stale if e not in requested]
    requests = [head_run_request(block, version) for block in contiguous_blocks([*known, *new], todo)]
    report = cursor.get("report")
    if not stale and state.report_version != version and report != version:
        requests.append(dg.RunRequest(job_name=report_job.name, run_key=f"report:{version}"))
        report = version
    new_cursor = json.dumps({"version": version, "requested": sorted(requested | set(todo)), "report": report})
    if not requests:
        return dg.SensorResult(dynamic_partitions_requests=adds, cursor=new_cursor,
                               skip_reason=f"every head is on extractor {version}")
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=adds, cursor=new_cursor)
