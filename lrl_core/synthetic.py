"""Synthetic and semi-synthetic experiment data with known potential outcomes.

Every generator returns a :class:`SyntheticData`: the pooled training rows in
the shapes of :class:`lrl_core.data.PooledData` (one row per unit and
experiment, global arm index, control arm first within each experiment), the
noise-free data-generating process kept inside so that true potential
outcomes and true CATEs can be asked for, an optional :class:`EvalSet` of
held-out units whose *both* noisy potential outcomes are drawn (PEHE against
the realised ITE), and :meth:`SyntheticData.raw_tables` for the four raw
tables of the user contract.

All generators share one outcome model, which covers the three of them::

    mu(unit u, arm g, metric j) = latent[u] @ arm_weights[g][:, j] + arm_bias[g, j]

- :func:`paper_synthetic`: the paper's Algorithm 2 (Yao et al. 2022, sec. 5.3),
  ``latent = v``, ``arm_weights[g][:, j] = A_j e_g``, no bias.
- :func:`nonlinear_synthetic`: ``latent = net(x)`` for a random two-layer tanh
  network, multi-arm experiments, units in several experiments, missing
  features and metrics, a per-experiment baseline; the demo and scale data.
- :func:`digits_semi_synthetic`: the paper's sec. 5.4 on scikit-learn's
  digits; ``latent`` is the class logits, ``arm_weights[g]`` selects one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "EvalSet",
    "SyntheticData",
    "paper_synthetic",
    "nonlinear_synthetic",
    "digits_semi_synthetic",
]

_LAUNCH_START = pd.Timestamp("2026-01-05")


@dataclass(eq=False)
class EvalSet:
    """Held-out (unit, experiment) pairs with both potential outcomes drawn.

    Each pair compares one treatment arm with its experiment's control. The
    unit is also *assigned* to one of the two, whose outcome is the held-out
    observed outcome of mu-risk.

    Attributes:
        X: ``(n_e, m)`` raw features of the held-out units.
        units: ``(e,)`` int64, pair -> row of ``X``.
        arms: ``(e, 2)`` int64 global arm indices ``[control, treatment]``.
        assigned: ``(e,)`` int64 in ``{0, 1}``: column of ``arms`` the unit is in.
        Y_potential: ``(e, 2, J)`` noisy potential outcomes ``[control, treatment]``.
        mu_potential: ``(e, 2, J)`` their noise-free parts.
    """

    X: np.ndarray
    units: np.ndarray
    arms: np.ndarray
    assigned: np.ndarray
    Y_potential: np.ndarray
    mu_potential: np.ndarray

    @property
    def observed_arms(self) -> np.ndarray:
        """``(e,)`` global arm index each pair's unit is assigned to."""
        return self.arms[np.arange(len(self.assigned)), self.assigned]

    @property
    def Y_observed(self) -> np.ndarray:
        """``(e, J)`` the noisy outcome of the assigned arm (mu-risk target)."""
        return self.Y_potential[np.arange(len(self.assigned)), self.assigned]

    @property
    def ite(self) -> np.ndarray:
        """``(e, J)`` realised individual effect, treatment minus control, noise included."""
        return self.Y_potential[:, 1] - self.Y_potential[:, 0]

    @property
    def cate(self) -> np.ndarray:
        """``(e, J)`` noise-free effect, treatment minus control."""
        return self.mu_potential[:, 1] - self.mu_potential[:, 0]


