"""Run tags, clean-up of command-line runs that died, and what a failed run leaves the user.

A command-line run executes inside the ``lrl`` process. If that process is
killed, Dagster never hears the run end: it stays "started" and keeps its
slot in the ``duckdb`` pool, which would block every later run. The pid and
host in its tags let both the sensor and the next command tell a live run
from a dead one.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from pathlib import Path

import dagster as dg

__all__ = ["PIPELINE_TAG", "IN_FLIGHT", "cli_tags", "is_alive", "reap_dead_cli_runs", "failure_summary",
           "write_run_log"]

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


def _root_message(error) -> str:
    """The message of the innermost cause: Dagster wraps a step's own error in one that only names the op."""
    while error.cause is not None:
        error = error.cause
    message = " ".join(error.message.split())
    # "dagster._core.definitions.events.Failure: what to do": a Failure's text is the message
    # meant for people; other errors keep their short class name ("ValueError: ...").
    qualified, _, text = message.partition(": ")
    if text and qualified.rsplit(".", 1)[-1] == error.cls_name:
        return text if error.cls_name == "Failure" else f"{error.cls_name}: {text}"
    return message


def failure_summary(step_failures) -> str:
    """One line naming each failed step and the innermost cause of its error."""
    failures = [f"{e.step_key}: {_root_message(e.step_failure_data.error)}" for e in step_failures]
    return "; ".join(failures) or "see the run in the Dagster UI"


def write_run_log(instance: dg.DagsterInstance, run_id: str) -> Path:
    """Every event of a run, with the full error and stack of each failure, in a text file under the
    instance's ``logs/`` folder; its path. What the one-line failure leaves out is there."""
    folder = Path(instance.root_directory) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for event in instance.all_logs(run_id):
        when = dt.datetime.fromtimestamp(event.timestamp, dt.timezone.utc)
        lines.append(f"{when:%Y-%m-%d %H:%M:%S} {logging.getLevelName(event.level)} "
                     f"{event.step_key or '-'}: {event.message}")
        error = event.error_info or (event.dagster_event.step_failure_data.error
                                     if event.dagster_event and event.dagster_event.is_step_failure else None)
        if error is not None:
            lines.append(error.to_string())
    path = folder / f"{run_id}.log"
    path.write_text("\n".join(lines) + "\n")
    return path
