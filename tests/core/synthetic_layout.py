"""The structural invariants every synthetic generator must meet.

Not a test module: imported by ``test_synthetic_*.py``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["check_layout"]


def check_layout(data):
    """Structural invariants every generator must meet."""
    K, G = len(data.experiments), len(data.arm_names)
    r, J = data.Y.shape
    assert J == len(data.metrics)
    assert data.units.shape == data.arms.shape == (r,)
    assert data.arm_experiment.shape == (G,) and data.control_arm.shape == (K,)
    assert data.units.min() >= 0 and data.units.max() < data.X.shape[0]
    assert len(data.unit_ids) == data.X.shape[0] == len(np.unique(data.unit_ids))
    # Control first within each experiment, arms grouped by experiment in order.
    assert np.all(np.diff(data.arm_experiment) >= 0)
    assert np.array_equal(data.arm_experiment[data.control_arm], np.arange(K))
    assert all(data.arm_names[c] == "control" for c in data.control_arm)
    # A unit is in at most one arm of an experiment.
    pairs = np.stack([data.units, data.arm_experiment[data.arms]], axis=1)
    assert len(np.unique(pairs, axis=0)) == r
