"""The paper's Algorithm 2 (Yao et al. 2022, sec. 5.3): ``paper_synthetic``, with our reading of it."""
from __future__ import annotations

from typing import Literal

import numpy as np

from .base import SyntheticData, _arm_layout, _eval_set, _names, _outcomes, _unit_vectors


def paper_synthetic(
    n_per_arm: int,
    n_experiments: int = 50,
    n_features: int = 128,
    n_metrics: int = 5,
    d: int = 32,
    noise_sd: float = 0.1,
    seed: int = 0,
    n_eval_per_arm: int = 0,
    latent_norm: Literal["row", "frobenius"] = "row",
    shared_loading: bool = True,
    assignment: Literal["balanced", "bernoulli"] = "balanced",
) -> SyntheticData:
    """The paper's Algorithm 2 (Yao et al. 2022, section 5.3), as we read it.

    Algorithm 2 draws ``A_j = randn(d, d)`` per metric; per experiment
    ``e_k1, e_k0 = l2_norm(randn(d))``, ``v = fro_norm(randn(n, d))``,
    ``Y_jk^t = v' A_j e_k^t``, ``L = randn(d, m)``, ``X_k = v L``,
    ``T_k ~ Bern_n(0.5)``. Our reading, which ``benchmarks/README.md``
    argues from small experiments:

    - **Latent scale** (``latent_norm``). ``"row"`` (default, and DESIGN.md's
      reading): each unit's ``v`` is a unit vector, so the signal does not
      depend on ``n`` and an outcome has variance about 1.
      ``"frobenius"``: the literal alternative, each experiment's training
      ``v`` matrix (``2 n`` rows) scaled to unit Frobenius norm, so the
      outcome variance is about ``1 / (2 n)``; held-out units share the
      experiment's factor. OLS T-learners at ``n >= 33`` per arm are blind to
      the scale; it only moves the under-determined ``n = 25`` cell.
    - **Feature loading** (``shared_loading``). Algorithm 2 draws ``L`` inside
      the experiment loop. With one ``L`` per experiment no shared linear
      ``v(x)`` can be exact (50 random 32-dimensional row spaces fill all of
      ``R^128``), yet the paper's linear LR-learner reaches the noise floor,
      so the default is one ``L`` for all experiments; ``False`` draws one
      per experiment.
    - **Noise**. Table 1's floors (PEHE 0.0200, mu-risk 0.0100) are those of
      Gaussian noise of variance ``noise_sd**2 = 0.01`` on every potential
      outcome: the realised ITE ``(Y1 + eps1) - (Y0 + eps0)`` then carries
      ``2 * 0.01`` of irreducible error.
    - **Assignment**. ``"balanced"``: exactly ``n_per_arm`` units per arm, the
      "n per treatment condition" of Table 1; ``"bernoulli"``: ``2 n`` units
      per experiment with ``T ~ Bern(0.5)``, as the algorithm writes it.

    Each unit is in exactly one experiment; experiment ``k`` has arms
    ``2k`` (control) and ``2k + 1`` (treatment).

    Args:
        n_per_arm: training units per arm (``n`` of Table 1).
        n_experiments: ``K``; n_features: ``m``; n_metrics: ``J``; d: latent dimension.
        noise_sd: outcome noise standard deviation.
        seed: seed of ``numpy.random.default_rng``.
        n_eval_per_arm: held-out units per arm; they make ``.eval`` (one pair
            per unit, assigned to that arm), with both noisy potential outcomes.

    Returns:
        ``SyntheticData`` with ``n = 2 K n_per_arm`` units and as many rows.
    """
    if n_per_arm < 1:
        raise ValueError("n_per_arm must be positive")
    if latent_norm not in ("row", "frobenius"):
        raise ValueError(f"latent_norm must be 'row' or 'frobenius', not {latent_norm!r}")
    if assignment not in ("balanced", "bernoulli"):
        raise ValueError(f"assignment must be 'balanced' or 'bernoulli', not {assignment!r}")
    rng = np.random.default_rng(seed)
    K, J, m = n_experiments, n_metrics, n_features
    A = rng.standard_normal((J, d, d))
    E = _unit_vectors(rng, (K, 2, d))  # [:, 0] control, [:, 1] treatment
    n_train, n_eval = 2 * n_per_arm, 2 * n_eval_per_arm
    V = rng.standard_normal((K, n_train + n_eval, d))
    if latent_norm == "row":
        V /= np.linalg.norm(V, axis=2, keepdims=True)
    else:
        V /= np.linalg.norm(V[:, :n_train], axis=(1, 2))[:, None, None]
    L = rng.standard_normal((1 if shared_loading else K, d, m))
    X = np.matmul(V, L)  # (K, n_train + n_eval, m)

    if assignment == "balanced":
        treated = np.tile(np.arange(n_train) >= n_per_arm, (K, 1))
    else:
        treated = rng.random((K, n_train)) < 0.5
    # Eval units: the first n_eval_per_arm in control, the rest in treatment.
    eval_assigned = np.tile((np.arange(n_eval) >= n_eval_per_arm).astype(np.int64), K)

    arm_experiment, control_arm, arm_names = _arm_layout([2] * K)
    # (G, d, J): column j of arm (k, t) is A_j e_(k,t).
    arm_weights = np.einsum("jde,kte->ktdj", A, E).reshape(2 * K, d, J)
    arm_bias = np.zeros((2 * K, J))

    train_V = V[:, :n_train].reshape(-1, d)
    units = np.arange(K * n_train, dtype=np.int64)
    arms = (2 * np.repeat(np.arange(K), n_train) + treated.reshape(-1)).astype(np.int64)
    Y = _outcomes(train_V, arm_weights, arm_bias, units, arms)
    Y += noise_sd * rng.standard_normal(Y.shape)

    data = SyntheticData(
        X=X[:, :n_train].reshape(-1, m), unit_ids=units.copy(), units=units, arms=arms, Y=Y,
        arm_experiment=arm_experiment, control_arm=control_arm,
        experiments=_names("exp", K), arm_names=arm_names, metrics=_names("metric", J, width=1),
        noise_sd=noise_sd, _latent=train_V, _arm_weights=arm_weights, _arm_bias=arm_bias,
    )
    if n_eval:
        eval_V = V[:, n_train:].reshape(-1, d)
        pair_arms = np.repeat(control_arm, n_eval)[:, None] + np.arange(2)
        data.eval = _eval_set(rng, X[:, n_train:].reshape(-1, m), eval_V, np.arange(K * n_eval),
                              pair_arms, eval_assigned, arm_weights, arm_bias, noise_sd)
    return data