@dataclass(eq=False)
class SyntheticData:
    """Pooled experiment rows with the data-generating process kept inside.

    Attributes (shape letters as in ``docs/ARCHITECTURE.md``):
        X: ``(n, m)`` raw features, NaN = missing (float64; float32 from
            :func:`nonlinear_synthetic`, to stay lean at millions of units).
        unit_ids: ``(n,)`` int64 ids of the rows of ``X``.
        units: ``(r,)`` int64 exposure row -> row of ``X``.
        arms: ``(r,)`` int64 exposure row -> global arm index in ``[0, G)``.
        Y: ``(r, J)`` float64 observed noisy outcomes, NaN = unobserved.
        arm_experiment: ``(G,)`` int64 arm -> experiment index.
        control_arm: ``(K,)`` int64 experiment -> global index of its control.
        experiments: ``(K,)`` experiment ids.
        arm_names: ``(G,)`` arm labels (``'control'``, ``'treatment'``, ``'treatment_1'``, ...).
        metrics: ``(J,)`` metric names.
        noise_sd: standard deviation of the Gaussian outcome noise.
        eval: held-out pairs with both potential outcomes, or ``None``.
    """

    X: np.ndarray
    unit_ids: np.ndarray
    units: np.ndarray
    arms: np.ndarray
    Y: np.ndarray
    arm_experiment: np.ndarray
    control_arm: np.ndarray
    experiments: list[str]
    arm_names: list[str]
    metrics: list[str]
    noise_sd: float
    eval: EvalSet | None = None
    # The data-generating process: mu = latent[u] @ arm_weights[g] + arm_bias[g].
    _latent: np.ndarray = field(default=None, repr=False)  # (n, d)
    _arm_weights: np.ndarray = field(default=None, repr=False)  # (G, d, J)
    _arm_bias: np.ndarray = field(default=None, repr=False)  # (G, J)

    @property
    def n_arms(self) -> int:
        """``G``, the number of arms over all experiments."""
        return len(self.arm_names)

    @property
    def row_experiment(self) -> np.ndarray:
        """``(r,)`` experiment index of each exposure row."""
        return self.arm_experiment[self.arms]

    @property
    def arm_controls(self) -> np.ndarray:
        """``(G,)`` the control arm of each arm's experiment."""
        return self.control_arm[self.arm_experiment]

    @property
    def treatment_arms(self) -> np.ndarray:
        """``(G - K,)`` global indices of all non-control arms."""
        return np.flatnonzero(self.arm_controls != np.arange(self.n_arms))

    def true_outcomes(self, unit_index, arm_index) -> np.ndarray:
        """Noise-free potential outcomes of units in arms, paired elementwise.

        ``unit_index``, ``arm_index``: int arrays of one length ``L`` (or one
        of them a scalar) -> ``(L, J)``.
        """
        u, g = np.broadcast_arrays(np.atleast_1d(np.asarray(unit_index, dtype=np.int64)),
                                   np.atleast_1d(np.asarray(arm_index, dtype=np.int64)))
        return _outcomes(self._latent, self._arm_weights, self._arm_bias, u, g)

    def true_cate(self, unit_index, arms, controls) -> np.ndarray:
        """Noise-free effect of ``arms`` against ``controls`` for the given units.

        ``unit_index (L,)``, ``arms (L,)``, ``controls (L,)`` -> ``(L, J)``,
        ``mu(arm) - mu(control)`` paired elementwise (scalars broadcast).
        """
        return self.true_outcomes(unit_index, arms) - self.true_outcomes(unit_index, controls)

    def raw_tables(self) -> dict[str, pd.DataFrame]:
        """The four raw tables of the user contract (``/work/shared/CONTRACT.md``).

        Returns ``{"unit_features", "experiments", "exposures", "outcomes"}``:
        ``unit_features`` has ``unit_id`` and ``x0..x{m-1}`` (NaN = NULL);
        ``experiments`` has ``experiment_id`` and ``launched_at`` (one day
        apart, in experiment order); ``exposures`` has ``unit_id``,
        ``experiment_id``, ``arm``; ``outcomes`` is long (``unit_id``,
        ``experiment_id``, ``metric``, ``value``) with a row per observed
        value only. Built with array indexing, no per-row Python.
        """
        K = len(self.experiments)
        unit_features = pd.DataFrame(self.X, columns=[f"x{i}" for i in range(self.X.shape[1])], copy=False)
        unit_features.insert(0, "unit_id", self.unit_ids)
        experiments = pd.DataFrame({
            "experiment_id": np.asarray(self.experiments, dtype=object),
            "launched_at": _LAUNCH_START + pd.to_timedelta(np.arange(K), unit="D"),
        })
        row_ids = self.unit_ids[self.units]
        # Shared string objects: one pointer per row, not one string per row.
        exp_names = np.asarray(self.experiments, dtype=object)[self.row_experiment]
        exposures = pd.DataFrame({
            "unit_id": row_ids,
            "experiment_id": exp_names,
            "arm": np.asarray(self.arm_names, dtype=object)[self.arms],
        })
        obs_row, obs_metric = np.nonzero(~np.isnan(self.Y))
        outcomes = pd.DataFrame({
            "unit_id": row_ids[obs_row],
            "experiment_id": exp_names[obs_row],
            "metric": np.asarray(self.metrics, dtype=object)[obs_metric],
            "value": self.Y[obs_row, obs_metric],
        })
        return {"unit_features": unit_features, "experiments": experiments,
                "exposures": exposures, "outcomes": outcomes}


