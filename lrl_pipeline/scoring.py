"""Scoring: CATEs of given units for every experiment head on the current extractor.

The units' features go through the transform saved with the extractor, then
``v(.)``; every stored head is linear in ``v``, so one embedding serves all
experiments, arms and metrics.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from lrl_core.artifacts import CorruptArtifact
from lrl_core.data import CONTROL
from lrl_core.heads import ExperimentHead
from lrl_core.serving import POOLED
from lrl_pipeline import paths
from lrl_pipeline.compute import one_blas_thread
from lrl_pipeline.storage import DatabaseBusy, LRLDatabase, prepare_frame, raw_arms, read_heads, read_served_models
from lrl_pipeline.resources import ArtifactStoreResource

__all__ = ["PipelineError", "SCORE_COLUMNS", "score_units"]

SCORE_COLUMNS = ["unit_id", "experiment_id", "arm", "metric", "cate", "cate_se", "model", "in_range"]


class PipelineError(Exception):
    """An expected failure; the message says what went wrong and what to do."""


def score_units(db: Path, artifacts: Path, units: pd.DataFrame,
                progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """CATE of every given unit for every stored experiment head, on the extractor it was fitted on.

    ``units``: ``unit_id`` plus the feature columns of ``raw.unit_features``
    (NULL/NaN = missing); columns the model left out (those training
    quarantined) are ignored, and a feature column the model needs that is
    absent is an error naming it. Returns long form :data:`SCORE_COLUMNS`, one
    row per unit, experiment, treated arm and metric: ``cate`` float64 (never
    NaN), ``cate_se`` nullable Float64 (``<NA>`` where no standard error is
    known), ``model``: the estimator that served the row (``lr_learner``; a
    T-learner, or ``lr_learner+<T-learner>`` for their blend, where the
    evaluation's held-out comparison chose it, see :mod:`lrl_core.serving`;
    its standard error is the pooled model's scaled by what validation says the blend
    removed, :func:`lrl_core.serving.served_se_scale`), ``in_range``: False where some feature of the unit lies beyond
    the transform's clip (10 training standard deviations), so the effect is an extrapolation.
    A unit with an infinite feature value is left out, its id in ``attrs["left_out_units"]``;
    ``attrs["other_levels"]``: per categorical column, how many units had a level the model
    did not keep (rare in training, or unseen there), scored as its "other" level;
    ``attrs["ignored_columns"]`` lists the columns of ``units`` that
    no extractor used; ``attrs["arms_without_heads"]`` the ``experiment/arm``
    treatment arms of ``raw.exposures`` that no stored head serves (launched since
    the last head run, or quarantined: ``lrl status`` says which).
    Heads are normally all on the current extractor; while a retrain's refit is
    under way, an experiment not yet refitted is scored with its previous
    extractor (pruning keeps every version a head uses), so scoring in the middle
    of a retrain does not fail for want of heads.
    """
    store = ArtifactStoreResource(root=str(Path(artifacts).resolve())).store()
    if store.current_version() is None:
        raise PipelineError(f"no saved extractor in {artifacts}: run `lrl retrain` first")
    if units["unit_id"].duplicated().any():
        raise PipelineError("units has duplicate unit_id values; give each unit once")
    try:
        with LRLDatabase(database=str(Path(db).resolve())).connect(read_only=True, timeout_s=paths.command_wait_s(),
                                                                   on_wait=progress) as con:
            heads = read_heads(con)
            served = read_served_models(con, POOLED)
            arms = raw_arms(con)
    except DatabaseBusy as error:
        raise PipelineError(f"{error}; try again when the other `lrl` command or the UI's run finishes") from error
    try:
        scores = _score(store, heads, served, units, artifacts)
    except CorruptArtifact as error:
        raise PipelineError(f"{error}: run `lrl retrain` to write a fresh model") from error
    scored = set(zip(heads["experiment_id"], heads["arm"]))
    scores.attrs["arms_without_heads"] = [f"{e}/{a}" for e, a in zip(arms["experiment_id"], arms["arm"])
                                          if a != CONTROL and (e, a) not in scored]
    return scores


def _score(store, heads: pd.DataFrame, served: pd.DataFrame, units: pd.DataFrame, artifacts: Path) -> pd.DataFrame:
    """:func:`score_units` once the heads are read."""
    heads = heads[heads["extractor_version"].isin(store.versions())]
    # One extractor per experiment: the newest its heads were fitted on (names sort by time).
    newest = heads.groupby("experiment_id")["extractor_version"].transform("max")
    heads = heads[heads["extractor_version"] == newest]
    if heads.empty:
        raise PipelineError(f"no experiment heads on a saved extractor in {artifacts}: run `lrl update`")
    parts = []
    ignored = [str(c) for c in units.columns if c != "unit_id"]
    # A unit with an infinite feature value has no effect to give: it is left out and named, not
    # the whole batch refused.
    models = {version: store.load(version) for version in sorted(set(heads["extractor_version"]))}
    current = models.get(store.current_version()) or models[max(models)]
    nonfinite = current.transform.nonfinite_rows(units)
    left_out = units.loc[nonfinite, "unit_id"].tolist()
    units = units[~nonfinite]
    if units.empty:
        raise PipelineError(f"every unit has an infinite feature value (unit_id {left_out[:5]}...)")
    for version, records in heads.groupby("extractor_version", sort=True):
        model = models[version]
        unused = set(model.transform.unused_columns(units))
        ignored = [c for c in ignored if c in unused]
        try:
            model.transform.check_columns(units)
        except ValueError as error:
            raise PipelineError(f"units do not match the model's features: {error}") from error
        X = prepare_frame(units, model.transform)
        V, in_range = model.learner.transform(X), model.transform.in_range(X)
        with one_blas_thread():
            parts.extend(_score_experiment(units["unit_id"].to_numpy(), V, in_range, experiment_id, rows)
                         for experiment_id, rows in records.groupby("experiment_id", sort=True))
    scores = pd.concat(parts, ignore_index=True).assign(model=POOLED)
    # A T-learner serves a cell only while the heads are those the choice was made beside.
    served = served.merge(heads[["experiment_id", "extractor_version"]].drop_duplicates(),
                          on=["experiment_id", "extractor_version"])
    if len(served):
        _serve_baselines(scores, served, units, ArtifactStoreResource(root=str(Path(artifacts).resolve())))
    scores = scores.sort_values(["experiment_id"], kind="stable", ignore_index=True)[SCORE_COLUMNS]
    scores.attrs["ignored_columns"] = ignored
    scores.attrs["left_out_units"] = left_out
    scores.attrs["other_levels"] = current.transform.other_levels(units)
    return scores


def _score_experiment(unit_ids: np.ndarray, V: np.ndarray, in_range: np.ndarray, experiment_id: str,
                      records: pd.DataFrame) -> pd.DataFrame:
    """Long-form CATEs of one experiment's stored heads for units with embeddings ``V (n, d)``."""
    head = ExperimentHead.from_records(records.to_dict("records"))
    arm_names = records.drop_duplicates("arm_index").set_index("arm_index")["arm"]
    # Only estimable heads are stored, so the rest come back NaN: the same mask picks the pairs.
    pairs = np.argwhere(head.estimable()[1:])  # (treated arm - 1, metric)
    cate = head.predict_cate(V)[:, pairs[:, 0], pairs[:, 1]]
    se = head.predict_cate_se(V)[:, pairs[:, 0], pairs[:, 1]]
    n, p = cate.shape
    return pd.DataFrame({
        "unit_id": np.repeat(unit_ids, p),
        "experiment_id": experiment_id,
        "arm": np.tile(arm_names.loc[pairs[:, 0] + 1].to_numpy(dtype=object), n),
        "metric": np.tile(np.asarray(head.metric_names_, dtype=object)[pairs[:, 1]], n),
        "cate": cate.reshape(-1),
        "cate_se": pd.array(se.reshape(-1), dtype="Float64"),
        "in_range": np.repeat(in_range, p),
    })


