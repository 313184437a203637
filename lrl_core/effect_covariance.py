"""The covariance across experiments of treatment effects on several metrics, and metric proxies.

Platforms ask which quick metric moves with the slow one they care about.
Across many experiment arms, the covariance ``Lambda`` of the arms' *true*
effects on two metrics answers it; the covariance of their *estimated*
effects does not when experiments are weak: each estimated effect ``D_e``
(a difference in means against the experiment's control) carries noise with
covariance ``N_e = Omega_t / n_t + Omega_c / n_c`` (the units' own metric
covariance over the arm sizes). That noise adds to the effects' covariance
and does not shrink with more experiments, and where two metrics correlate
within units (clicks and sessions) it manufactures an effect correlation
that is not there (Bibaut, Kallus, Chou and Ejdemyr, "Learning the
Covariance of Treatment Effects Across Many Weak Experiments", KDD 2024).

All estimators work across treated arms ``i`` with weights ``w_i`` (equal by
default), ``W = sum w_i``, and share one small-sample normaliser
``norm = W - sum w_i^2 / W`` (``A - 1`` for equal weights):

- ``naive``: ``S``, the weighted covariance of ``D_e``:
  ``S = sum w_i (D_i - Dbar)(D_i - Dbar)' / norm`` with ``Dbar`` the weighted
  mean. Its expectation is ``Lambda + M``, the bias the others remove.
- ``tc`` (total covariance): ``S - M`` with
  ``M = sum w_i (1 - w_i / W) N_i / norm``, the noise's exact expectation in
  ``S`` for independent arms (centring on ``Dbar`` takes out ``w_i / W`` of
  each arm's own noise), so ``tc`` is unbiased for the arms' covariance of
  true effects at any number of arms and any weights. For equal weights
  ``M`` is the plain mean of ``N_i``. This is the paper's code's correction
  (``get_total_vcov_minus_noise`` in github winston-chou/linear-proxy-metrics,
  there for ``N_i = Omega / n_eff_i`` and weights ``n_eff_i``) for any noise
  and weights, without its term for arms that share a control: their
  noises correlate through the shared control mean, which moves ``S`` by
  ``O(1 / A)`` of the noise, and :class:`ArmEffects` does not say which arms
  share one.
- ``jive`` (split-sample): each arm's units halved at random, ``D_A`` and
  ``D_B`` the differences in means on each half;
  ``sum w_i ((D_A,i - Dbar_A)(D_B,i - Dbar_B)' + transposed) / 2 / norm``.
  The halves' noises are independent (disjoint units, also across arms that
  share a control), so the cross products carry no noise and no noise
  covariance is needed: unbiased as ``tc``, and robust to a misstated ``N``.
- ``liml``: the k-class estimator ``S - kappa M`` with ``kappa`` the smallest
  eigenvalue of ``M^-1 S`` over the metrics involved (``kappa = 1`` is
  ``tc``). For a proxy regression of a north star on proxies it is
  limited-information maximum likelihood, i.e. total least squares on the
  scatter whitened by the noise, as in the paper. It assumes ``Lambda`` is
  singular over those metrics (the north star's true effect an exact linear
  function of the proxies', the paper's surrogacy model), which is what
  makes ``kappa -> 1`` and lowers its variance below ``tc``'s. Where
  ``Lambda`` has full rank (the north star also moves on its own),
  ``kappa > 1`` subtracts too much noise: variances come out low and
  correlations inflated, and the proxy weights are biased.
- ``pooled``: the weighted covariance of the pooled model's arm effects
  (``mean v(x)' A_j (e_arm - e_control)`` over the arm's units), whose noise
  is small; no correction, so any smoothing of the model shows as bias.

From a covariance ``Lambda``: correlations (clipped to [-1, 1]: a corrected
covariance of few or weak experiments need not be positive semi-definite),
and for a north-star metric ``n`` the best linear proxy on metrics ``s``,
``beta = Lambda_ss^-1 Lambda_sn``, explaining ``r2 = Lambda_ns beta /
Lambda_nn`` of the north star's effect variance, computed on the nearest
positive semi-definite ``Lambda`` so that ``r2`` lies in [0, 1]. Standard
errors: a delete-a-group jackknife over arms, the independent draws (``G``
random groups, ``se^2 = (G - 1) / G * sum_g (theta_g - mean theta)^2``).

Missing metrics: each covariance entry uses the arms that report both its
metrics (and, per estimator, their noise entry, halves or pooled effect);
a proxy fit the arms that report the north star and every proxy. Entries of
fewer than :data:`MIN_ARMS` arms are NaN.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ESTIMATORS", "MIN_ARMS", "ArmEffects", "CovarianceEstimate", "ProxyEstimate", "effect_covariance",
           "effect_covariances", "proxy_weights"]

ESTIMATORS = ("naive", "tc", "jive", "liml", "pooled")
MIN_ARMS = 3
"""Fewest arms an entry is estimated from; fewer give NaN."""


@dataclass
class ArmEffects:
    """Per treated arm (A) and metric (J) statistics, plain arrays; NaN where unobserved."""

    effect: np.ndarray                 # (A, J) difference in means
    noise: np.ndarray                  # (A, J, J) covariance of the effect's sampling noise
    half_a: np.ndarray                 # (A, J) difference in means on split half A
    half_b: np.ndarray                 # (A, J) on split half B
    pooled: np.ndarray | None = None   # (A, J) the pooled model's arm-average effect
    weight: np.ndarray | None = None   # (A,) arm weights; None = equal

    def subset(self, rows: np.ndarray) -> "ArmEffects":
        """The statistics of the arms ``rows`` (an index or mask)."""
        return ArmEffects(self.effect[rows], self.noise[rows], self.half_a[rows], self.half_b[rows],
                          None if self.pooled is None else self.pooled[rows],
                          None if self.weight is None else self.weight[rows])

    def weights(self) -> np.ndarray:
        """``(A,)`` the arm weights (1 each by default)."""
        return np.ones(self.effect.shape[0]) if self.weight is None else np.asarray(self.weight, dtype=float)


@dataclass
class CovarianceEstimate:
    """One estimator's ``(J, J)`` covariance of true effects, its jackknife standard errors and the
    arms each entry used."""

    estimator: str
    covariance: np.ndarray
    se: np.ndarray
    n_arms: np.ndarray

    @property
    def correlation(self) -> np.ndarray:
        """``(J, J)`` correlations of true effects, clipped to [-1, 1]; NaN where a variance is not
        positive."""
        variance = np.diag(self.covariance)
        sd = np.sqrt(np.where(variance > 0, variance, np.nan))
        with np.errstate(invalid="ignore"):
            return np.clip(self.covariance / np.outer(sd, sd), -1.0, 1.0)


@dataclass
class ProxyEstimate:
    """The best linear proxy of metric ``north_star`` on metrics ``proxies`` by one estimator."""

    estimator: str
    north_star: int
    proxies: list[int]
    weight: np.ndarray
    weight_se: np.ndarray
    r2: float
    r2_se: float
    n_arms: int


def _check(arms: ArmEffects, estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; one of {', '.join(ESTIMATORS)}")
    if np.ndim(arms.effect) != 2:
        raise ValueError(f"ArmEffects.effect must be (arms, metrics), got shape {np.shape(arms.effect)}")
    A, J = np.shape(arms.effect)
    shapes = {"noise": (A, J, J), "half_a": (A, J), "half_b": (A, J)}
    if arms.pooled is not None:
        shapes["pooled"] = (A, J)
    if arms.weight is not None:
        shapes["weight"] = (A,)
    for name, shape in shapes.items():
        if np.shape(getattr(arms, name)) != shape:
            raise ValueError(f"ArmEffects.{name} must have shape {shape}, got {np.shape(getattr(arms, name))}")
    if arms.weight is not None and not (np.isfinite(arms.weight).all() and (np.asarray(arms.weight) >= 0).all()):
        raise ValueError("ArmEffects.weight must be finite and non-negative")
    if estimator == "pooled" and arms.pooled is None:
        raise ValueError("the pooled estimator needs ArmEffects.pooled, the pooled model's arm effects")


def _scatter(arms: ArmEffects, x: np.ndarray, y: np.ndarray, noise: bool) -> tuple[np.ndarray, ...]:
    """``(S, M, n)``, each ``(J, J)``: the symmetrised weighted cross-covariance of the columns of
    ``x`` and ``y`` (``(A, J)`` each), the noise's expectation in it (see the module docstring; zero
    unless ``noise``), and the arms each entry used: those reporting both metrics."""
    w = arms.weights()
    seen = np.isfinite(arms.effect) & np.isfinite(x) & np.isfinite(y)
    rows = seen[:, :, None] & seen[:, None, :]
    if noise:
        rows &= np.isfinite(arms.noise)
    pair_w = np.where(rows, w[:, None, None], 0.0)  # (A, J, J): arm i's weight in entry (a, b)
    x, y = np.where(seen, x, 0.0), np.where(seen, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = pair_w.sum(axis=0)
        norm = total - (pair_w ** 2).sum(axis=0) / total
        # Centred on each entry's own arms, so that an arm missing one metric moves no other entry.
        x_c = x[:, :, None] - np.einsum("iab,ia->ab", pair_w, x) / total
        y_c = y[:, None, :] - np.einsum("iab,ib->ab", pair_w, y) / total
        cross = (pair_w * x_c * y_c).sum(axis=0) / norm
        bias = ((pair_w * (1 - pair_w / total) * np.where(rows, arms.noise, 0.0)).sum(axis=0) / norm
                if noise else np.zeros_like(cross))
    n = rows.sum(axis=0)
    usable = (n >= MIN_ARMS) & (norm > 0)
    return np.where(usable, (cross + cross.T) / 2, np.nan), np.where(usable, bias, np.nan), n


def _kappa(scatter: np.ndarray, noise: np.ndarray) -> float:
    """The LIML ``kappa``: the smallest eigenvalue of ``noise^-1 scatter`` (symmetric-definite)."""
    if not (np.isfinite(scatter).all() and np.isfinite(noise).all()):
        return np.nan
    try:
        root = np.linalg.cholesky(noise)
    except np.linalg.LinAlgError:
        return np.nan
    inverse = np.linalg.inv(root)
    return float(np.linalg.eigvalsh(inverse @ scatter @ inverse.T)[0])


def _estimate(arms: ArmEffects, estimator: str) -> tuple[np.ndarray, np.ndarray]:
    """``(covariance, n_arms)``, each ``(J, J)``: one estimator's covariance of true effects."""
    if estimator in ("tc", "liml"):
        scatter, bias, n = _scatter(arms, arms.effect, arms.effect, noise=True)
        kappa = 1.0 if estimator == "tc" else _kappa(scatter, bias)
        return scatter - kappa * bias, n
    x, y = {"naive": (arms.effect, arms.effect), "jive": (arms.half_a, arms.half_b),
            "pooled": (arms.pooled, arms.pooled)}[estimator]
    scatter, _, n = _scatter(arms, x, y, noise=False)
    return scatter, n