def _outcomes(latent, arm_weights, arm_bias, units, arms) -> np.ndarray:
    """``mu(units[i], arms[i])`` for every ``i`` -> ``(L, J)`` float64.

    One matrix product per arm rather than per row, so that millions of rows
    never materialise an ``(L, d, J)`` weight tensor.
    """
    out = np.empty((len(units), arm_weights.shape[2]), dtype=np.float64)
    order = np.argsort(arms, kind="stable")
    present, starts = np.unique(arms[order], return_index=True)
    for g, idx in zip(present, np.split(order, starts[1:])):
        out[idx] = latent[units[idx]].astype(np.float64) @ arm_weights[g] + arm_bias[g]
    return out


def _arm_layout(n_arms: Sequence[int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Global arm indexing for experiments with ``n_arms[k]`` arms (control included).

    -> ``arm_experiment (G,)``, ``control_arm (K,)``, ``arm_names (G,)``:
    control first within each experiment, one treatment arm is
    ``'treatment'``, several are ``'treatment_1'``, ``'treatment_2'``, ...
    """
    n_arms = np.asarray(n_arms, dtype=np.int64)
    if np.any(n_arms < 2):
        raise ValueError("every experiment needs a control and at least one treatment arm")
    arm_experiment = np.repeat(np.arange(len(n_arms)), n_arms)
    control_arm = np.concatenate([[0], np.cumsum(n_arms)[:-1]]).astype(np.int64)
    names: list[str] = []
    for a in n_arms:
        names += ["control"] + (["treatment"] if a == 2 else [f"treatment_{t}" for t in range(1, a)])
    return arm_experiment, control_arm, names


def _unit_vectors(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Gaussian vectors scaled to unit Euclidean norm along the last axis."""
    z = rng.standard_normal(shape)
    return z / np.linalg.norm(z, axis=-1, keepdims=True)


def _names(prefix: str, count: int, width: int = 3) -> list[str]:
    """``prefix_000``, ``prefix_001``, ...: zero-padded so that names sort in index order."""
    width = max(width, len(str(count - 1)))
    return [f"{prefix}_{i:0{width}d}" for i in range(count)]


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


def _eval_set(rng, X, latent, units, pair_arms, assigned, arm_weights, arm_bias, noise_sd) -> EvalSet:
    """Draw both noisy potential outcomes of held-out (unit, control, treatment) pairs."""
    units = np.asarray(units, dtype=np.int64)
    mu = np.stack([_outcomes(latent, arm_weights, arm_bias, units, pair_arms[:, t]) for t in (0, 1)], axis=1)
    Y_pot = mu + noise_sd * rng.standard_normal(mu.shape)
    return EvalSet(X=X, units=units, arms=pair_arms.astype(np.int64), assigned=assigned.astype(np.int64),
                   Y_potential=Y_pot, mu_potential=mu)


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


def digits_semi_synthetic(
    share: float = 0.1,
    seed: int = 0,
    test_fraction: float = 0.2,
    features: Literal["hidden", "pixels"] = "hidden",
    hidden: tuple[int, int] = (64, 32),
    noise_sd: float = 0.0,
) -> SyntheticData:
    """The paper's semi-synthetic design (section 5.4) on scikit-learn's digits.

    A classifier (``sklearn.neural_network.MLPClassifier`` with two ReLU
    hidden layers of sizes ``hidden``, seeded by ``seed``) is trained on all
    1797 bundled 8x8 digit images (no download). The potential outcome of
    arm ``c`` is the classifier's logit for class ``c``, divided by one
    common scale (the standard deviation of all logits) so that outcomes
    have unit variance without changing any contrast between classes. Class
    0 is the control of every experiment: 9 experiments, experiment ``c``
    comparing class ``c`` with class 0, one metric.

    Features (``features``): ``"hidden"`` (default), the first hidden
    layer's activations, as the paper takes an intermediate layer; the map
    from them to the outcomes passes through one more ReLU layer, so it is
    nonlinear and not in the linear T-learner's class. ``"pixels"``: the 64
    raw pixel intensities, where the whole network is the map.

    Units are split at random into a training part and a held-out part
    (``test_fraction``). Every training unit joins each experiment
    independently with probability ``share`` (the paper: 10%), and within it
    control or treatment with probability 1/2, so a unit may sit in several
    experiments and some sit in none. Held-out units make ``.eval``: every
    (unit, experiment) pair, with a random assigned arm for mu-risk.

    1797 units is small next to the paper's 60000 CIFAR-100 images (about
    70 training units per arm at ``share = 0.1``); it is the data set that
    ships with scikit-learn, so the study runs offline in seconds.

    Returns:
        ``SyntheticData`` with float64 ``X``; noise of sd ``noise_sd`` (the
        paper adds none) on training outcomes and both held-out potential outcomes.
    """
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    if features not in ("hidden", "pixels"):
        raise ValueError(f"features must be 'hidden' or 'pixels', not {features!r}")
    rng = np.random.default_rng(seed)
    pixels, labels = load_digits(return_X_y=True)
    pixels = pixels / 16.0
    clf = MLPClassifier(hidden_layer_sizes=hidden, alpha=1e-3, max_iter=500, random_state=seed)
    clf.fit(pixels, labels)
    h1 = np.maximum(pixels @ clf.coefs_[0] + clf.intercepts_[0], 0.0)
    h2 = np.maximum(h1 @ clf.coefs_[1] + clf.intercepts_[1], 0.0)
    logits = h2 @ clf.coefs_[2] + clf.intercepts_[2]
    logits /= logits.std()
    X_all = h1 if features == "hidden" else pixels

    n_classes = logits.shape[1]
    K = n_classes - 1
    arm_experiment, control_arm, arm_names = _arm_layout([2] * K)
    # Arm 2k is class 0 (control), arm 2k + 1 is class k + 1: a one-hot weight picks the logit.
    arm_class = np.where(np.arange(2 * K) % 2 == 0, 0, np.arange(2 * K) // 2 + 1)
    arm_weights = np.eye(n_classes)[arm_class][:, :, None]  # (G, 10, 1)
    arm_bias = np.zeros((2 * K, 1))

    n_all = len(labels)
    perm = rng.permutation(n_all)
    n_test = int(round(test_fraction * n_all))
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])

    member = rng.random((len(train), K)) < share
    row_unit, row_exp = np.nonzero(member)
    arms = (2 * row_exp + (rng.random(len(row_exp)) < 0.5)).astype(np.int64)
    units = row_unit.astype(np.int64)
    latent = logits[train]
    Y = _outcomes(latent, arm_weights, arm_bias, units, arms)
    Y += noise_sd * rng.standard_normal(Y.shape)

    data = SyntheticData(
        X=X_all[train], unit_ids=train.astype(np.int64), units=units, arms=arms, Y=Y,
        arm_experiment=arm_experiment, control_arm=control_arm,
        experiments=[f"digit_{c}_vs_0" for c in range(1, n_classes)], arm_names=arm_names,
        metrics=["logit"], noise_sd=noise_sd, _latent=latent, _arm_weights=arm_weights, _arm_bias=arm_bias,
    )
    if n_test:
        pair_unit = np.repeat(np.arange(n_test), K)
        pair_arms = np.tile(control_arm, n_test)[:, None] + np.arange(2)
        assigned = (rng.random(len(pair_unit)) < 0.5).astype(np.int64)
        data.eval = _eval_set(rng, X_all[test], logits[test], pair_unit, pair_arms, assigned,
                              arm_weights, arm_bias, noise_sd)
    return data
