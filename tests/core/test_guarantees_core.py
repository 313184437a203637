"""A save killed at any point leaves the previous version current, loadable and the only one listed."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from lrl_core.artifacts import ArtifactStore
from lrl_core.config import LRLConfig
from lrl_core.training import LRLearner

REPO = Path(__file__).resolve().parents[2]

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
