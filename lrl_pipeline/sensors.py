"""The experiment sensor: partitions for new experiments, heads for stale ones, then the report.

Each tick reads ``raw.experiments`` and ``pipeline.head_status`` (read-only,
with a short retry) and the current extractor version, and starts what the
one planner (:func:`lrl_pipeline.planning.plan_heads`) plans:

- a dynamic partition for every experiment it has not seen;
- a head run for every experiment whose head is not on the current
  extractor and that no live run is fitting: a new experiment, or all of
  them after a retrain. Neighbouring partitions go in one run (a partition
  range); the run key carries the extractor version, so a restart or a
  repeated tick never fits the same head on the same extractor twice;
- once no head is stale, the evaluation report for that version.

While a retrain is in flight it adds partitions but starts no head run: the
retrain's extractor would make them stale at once.
"""
# No `from __future__ import annotations`: Dagster reads the context and resource
# annotations at definition time to inject them.
import json

import dagster as dg

from lrl_pipeline.jobs import head_job, report_job
from lrl_pipeline.partitions import experiment_partitions
from lrl_pipeline.planning import EXTRACTOR_TAG, head_run_tags, plan_heads
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.storage import DatabaseBusy, LRLDatabase, read_head_state


def head_run_request(keys: list[str], version: str, tokens: dict[str, str] | None = None) -> dg.RunRequest:
    """One head run over neighbouring partitions ``keys``; the run key names them, the version and
    any changed experiment's token (so a grown arm gets a fit of its own on the same version)."""
    changed = "".join(f":{tokens[k]}" for k in keys if tokens and tokens.get(k, k) != k)
    if len(keys) == 1:
        return dg.RunRequest(job_name=head_job.name, partition_key=keys[0],
                             run_key=f"{keys[0]}:{version}{changed}", tags={EXTRACTOR_TAG: version})
    return dg.RunRequest(job_name=head_job.name, run_key=f"{keys[0]}..{keys[-1]}:{version}{changed}",
                         tags=head_run_tags(keys, version))


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
        return dg.SkipReason(f"no database at {database.database} yet")
    except DatabaseBusy:
        return dg.SkipReason("a run holds the database; trying again next tick")
    except LookupError as error:
        return dg.SkipReason(str(error))

    version = artifacts.store().current_version()
    if version is None:
        known = set(context.instance.get_dynamic_partitions(experiment_partitions.name))
        new = [e for e in state.registry if e not in known]
        return dg.SensorResult(dynamic_partitions_requests=[experiment_partitions.build_add_request(new)] if new
                               else [], cursor=context.cursor, skip_reason="no extractor yet: run `lrl retrain` first")
    cursor = json.loads(context.cursor) if context.cursor else {}
    requested = frozenset(cursor.get("requested", [])) if cursor.get("version") == version else frozenset()
    plan = plan_heads(context.instance, state, version, requested=requested)
    adds = [experiment_partitions.build_add_request(plan.new_partitions)] if plan.new_partitions else []
    requests = [head_run_request(block, version, plan.tokens) for block in plan.runs]
    report = cursor.get("report")
    if plan.report_due and report != version:
        requests.append(dg.RunRequest(job_name=report_job.name, run_key=f"report:{version}"))
        report = version
    new_cursor = json.dumps({"version": version, "requested": sorted(requested | set(plan.tokens.values())),
                             "report": report})
    if not requests:
        if plan.retrain_run:
            reason = f"retrain run {plan.retrain_run} is in flight; heads wait for its extractor"
        elif plan.in_flight:
            reason = f"{len(plan.in_flight)} experiment(s) get heads from runs in flight"
        else:
            reason = f"every head is on extractor {version}"
        return dg.SensorResult(dynamic_partitions_requests=adds, cursor=new_cursor, skip_reason=reason)
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=adds, cursor=new_cursor)
