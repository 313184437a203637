"""Nearest experiments by effect embedding (lrl_core/report/embeddings.py)."""
from __future__ import annotations

import numpy as np

from lrl_core.report import nearest_experiments


def test_nearest_experiments_by_cosine():
    E = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 1.0], [-1.0, 0.0]])
    labels = ["a", "a2", "b", "b2", "anti_a"]
    near = nearest_experiments(E, labels, k=2)
    assert list(near.columns) == ["label", "neighbour", "rank", "similarity"]
    assert len(near) == 10 and not (near["label"] == near["neighbour"]).any()
    first = near[near["rank"] == 1].set_index("label")["neighbour"]
    assert first.to_dict() == {"a": "a2", "a2": "a", "b": "b2", "b2": "b", "anti_a": "b"}
    assert np.all(np.diff(near["similarity"].to_numpy().reshape(5, 2), axis=1) <= 0)
    assert len(nearest_experiments(E[:2], labels[:2], k=5)) == 2
    euclid = nearest_experiments(E, labels, k=1, metric="euclidean").set_index("label")["neighbour"]
    assert euclid["a"] == "a2"
