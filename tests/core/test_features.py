"""FeatureTransform: imputation with indicators, scaling, clipping, frame checks, JSON round trip."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lrl_core.features import FeatureTransform

NAMES = ["a", "b", "c", "d"]


def training_features(n: int = 500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    features = np.column_stack([
        rng.normal(5.0, 2.0, n),          # a: complete
        rng.exponential(1.0, n),          # b: gaps
        np.full(n, 7.0),                  # c: constant
        rng.normal(0.0, 1.0, n),          # d: complete
    ])
    features[rng.random(n) < 0.2, 1] = np.nan
    return features


def test_imputes_with_indicators_and_standardises():
    x = training_features()
    transform = FeatureTransform().fit(x, NAMES)
    out = transform.transform(x)

    assert out.dtype == np.float32 and out.shape == (len(x), 5) and out.flags.c_contiguous
    assert transform.output_names_ == ["a", "b", "c", "d", "b__missing"]
    gaps = np.isnan(x[:, 1])
    np.testing.assert_array_equal(out[:, 4], gaps.astype(np.float32))
    # A gap becomes the standardised median of the observed values.
    observed = x[~gaps, 1]
    expected = (np.median(observed) - observed.mean()) / observed.std()
    np.testing.assert_allclose(out[gaps, 1], expected, rtol=1e-6)
    np.testing.assert_allclose(out[~gaps, 1].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(out[:, [0, 3]].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out[:, [0, 3]].std(axis=0), 1.0, rtol=1e-4)
    np.testing.assert_array_equal(out[:, 2], 0.0)  # constant column: centred, scale 1
    assert transform.scale_[2] == 1.0


def test_gap_in_a_column_without_indicator_is_imputed():
    x = training_features()
    transform = FeatureTransform().fit(x, NAMES)
    new = x[:3].copy()
    new[0, 0] = np.nan
    out = transform.transform(new)
    assert out.shape == (3, 5) and np.isfinite(out).all()
    np.testing.assert_allclose(out[0, 0], (transform.median_[0] - transform.mean_[0]) / transform.scale_[0],
                               rtol=1e-6)


def test_extreme_values_are_clipped():
    x = training_features()
    transform = FeatureTransform(clip=3.0).fit(x, NAMES)
    new = x[:2].copy()
    new[0, 0], new[1, 3] = 1e12, -1e12
    out = transform.transform(new)
    assert out[0, 0] == 3.0 and out[1, 3] == -3.0
    assert np.abs(FeatureTransform().fit(x, NAMES).transform(new)[:, [0, 3]]).max() == 10.0
    with pytest.raises(ValueError, match="infinite values in features \\['d'\\]"):
        transform.transform(np.where(np.arange(4) == 3, np.inf, x[:1]))


def test_round_trip_through_json_is_exact():
    x = training_features()
    transform = FeatureTransform(clip=4.5).fit(x, NAMES)
    restored = FeatureTransform.from_dict(json.loads(json.dumps(transform.to_dict())))
    assert restored.clip == 4.5 and restored.output_names_ == transform.output_names_
    new = training_features(n=300, seed=1) * 1.7
    np.testing.assert_array_equal(restored.transform(new), transform.transform(new))
    for name in ("median_", "mean_", "scale_"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(transform, name))


def test_transform_frame_reorders_and_imputes_nulls():
    x = training_features()
    transform = FeatureTransform().fit(x, NAMES)
    frame = pd.DataFrame(x[:10], columns=NAMES)
    frame["b"] = pd.array(np.where(np.isnan(x[:10, 1]), None, x[:10, 1]), dtype="Float64")
    frame.insert(2, "unit_id", np.arange(10))
    shuffled = frame[["d", "unit_id", "b", "a", "c"]]
    np.testing.assert_array_equal(transform.transform_frame(shuffled), transform.transform(x[:10]))


def test_transform_frame_ignores_columns_it_was_not_fitted_on():
    # A raw column training left out (a non-numeric one, say) may come along: CONTRACT.md's `lrl score`.
    x = training_features()
    transform = FeatureTransform().fit(x, NAMES)
    frame = pd.DataFrame(x[:10], columns=NAMES).assign(unit_id=np.arange(10), plan_tier="gold", other=np.inf)
    assert transform.unused_columns(frame) == ["plan_tier", "other"]
    assert transform.unused_columns(frame[["unit_id", *NAMES]]) == []
    np.testing.assert_array_equal(transform.transform_frame(frame), transform.transform(x[:10]))


def test_transform_frame_names_every_bad_column():
    transform = FeatureTransform().fit(training_features(), NAMES)
    frame = pd.DataFrame({"unit_id": [1, 2], "a": 1.0, "extra": 1.0, "d": 1.0, "other": 0.0})
    with pytest.raises(ValueError, match=r"missing feature columns \['b', 'c'\] that the model was fitted on$"):
        transform.transform_frame(frame)

    good = pd.DataFrame({"unit_id": ["u1", "u2", "u3"], "a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0})
    with pytest.raises(ValueError, match="non-finite feature values in 'a' \\(unit_id u2\\); 'd' \\(unit_id u1, u3\\)"):
        transform.transform_frame(good.assign(a=[0.0, np.inf, 0.0], d=[-np.inf, 0.0, np.inf]))
    with pytest.raises(ValueError, match="non-numeric feature columns: 'c'"):
        transform.transform_frame(good.assign(c="x"))
    with pytest.raises(ValueError, match="unit_id"):
        transform.transform_frame(good.drop(columns="unit_id"))


def test_unfitted_and_shape_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        FeatureTransform().transform(np.zeros((2, 4)))
    transform = FeatureTransform().fit(training_features(), NAMES)
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        transform.transform(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="distinct"):
        FeatureTransform().fit(np.zeros((2, 2)), ["a", "a"])


def test_fit_columns_matches_fit_and_float32_input_transforms_like_float64():
    rng = np.random.default_rng(5)
    raw = rng.normal(3.0, 2.0, size=(500, 4)).astype(np.float32)
    raw[rng.random(raw.shape) < 0.1] = np.nan
    names = ["a", "b", "c", "d"]
    whole = FeatureTransform().fit(raw, names)
    by_column = FeatureTransform().fit_columns((raw[:, j] for j in range(4)), names)
    assert whole.to_dict() == by_column.to_dict()
    with pytest.raises(ValueError, match="3 columns for 4"):
        FeatureTransform().fit_columns((raw[:, j] for j in range(3)), names)
    np.testing.assert_array_equal(whole.transform(raw), whole.transform(raw.astype(np.float64)))


def test_transform_frame_is_the_same_across_row_chunks():
    # More rows than one internal chunk, with NULLs on both sides of the boundary.
    from lrl_core import features

    rng = np.random.default_rng(6)
    n = features._CHUNK_ROWS + 1234
    frame = pd.DataFrame({"unit_id": np.arange(n), "a": rng.normal(size=n), "b": rng.normal(size=n)})
    frame["a"] = frame["a"].astype("Float64")
    frame.loc[[5, features._CHUNK_ROWS - 1, features._CHUNK_ROWS, n - 1], "a"] = pd.NA
    transform = FeatureTransform().fit(frame[["a", "b"]].to_numpy(dtype=np.float64, na_value=np.nan), ["a", "b"])
    expected = transform.transform(frame[["a", "b"]].to_numpy(dtype=np.float64, na_value=np.nan))
    np.testing.assert_array_equal(transform.transform_frame(frame), expected)


def _categorical_world(seed: int):
    """Eight two-arm experiments whose effects depend on a 6-level text column (and a little on x)."""
    rng = np.random.default_rng(seed)
    n_exp, per_exp = 8, 300
    n = n_exp * per_exp
    levels = np.array(["ar", "br", "de", "fr", "jp", "us"])
    code = rng.integers(0, 6, n)
    x = rng.normal(size=(n, 3))
    level_effect = rng.normal(size=(6, 2))  # each level's effect in a 2-d latent
    loading = rng.normal(size=(n_exp, 2))
    experiment = np.repeat(np.arange(n_exp), per_exp)
    treated = rng.random(n) < 0.5
    tau = (level_effect[code] * loading[experiment]).sum(axis=1) + 0.2 * x[:, 0]
    y = x @ np.array([0.5, -0.3, 0.2]) + treated * tau + rng.normal(scale=0.3, size=n)
    frame = pd.DataFrame({"unit_id": np.arange(n), "x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2],
                          "country": levels[code]})
    arms = 2 * experiment + treated
    return frame, arms, y[:, None], tau, experiment


def test_encoding_a_categorical_the_effects_depend_on_lowers_pehe():
    """Issue 12: PEHE with the column encoded is clearly below PEHE with it dropped."""
    from lrl_core.config import LRLConfig
    from lrl_core.metrics import pehe
    from lrl_core.training import LRLearner

    frame, arms, Y, tau, experiment = _categorical_world(seed=4)
    units = np.arange(len(frame))
    held_out = units % 5 == 0
    errors = {}
    for name, columns in {"encoded": frame, "dropped": frame.drop(columns="country")}.items():
        transform = FeatureTransform().fit_frame(columns[~held_out])
        X = transform.transform_frame(columns)
        learner = LRLearner(LRLConfig(progress=False, device="cpu", interval_refits=0)).fit(
            X, units[~held_out], arms[~held_out], Y[~held_out], n_arms=16)
        treated_arm = 2 * experiment[held_out] + 1
        estimate = np.array([learner.predict_cate(X[[u]], [g], [g - 1])[0, 0, 0]
                             for u, g in zip(units[held_out], treated_arm)])
        errors[name] = pehe(estimate, tau[held_out])
    # Dropped, the level's effect is noise (its variance is about 1); encoded, most of it is learnt.
    assert errors["encoded"] < 0.5 * errors["dropped"], errors


def test_a_split_of_prepared_columns_reads_in_the_raw_features_terms():
    frame = pd.DataFrame({"unit_id": range(30), "age": [20.0, 30.0, np.nan, 40.0, 50.0, 60.0] * 5,
                          "plan": ["free", "gold", "free", None, "free", "gold"] * 5})
    transform = FeatureTransform().fit_frame(frame)
    names = transform.output_names_
    assert names == ["age", "age__missing", "plan=free", "plan=gold", "plan=(other)", "plan=(null)"]
    z = (45.0 - transform.mean_[0]) / transform.scale_[0]
    assert transform.describe_split(0, z) == ("age <= 45", "age > 45")
    assert transform.describe_split(1, 0.5) == ("age is known", "age is missing")
    assert transform.describe_split(3, 0.5) == ("plan is not 'gold'", "plan is 'gold'")
    assert transform.describe_split(5, 0.5) == ("plan is not NULL", "plan is NULL")
