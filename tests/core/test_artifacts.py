"""Versioned, atomic model artifacts (artifacts.py)."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

import lrl_core.artifacts as artifacts
from lrl_core.artifacts import ArtifactStore
from lrl_core.config import LRLConfig
from lrl_core.training import LRLearner


class ScaleTransform:
    """A stand-in feature transform with the to_dict / from_dict round trip."""

    def __init__(self, scale: list[float]) -> None:
        self.scale = list(scale)

    def to_dict(self) -> dict:
        return {"scale": self.scale}

    @classmethod
    def from_dict(cls, values: dict) -> "ScaleTransform":
        return cls(values["scale"])


@pytest.fixture(scope="module")
def learner():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    arms = rng.integers(0, 4, size=300)
    Y = X[:, :2] * (1 + arms[:, None]) + rng.normal(size=(300, 2))
    cfg = LRLConfig(d=4, hidden=8, extractor="mlp", weight_decay=100.0, max_epochs=3, progress=False, device="cpu")
    return LRLearner(cfg).fit(X, np.arange(300), arms, Y, metric_names=["clicks", "revenue"])


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "artifacts", transform_type=ScaleTransform)


def test_save_load_reproduces_predictions_transform_and_metadata(store, learner):
    meta = {"experiments": ["e1", "e2"], "arm_names": ["control", "treatment"] * 2, "n_rows": np.int64(300)}
    version = store.save(learner, ScaleTransform([1.5, 2.0]), meta)
    assert store.versions() == [version] and store.current_version() == version
    path = store.root / "versions" / version
    assert sorted(os.listdir(path)) == ["model.json", "weights.safetensors"]
    assert json.loads((path / "model.json").read_text())["metadata"]["n_rows"] == 300

    loaded = store.load()
    assert loaded.version == version
    assert loaded.metadata["experiments"] == ["e1", "e2"]
    assert loaded.transform.scale == [1.5, 2.0]
    assert loaded.learner.metric_names_ == ["clicks", "revenue"]
    X = np.random.default_rng(1).normal(size=(50, 6)).astype(np.float32)
    assert np.array_equal(loaded.learner.predict_cate(X, [1, 3], [0, 0]), learner.predict_cate(X, [1, 3], [0, 0]))
    assert np.array_equal(loaded.learner.y_scale_, learner.y_scale_)


def test_versions_sort_by_creation_and_names_are_checked(store, learner):
    first = store.save(learner, None, {})
    second = store.save(learner, None, {}, make_current=False)
    assert store.versions() == [first, second] and first < second
    assert store.current_version() == first
    store.set_current(second)
    assert store.load().version == second and store.load(first).transform is None
    for bad in ("../escape", "a/b", ".tmp-x", ""):
        with pytest.raises(ValueError):
            store.load(bad)
    with pytest.raises(FileNotFoundError):
        store.set_current("20000101T000000000000Z-abcdef")


def test_crashed_save_is_never_listed_nor_loaded(store, learner):
    good = store.save(learner, None, {})
    # A save killed half-way leaves its temp directory with part of the files.
    crashed = store.root / "versions" / ".tmp-20990101T000000000000Z-dead00"
    crashed.mkdir()
    (crashed / "weights.safetensors").write_bytes(b"partial")
    assert store.versions() == [good]
    assert store.load().version == good
    with pytest.raises(ValueError):
        store.load(crashed.name)


def test_current_moves_only_after_the_new_version_is_complete(store, learner, monkeypatch):
    old = store.save(learner, None, {})
    real_save_file = artifacts.save_file
    seen = []

    def spy(tensors, path):
        seen.append((store.current_version(), store.versions()))
        real_save_file(tensors, path)

    monkeypatch.setattr(artifacts, "save_file", spy)
    new = store.save(learner, None, {})
    assert seen == [(old, [old])] and store.current_version() == new

    def crash(tensors, path):
        real_save_file(tensors, path)
        raise OSError("disk full")

    monkeypatch.setattr(artifacts, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        store.save(learner, None, {})
    assert store.current_version() == new and store.versions() == [old, new]
    assert not [p for p in (store.root / "versions").iterdir() if p.name.startswith(".")]


def test_prune_keeps_newest_current_and_protected(store, learner):
    versions = [store.save(learner, None, {}, make_current=False) for _ in range(5)]
    store.set_current(versions[0])
    stale = store.root / "versions" / ".tmp-stale"
    fresh = store.root / "versions" / ".tmp-in-progress"
    stale.mkdir(), fresh.mkdir()
    hour_ago = time.time() - 7200
    os.utime(stale, (hour_ago, hour_ago))

    removed = store.prune(keep=1, protect={versions[2]})
    assert removed == [versions[1], versions[3]]
    assert store.versions() == [versions[0], versions[2], versions[4]]
    assert not stale.exists() and fresh.exists()
    assert store.load().version == versions[0]


def test_loading_an_empty_store_fails_clearly(store):
    assert store.current_version() is None and store.versions() == []
    with pytest.raises(FileNotFoundError):
        store.load()
