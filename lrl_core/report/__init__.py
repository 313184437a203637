"""Evaluation reports of the LR-learner as a library (no Dagster import).

- :mod:`.calibration`: decile calibration and the best-linear-predictor slope.
- :mod:`.embeddings`: nearest experiments by effect embedding.
- :mod:`.figures`: every figure, one function each (training and data-quality
  figures defined there); by topic in :mod:`.risk_figures`,
  :mod:`.low_rank_figures`, :mod:`.calibration_figures`, :mod:`.cate_figures`;
  shared style and PNG/markdown export in :mod:`.plotting`.
- :mod:`.report_data`: the builders' input dataclasses, ``ReportResult`` and the section ids.
- :mod:`.retrain_report`, :mod:`.experiment_report`: the two self-contained HTML reports,
  built from :mod:`.html_parts` (CSS, tables, the page) and :mod:`.summaries` (shared sections).
"""
from __future__ import annotations

from lrl_core.report.calibration import blp_calibration, calibration_slopes, decile_calibration
from lrl_core.report.embeddings import nearest_experiments, similarity_matrix
from lrl_core.report.experiment_report import build_experiment_report
from lrl_core.report.figures import figure_to_markdown, figure_to_png
from lrl_core.report.report_data import (
    EXPERIMENT_SECTIONS,
    RETRAIN_SECTIONS,
    ExperimentReportData,
    ReportResult,
    RetrainReportData,
)
from lrl_core.report.policy_report import POLICY_SECTIONS, PolicyReportData, build_policy_report
from lrl_core.report.retrain_report import build_retrain_report

__all__ = [
    "POLICY_SECTIONS", "PolicyReportData", "build_policy_report",
    "decile_calibration",
    "blp_calibration",
    "calibration_slopes",
    "nearest_experiments",
    "similarity_matrix",
    "figure_to_markdown",
    "figure_to_png",
    "RetrainReportData",
    "ExperimentReportData",
    "ReportResult",
    "RETRAIN_SECTIONS",
    "EXPERIMENT_SECTIONS",
    "build_retrain_report",
    "build_experiment_report",
]
