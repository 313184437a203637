"""Per-experiment reports: each experiment's heads against a T-learner on its held-out units.

For an experiment the current extractor was not trained on (a new launch),
this is the only evidence that its head is any good, so it also gets an
HTML report: CATE distribution, calibration, standard errors, head against
T-learner.
"""
# No `from __future__ import annotations`: Dagster reads the context and resource
# annotations at definition time to inject them.
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd

from lrl_core.baselines import OLSTLearner
from lrl_core.heads import ExperimentHead
from lrl_core.metrics import risk_table
from lrl_core.report import build_experiment_report
from lrl_pipeline.compute import one_blas_thread
from lrl_pipeline.experiment_rows import ExperimentRows, read_experiment_rows
from lrl_pipeline.partitions import experiment_partitions
from lrl_pipeline.reporting import experiment_report_data, experiment_report_path
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.storage import column_scale, LRLDatabase, read_heads, utc_now, write_head_evaluation



class HeadModel:
    """One experiment's heads in the estimator shape ``risk_table`` scores: ``X`` is ``v(x)``,
    arms are local (0 = control)."""

    def __init__(self, head: ExperimentHead):
        self.head = head

    def predict_outcomes(self, V, arms) -> np.ndarray:
        """``V (n, d)``, ``arms (a,)`` -> ``(n, a, J)``."""
        return self.head.predict(V)[:, np.asarray(arms, dtype=np.int64)]

    def predict_cate(self, V, arms, controls) -> np.ndarray:
        """``(n, a, J)``: outcome under each arm minus under its control."""
        return self.predict_outcomes(V, arms) - self.predict_outcomes(V, controls)


def _long(arm_names: list[str], metrics: list[str], **values: np.ndarray) -> pd.DataFrame:
    """``(n, A-1, J)`` arrays -> long form with ``arm`` (treated arms) and ``metric`` columns."""
    n, a, j = next(iter(values.values())).shape
    arm_index, metric_index = np.meshgrid(np.arange(a), np.arange(j), indexing="ij")
    frame = pd.DataFrame({"arm": np.tile(np.asarray(arm_names[1:], dtype=object)[arm_index.ravel()], n),
                          "metric": np.tile(np.asarray(metrics, dtype=object)[metric_index.ravel()], n)})
    return frame.assign(**{name: v.reshape(-1) for name, v in values.items()})


@dataclass
class ExperimentScores:
    """``risks``: test-split risks of the head and an OLS T-learner; ``cates`` (per unit, both models)
    and ``calibration`` (test rows) only when asked for."""

    risks: pd.DataFrame
    cates: pd.DataFrame | None = None
    calibration: pd.DataFrame | None = None


def score_experiment(rows: ExperimentRows, experiment_id: str, records: pd.DataFrame,
                     detail: bool) -> ExperimentScores:
    """Score one experiment's stored heads against an OLS T-learner fitted on the same (non-test) rows."""
    index, arms = rows.experiment(experiment_id)
    pooled = rows.pooled
    head = ExperimentHead.from_records(records.assign(arm=records["arm_index"]).to_dict("records"))
    metrics, names = head.metric_names_, [pooled.arm_names[g] for g in arms]
    local = pooled.row_arm[index] - arms[0]
    units = pooled.row_unit[index]
    test = rows.split[units] == 2
    Y = pooled.Y[np.ix_(index, [pooled.metrics.index(m) for m in metrics])]
    layout = dict(arm_experiment=np.zeros(len(arms), dtype=np.int64), control_arm=np.zeros(1, dtype=np.int64),
                  experiments=[experiment_id], arm_names=names, metrics=metrics, y_scale=column_scale(Y[~test]))
    ols = OLSTLearner().fit(rows.X, units[~test], local[~test], Y[~test], n_arms=len(arms))
    risks = pd.concat([
        risk_table(HeadModel(head), rows.V, units[test], local[test], Y[test], **layout).assign(model="head"),
        risk_table(ols, rows.X, units[test], local[test], Y[test], **layout).assign(model="ols_t"),
    ], ignore_index=True)
    if not detail:
        return ExperimentScores(risks)
    everyone = np.unique(units)
    treated = np.arange(1, len(arms))
    cates = _long(names, metrics, cate=head.cate(rows.V[everyone]), cate_se=head.cate_se(rows.V[everyone]),
                  tlearner_cate=ols.predict_cate(rows.X[everyone], treated, np.zeros_like(treated)))
    parts = []
    cate_hat = head.cate(rows.V[units[test]])
    for i, arm in enumerate(names[1:]):
        mine = np.isin(local[test], [0, i + 1])
        for j, metric in enumerate(metrics):
            parts.append(pd.DataFrame({"arm": arm, "metric": metric, "cate_hat": cate_hat[mine, i, j],
                                       "y": Y[test][mine, j], "treated": local[test][mine] == i + 1}))
    return ExperimentScores(risks, cates, pd.concat(parts, ignore_index=True))


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