def _jackknife(statistic: Callable[[ArmEffects], np.ndarray], arms: ArmEffects, shape: tuple[int, ...],
               groups: int, seed: int) -> np.ndarray:
    """The delete-a-group jackknife standard error of ``statistic(arms)`` (of ``shape``) over ``groups``
    random groups of arms (one arm each when there are fewer arms); NaN with fewer than 2 groups."""
    A = arms.effect.shape[0]
    G = min(groups, A)
    if G < 2:
        return np.full(shape, np.nan)
    group = np.random.default_rng(seed).permutation(A) % G
    replicates = np.stack([statistic(arms.subset(group != g)) for g in range(G)])
    with np.errstate(invalid="ignore"):
        return np.sqrt((G - 1) / G * ((replicates - replicates.mean(axis=0)) ** 2).sum(axis=0))


def effect_covariance(arms: ArmEffects, estimator: str, groups: int = 20, seed: int = 0) -> CovarianceEstimate:
    """One estimator's ``(J, J)`` covariance across arms of the true effects (formulas in the module
    docstring), with jackknife standard errors over ``groups`` groups of arms drawn with ``seed``.

    For ``liml``, ``kappa`` is taken over all ``J`` metrics: right when the true effects do not vary
    in some combination of the metrics, too small a covariance otherwise.
    """
    _check(arms, estimator)
    covariance, n_arms = _estimate(arms, estimator)
    se = _jackknife(lambda part: _estimate(part, estimator)[0], arms, covariance.shape, groups, seed)
    return CovarianceEstimate(estimator, covariance, se, n_arms)


