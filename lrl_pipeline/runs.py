"""Run tags that tell the sensor who is doing what, and clean-up of command-line runs that died.

A command-line run executes inside the ``lrl`` process. If that process is
killed, Dagster never hears the run end: it stays "started" and keeps its
slot in the ``duckdb`` pool, which would block every later run. The pid and
host in its tags let both the sensor and the next command tell a live run
from a dead one.
"""
from __future__ import annotations

import os
import socket

import dagster as dg

__all__ = ["PIPELINE_TAG", "IN_FLIGHT", "cli_tags", "is_alive", "reap_dead_cli_runs"]

PIPELINE_TAG = "lrl/pipeline"
"""``retrain`` on scheduled retrains, ``cli`` on command-line runs."""

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def cli_tags() -> dict[str, str]:
    """Tags of a run executed by this process."""
    return {PIPELINE_TAG: "cli", "lrl/pid": str(os.getpid()), "lrl/host": socket.gethostname()}


def is_alive(tags) -> bool:
    """False only for a command-line run whose process on this host is gone; True otherwise."""
    pid, host = tags.get("lrl/pid"), tags.get("lrl/host")
    if pid is None or host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def reap_dead_cli_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark in-flight command-line runs of dead processes failed and free their pool slots."""
    reaped = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT, tags={PIPELINE_TAG: "cli"})):
        run = record.dagster_run
        if not is_alive(run.tags):
            instance.report_run_failed(run, message=f"the lrl process {run.tags.get('lrl/pid')} that ran it is gone")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            reaped.append(run.run_id)
    return reaped
