"""Scoring units against the saved extractor and heads (lrl_pipeline/scoring.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lrl_pipeline.scoring import PipelineError, score_units

from tests.helpers import units_of


def test_score_units_matches_the_contract(pipeline):
    units = units_of(pipeline.db).head(25)
    scores = score_units(pipeline.db, pipeline.artifacts, units)

    assert list(scores.columns) == ["unit_id", "experiment_id", "arm", "metric", "cate", "cate_se", "model", "in_range"]
    assert scores["cate"].dtype == np.float64 and pd.api.types.is_float_dtype(scores["cate_se"].dtype)
    # One row per unit x experiment x treated arm x metric: 25 x 4 x 1 x 2.
    assert len(scores) == 25 * 4 * 1 * 2
    assert not scores.duplicated(["unit_id", "experiment_id", "arm", "metric"]).any()
    assert set(scores["arm"]) == {"treatment"}
    assert np.isfinite(scores["cate"]).all()
    pooled = scores["model"] == "lr_learner"
    assert scores.loc[pooled, "cate_se"].notna().all() and (scores.loc[pooled, "cate_se"] > 0).all()


def test_score_units_names_missing_and_extra_columns(pipeline):
    units = units_of(pipeline.db).head(5).rename(columns={"x2": "x2_renamed"})
    with pytest.raises(PipelineError, match="x2"):
        score_units(pipeline.db, pipeline.artifacts, units)
