"""Jobs: a full retrain, head fits with their reports (one partition or a range per run), the evaluation."""
from __future__ import annotations

import dagster as dg

from lrl_pipeline.runs import PIPELINE_TAG

__all__ = ["retrain_job", "head_job", "report_job", "ALL_JOBS"]

# The raw tables are external (the platform writes them): never part of a job.
_pipeline = dg.AssetSelection.all() - dg.AssetSelection.key_prefixes("raw")

retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.groups("ingest", "features", "training", "effects") & _pipeline,
    description="Validate, prepare features, train the LR-learner and the T-learner baselines, estimate the "
    "covariance of effects across experiments and the metric proxies. "
    "The new extractor's heads and report follow from the experiment sensor.",
    tags={PIPELINE_TAG: "retrain"},
)

head_job = dg.define_asset_job(
    "head_job",
    selection=dg.AssetSelection.assets("experiment_rows", "experiment_heads", "head_evaluation", "experiment_policies"),
    description="Fit experiment heads on the current extractor, evaluate them and fit each experiment's policy: "
    "one partition, or a partition range per run.",
)

report_job = dg.define_asset_job(
    "report_job",
    selection=dg.AssetSelection.assets("evaluation"),
    description="Evaluate the LR-learner against the T-learners and check the heads.",
)

ALL_JOBS = [retrain_job, head_job, report_job]
