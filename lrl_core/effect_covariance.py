"""The covariance across experiments of treatment effects on several metrics, and metric proxies.

Platforms ask which quick metric moves with the slow one they care about.
Across many experiment arms, the covariance of the arms' *true* effects on
two metrics answers it; the covariance of their *estimated* effects does not
when experiments are weak: each estimated effect ``D_e`` carries noise with
covariance ``N_e = Omega_t / n_t + Omega_c / n_c`` (the units' own metric
covariance over the arm sizes), which adds to the effects' covariance and
does not shrink with more experiments (Bibaut, Kallus, Chou and Ejdemyr,
"Learning the Covariance of Treatment Effects Across Many Weak Experiments",
KDD 2024). The estimators here, all across treated arms with weights ``w``:

- ``naive``: the weighted covariance ``S`` of ``D_e``; biased by the mean noise.
- ``tc`` (total covariance): ``S - mean_w(N_e)``; unbiased when the noise
  covariances are known, as they are here from the arms' own units.
- ``jive`` (split-sample): each arm's units halved at random, ``D_A``, ``D_B``
  per half; ``sum w ((D_A - mean)(D_B - mean)' + transposed) / 2`` over the same
  small-sample normaliser as ``S``. The halves' noises are independent, so no
  noise term is left, with no noise covariance needed.
- ``liml``: the k-class estimator ``S - kappa mean_w(N_e)`` with ``kappa`` the
  smallest eigenvalue of ``mean_w(N_e)^-1 S`` over the metrics involved;
  for a proxy regression it is limited-information maximum likelihood (total
  least squares on the scatter whitened by the noise). It assumes the
  north star's true effect is a linear function of the proxies' (a singular
  block of ``Lambda``, where ``kappa -> 1``); as an estimator of a full-rank
  covariance it subtracts too much noise (``kappa > 1``), so
  :func:`effect_covariances` leaves it out and it serves proxies only.
- ``pooled``: the weighted covariance of the pooled model's arm effects
  (``mean v(x)' A_j (e_arm - e_control)`` over the arm's units), whose noise
  is small; no correction, so any smoothing of the model shows as bias.

From a covariance ``Lambda``: correlations (clipped to [-1, 1]: a corrected
covariance of few or weak experiments need not be positive semi-definite),
and for a north-star metric ``n`` the best linear proxy on metrics ``s``,
``beta = Lambda_ss^-1 Lambda_sn``, explaining ``r2 = Lambda_ns beta /
Lambda_nn`` of the north star's effect variance, on the nearest positive
semi-definite ``Lambda``. Standard errors: a delete-a-group jackknife over arms (arms are
the independent draws).

Each covariance entry uses the arms that report both metrics; a proxy fit
the arms that report the north star and every proxy.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ESTIMATORS", "ArmEffects", "CovarianceEstimate", "ProxyEstimate", "effect_covariance",
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
        """``(J, J)`` correlations of true effects; NaN where a variance is not positive."""
        return _correlation(self.covariance)


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
    A, J = np.shape(arms.effect)
    shapes = {"noise": (A, J, J), "half_a": (A, J), "half_b": (A, J)}
    if arms.pooled is not None:
        shapes["pooled"] = (A, J)
    if arms.weight is not None:
        shapes["weight"] = (A,)
    for name, shape in shapes.items():
        if np.shape(getattr(arms, name)) != shape:
            raise ValueError(f"ArmEffects.{name} must have shape {shape}, got {np.shape(getattr(arms, name))}")
    if estimator == "pooled" and arms.pooled is None:
        raise ValueError("the pooled estimator needs ArmEffects.pooled, the pooled model's arm effects")


def _correlation(covariance: np.ndarray) -> np.ndarray:
    # A corrected covariance of few or weak experiments need not be positive semi-definite: its
    # correlations are clipped to [-1, 1], and are NaN where a variance is not positive.
    sd = np.sqrt(np.where(np.diag(covariance) > 0, np.diag(covariance), np.nan))
    with np.errstate(invalid="ignore"):
        return np.clip(covariance / np.outer(sd, sd), -1.0, 1.0)


def _nearest_psd(covariance: np.ndarray) -> np.ndarray:
    """The positive semi-definite matrix nearest ``covariance`` (negative eigenvalues set to 0)."""
    values, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
    return (vectors * np.clip(values, 0.0, None)) @ vectors.T


def _cross(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Weighted cross-covariance of two columns over their common finite rows (small-sample normalised)."""
    rows = np.isfinite(x) & np.isfinite(y)
    if rows.sum() < MIN_ARMS:
        return np.nan
    x, y, w = x[rows], y[rows], w[rows]
    total = w.sum()
    norm = total - (w * w).sum() / total
    return float((w * (x - (w * x).sum() / total) * (y - (w * y).sum() / total)).sum() / norm)


