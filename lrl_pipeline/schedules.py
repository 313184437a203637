"""The retrain schedule: weekly by default, any cron via ``$LRL_RETRAIN_CRON``."""
from __future__ import annotations

import os

import dagster as dg

from lrl_pipeline.jobs import retrain_job

__all__ = ["DEFAULT_RETRAIN_CRON", "retrain_cron", "build_retrain_schedule"]

DEFAULT_RETRAIN_CRON = "0 3 * * 0"
"""Sundays at 03:00 UTC."""


def retrain_cron() -> str:
    """``$LRL_RETRAIN_CRON`` if set and not blank, else :data:`DEFAULT_RETRAIN_CRON`."""
    return os.environ.get("LRL_RETRAIN_CRON", "").strip() or DEFAULT_RETRAIN_CRON


def build_retrain_schedule(cron: str | None = None) -> dg.ScheduleDefinition:
    """The full-retrain schedule, running from the moment the UI starts.

    Only the pooled model is retrained here; the experiment sensor then refits
    every head on the new extractor and runs the report. Raises ``ValueError``
    naming ``LRL_RETRAIN_CRON`` when the cron expression is invalid.
    """
    cron = cron or retrain_cron()
    try:
        return dg.ScheduleDefinition(
            name="retrain_schedule",
            job=retrain_job,
            cron_schedule=cron,
            execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description="Full retrain of the LR-learner and the T-learner baselines.",
        )
    except dg.DagsterInvalidDefinitionError as error:
        raise ValueError(f"invalid retrain cron {cron!r} (set by LRL_RETRAIN_CRON): {error}") from error
