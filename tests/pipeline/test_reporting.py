"""The HTML reports the pipeline itself writes: a retrain report and a new experiment's report.

The report builders are tested on simulated inputs in tests/core/test_report_*.py;
here the files come from real Dagster runs over the tiny data set, found
through the assets' metadata, and are opened the same way.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import dagster as dg
import numpy as np

from lrl_core.artifacts import ArtifactStore
from lrl_core.report import EXPERIMENT_SECTIONS, RETRAIN_SECTIONS
from lrl_pipeline.storage import write_raw_tables
from lrl_pipeline.runner import latest_report_path, run_retrain, run_update

from tests.helpers import query


def _report_checks():
    """tests/core/test_report.py as a module: its HTML helpers (tests/core is no package, so load it by path)."""
    spec = importlib.util.spec_from_file_location(
        "_core_report_checks", Path(__file__).resolve().parents[1] / "core" / "test_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checks = _report_checks()


def report_from_metadata(instance: dg.DagsterInstance, asset: str) -> Path:
    """The ``report`` path an asset's latest materialization recorded."""
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert event is not None, f"{asset} was never materialized"
    entry = event.asset_materialization.metadata["report"]
    return Path(entry.path)


def test_retrain_and_new_experiment_reports_are_complete(pipeline, fast_run_config):
    db, artifacts, instance = pipeline.db, pipeline.artifacts, pipeline.instance
    run_retrain(db, artifacts, progress=lambda _: None, instance=instance, run_config=fast_run_config)
    version = ArtifactStore(artifacts).current_version()
    write_raw_tables(db, pipeline.new_rows, replace=False)
    assert run_update(db, artifacts, progress=lambda _: None, instance=instance) == [pipeline.new_experiment]

    # The retrain report: the path in the evaluation asset's metadata is the one `lrl report` prints.
    retrain = report_from_metadata(instance, "evaluation")
    assert retrain == latest_report_path(db, artifacts) and retrain.name == f"retrain-{version}.html"
    metrics = sorted(query(db, "SELECT DISTINCT metric FROM pipeline.evaluation")["metric"])
    # Risk bars, singular values, one correlation heatmap per metric, calibration deciles and slopes,
    # the embedding heatmap, training curves and data quality.
    text, _ = checks.check_report(retrain, RETRAIN_SECTIONS, n_images=7 + len(metrics))
    # The averaged table shows the pipeline's own numbers: the LR-learner's mean test mu-risk per metric.
    means = query(db, "SELECT metric, avg(mu_risk) AS mu FROM pipeline.evaluation "
                      "WHERE split = 'test' AND model = 'lr_learner' GROUP BY metric")
    for row in means.itertuples():
        assert re.search(rf'<td class="label">{row.metric}</td><td class="label">μ-risk</td><td>{row.mu:.4f}</td>',
                         text), row.metric
    for baseline in ("ols_t", "xgb_t"):
        assert f"<th>Δ vs {baseline}</th>" in text
    # No ground truth in a real pipeline: the report says why PEHE is missing instead of a blank column.
    assert "No PEHE: it needs the true effects" in text and "unknown to the pipeline" in text
    raw_units = query(db, "SELECT count(*) AS n FROM raw.unit_features")["n"].iloc[0]
    assert f"<td>{raw_units:,}</td>" in text
    assert "kept epoch" in text and "BCV rank" in text
    # Model choice: the candidates of model selection and what serves each cell, as recorded.
    served = query(db, "SELECT count(*) AS n FROM pipeline.served_models")["n"].iloc[0]
    assert served > 0 and "Candidates, best validation loss first" in text
    candidates = len(ArtifactStore(artifacts).load(version).learner.selection_)
    assert candidates > 1 and f"among {candidates} candidates" in text and f"of {served} (arm, metric) cells" in text

    # The new experiment's report, from the head_evaluation asset's metadata.
    experiment = report_from_metadata(instance, "head_evaluation")
    assert experiment.name == f"experiment-{pipeline.new_experiment}-{version}.html"
    # CATE histograms, calibration deciles and slopes, SE scatter, risk bars, head-vs-T-learner scatter.
    text, _ = checks.check_report(experiment, EXPERIMENT_SECTIONS, n_images=6)
    assert "Δ vs ols_t" in text
    # Its head-vs-T-learner table holds the head's stored test-split risks.
    stored = query(db, "SELECT metric, avg(tau_risk) AS tau FROM pipeline.head_evaluation "
                       "WHERE experiment_id = ? AND model = 'head' GROUP BY metric", [pipeline.new_experiment])
    assert len(stored) == len(metrics)
    for row in stored.itertuples():
        assert np.isfinite(row.tau)
        assert re.search(rf'<td class="label">{row.metric}</td><td class="label">τ-risk</td><td>{row.tau:.4f}</td>',
                         text), row.metric
