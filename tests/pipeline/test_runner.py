"""The command-line runner: a whole retrain, updates without retraining, the summary."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from lrl_core.artifacts import ArtifactStore
from lrl_pipeline.storage import read_raw_table, write_raw_tables
from lrl_pipeline.runner import (
    PipelineError, latest_report_path, run_retrain, run_update, score_units, summary_table,
)

from tests.helpers import query, units_of


PIPELINE_ASSETS = {"valid_unit_features", "valid_experiments", "valid_exposures", "valid_outcomes", "quarantine",
                   "unit_features", "training_examples", "lr_learner", "t_learners", "experiment_rows",
                   "experiment_heads", "head_evaluation", "evaluation"}


def test_retrain_materializes_the_whole_graph(pipeline):
    # The session fixture ran run_retrain; its copy must hold every table with consistent versions.
    version = ArtifactStore(pipeline.artifacts).current_version()
    assert version is not None
    heads = query(pipeline.db, "SELECT DISTINCT experiment_id, extractor_version FROM pipeline.experiment_heads")
    assert sorted(heads["experiment_id"]) == pipeline.experiments
    assert set(heads["extractor_version"]) == {version}
    evaluation = query(pipeline.db, "SELECT * FROM pipeline.evaluation")
    assert set(evaluation["model"]) == {"lr_learner", "ols_t", "xgb_t"}
    assert set(evaluation["split"]) == {"validation", "test"}
    assert set(evaluation["extractor_version"]) == {version}
    assert evaluation[["mu_risk", "tau_risk"]].notna().all().all()
    # Every experiment and metric is scored for every model (2 metrics, one treated arm each).
    per_model = evaluation[evaluation["split"] == "test"].groupby("model").size()
    assert (per_model == len(pipeline.experiments) * 2).all()
    examples = query(pipeline.db, "SELECT split, count(*) AS n FROM pipeline.training_examples GROUP BY split")
    assert set(examples["split"]) == {"train", "validation", "test"}
    report = latest_report_path(pipeline.db, pipeline.artifacts)
    assert report is not None and report.name == f"retrain-{version}.html"
    html = report.read_text()
    assert '<section id="risks">' in html and "data:image/png;base64," in html


def test_retrain_records_every_asset_and_check(pipeline, fast_run_config):
    # A second retrain on a fresh instance, to inspect what Dagster recorded.
    db, artifacts = pipeline.db, pipeline.artifacts
    instance, messages = pipeline.instance, []
    result = run_retrain(db, artifacts, progress=messages.append, instance=instance, run_config=fast_run_config)
    materialized = {key.to_user_string() for key in instance.get_asset_keys()
                    if instance.get_latest_materialization_event(key) is not None}
    checks = {}
    for run in instance.get_runs():
        for record in instance.get_records_for_run(run.run_id).records:
            event = record.event_log_entry.dagster_event
            if event is not None and event.event_type_value == "ASSET_CHECK_EVALUATION":
                data = event.event_specific_data
                checks[data.check_name] = data.passed
    assert PIPELINE_ASSETS <= materialized
    assert checks["cate_is_finite"] is True
    assert checks["every_experiment_has_current_head"] is True
    assert "lr_not_worse_than_t_learners" in checks  # evaluated; tiny data decide the verdict
    assert messages, "progress was reported"
    assert result.extractor_version == ArtifactStore(artifacts).current_version()
    assert result.n_experiments == 4 and result.n_rows == 480 and result.n_quarantined == 0
    assert {"metric", "mu_risk lr_learner", "tau_risk lr_learner", "mu_risk improvement_vs_ols_t"} <= set(
        result.summary.columns)


def test_update_fits_a_new_experiment_without_retraining(pipeline):
    store = ArtifactStore(pipeline.artifacts)
    version, versions = store.current_version(), store.versions()
    write_raw_tables(pipeline.db, pipeline.new_rows, replace=False)

    fitted = run_update(pipeline.db, pipeline.artifacts, progress=lambda _: None, instance=pipeline.instance)

    assert fitted == [pipeline.new_experiment]
    assert store.current_version() == version and store.versions() == versions
    heads = query(pipeline.db, "SELECT * FROM pipeline.experiment_heads WHERE experiment_id = ?",
                  [pipeline.new_experiment])
    assert len(heads) == 4 and set(heads["extractor_version"]) == {version}  # (control, treatment) x 2 metrics
    assert pipeline.new_experiment in pipeline.instance.get_dynamic_partitions("experiment")
    report = query(pipeline.db, "SELECT DISTINCT model FROM pipeline.head_evaluation WHERE experiment_id = ?",
                   [pipeline.new_experiment])
    assert set(report["model"]) == {"head", "ols_t"}
    html = (pipeline.artifacts / "reports" / f"experiment-{pipeline.new_experiment}-{version}.html").read_text()
    assert '<section id="head-vs-tlearner">' in html
    # Nothing is stale any more: a second update fits nothing.
    assert run_update(pipeline.db, pipeline.artifacts, progress=lambda _: None, instance=pipeline.instance) == []


def test_an_arm_launched_in_a_trained_experiment_gets_heads_at_the_next_update(pipeline):
    experiment = pipeline.experiments[0]
    with duckdb.connect(str(pipeline.db), read_only=True) as con:
        exposures = read_raw_table(con, "exposures")
        outcomes = read_raw_table(con, "outcomes")
    mine = set(exposures.loc[exposures["experiment_id"] == experiment, "unit_id"])
    others = exposures.loc[~exposures["unit_id"].isin(mine), "unit_id"].drop_duplicates().head(40)
    rng = np.random.default_rng(0)
    metrics = sorted(outcomes["metric"].unique())
    new_exposures = pd.DataFrame({"unit_id": others.to_numpy(), "experiment_id": experiment, "arm": "treatment_b"})
    new_outcomes = pd.DataFrame({
        "unit_id": np.repeat(others.to_numpy(), len(metrics)), "experiment_id": experiment,
        "metric": np.tile(metrics, len(others)), "value": rng.normal(size=len(others) * len(metrics))})
    write_raw_tables(pipeline.db, {"exposures": new_exposures.astype(exposures.dtypes.to_dict()),
                                   "outcomes": new_outcomes.astype(outcomes.dtypes.to_dict())}, replace=False)

    before = score_units(pipeline.db, pipeline.artifacts, units_of(pipeline.db).head(10))
    assert before.attrs["arms_without_heads"] == [f"{experiment}/treatment_b"]  # said, not silent

    fitted = run_update(pipeline.db, pipeline.artifacts, progress=lambda _: None, instance=pipeline.instance)

    assert fitted == [experiment]  # the grown experiment, and only it
    scores = score_units(pipeline.db, pipeline.artifacts, units_of(pipeline.db).head(10))
    assert scores.attrs["arms_without_heads"] == []
    assert "treatment_b" in set(scores.loc[scores["experiment_id"] == experiment, "arm"])
    assert np.isfinite(scores["cate"]).all()
    assert run_update(pipeline.db, pipeline.artifacts, progress=lambda _: None, instance=pipeline.instance) == []


def test_update_on_an_unreadable_model_says_retrain_instead_of_nothing_to_do(pipeline):
    store = ArtifactStore(pipeline.artifacts)
    weights = pipeline.artifacts / "versions" / store.current_version() / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(PipelineError, match=r"cannot be read .*weights\.safetensors.*lrl retrain"):
        run_update(pipeline.db, pipeline.artifacts, progress=lambda _: None, instance=pipeline.instance)


def test_update_without_an_extractor_says_retrain_first(pipeline, tmp_path):
    with pytest.raises(PipelineError, match="lrl retrain"):
        run_update(pipeline.db, tmp_path / "no-artifacts", progress=lambda _: None, instance=pipeline.instance)


def test_summary_table_compares_models_per_metric(pipeline):
    summary = summary_table(pipeline.db)
    assert sorted(summary["metric"]) == ["metric_0", "metric_1"]
    lr, ols = summary["mu_risk lr_learner"], summary["mu_risk ols_t"]
    np.testing.assert_allclose(summary["mu_risk improvement_vs_ols_t"], 1 - lr / ols)
