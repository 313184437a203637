"""Evaluation reports of the LR-learner as a library (no Dagster import).

- :mod:`.calibration`: decile calibration and the best-linear-predictor slope.
- :mod:`.embeddings`: nearest experiments by effect embedding.
- :mod:`.figures`: one matplotlib figure per plot, and ``figure_to_markdown``.
- :mod:`.html`: the two self-contained HTML reports and their input dataclasses.
"""
from __future__ import annotations

from lrl_core.report.calibration import blp_calibration, calibration_slopes, decile_calibration
from lrl_core.report.embeddings import nearest_experiments, similarity_matrix
from lrl_core.report.figures import figure_to_markdown, figure_to_png
from lrl_core.report.html import (
    EXPERIMENT_SECTIONS,
    RETRAIN_SECTIONS,
    ExperimentReportData,
    ReportResult,
    RetrainReportData,
    build_experiment_report,
    build_retrain_report,
)

__all__ = [
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
