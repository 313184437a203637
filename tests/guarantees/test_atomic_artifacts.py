"""Model artifacts are atomic: a save or a retrain killed at any point leaves the previous version current,
loadable and the only one listed, and pruning never removes a version in use."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from lrl_core.artifacts import ArtifactStore
from lrl_core.config import LRLConfig
from lrl_core.training import LRLearner
from lrl_pipeline.assets import training
from lrl_pipeline.storage import LRLDatabase
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.runs import IN_FLIGHT, reap_dead_cli_runs
from lrl_pipeline.runner import score_units

from tests.helpers import REPO


# The child loads the current version and saves it again, stopping (for the parent's SIGKILL)
# either half-way through writing the weights or after the rename, before CURRENT moves.
_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import lrl_core.artifacts as artifacts
    root, marker, where = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    def stop_here():
        marker.write_text(where)
        time.sleep(120)

    if where == "weights":
        def half_save(tensors, path):
            Path(path).write_bytes(b"half a safetensors file")
            stop_here()
        artifacts.save_file = half_save
    else:
        artifacts.ArtifactStore.set_current = lambda self, version: stop_here()
    store = artifacts.ArtifactStore(root)
    store.save(store.load().learner, None, {"generation": 2})
""")


@pytest.fixture(scope="module")
def learner():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    arms = rng.integers(0, 2, size=200)
    Y = X[:, :2] * (1 + arms[:, None]) + rng.normal(size=(200, 2))
    cfg = LRLConfig(d=3, hidden=8, extractor="mlp", weight_decay=100.0, max_epochs=2, progress=False, device="cpu")
    return LRLearner(cfg).fit(X, np.arange(200), arms, Y, metric_names=["a", "b"])


def _kill_child_at(root: Path, tmp_path: Path, where: str) -> None:
    marker = tmp_path / f"marker-{where}"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(root), str(marker), where],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, child.communicate()[0].decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)


@pytest.mark.parametrize("where", ["weights", "before_current"])
def test_a_save_killed_midway_leaves_the_previous_version_current(learner, tmp_path, where):
    store = ArtifactStore(tmp_path / "artifacts")
    first = store.save(learner, None, {"generation": 1})
    X = np.random.default_rng(1).normal(size=(20, 5)).astype(np.float32)
    expected = learner.predict_cate(X, [1], [0])

    _kill_child_at(store.root, tmp_path, where)

    assert store.current_version() == first
    loaded = store.load()
    assert loaded.version == first and loaded.metadata == {"generation": 1}
    np.testing.assert_array_equal(loaded.learner.predict_cate(X, [1], [0]), expected)
    others = [v for v in store.versions() if v != first]
    if where == "weights":
        # The half-written save is a temporary directory: never listed, never loadable by name.
        assert others == []
        leftovers = [p.name for p in (store.root / "versions").iterdir() if p.name != first]
        assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")
    else:
        # Complete but never made current: listed, loadable, yet not what readers get.
        assert len(others) == 1 and store.load(others[0]).metadata == {"generation": 2}

    # Pruning cleans up the crash (stale temporaries, surplus versions) and keeps the current one.
    store.prune(keep=0, stale_after_s=0.0)
    assert store.versions() == [first] and store.current_version() == first
    assert sorted(p.name for p in (store.root / "versions").iterdir()) == [first]


def test_prune_keeps_the_current_and_protected_versions_only(learner, tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    versions = [store.save(learner, None) for _ in range(4)]
    store.set_current(versions[1])
    removed = store.prune(keep=1, protect={versions[0]})
    assert sorted(removed) == [versions[2]]
    assert store.versions() == [versions[0], versions[1], versions[3]]
    assert store.load().version == versions[1]


_CHILD_RETRAIN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import lrl_core.training as training
    marker = Path(sys.argv[3])
    original = training.LRLearner.fit
    def slow_fit(self, *args, **kwargs):
        marker.write_text("training")
        time.sleep(120)  # the parent kills us here
        return original(self, *args, **kwargs)
    training.LRLearner.fit = slow_fit
    from lrl_pipeline.runner import run_retrain
    run_retrain(Path(sys.argv[1]), Path(sys.argv[2]), progress=lambda _: None,
                run_config={"ops": {"lr_learner": {"config": {"max_epochs": 2}}}})
""")


def _wait_for(path: Path, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the child never reached the point to kill"
        time.sleep(0.1)


def test_a_retrain_killed_during_training_keeps_the_model_and_frees_the_pipeline(pipeline, tmp_path, monkeypatch,
                                                                                 tiny_raw):
    store = ArtifactStore(pipeline.artifacts)
    version, versions = store.current_version(), store.versions()
    home = tmp_path / "dagster_home"
    home.mkdir()
    marker = tmp_path / "marker"
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD_RETRAIN, str(pipeline.db), str(pipeline.artifacts),
                              str(marker)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(marker, child)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)

    assert store.current_version() == version and store.versions() == versions
    assert not any(p.name.startswith(".tmp-") for p in (pipeline.artifacts / "versions").iterdir())
    scores = score_units(pipeline.db, pipeline.artifacts, tiny_raw["unit_features"].head(3))
    assert set(scores["experiment_id"]) == set(pipeline.experiments) and np.isfinite(scores["cate"]).all()
    # The dead run is marked failed and its duckdb pool slot freed, so later runs are not blocked.
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        dead = instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT))
        assert [r.dagster_run.run_id for r in dead] == reap_dead_cli_runs(instance) and len(dead) == 1
        assert not instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT))


def test_a_retrain_never_prunes_an_extractor_that_heads_are_fitted_on(pipeline, fast_run_config):
    store = ArtifactStore(pipeline.artifacts)
    in_use = store.current_version()  # every head of the fixture is on it
    loaded = store.load()
    for _ in range(training.KEEP_VERSIONS):  # enough newer versions to push it out of the kept window
        store.save(loaded.learner, loaded.transform, loaded.metadata)
    newer = store.versions()[1:]
    resources = {"database": LRLDatabase(database=str(pipeline.db)),
                 "artifacts": ArtifactStoreResource(root=str(pipeline.artifacts)),
                 "pipes_client": dg.PipesSubprocessClient()}
    config = {"ops": {"lr_learner": fast_run_config["ops"]["lr_learner"]}}
    assert dg.materialize([training.lr_learner], resources=resources, instance=pipeline.instance,
                          run_config=config).success
    versions = store.versions()
    assert in_use in versions and store.load(in_use).version == in_use
    assert newer[0] not in versions  # pruning still works on unused versions
    assert len(versions) == training.KEEP_VERSIONS + 1
