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

from lrl_core.metrics import RISKS, metric_scale, risk_table, summarise_risks
from lrl_core.report import build_retrain_report
from lrl_core.serving import POOLED, choose_served_models
from lrl_pipeline.compute import one_blas_thread
from lrl_pipeline.storage import (
    count_raw_rows, ensure_schema, load_pooled, LRLDatabase, read_effects, read_segment_effects, read_table,
    replace_table, utc_now,
)
from lrl_pipeline.reporting import retrain_report_data, retrain_report_path
from lrl_pipeline.resources import ArtifactStoreResource

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


def served_models(model, baseline_store, pooled, X: np.ndarray, split: np.ndarray) -> pd.DataFrame:
    """pipeline.served_models: per trained experiment, treated arm and metric, the estimator
    `lrl score` serves, chosen on the held-out units (see :mod:`lrl_core.serving`)."""
    columns = ["experiment_id", "arm", "metric", "model", "pooled_weight", "gain", "gain_se", "n", "se_scale",
               "extractor_version", "baseline_version", "chosen_at"]
    baselines = baseline_store.load() if baseline_store.current_version() else None
    if baselines is None or baselines.metadata.get("arm_names") != pooled.arm_names:
        # No T-learners of these experiments (e.g. saved before this version): the pooled model serves.
        return pd.DataFrame(columns=columns)
    # Validation and test units: no model was fitted on them (the validation split only
    # stopped the pooled model's training, which if anything flatters the pooled model).
    held_out = split[pooled.row_unit] >= 1
    served = choose_served_models(model.learner, baselines.learner.models, X, pooled.row_unit[held_out],
                                  pooled.row_arm[held_out], pooled.Y[held_out],
                                  control_arm=pooled.control_arm, arm_experiment=pooled.arm_experiment)
    return served.assign(
        experiment_id=[pooled.experiments[k] for k in pooled.arm_experiment[served["arm"]]],
        arm=[pooled.arm_names[g] for g in served["arm"]], metric=[pooled.metrics[j] for j in served["metric"]],
        extractor_version=model.version, baseline_version=baselines.version, chosen_at=utc_now())[columns]


def served_markdown(served: pd.DataFrame) -> str:
    """Counts per serving model and the cells a T-learner serves, as markdown."""
    if served.empty:
        return "No T-learners of these experiments: the pooled model serves every arm and metric."
    counts = served["model"].value_counts().rename_axis("model").reset_index(name="cells")
    others = served[served["model"] != POOLED]
    text = counts.to_markdown(index=False)
    if len(others):
        text += "\n\nBlended with or served by a T-learner (held-out R-loss gain over the pooled model):\n\n" + others[
            ["experiment_id", "arm", "metric", "model", "pooled_weight", "gain", "gain_se", "n", "se_scale"]].head(50).to_markdown(
            index=False, floatfmt=".4g")
    return text


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
        effects = read_effects(con, model.version)
        segment_rows = read_segment_effects(con, model.version)
    if model.metadata.get("arm_names") != pooled.arm_names or model.metadata.get("experiments") != pooled.experiments:
        raise dg.Failure(
            f"the current extractor {model.version} was trained on other experiments than "
            "pipeline.training_examples holds: run a full retrain (`lrl retrain`) so model and tables match")
    scale = metric_scale(pooled, split)
    with one_blas_thread():
        tables = [
            risk_table(model.learner, X, *pooled.split_rows(split, part), arm_experiment=pooled.arm_experiment,
                       control_arm=pooled.control_arm, experiments=pooled.experiments,
                       arm_names=pooled.arm_names, metrics=pooled.metrics, y_scale=scale)
            .assign(model=LR_MODEL, split=name)
            for part, name in SPLITS
        ]
        rows = pd.concat([*tables, baselines.drop(columns="evaluated_at")], ignore_index=True)
        served = served_models(model, artifacts.baseline_store(), pooled, X, split)
        data = retrain_report_data(model, pooled, X, split, rows, quarantine, rows_in, served, effects, segment_rows)
        report = build_retrain_report(data, retrain_report_path(artifacts.root, model.version))
    rows = rows.assign(extractor_version=model.version, evaluated_at=utc_now())
    with database.connect() as con:
        ensure_schema(con)
        n = replace_table(con, "evaluation", rows)
        replace_table(con, "served_models", served)
    means = rows.groupby(["split", "model"])["mu_risk"].mean()
    by_model = served["model"].value_counts()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": n,
        "extractor_version": model.version,
        **{f"served_by_{name}": int(count) for name, count in by_model.items()},
        "served_models": dg.MetadataValue.md(served_markdown(served)),
        "report": dg.MetadataValue.path(str(report.path)),
        "test_summary": dg.MetadataValue.md(summary_frame(rows, "test").to_markdown(index=False, floatfmt=".4f")),
        "validation_summary": dg.MetadataValue.md(
            summary_frame(rows, "validation").to_markdown(index=False, floatfmt=".4f")),
        **{f"{split_name}_mu_risk_{m}": float(v) for (split_name, m), v in means.items() if np.isfinite(v)},
        **{f"figure_{k}": dg.MetadataValue.md(v) for k, v in report.key_figures.items() if k in ("risks", "training")},
    })