def _scatter(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(J, J)`` pairwise-complete weighted covariance of the columns of ``values (A, J)``."""
    J = values.shape[1]
    out = np.full((J, J), np.nan)
    for a in range(J):
        for b in range(a, J):
            out[a, b] = out[b, a] = _cross(values[:, a], values[:, b], w)
    return out


def _mean_noise(arms: ArmEffects, w: np.ndarray) -> np.ndarray:
    """``(J, J)`` the weighted mean noise covariance over the arms that report both metrics."""
    both = np.isfinite(arms.effect)[:, :, None] & np.isfinite(arms.effect)[:, None, :] & np.isfinite(arms.noise)
    weight = np.where(both, w[:, None, None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(both, arms.noise, 0.0) * weight).sum(axis=0) / weight.sum(axis=0)


def _count(arms: ArmEffects) -> np.ndarray:
    seen = np.isfinite(arms.effect)
    return (seen[:, :, None] & seen[:, None, :]).sum(axis=0)


def _kappa(scatter: np.ndarray, noise: np.ndarray) -> float:
    """The LIML ``kappa``: the smallest eigenvalue of ``noise^-1 scatter`` (a generalised symmetric one)."""
    if not (np.isfinite(scatter).all() and np.isfinite(noise).all()):
        return np.nan
    try:
        root = np.linalg.cholesky(noise)
    except np.linalg.LinAlgError:
        return np.nan
    inverse = np.linalg.inv(root)
    return float(np.linalg.eigvalsh(inverse @ scatter @ inverse.T)[0])


def _point(arms: ArmEffects, estimator: str) -> np.ndarray:
    """``(J, J)`` one estimator's covariance of true effects on these arms."""
    w = arms.weights()
    if estimator == "pooled":
        return _scatter(np.where(np.isfinite(arms.effect), arms.pooled, np.nan), w)
    if estimator == "jive":
        J = arms.effect.shape[1]
        out = np.full((J, J), np.nan)
        for a in range(J):
            for b in range(a, J):
                out[a, b] = out[b, a] = (_cross(arms.half_a[:, a], arms.half_b[:, b], w)
                                         + _cross(arms.half_b[:, a], arms.half_a[:, b], w)) / 2
        return out
    scatter = _scatter(arms.effect, w)
    if estimator == "naive":
        return scatter
    noise = _mean_noise(arms, w)
    if estimator == "tc":
        return scatter - noise
    return scatter - _kappa(scatter, noise) * noise  # liml


def _jackknife(statistic, arms: ArmEffects, groups: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(estimate, se)`` of ``statistic(arms) -> array`` by a delete-a-group jackknife over arms."""
    estimate = np.asarray(statistic(arms), dtype=float)
    A = arms.effect.shape[0]
    G = min(groups, A)
    if G < 2:
        return estimate, np.full(estimate.shape, np.nan)
    group = np.random.default_rng(seed).permutation(A) % G
    replicates = np.stack([np.asarray(statistic(arms.subset(group != g)), dtype=float) for g in range(G)])
    with np.errstate(invalid="ignore"):
        se = np.sqrt((G - 1) / G * ((replicates - replicates.mean(axis=0)) ** 2).sum(axis=0))
    return estimate, se


def effect_covariance(arms: ArmEffects, estimator: str, groups: int = 20, seed: int = 0) -> CovarianceEstimate:
    """One estimator's covariance across arms of the true effects (see the module docstring), with
    jackknife standard errors over ``groups`` groups of arms."""
    _check(arms, estimator)
    covariance, se = _jackknife(lambda part: _point(part, estimator), arms, groups, seed)
    counts = _count(arms)
    covariance = np.where(counts >= MIN_ARMS, covariance, np.nan)
    return CovarianceEstimate(estimator, covariance, se, counts)


def effect_covariances(arms: ArmEffects, groups: int = 20, seed: int = 0) -> dict[str, CovarianceEstimate]:
    """Every covariance estimator the inputs allow: naive, tc, jive, and pooled when ``arms.pooled``
    is given (liml serves proxies only, see the module docstring)."""
    names = [e for e in ESTIMATORS if e != "liml" and (e != "pooled" or arms.pooled is not None)]
    return {name: effect_covariance(arms, name, groups, seed) for name in names}


def _proxy_fit(arms: ArmEffects, estimator: str, block: list[int]) -> np.ndarray:
    """``[beta..., r2]`` of the north star ``block[0]`` on ``block[1:]`` by one estimator."""
    part = ArmEffects(arms.effect[:, block], arms.noise[:, block][:, :, block], arms.half_a[:, block],
                      arms.half_b[:, block], None if arms.pooled is None else arms.pooled[:, block], arms.weight)
    covariance = _point(part, estimator)
    if not np.isfinite(covariance).all():
        return np.full(len(block), np.nan)
    # Projected onto the covariances a set of true effects can have, so that r2 lies in [0, 1].
    covariance = _nearest_psd(covariance)
    beta = np.linalg.pinv(covariance[1:, 1:], rcond=1e-10) @ covariance[1:, 0]
    r2 = covariance[0, 1:] @ beta / covariance[0, 0] if covariance[0, 0] > 0 else np.nan
    return np.append(beta, r2)


def proxy_weights(arms: ArmEffects, north_star: int, proxies: Sequence[int], estimator: str,
                  groups: int = 20, seed: int = 0) -> ProxyEstimate:
    """The best linear proxy of ``north_star``'s effects on the ``proxies``' effects by one estimator,
    fitted on the arms that report all of them, with jackknife standard errors."""
    _check(arms, estimator)
    proxies = [int(p) for p in proxies]
    if north_star in proxies or not proxies:
        raise ValueError("give at least one proxy, and not the north star itself")
    block = [int(north_star), *proxies]
    complete = np.isfinite(arms.effect[:, block]).all(axis=1)
    used = arms.subset(np.flatnonzero(complete))
    if complete.sum() < MIN_ARMS + len(proxies):
        nan = np.full(len(proxies), np.nan)
        return ProxyEstimate(estimator, int(north_star), proxies, nan, nan, np.nan, np.nan, int(complete.sum()))
    fit, se = _jackknife(lambda part: _proxy_fit(part, estimator, block), used, groups, seed)
    return ProxyEstimate(estimator, int(north_star), proxies, fit[:-1], se[:-1], float(fit[-1]), float(se[-1]),
                         int(complete.sum()))
