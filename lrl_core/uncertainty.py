"""How much the fitted extractor's own estimation moves each CATE: a delete-d jackknife.

A head's ridge covariance (:mod:`lrl_core.heads`) treats ``v(.)`` as known,
but ``v`` was learned from the same outcomes, and with few units per arm its
error is most of the CATE's error: on the paper's world at 25 units per arm
the head covariance alone gave intervals that covered the true CATE 27% of
the time (benchmarks/README.md, "Intervals").

The jackknife refits the chosen configuration ``m`` times, refit ``i``
leaving out the ``i``-th of ``1 / drop`` disjoint random groups of the
training units (Shao and Wu 1989, "A general theory for jackknife variance
estimation"), and for every treatment arm and metric measures how the pooled
CATE of that arm's experiment's units moves::

    var(arm, metric) = (g - 1)^2 / g / (m - 1) * sum_i mean_x (tau_i(x) - mean_i tau_i(x))^2,   g = 1 / drop

in the metric's own units. The grouped jackknife over all ``g`` groups is
``(g - 1) / g * sum_i (tau_i - mean tau)^2`` (for a mean it is exactly
``sigma^2 / n``); the ``m`` refits are a sample of those ``g`` fits, and
their spread with ``m - 1`` estimates the ``g`` fits' sample variance
without bias (``g - 1``, the factor for independently drawn subsets, is
``g / (g - 1)`` too large for disjoint groups). Leaving out 10% rather than half keeps every refit
above the sample size where a low-rank fit breaks down (at 25 units per arm,
half-sample refits had 35 times the PEHE of the full fit, and their spread
said nothing about it). Coverage on the benchmark's worlds:
``benchmarks/defaults.py`` and benchmarks/README.md.

Where the jackknife says more than the data allow, a ceiling from the
validation rows bounds it (:func:`validation_ceiling`). The delete-d
jackknife assumes an estimate whose variance falls as ``1/n``; a pooled
low-rank fit near the sample size where it breaks down improves much faster
with data (the paper's world: PEHE 0.055, 0.013, 0.0045 at 25, 50, 100 units
per arm), so refits on 90% of the units move far more than the full fit errs
(at 25 units per arm the jackknife variance was 20 times the squared error).
A CATE is a difference of two predicted outcomes, so its mean squared error
is ``mse_arm + mse_control - 2 cov``, at most ``mse_arm + mse_control``
wherever the two predictions do not err in opposite directions (a shared
extractor makes their errors move together), with ``mse`` the outcome's
prediction error; the validation rows' squared residuals over-estimate that
error (they add the noise). So the ceiling is ``r_arm + r_control``, ``r``
the mean squared validation residual of the arm, shrunk towards the
metric's mean over all arms by empirical Bayes (Morris 1983): with a few
validation rows per arm a raw mean is mostly noise, and a floor at the
metric's mean (the earlier rule) made every ceiling at least twice that
mean, biased upwards by the noise of the arms above it (the paper's world at
25 units per arm, about 2.5 validation rows per arm: ceiling 1.8x the true
squared error, coverage 0.989; shrunk, 0.980). What stays in the ceiling is
the outcome noise, counted twice, which one outcome per unit cannot tell
from the fit's error.

What it cannot see: a bias shared by the full fit and every refit (a
systematically too smooth extractor, an effect the features cannot express),
and with ``m = 2`` the variance of each arm's estimate is itself rough.

For a new experiment, which no refit has seen, the extractor's share is
carried over per metric as ``s2_j`` with ``var = s2_j * ||w||^2``, ``w`` the
CATE's coefficients on ``v``: the median over known arms of ``var / ||w||^2``,
i.e. an extractor error spread evenly over the latent directions.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .memory import trim_heap

__all__ = ["JackknifeResult", "jackknife_cate_variance", "shrunk_means", "validation_ceiling"]


class JackknifeResult(NamedTuple):
    """``cate_var (G, J)``: jackknife variance of each treatment arm's pooled CATE (NaN for
    controls and arms with no unit); ``extractor_var (J,)``: ``s2_j`` for new experiments."""

    cate_var: np.ndarray
    extractor_var: np.ndarray


def jackknife_cate_variance(
    refit: Callable[[np.ndarray], object],
    learner,
    X: np.ndarray,
    units: np.ndarray,
    arms: np.ndarray,
    controls: np.ndarray,
    n_refits: int = 2,
    drop: float = 0.1,
    seed: int = 0,
    ceiling: np.ndarray | None = None,
) -> JackknifeResult:
    """Delete-d jackknife of every arm's pooled CATE, from ``n_refits`` refits.

    Parameters
    ----------
    refit: ``keep (r,) bool -> fitted learner`` trained on the training rows where ``keep``.
    learner: the full fit (an :class:`~lrl_core.training.LRLearner`).
    X, units, arms: the training rows (``units`` index ``X``; ``arms`` global).
    controls: ``(G,)`` the control arm of each arm's experiment (itself for a control).
    ceiling: ``(G, J)`` upper bound of each variance (:func:`validation_ceiling`); NaN: none.
    """
    if not 0 < drop < 1 or n_refits < 2 or n_refits * drop > 1:
        raise ValueError("need 0 < drop < 1 and 2 <= n_refits <= 1 / drop")
    controls = np.asarray(controls, dtype=np.int64)
    n_arms = controls.shape[0]
    treated = np.flatnonzero(controls != np.arange(n_arms))
    distinct = np.unique(units)
    n_groups = int(round(1 / drop))
    group = np.random.default_rng(seed).permutation(distinct.size) % n_groups
    unit_group = np.full(X.shape[0], -1)
    unit_group[distinct] = group

    # The units each arm's CATE is averaged over: those of its experiment (any of its arms).
    per_arm_units = {g: np.unique(units[np.isin(arms, np.flatnonzero(controls == controls[g]))]) for g in treated}
    J = learner.n_metrics_
    # Welford over the refits, one unit's CATE at a time: only the running mean is kept per unit (at
    # the paper's scale one refit's CATEs are 212 MB), the squared deviations summed over units at once.
    mean = {g: None for g, u in per_arm_units.items() if u.size}
    deviation = np.zeros((n_arms, J))
    for i in range(n_refits):
        model = refit(unit_group[units] != i)
        for g in mean:
            u = per_arm_units[g]
            tau = model.predict_cate(X[u], [g], [controls[g]])[:, 0]
            if mean[g] is None:
                mean[g] = tau
                continue
            updated = mean[g] + (tau - mean[g]) / (i + 1)
            deviation[g] += ((tau - mean[g]) * (tau - updated)).mean(axis=0)
            mean[g] = updated
        del model
        trim_heap()  # the refit's rows and batches: the next refit's peak would stack on them
    cate_var = np.full((n_arms, J), np.nan)
    factor = (n_groups - 1) ** 2 / n_groups / (n_refits - 1)
    measured = list(mean)
    cate_var[measured] = factor * deviation[measured]
    if ceiling is not None:
        cate_var = np.where(np.isfinite(ceiling), np.fmin(cate_var, ceiling), cate_var)
    # ||w||^2 of each arm's CATE coefficients on v, in original units.
    w = learner.model_.arm_weights().detach().cpu().numpy().astype(np.float64)  # (G, J, d)
    effect = (w[treated] - w[controls[treated]]) * learner.y_scale_[None, :, None]
    norms = (effect**2).sum(axis=-1)  # (T, J)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(norms > 0, cate_var[treated] / norms, np.nan)
    extractor_var = np.nan_to_num(np.nanmedian(ratio, axis=0) if ratio.size else np.zeros(J), nan=0.0)
    return JackknifeResult(cate_var, extractor_var)


def validation_ceiling(learner, X: np.ndarray, units: np.ndarray, arms: np.ndarray, Y: np.ndarray,
                       controls: np.ndarray) -> np.ndarray:
    """``(G, J)`` upper bound of each treatment arm's CATE mean squared error, from validation rows.

    ``r_arm + r_control`` with ``r`` the mean squared residual of the
    learner's predicted outcomes on the validation rows (``units`` index ``X``,
    ``Y (r, J)`` with NaN where unobserved) of that arm, shrunk towards the
    metric's mean over all rows (:func:`shrunk_means`); an arm without rows
    gets that mean. NaN for controls and for metrics without a validation
    row. Residuals contain the outcome noise, so the bound holds whatever the
    noise (given errors of arm and control that are not negatively
    correlated), and is loose by it.
    """
    controls = np.asarray(controls, dtype=np.int64)
    n_arms, J = controls.shape[0], Y.shape[1]
    sq_sum, fourth_sum, count = np.zeros((n_arms, J)), np.zeros((n_arms, J)), np.zeros((n_arms, J))
    for g in np.unique(arms):
        rows = np.flatnonzero(arms == g)
        residual = learner.predict_outcomes(X[units[rows]], [g])[:, 0, :] - Y[rows]
        seen = np.isfinite(residual)
        squared = np.where(seen, residual**2, 0.0)
        sq_sum[g], fourth_sum[g], count[g] = squared.sum(axis=0), (squared**2).sum(axis=0), seen.sum(axis=0)
    per_arm = np.column_stack([shrunk_means(sq_sum[:, j], fourth_sum[:, j], count[:, j]) for j in range(J)])
    ceiling = per_arm + per_arm[controls]
    ceiling[controls == np.arange(n_arms)] = np.nan
    return ceiling


def shrunk_means(sums: np.ndarray, sums_of_squares: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each group's mean shrunk towards the grand mean by parametric empirical Bayes (Morris 1983).

    ``sums, sums_of_squares, counts (G,)`` of each group's values. A group's
    mean ``m_g`` has sampling variance ``s2 / n_g`` (``s2`` the pooled
    within-group variance) around its true mean, and the true means spread
    ``t2`` around the grand mean ``m`` (method of moments:
    ``mean_g (m_g - m)^2 - s2 / n_g``, at least 0). The posterior mean is
    ``m + t2 / (t2 + s2 / n_g) * (m_g - m)``: a group with few values stays
    near ``m``, one with many keeps its own mean. Groups without values get
    ``m``; all NaN when no group has one.
    """
    seen = counts > 0
    if not seen.any():
        return np.full(counts.shape, np.nan)
    grand = sums[seen].sum() / counts[seen].sum()
    means = np.full(counts.shape, grand)
    means[seen] = sums[seen] / counts[seen]
    dof = (counts[seen] - 1).sum()
    within = ((sums_of_squares[seen] - counts[seen] * means[seen] ** 2).sum() / dof) if dof > 0 else 0.0
    noise = np.full(counts.shape, np.inf)
    noise[seen] = max(within, 0.0) / counts[seen]
    spread = max(float(np.mean((means[seen] - grand) ** 2 - noise[seen])), 0.0)
    # A group without values has infinite noise, so weight 0: the grand mean.
    weight = spread / (spread + noise) if spread > 0 else np.zeros(counts.shape)
    return grand + weight * (means - grand)
