"""Asset checks on the evaluation report: what must hold after every retrain.

(The third guard, no NaN CATE, runs inside each head fit: see
``assets/heads.py``.)
"""
# No `from __future__ import annotations`: Dagster reads the resource annotations
# at definition time to inject them.
import dagster as dg

from lrl_pipeline.assets.reports import LR_MODEL, evaluation
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.storage import LRLDatabase, read_head_state, read_table

MU_RISK_TOLERANCE = 0.0
"""Relative slack: the LR-learner's mean validation mu-risk may exceed the best T-learner's by this share."""


@dg.asset_check(asset=evaluation, pool="duckdb",
                description="The pooled model's mean validation mu-risk is not worse than any T-learner's.")
def lr_not_worse_than_t_learners(database: LRLDatabase) -> dg.AssetCheckResult:
    with database.connect() as con:
        rows = read_table(con, "evaluation")
    validation = rows[rows["split"] == "validation"]
    # Compare on the cells every model scored, so no model gains from a cell another skipped.
    cells = validation.pivot_table(index=["experiment_id", "arm", "metric"], columns="model",
                                   values="mu_risk", aggfunc="first").dropna()
    if cells.empty or LR_MODEL not in cells or cells.shape[1] < 2:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "no validation cells scored by every model"})
    means = cells.astype(float).mean()
    others = means.drop(LR_MODEL)
    best = others.idxmin()
    return dg.AssetCheckResult(
        passed=bool(means[LR_MODEL] <= others[best] * (1 + MU_RISK_TOLERANCE)),
        metadata={"cells": len(cells), "best_t_learner": best,
                  **{f"mean_mu_risk_{model}": float(value) for model, value in means.items()}},
    )


@dg.asset_check(asset=evaluation, pool="duckdb",
                description="Every registry experiment that is not quarantined has heads on the current extractor.")
def every_experiment_has_current_head(database: LRLDatabase,
                                      artifacts: ArtifactStoreResource) -> dg.AssetCheckResult:
    version = artifacts.store().current_version()
    with database.connect() as con:
        state = read_head_state(con)
        heads = read_table(con, "experiment_heads")
        status = read_table(con, "head_status")
    fitted = set(heads.loc[heads["extractor_version"] == version, "experiment_id"])
    current = status[status["extractor_version"] == version]
    quarantined = set(current.loc[current["status"] == "quarantined", "experiment_id"])
    missing = [e for e in state.registry if e not in fitted and e not in quarantined]
    return dg.AssetCheckResult(
        passed=not missing,
        metadata={"extractor_version": str(version), "experiments": len(state.registry),
                  "with_current_head": len(fitted), "quarantined": sorted(quarantined)[:50],
                  "missing": missing[:50], "missing_count": len(missing)},
    )