def effect_covariances(arms: ArmEffects, groups: int = 20, seed: int = 0) -> dict[str, CovarianceEstimate]:
    """Every estimator the inputs allow (pooled only when ``arms.pooled`` is given), by name, in
    :data:`ESTIMATORS` order."""
    names = [name for name in ESTIMATORS if name != "pooled" or arms.pooled is not None]
    return {name: effect_covariance(arms, name, groups, seed) for name in names}


def _columns(arms: ArmEffects, block: list[int]) -> ArmEffects:
    """The statistics of the metrics ``block`` only."""
    return ArmEffects(arms.effect[:, block], arms.noise[:, block][:, :, block], arms.half_a[:, block],
                      arms.half_b[:, block], None if arms.pooled is None else arms.pooled[:, block], arms.weight)


def _proxy_fit(arms: ArmEffects, estimator: str) -> np.ndarray:
    """``[beta..., r2]`` of the first metric of ``arms`` on the others, by one estimator."""
    covariance, _ = _estimate(arms, estimator)
    if not np.isfinite(covariance).all():
        return np.full(covariance.shape[0], np.nan)
    # Projected onto the covariances a set of true effects can have, so that r2 lies in [0, 1].
    values, vectors = np.linalg.eigh(covariance)
    covariance = (vectors * np.clip(values, 0.0, None)) @ vectors.T
    beta = np.linalg.pinv(covariance[1:, 1:], rcond=1e-10) @ covariance[1:, 0]
    r2 = covariance[0, 1:] @ beta / covariance[0, 0] if covariance[0, 0] > 0 else np.nan
    return np.append(beta, r2)


