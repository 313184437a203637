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

Modules: :mod:`.base` (the two data classes and the shared outcome model),
:mod:`.paper`, :mod:`.nonlinear` and :mod:`.digits` (one generator each).
"""
from __future__ import annotations

from .base import EvalSet, SyntheticData
from .digits import digits_semi_synthetic
from .nonlinear import nonlinear_synthetic
from .paper import paper_synthetic

__all__ = [
    "EvalSet",
    "SyntheticData",
    "paper_synthetic",
    "nonlinear_synthetic",
    "digits_semi_synthetic",
]
