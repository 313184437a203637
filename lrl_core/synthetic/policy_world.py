"""One randomised experiment with planted segments and a guardrail, for policy trees (issue 15)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PolicyWorld", "planted_policy_world"]


@dataclass
class PolicyWorld:
    """Features ``X (n, 3)``, true outcomes ``mu (n, 4, 2)`` (arm 0 control; metric 0 the reward,
    1 the guardrail), a model's outcomes ``model`` (truth + noise), the randomised ``arm``,
    observed ``y (n, 2)``, arm ``shares`` and a ``role`` per unit (0 fit, 1 validation, 2 test)."""

    X: np.ndarray
    mu: np.ndarray
    model: np.ndarray
    arm: np.ndarray
    y: np.ndarray
    shares: np.ndarray
    role: np.ndarray


def planted_policy_world(seed: int, n: int = 20_000, model_noise: float = 0.2) -> PolicyWorld:
    """Arm 1 wins where ``x0 > 0``, arm 2 where ``x0 <= 0 < x1``; arm 3 looks best everywhere (+1.5 on
    the reward) but moves the guardrail metric by -1 wherever ``x1 <= 0``. Outcome noise sd 1, the
    model's outcomes off by ``model_noise`` per unit, arms randomised with equal shares, units split
    50 / 25 / 25 into fit, validation and test."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 3))
    effect = np.zeros((n, 4, 2))
    effect[:, 1, 0] = np.where(X[:, 0] > 0, 1.0, -0.5)
    effect[:, 2, 0] = np.where((X[:, 0] <= 0) & (X[:, 1] > 0), 1.0, 0.0)
    effect[:, 3, 0] = 1.5
    effect[:, 3, 1] = np.where(X[:, 1] <= 0, -1.0, 0.0)
    mu = np.stack([X[:, 2], 0.5 * X[:, 0]], axis=1)[:, None, :] + effect
    arm = rng.integers(0, 4, n)
    y = mu[np.arange(n), arm] + rng.normal(size=(n, 2))
    model = mu + model_noise * rng.normal(size=mu.shape)
    return PolicyWorld(X, mu, model, arm, y, np.full(4, 0.25), rng.choice(3, size=n, p=[0.5, 0.25, 0.25]))
