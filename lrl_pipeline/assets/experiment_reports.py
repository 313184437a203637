"""Per-experiment reports: each experiment's heads against a T-learner on its held-out units.

For an experiment the current extractor was not trained on (a new launch),
this is the only evidence that its head is any good, so it also gets an
HTML report: CATE distribution, calibration, standard errors, head against
T-learner.
"""
# No `from __future__ import annotations`: Dagster reads the context and resource
# annotations at definition time to inject them.
import dagster as dg
import pandas as pd

from lrl_core.head_evaluation import ExperimentScores, evaluate_head
from lrl_core.heads import ExperimentHead
from lrl_core.report import build_experiment_report
from lrl_pipeline.compute import one_blas_thread
from lrl_pipeline.experiment_rows import ExperimentRows, read_experiment_rows
from lrl_pipeline.partitions import experiment_partitions
from lrl_pipeline.reporting import experiment_report_data, experiment_report_path
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.storage import LRLDatabase, read_heads, utc_now, write_head_evaluation


def score_experiment(rows: ExperimentRows, experiment_id: str, records: pd.DataFrame,
                     detail: bool) -> ExperimentScores:
    """:func:`lrl_core.head_evaluation.evaluate_head` of one experiment's stored heads on its rows."""
    head = ExperimentHead.from_records(records.to_dict("records"))
    data = rows.arrays(experiment_id)
    Y = data.Y[:, [data.metrics.index(m) for m in head.metric_names_]]
    return evaluate_head(head, rows.X, rows.V, data.unit, data.arm, Y, data.test, data.arm_names, experiment_id,
                         detail)


@dg.asset(group_name="reports", kinds={"python", "duckdb"}, pool="duckdb", code_version="1",
          partitions_def=experiment_partitions, deps=["experiment_heads"])
def head_evaluation(context: dg.AssetExecutionContext, database: LRLDatabase,
                    artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    """Per experiment: test-split mu-risk and tau-risk of its heads against an OLS T-learner fitted
    on the same units (pipeline.head_evaluation), and an HTML report for experiments that joined
    after the extractor was trained."""
    keys = list(context.partition_keys)
    model = artifacts.store().load()
    trained_on = set(model.metadata.get("experiments", []))
    with database.connect() as con:
        rows = read_experiment_rows(con, keys, model)
        heads = read_heads(con, keys, model.version)
    tables, reports = [], {}
    with one_blas_thread():
        for e in keys:
            if rows.experiment(e) is None or not (heads["experiment_id"] == e).any():
                continue
            scores = score_experiment(rows, e, heads[heads["experiment_id"] == e], detail=e not in trained_on)
            tables.append(scores.risks.assign(experiment_id=e))
            if scores.cates is not None:
                data = experiment_report_data(e, scores.cates, scores.calibration, scores.risks, model.version)
                try:
                    reports[e] = build_experiment_report(
                        data, experiment_report_path(artifacts.root, e, model.version))
                except ValueError as error:  # a report the builder cannot draw never blocks the scores
                    context.log.warning(f"no HTML report for experiment {e}: {error}")
    scored = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["experiment_id"])
    scored = scored.assign(extractor_version=model.version, evaluated_at=utc_now())
    with database.connect() as con:
        write_head_evaluation(con, keys, scored)
    means = (scored.groupby(["metric", "model"])[["mu_risk", "tau_risk"]].mean().unstack("model")
             if len(scored) else pd.DataFrame())
    metadata = {
        "dagster/row_count": len(scored),
        "experiments_scored": len(tables),
        "extractor_version": model.version,
        "test_risks": dg.MetadataValue.md(means.to_markdown(floatfmt=".4f") if len(means) else "none"),
    }
    if len(reports) == 1:
        (report,) = reports.values()
        metadata["report"] = dg.MetadataValue.path(str(report.path))
        metadata.update({f"figure_{k}": dg.MetadataValue.md(v) for k, v in report.key_figures.items()})
    elif reports:
        metadata["reports"] = dg.MetadataValue.json({e: str(r.path) for e, r in reports.items()})
    return dg.MaterializeResult(metadata=metadata)