def proxy_weights(arms: ArmEffects, north_star: int, proxies: Sequence[int], estimator: str,
                  groups: int = 20, seed: int = 0) -> ProxyEstimate:
    """The best linear proxy of metric ``north_star``'s true effects on the ``proxies``' (weights
    ``beta = Lambda_ss^-1 Lambda_sn`` and the share ``r2`` of the north star's effect variance they
    explain) by one estimator, fitted on the arms that report the north star and every proxy, with
    jackknife standard errors; all NaN with fewer than ``MIN_ARMS + len(proxies)`` such arms.

    For ``liml``, ``kappa`` is taken over the north star and the proxies; its covariance is singular
    there by construction, so its ``r2`` is 1: it assumes the proxies explain the north star's
    effects fully and estimates the weights only.
    """
    _check(arms, estimator)
    J = arms.effect.shape[1]
    north_star, proxies = int(north_star), [int(p) for p in proxies]
    if not proxies or north_star in proxies or len(set(proxies)) < len(proxies):
        raise ValueError("give at least one proxy, each once, and not the north star itself")
    if not all(0 <= j < J for j in [north_star, *proxies]):
        raise ValueError(f"metric indices must lie in [0, {J}), got north star {north_star}, proxies {proxies}")
    block = [north_star, *proxies]
    complete = np.flatnonzero(np.isfinite(arms.effect[:, block]).all(axis=1))
    if len(complete) < MIN_ARMS + len(proxies):
        nan = np.full(len(proxies), np.nan)
        return ProxyEstimate(estimator, north_star, proxies, nan, nan, np.nan, np.nan, len(complete))
    used = _columns(arms.subset(complete), block)
    fit = _proxy_fit(used, estimator)
    se = _jackknife(lambda part: _proxy_fit(part, estimator), used, fit.shape, groups, seed)
    return ProxyEstimate(estimator, north_star, proxies, fit[:-1], se[:-1], float(fit[-1]), float(se[-1]),
                         len(complete))
