"""Effects on segments an experiment left out: Synthetic Interventions beside the LR-learner (issue 17).

For a segmentation column of the unit features, every (segment, experiment,
treated arm, metric) gets up to three estimates in ``pipeline.segment_effects``:

- ``observed``: where the segment was in the experiment, the difference of
  the arm's and the control's mean outcome over the segment's units;
- ``si``: where it was not, Synthetic Interventions
  (:mod:`lrl_core.synthetic_interventions`) from the segment x intervention x
  metric table of means, with its interval and the subspace-inclusion test's
  verdict;
- ``lr``: where it was not, the pooled LR-learner's CATE averaged over the
  segment's units (an extrapolation through ``v(x)``), with the standard error
  of the arm's CATE from the jackknife (:mod:`lrl_core.uncertainty`).

The two extrapolations rest on different assumptions (a low-rank tensor of
segment means; a low-rank map of unit features), so where they disagree
beyond their intervals, neither should be trusted without a test on the segment.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from lrl_core.segment_effects import disagreements
from lrl_core.synthetic_interventions import SIConfig, SyntheticInterventions, observed_effects
from lrl_pipeline.compute import one_blas_thread
from lrl_pipeline.storage import load_pooled, segment_moments, segment_units

__all__ = ["MAX_SEGMENTS", "SEGMENT_COLUMNS", "SegmentEffects", "SegmentTable", "compute_segment_effects",
           "lr_segment_effects", "segment_effect_rows"]

SEGMENT_COLUMNS = ["segment", "experiment_id", "arm", "metric", "source", "effect", "se", "si_test_passed"]
"""Columns of ``pipeline.segment_effects`` (and of ``lrl segments --out``), before the stamps."""

MAX_SEGMENTS = 500
"""Most segments a column may have: beyond, it is an identifier or a number, not a segmentation."""

CHUNK_UNITS = 100_000
"""Units per call when averaging the pooled model's CATE over a segment (bounds the memory)."""


class SegmentTable:
    """The segment x intervention x metric means the SI estimator reads, with their labels.

    Interventions are the pooled model's arms (every arm of every trained
    experiment, controls included), in its order, so ``lr`` estimates and SI
    cells line up.
    """

    def __init__(self, moments: pd.DataFrame, pooled):
        self.segments = sorted(moments["segment"].unique().tolist())
        self.experiments = list(pooled.experiments)
        self.arm_names = list(pooled.arm_names)
        self.metrics = list(pooled.metrics)
        self.experiment_of = np.asarray(pooled.arm_experiment, dtype=np.int64)
        self.control_of = np.asarray(pooled.control_arm, dtype=np.int64)[self.experiment_of]
        S, D, J = len(self.segments), len(self.arm_names), len(self.metrics)
        self.means, self.ses = np.full((S, D, J), np.nan), np.full((S, D, J), np.nan)
        interventions = pd.MultiIndex.from_arrays([np.asarray(self.experiments, dtype=object)[self.experiment_of],
                                                   np.asarray(self.arm_names, dtype=object)])
        s = pd.Index(self.segments).get_indexer(moments["segment"])
        g = interventions.get_indexer(pd.MultiIndex.from_frame(moments[["experiment_id", "arm"]]))
        j = pd.Index(self.metrics).get_indexer(moments["metric"])
        keep = (g >= 0) & (j >= 0)  # arms and metrics the pooled model was not trained on are left out
        n = moments["n"].to_numpy(dtype=np.float64)
        var = moments["var"].to_numpy(dtype=np.float64, na_value=np.nan)
        self.means[s[keep], g[keep], j[keep]] = moments["mean"].to_numpy(dtype=np.float64)[keep]
        # One unit says nothing of the spread (var is NULL): its standard error stays unknown.
        with np.errstate(invalid="ignore", divide="ignore"):
            self.ses[s[keep], g[keep], j[keep]] = np.sqrt(var / n)[keep]
        self.observed = np.isfinite(self.means).any(axis=2)  # (S, D)

    @property
    def treated(self) -> np.ndarray:
        """Indices of the treated interventions."""
        return np.flatnonzero(self.control_of != np.arange(len(self.arm_names)))

    def excluded(self) -> np.ndarray:
        """``(S, K)`` True where the segment has no outcome in any arm of the experiment."""
        out = np.ones((len(self.segments), len(self.experiments)), dtype=bool)
        for g in range(len(self.arm_names)):
            out[:, self.experiment_of[g]] &= ~self.observed[:, g]
        return out


class SegmentEffects(NamedTuple):
    """What :func:`compute_segment_effects` found: the rows of ``pipeline.segment_effects``, the
    table SI read, SI's own per-cell table, and the cells where SI and the LR-learner disagree."""

    rows: pd.DataFrame
    table: SegmentTable
    si: pd.DataFrame
    disagreements: pd.DataFrame


