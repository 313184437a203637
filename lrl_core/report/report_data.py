"""What the two report builders take and return, and the section ids each report has, in order."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

RETRAIN_SECTIONS = ["overview", "risks", "low-rank", "calibration", "embeddings", "training", "model-choice",
                    "effects", "segments", "data-quality"]
EXPERIMENT_SECTIONS = ["overview", "cate-distribution", "calibration", "standard-errors", "head-vs-tlearner"]


@dataclass
class RetrainReportData:
    """Inputs of :func:`build_retrain_report`. Only ``risks`` is required.

    Attributes
    ----------
    risks:
        Long table: :func:`lrl_core.metrics.risk_table` outputs stacked over
        models with a ``model`` column, i.e. ``model, experiment_id, arm,
        metric, n, mu_risk, tau_risk, pehe`` (``pehe`` NaN without ground
        truth). One row per (model, experiment, treated arm, metric).
    reference_model:
        The model being judged (the LR-learner); default the first model in
        ``risks``. Relative improvements are ``1 - reference / other``.
    ite_matrices:
        metric -> ``(n_units, n_cols)`` T-learner CATEs of one metric on a
        common set of evaluation units, one column per treated arm.
    ite_labels:
        Column names of the ITE matrices: one list for all metrics, or
        metric -> list when metrics cover different arms.
    calibration:
        Long table of the LR-learner on the test split with columns
        ``experiment_id, arm, metric, cate_hat, y, treated`` (optional
        ``propensity``): for each treated arm, its own rows
        (``treated=True``) and its experiment's control rows
        (``treated=False``), ``cate_hat`` being that arm's predicted CATE
        for every row and ``y`` the row's observed metric (NaN rows are
        ignored).
    embeddings, embedding_labels:
        ``(A, d)`` effect embeddings ``e_(k,t) - e_(k,0)`` of the treated
        arms and their ``(A,)`` labels.
    history, best_epoch:
        ``LRLearner.history_`` (dicts with ``epoch, train_loss, val_loss,
        seconds``) and ``LRLearner.best_epoch_``.
    quarantine:
        Either the summary ``table, reason, rows`` or the per-row quarantine
        of ``validate_raw`` (``table, ..., reason``), which is counted.
    rows_in:
        Raw table name -> rows read.
    meta:
        Free key -> value facts shown in the overview (extractor version,
        created at, device, fit seconds, ...).
    selection:
        ``LRLearner.selection_`` as a table (``extractor, d, weight_decay,
        val_loss, epochs, rung, chosen``); empty or None when nothing was searched.
    served:
        ``pipeline.served_models`` (``experiment_id, arm, metric, model,
        pooled_weight, gain, gain_se, n``): what serves each cell.
    categories:
        ``FeatureTransform.level_counts_``: per categorical feature column, the
        training units of each kept level, of "(other)" and of "(null)".
    arm_effects, effect_covariance:
        ``pipeline.arm_effects`` (``experiment_id, arm, metric, effect,
        effect_se, pooled``) and ``pipeline.effect_covariance`` (``metric_a,
        metric_b, estimator, covariance, correlation, se, n_arms``): effects
        across experiments; None leaves the section saying so.
    segment_effects:
        ``pipeline.segment_effects`` (``segment, experiment_id, arm, metric,
        source, effect, se, si_test_passed``, and ``segment_by``): effects by
        segment, observed and extrapolated; None leaves the section saying so.
    """

    risks: pd.DataFrame
    reference_model: str | None = None
    ite_matrices: Mapping[str, np.ndarray] = field(default_factory=dict)
    ite_labels: Sequence[str] | Mapping[str, Sequence[str]] = ()
    calibration: pd.DataFrame | None = None
    embeddings: np.ndarray | None = None
    embedding_labels: Sequence[str] = ()
    history: Sequence[Mapping] = ()
    best_epoch: int | None = None
    quarantine: pd.DataFrame | None = None
    rows_in: Mapping[str, int] = field(default_factory=dict)
    meta: Mapping[str, object] = field(default_factory=dict)
    selection: pd.DataFrame | None = None
    served: pd.DataFrame | None = None
    categories: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    arm_effects: pd.DataFrame | None = None
    effect_covariance: pd.DataFrame | None = None
    segment_effects: pd.DataFrame | None = None
    title: str = "LR-learner retrain report"
    n_neighbours: int = 3
    bcv_max_units: int = 2000
    """Bi-cross-validation runs 25 SVDs; beyond this many units it uses a seeded subsample of rows."""


@dataclass
class ExperimentReportData:
    """Inputs of :func:`build_experiment_report` for one newly added experiment.

    Attributes
    ----------
    experiment_id:
        The experiment.
    cates:
        Long table over the experiment's units: ``arm, metric, cate`` and
        ``cate_se`` (NaN where unknown); optional ``tlearner_cate``, an
        independent T-learner's CATE of the same unit, arm and metric.
    calibration:
        Held-out units: ``arm, metric, cate_hat, y, treated`` (as in
        :class:`RetrainReportData`, one experiment).
    risks:
        Long table with a ``model`` column (the head and one or more
        T-learners), ``arm, metric, n`` and risk columns, scored on the same
        held-out rows.
    reference_model:
        The head's model name; default the first model in ``risks``.
    meta:
        Free key -> value facts (extractor version, head kind, fit seconds...).
    """

    experiment_id: str
    cates: pd.DataFrame
    calibration: pd.DataFrame | None = None
    risks: pd.DataFrame | None = None
    reference_model: str | None = None
    meta: Mapping[str, object] = field(default_factory=dict)
    title: str | None = None


@dataclass(frozen=True)
class ReportResult:
    """What a builder wrote: the file, its section ids in order, and key figures as markdown."""

    path: Path
    sections: list[str]
    key_figures: dict[str, str]