def _serve_baselines(scores: pd.DataFrame, served: pd.DataFrame, units: pd.DataFrame,
                     artifacts: ArtifactStoreResource) -> None:
    """Overwrite, in place, the cells of ``scores`` that validation gave to a T-learner."""
    store = artifacts.baseline_store()
    # Row positions of each (experiment, arm, metric) cell, found once: a mask per cell would scan
    # every row of the output once per served cell.
    positions = scores.groupby(["experiment_id", "arm", "metric"], sort=False).indices
    # The columns as arrays, read once and written back once: cells are disjoint row sets.
    cates = scores["cate"].to_numpy(dtype=np.float64, copy=True)
    ses = scores["cate_se"].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    models = scores["model"].to_numpy(dtype=object, copy=True)
    for version, cells in served.groupby("baseline_version"):
        if version not in store.versions():
            continue  # pruned: the pooled model's CATE stays
        saved = store.load(version)
        description = saved.metadata
        X = prepare_frame(units, saved.transform)
        arm_index = {(description["experiments"][k], description["arm_names"][g]): g
                     for g, k in enumerate(description["arm_experiment"])}
        for (experiment_id, arm, name), rows in cells.groupby(["experiment_id", "arm", "model"]):
            g = arm_index[(experiment_id, arm)]
            control = description["control_arm"][description["arm_experiment"][g]]
            baseline = name.removeprefix(f"{POOLED}+")
            with one_blas_thread():
                cate = saved.learner.models[baseline].predict_cate(X, [g], [control])[:, 0]  # (n, J)
            # Served before se_scale was recorded: no standard error is known for the blend.
            scales = rows["se_scale"] if "se_scale" in rows else pd.Series(np.nan, index=rows.index)
            for metric, weight, scale in zip(rows["metric"], rows["pooled_weight"], scales):
                target = positions.get((experiment_id, arm, metric))
                if target is None:
                    continue  # a cell without a head (too few rows): nothing is served for it
                # Rows of one cell are in units order (see _score_experiment).
                cates[target] = weight * cates[target] + (1 - weight) * cate[:, description["metrics"].index(metric)]
                # The pooled model's standard error less what validation says the blend removed
                # (lrl_core.serving.served_se_scale); NULL where that is not known.
                ses[target] = ses[target] * scale
                models[target] = name
    scores["cate"] = cates
    scores["cate_se"] = pd.array(np.where(np.isfinite(ses), ses, np.nan), dtype="Float64")
    scores["model"] = models