def compute_segment_effects(con, model, column: str, config: SIConfig | None = None) -> SegmentEffects:
    """Segment effects by ``column`` of the unit features, for the saved ``model`` (an
    :class:`lrl_core.artifacts.SavedModel`) and the trained experiments in ``con``.

    Raises ``ValueError`` naming the problem: no such column, more than
    :data:`MAX_SEGMENTS` levels, or a model trained on other experiments than the tables hold.
    """
    moments, units = segment_moments(con, column), segment_units(con, column)
    levels = moments["segment"].nunique()
    if levels > MAX_SEGMENTS:
        raise ValueError(f"column {column!r} has {levels} levels with outcomes, more than {MAX_SEGMENTS}: "
                         "segment by a categorical column (country, platform, ...)")
    pooled, X, _ = load_pooled(con)
    if model.metadata.get("arm_names") != pooled.arm_names or model.metadata.get("experiments") != pooled.experiments:
        raise ValueError(f"the current extractor {model.version} was trained on other experiments than the "
                         "tables hold: run `lrl retrain` first")
    table = SegmentTable(moments, pooled)
    segment_index = {s: i for i, s in enumerate(table.segments)}
    found = pd.Series(units["segment"].map(segment_index).to_numpy(), index=units["unit_id"].to_numpy())
    unit_segment = found.reindex(pd.Index(pooled.unit_ids)).fillna(-1).to_numpy(dtype=np.int64)
    with one_blas_thread():
        lr_effect = lr_segment_effects(model.learner, X, unit_segment, table)
        rows, si = segment_effect_rows(table, lr_effect, model.learner.cate_var_, config)
    return SegmentEffects(rows, table, si, disagreements(rows))


def lr_segment_effects(learner, X: np.ndarray, unit_segment: np.ndarray, table: SegmentTable) -> np.ndarray:
    """``(S, D, J)`` the pooled model's CATE of every treated arm averaged over each segment's units.

    ``X (n, p)`` prepared features, ``unit_segment (n,)`` each row's segment index (-1: none).
    Controls are NaN. Averaged in chunks of :data:`CHUNK_UNITS` units.
    """
    treated = table.treated
    S, D, J = len(table.segments), len(table.arm_names), len(table.metrics)
    out = np.full((S, D, J), np.nan)
    for s in range(S):
        rows = np.flatnonzero(unit_segment == s)
        if not rows.size:
            continue
        total = np.zeros((treated.size, J))
        for start in range(0, rows.size, CHUNK_UNITS):
            chunk = rows[start:start + CHUNK_UNITS]
            total += learner.predict_cate(X[chunk], treated, table.control_of[treated]).sum(axis=0)
        out[s, treated] = total / rows.size
    return out


def segment_effect_rows(table: SegmentTable, lr_effect: np.ndarray, lr_var: np.ndarray,
                        config: SIConfig | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rows, si)``: :data:`SEGMENT_COLUMNS` rows for every segment, treated arm and metric
    (observed where the segment was in the experiment; si and lr where it was not), and the SI
    estimator's own per-cell table (rank, donors, test statistic, reason).

    ``lr_var (D, J)``: the variance of each arm's pooled CATE (the learner's ``cate_var_``).
    """
    excluded = table.excluded()
    effect, se = observed_effects(table.means, table.ses, table.control_of)
    si = SyntheticInterventions(config).fit(table.means, table.ses, table.experiment_of, table.control_of)
    missing = si.estimate_missing()
    parts = []
    treated = table.treated
    s_idx, t_idx, j_idx = np.meshgrid(np.arange(len(table.segments)), treated, np.arange(len(table.metrics)),
                                      indexing="ij")
    s_idx, g_idx, j_idx = s_idx.reshape(-1), t_idx.reshape(-1), j_idx.reshape(-1)
    is_out = excluded[s_idx, table.experiment_of[g_idx]]
    labels = pd.DataFrame({
        "segment": np.asarray(table.segments, dtype=object)[s_idx],
        "experiment_id": np.asarray(table.experiments, dtype=object)[table.experiment_of[g_idx]],
        "arm": np.asarray(table.arm_names, dtype=object)[g_idx],
        "metric": np.asarray(table.metrics, dtype=object)[j_idx],
    })
    seen = ~is_out & np.isfinite(effect[s_idx, g_idx, j_idx])
    parts.append(labels[seen].assign(source="observed", effect=effect[s_idx, g_idx, j_idx][seen],
                                     se=se[s_idx, g_idx, j_idx][seen], si_test_passed=None))
    lr = is_out & np.isfinite(lr_effect[s_idx, g_idx, j_idx])
    lr_se = np.sqrt(lr_var)[g_idx, j_idx]
    parts.append(labels[lr].assign(source="lr", effect=lr_effect[s_idx, g_idx, j_idx][lr], se=lr_se[lr],
                                   si_test_passed=None))
    if len(missing):
        m = missing
        parts.append(pd.DataFrame({
            "segment": np.asarray(table.segments, dtype=object)[m["segment"].to_numpy()],
            "experiment_id": np.asarray(table.experiments, dtype=object)[table.experiment_of[m["intervention"]]],
            "arm": np.asarray(table.arm_names, dtype=object)[m["intervention"].to_numpy()],
            "metric": np.asarray(table.metrics, dtype=object)[m["metric"].to_numpy()],
            "source": "si", "effect": m["effect"].to_numpy(dtype=float), "se": m["se"].to_numpy(dtype=float),
            "si_test_passed": m["test_passed"].astype(object).to_numpy(),
        }))
    rows = pd.concat(parts, ignore_index=True)[SEGMENT_COLUMNS]
    rows["si_test_passed"] = rows["si_test_passed"].astype("boolean")
    order = {"observed": 0, "si": 1, "lr": 2}
    rows = rows.sort_values(["experiment_id", "arm", "metric", "segment", "source"],
                            key=lambda c: c.map(order) if c.name == "source" else c, kind="stable")
    return rows.reset_index(drop=True), missing
