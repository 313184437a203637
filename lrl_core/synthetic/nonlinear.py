"""``nonlinear_synthetic``: low-rank effects over a random nonlinear latent, the demo and scale data.

Multi-arm experiments, units in several experiments, missing features and
metrics, and a per-experiment baseline; it stays lean at millions of units.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import SyntheticData, _arm_layout, _names, _outcomes, _unit_vectors


def nonlinear_synthetic(
    n_experiments: int,
    n_per_arm: int,
    n_features: int,
    n_metrics: int = 5,
    d: int = 8,
    n_arms_per_experiment: int | Sequence[int] = 2,
    overlap: float = 0.0,
    missing_metric_rate: float = 0.0,
    feature_missing_rate: float = 0.0,
    noise_sd: float = 0.5,
    effect_scale: float = 1.0,
    hidden: int = 32,
    seed: int = 0,
    chunk_size: int = 262_144,
) -> SyntheticData:
    """Low-rank outcomes over a nonlinear latent: the demo and scale data set.

    Features ``x ~ N(0, I_m)``; ``v = W2' tanh(W1' x + b1)`` for a random
    two-layer network (``hidden`` units), standardised to unit variance per
    coordinate; ``y(i, j, k, t) = v_i' A_j e_(k,t) + b_(k,j) + noise`` with
    ``A_j = randn(d, d) / sqrt(d)``, a unit-norm control embedding ``e_(k,0)``,
    treatment embeddings ``e_(k,0) + effect_scale * u`` (``u`` unit-norm), and
    a per-experiment baseline ``b_(k,j) ~ N(0, 1)`` that cancels in every CATE.
    The latent is computed from the complete features; ``feature_missing_rate``
    then blanks entries (NaN), so missingness costs information as in real data.

    Units: ``n_per_arm`` fresh units per arm of each experiment, each in
    exactly one arm of one experiment; then every unit independently, with
    probability ``overlap``, also joins one other experiment (uniform among
    the rest) in a uniformly drawn arm. ``missing_metric_rate`` blanks
    ``Y`` entries independently.

    Memory: ``X`` is float32 and the network runs in chunks of
    ``chunk_size`` units, so the paper's real-data size (53 experiments x
    100k units, 142 features: 5.3M rows) takes a few gigabytes.

    Args:
        n_arms_per_experiment: arms per experiment, control included; an int
            for all, or one per experiment.
        Others as named; ``seed`` seeds ``numpy.random.default_rng``.

    Returns:
        ``SyntheticData`` with float32 ``X`` of shape ``(K * sum arms * n_per_arm, m)``.
    """
    if not 0.0 <= overlap <= 1.0 or not 0.0 <= missing_metric_rate < 1.0 or not 0.0 <= feature_missing_rate < 1.0:
        raise ValueError("overlap must lie in [0, 1] and the missing rates in [0, 1)")
    if overlap > 0 and n_experiments < 2:
        raise ValueError("overlap needs at least two experiments")
    rng = np.random.default_rng(seed)
    K, J, m = n_experiments, n_metrics, n_features
    n_arms = np.broadcast_to(np.asarray(n_arms_per_experiment, dtype=np.int64), (K,)).copy()
    arm_experiment, control_arm, arm_names = _arm_layout(n_arms)
    G = len(arm_names)

    # Primary exposures: n_per_arm fresh units per arm, arms in global order.
    n = G * n_per_arm
    units = np.arange(n, dtype=np.int64)
    arms = np.repeat(np.arange(G, dtype=np.int64), n_per_arm)
    if overlap > 0:
        joins = np.flatnonzero(rng.random(n) < overlap)
        own = arm_experiment[arms[joins]]
        other = (own + rng.integers(1, K, size=len(joins))) % K
        arm = control_arm[other] + (rng.random(len(joins)) * n_arms[other]).astype(np.int64)
        units = np.concatenate([units, joins.astype(np.int64)])
        arms = np.concatenate([arms, arm])

    W1 = rng.standard_normal((m, hidden)) / np.sqrt(m)
    b1 = 0.5 * rng.standard_normal(hidden)
    W2 = rng.standard_normal((hidden, d)) / np.sqrt(hidden)
    X = np.empty((n, m), dtype=np.float32)
    latent = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        X[start:stop] = rng.standard_normal((stop - start, m), dtype=np.float32)
        latent[start:stop] = np.tanh(X[start:stop] @ W1.astype(np.float32) + b1.astype(np.float32)) @ W2.astype(np.float32)
    latent -= latent.mean(axis=0)
    latent /= latent.std(axis=0)
    if feature_missing_rate > 0:
        for start in range(0, n, chunk_size):
            block = X[start:start + chunk_size]
            block[rng.random(block.shape, dtype=np.float32) < feature_missing_rate] = np.nan

    A = rng.standard_normal((J, d, d)) / np.sqrt(d)
    e_control = _unit_vectors(rng, (K, d))
    E = e_control[arm_experiment] + effect_scale * _unit_vectors(rng, (G, d))
    E[control_arm] = e_control
    arm_weights = np.einsum("jde,ge->gdj", A, E)
    arm_bias = rng.standard_normal((K, J))[arm_experiment]

    Y = _outcomes(latent, arm_weights, arm_bias, units, arms)
    Y += noise_sd * rng.standard_normal(Y.shape)
    if missing_metric_rate > 0:
        Y[rng.random(Y.shape) < missing_metric_rate] = np.nan
    return SyntheticData(
        X=X, unit_ids=np.arange(n, dtype=np.int64), units=units, arms=arms, Y=Y,
        arm_experiment=arm_experiment, control_arm=control_arm,
        experiments=_names("exp", K), arm_names=arm_names, metrics=_names("metric", J, width=1),
        noise_sd=noise_sd, _latent=latent, _arm_weights=arm_weights, _arm_bias=arm_bias,
    )
