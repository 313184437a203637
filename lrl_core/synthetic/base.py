"""What every generator returns, and the one outcome model they share.

``SyntheticData`` holds pooled training rows in the shapes of
:class:`lrl_core.data.PooledData` with the noise-free data-generating process
kept inside; ``EvalSet`` holds held-out pairs with both potential outcomes.
The helpers compute ``mu(u, g) = latent[u] @ arm_weights[g] + arm_bias[g]``,
lay out global arm indices, and draw the held-out pairs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

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


def _eval_set(rng, X, latent, units, pair_arms, assigned, arm_weights, arm_bias, noise_sd) -> EvalSet:
    """Draw both noisy potential outcomes of held-out (unit, control, treatment) pairs."""
    units = np.asarray(units, dtype=np.int64)
    mu = np.stack([_outcomes(latent, arm_weights, arm_bias, units, pair_arms[:, t]) for t in (0, 1)], axis=1)
    Y_pot = mu + noise_sd * rng.standard_normal(mu.shape)
    return EvalSet(X=X, units=units, arms=pair_arms.astype(np.int64), assigned=assigned.astype(np.int64),
                   Y_potential=Y_pot, mu_potential=mu)
