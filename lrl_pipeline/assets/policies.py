"""Per-experiment policies: who should get which arm, under the experiment's objective (issue 15).

After an experiment's heads, a policy tree (:mod:`lrl_core.policy`) over its
features, with the metric weights and guardrails of ``raw.policy_objectives``
(optional; default: the first metric, weight 1, no guardrail), valued on its
test units against control, the best single arm and the per-unit argmax.
An experiment whose policy cannot be fitted (too few units, a metric the
objectives name that it lacks) is reported in the metadata and skipped: a
policy never blocks the heads.
"""
# No `from __future__ import annotations`: Dagster reads the context and resource
# annotations at definition time to inject them.
import dagster as dg
import numpy as np
import pandas as pd

from lrl_core.report import PolicyReportData, build_policy_report
from lrl_pipeline.assets.heads import experiment_groups
from lrl_pipeline.compute import one_blas_thread
from lrl_pipeline.experiment_rows import read_experiment_rows
from lrl_pipeline.partitions import experiment_partitions
from lrl_pipeline.policies import fit_experiment_policy
from lrl_pipeline.reporting import policy_report_path
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.scoring import PipelineError
from lrl_pipeline.storage import LRLDatabase, read_heads, read_policy_objectives, utc_now, write_policies


def objectives_of(objectives: pd.DataFrame, experiment_id: str) -> tuple[dict[str, float], dict[str, float]]:
    """``(weights, guardrails)`` of one experiment from ``raw.policy_objectives`` rows."""
    rows = objectives[objectives["experiment_id"] == experiment_id]
    weights = {m: float(w) for m, w in zip(rows["metric"], rows["weight"]) if pd.notna(w) and w != 0}
    guardrails = {m: float(g) for m, g in zip(rows["metric"], rows["guardrail_min"]) if pd.notna(g)}
    return weights, guardrails


@dg.asset(group_name="reports", kinds={"python", "duckdb"}, pool="duckdb", code_version="1",
          partitions_def=experiment_partitions, deps=["experiment_heads"])
def experiment_policies(context: dg.AssetExecutionContext, database: LRLDatabase,
                        artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    """Per experiment: the policy tree's segments (pipeline.policy_segments) and the value of it and
    its alternatives per metric by DR and IPS on the test split (pipeline.policy_values)."""
    keys = list(context.partition_keys)
    model = artifacts.store().load()
    segments, values, skipped, reports = [], [], {}, {}
    stamp = {"extractor_version": model.version, "computed_at": utc_now()}
    # In the heads' groups, so that a run over every experiment holds one group's rows at a time.
    for group in experiment_groups(database, keys):
        with database.connect() as con:
            rows = read_experiment_rows(con, group, model)
            heads = read_heads(con, group, model.version)
            objectives = read_policy_objectives(con, group)
        for e in group:
            weights, guardrails = objectives_of(objectives, e)
            try:
                with one_blas_thread():
                    result = fit_experiment_policy(rows, heads[heads["experiment_id"] == e], e, model.transform,
                                                   weights, guardrails)
            except PipelineError as error:
                skipped[e] = str(error)
                continue
            segments.append(result.segments.assign(experiment_id=e, objective=result.objective_text(), **stamp))
            values.append(result.values.assign(experiment_id=e, **stamp))
            report = PolicyReportData(e, result.objective_text(), pd.concat([result.segments, result.rewards], axis=1),
                                      result.values, {"extractor version": model.version, "depth": result.policy.depth})
            reports[e] = build_policy_report(report, policy_report_path(artifacts.root, e, model.version)).path
    with database.connect() as con:
        write_policies(con, keys, pd.concat(segments, ignore_index=True) if segments else pd.DataFrame(),
                       pd.concat(values, ignore_index=True) if values else pd.DataFrame())
    for e, reason in skipped.items():
        context.log.warning(f"no policy for experiment {e}: {reason}")
    gains = [float(v.loc[(v["policy"] == "tree") & (v["estimator"] == "dr"), "value"].iloc[0]
                   - v.loc[(v["policy"] == "control") & (v["estimator"] == "dr"), "value"].iloc[0])
             for v in values]
    return dg.MaterializeResult(metadata={
        "experiments": len(keys), "policies": len(values), "skipped": len(skipped),
        "segments": int(sum(len(s) for s in segments)),
        "median_dr_gain_over_control_first_metric": float(np.median(gains)) if gains else float("nan"),
        **({"skipped_reasons": dg.MetadataValue.json(skipped)} if skipped else {}),
        **({"report": dg.MetadataValue.path(str(next(iter(reports.values()))))} if len(reports) == 1 else {}),
    })
