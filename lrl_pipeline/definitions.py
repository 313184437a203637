"""The Dagster definitions of the project: ``defs``, loaded by ``dagster dev`` and the ``lrl`` command.

Importing this module touches no GPU and no database: the device is chosen
inside ``LRLearner.fit``, and files are opened only when something runs.
"""
from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from lrl_pipeline import checks
from lrl_pipeline.assets import (
    effects, experiment_reports, experiment_rows, features, heads, ingest, policies, reports, segments, training,
)
from lrl_pipeline.jobs import ALL_JOBS
from lrl_pipeline.paths import artifacts_dir, db_path
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.storage import LRLDatabase
from lrl_pipeline.schedules import build_retrain_schedule
from lrl_pipeline.sensors import experiment_sensor

__all__ = ["build_definitions", "defs"]

ASSETS = [
    *ingest.raw_tables, ingest.validated_tables,
    features.unit_features, features.training_examples,
    training.lr_learner, training.t_learners, effects.effects_across_experiments, segments.segment_effects,
    experiment_rows.experiment_rows, heads.experiment_heads,
    experiment_reports.head_evaluation, policies.experiment_policies, reports.evaluation,
]


def build_definitions(db: str | os.PathLike | None = None, artifacts: str | os.PathLike | None = None,
                      retrain_cron: str | None = None) -> dg.Definitions:
    """Assets, checks, jobs, the retrain schedule and the experiment sensor over one database.

    ``db`` defaults to :func:`lrl_pipeline.paths.db_path` (``$LRL_DUCKDB_PATH`` or
    ``./data/lrl.duckdb``), ``artifacts`` to :func:`~lrl_pipeline.paths.artifacts_dir`,
    ``retrain_cron`` to ``$LRL_RETRAIN_CRON`` or weekly.
    """
    database = db_path(db)
    store = Path(artifacts).expanduser().resolve() if artifacts is not None else artifacts_dir(database)
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=[checks.lr_not_worse_than_t_learners, checks.every_experiment_has_current_head],
        jobs=ALL_JOBS,
        schedules=[build_retrain_schedule(retrain_cron)],
        sensors=[experiment_sensor],
        resources={
            "database": LRLDatabase(database=str(database)),
            "artifacts": ArtifactStoreResource(root=str(store)),
            # Runs the data-parallel fit's torchrun; a deployment swaps in PipesK8sClient or another.
            "pipes_client": dg.PipesSubprocessClient(),
        },
    )


defs = build_definitions()
