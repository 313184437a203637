"""Reports: the LR-learner against the T-learners, per experiment, arm and metric.

mu-risk (held-out squared error of observed outcomes) and tau-risk (the
R-loss) on the validation and test splits, in units of each metric's
training variance, so metrics and models compare directly; and the HTML
retrain report (risks, low-rank structure, calibration, embeddings,
training curve, data quality).
"""
# No `from __future__ import annotations`: Dagster reads the context and resource
# annotations at definition time to inject them.
import dagster as dg
import numpy as np
import pandas as pd

from lrl_core.metrics import RISKS, risk_table, summarise_risks
from lrl_core.report import build_retrain_report
from lrl_pipeline.compute import one_blas_thread
from lrl_pipeline.raw import count_raw_rows
from lrl_pipeline.reporting import retrain_report_data, retrain_report_path
from lrl_pipeline.resources import ArtifactStoreResource, LRLDatabase
from lrl_pipeline.tables import (
    ensure_schema, load_pooled, metric_scale, read_table, replace_table, split_rows, utc_now,
)

GROUP = "reports"
LR_MODEL = "lr_learner"
SPLITS = ((1, "validation"), (2, "test"))


def summary_frame(evaluation: pd.DataFrame, split: str) -> pd.DataFrame:
    """Per metric, mean risks of every model on ``split`` and the LR-learner's relative improvement.

    Columns: ``metric``, then ``"<risk> <model>"`` and ``"<risk> improvement_vs_<model>"``.
    """
    part = evaluation[evaluation["split"] == split]
    models = [LR_MODEL, *sorted(set(part["model"]) - {LR_MODEL})]
    summary = summarise_risks({m: part[part["model"] == m] for m in models if (part["model"] == m).any()})
    summary.columns = [f"{risk} {model}" for risk, model in summary.columns]
    return summary.reset_index()


@dg.asset(group_name=GROUP, kinds={"python", "duckdb"}, pool="duckdb", code_version="1",
          deps=["lr_learner", "t_learners", "experiment_heads"])
def evaluation(context: dg.AssetExecutionContext, database: LRLDatabase,
               artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    """mu-risk and tau-risk per experiment, treated arm and metric of the current LR-learner and
    the T-learners, on the validation and test splits (pipeline.evaluation), and the retrain report."""
    model = artifacts.store().load()
    with database.connect() as con:
        pooled, X, split = load_pooled(con)
        # Plain float64 (NaN, not <NA>) like risk_table's own output.
        baselines = read_table(con, "t_learner_risks").astype({r: "float64" for r in RISKS}).astype({"n": "int64"})
        quarantine = read_table(con, "quarantine")
        rows_in = count_raw_rows(con)
    if model.metadata.get("arm_names") != pooled.arm_names or model.metadata.get("experiments") != pooled.experiments:
        raise dg.Failure(
            f"the current extractor {model.version} was trained on other experiments than "
            "pipeline.training_examples holds: run a full retrain (`lrl retrain`) so model and tables match")
    scale = metric_scale(pooled, split)
    with one_blas_thread():
        tables = [
            risk_table(model.learner, X, *split_rows(pooled, split, part), arm_experiment=pooled.arm_experiment,
                       control_arm=pooled.control_arm, experiments=pooled.experiments,
                       arm_names=pooled.arm_names, metrics=pooled.metrics, y_scale=scale)
            .assign(model=LR_MODEL, split=name)
            for part, name in SPLITS
        ]
        rows = pd.concat([*tables, baselines.drop(columns="evaluated_at")], ignore_index=True)
        data = retrain_report_data(model, pooled, X, split, rows, quarantine, rows_in)
        report = build_retrain_report(data, retrain_report_path(artifacts.root, model.version))
    rows = rows.assign(extractor_version=model.version, evaluated_at=utc_now())
    with database.connect() as con:
        ensure_schema(con)
        n = replace_table(con, "evaluation", rows)
    means = rows.groupby(["split", "model"])["mu_risk"].mean()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": n,
        "extractor_version": model.version,
        "report": dg.MetadataValue.path(str(report.path)),
        "test_summary": dg.MetadataValue.md(summary_frame(rows, "test").to_markdown(index=False, floatfmt=".4f")),
        "validation_summary": dg.MetadataValue.md(
            summary_frame(rows, "validation").to_markdown(index=False, floatfmt=".4f")),
        **{f"{split_name}_mu_risk_{m}": float(v) for (split_name, m), v in means.items() if np.isfinite(v)},
        **{f"figure_{k}": dg.MetadataValue.md(v) for k, v in report.key_figures.items() if k in ("risks", "training")},
    })
