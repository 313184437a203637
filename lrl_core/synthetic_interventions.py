"""Effects on segments an experiment left out: Synthetic Interventions (issue 17, core).

Many experiments run on some segments only (a platform, some countries). For
a segment ``s*`` that experiment ``e`` left out, Synthetic Interventions
(Agarwal, Shah and Shen, "Synthetic Interventions", arXiv 2006.07691) reads
the effect of ``e``'s treatment ``d`` (control ``c``) off the segments that
were in ``e`` (the *donors*), weighted so that they reproduce ``s*``'s
outcomes under the interventions both were exposed to. It assumes the
segment x intervention x metric tensor of mean outcomes has low rank:
``mu[s, d, j] = <a_s, b_dj>``, so ``a_s* = sum_i beta_i a_i`` carries from
the interventions ``s*`` saw to the ones it did not.

Inputs: ``means (S, D, J)``, the mean outcome of segment ``s`` under
intervention ``d`` (every arm of every experiment, controls included) on
metric ``j``, and ``ses`` their standard errors (``sd / sqrt(n)``), NaN where
``s`` was not in ``d``'s experiment. A segment *is in* an experiment when
every arm of it has a finite mean and standard error on every metric the
experiment reports; a partly observed segment counts as left out.

For one target ``(s*, e)``:

1. **Donors**: the segments in ``e``. **Pre-intervention columns**: every
   (intervention, metric) of the *other* experiments ``s*`` was in, all arms,
   metrics stacked side by side (the tensor variant), each metric divided by
   the spread of its means over the whole table so that a metric on a large
   scale does not dominate the fit.
2. **Missing donor entries** (a donor left out of one of those experiments;
   no segment is in every experiment), as in the SI paper's missing-data
   variant: each column is centred on its observed donors, missing entries
   are set to 0 (the centre) and the matrix is divided by ``rho``, the share
   of its entries observed, which makes it unbiased for the complete
   centred matrix when segments are left out at random; hard singular value
   thresholding then keeps its top ``k`` singular components (the denoised
   donor matrix).
3. **Rank** ``k``: Gavish and Donoho's optimal hard threshold for unknown
   noise, ``omega(beta) * median singular value`` with their cubic
   approximation ``omega(beta) = 0.56 beta^3 - 0.95 beta^2 + 1.82 beta + 1.43``
   (``beta`` the aspect ratio), at least 1 and at most ``min(N, P) - 1``.
   The filling error is not white noise (a donor misses whole experiments),
   so on zero-filled data the rule keeps more components than the planted
   rank (mostly 5 to 8 against 3 on ``segment_world``); PCR then fits some
   of that error, which the interval's model-error term measures.
4. **Weights**: principal component regression of ``s*``'s centred
   pre-intervention vector on the rank-``k`` donor matrix,
   ``beta = t V_k S_k^-1 U_k'``. Centring makes the fit affine: the weights
   applied, ``w = beta + (1 - sum beta) / N``, sum to one.
5. **Effect** per metric: ``sum_i w_i (means[i, d, j] - means[i, c, j])``,
   synthetic treated minus synthetic control with the same weights (``s*``
   has neither arm observed).

The **interval** ``effect +- z se`` adds two independent parts:
``se^2 = sum_i w_i^2 (ses[i, d, j]^2 + ses[i, c, j]^2) + model_var_j``: the
donors' sampling noise, and the model error of the target's synthetic
segment. ``model_var_j`` comes from leaving out one experiment at a time of
those ``s*`` *was* in: the same procedure, with that experiment's columns
removed and the donors that were also in it, predicts ``s*``'s observed
effects there; the mean of ``error^2 - (prediction's sampling variance +
observed effect's sampling variance)`` over the held-out experiments and
their treated arms, floored at 0, estimates the variance of what sampling
noise does not explain (weights fitted to noise, a target only partly
spanned). It needs :attr:`SIConfig.min_holdouts` such experiments.

The **subspace-inclusion test** asks whether ``s*``'s pre-intervention
outcomes lie in the donors' top-``k`` row space. Its statistic is the
target's *unexplained share*: the energy of the residual ``r`` of its centred
pre-intervention vector ``t`` after projection on that row space, less what
its own sampling noise leaves there on average, over the energy of ``t``:
``(|r|^2 - (P - k) / P sum_c se_c^2) / |t|^2``. A chi-square of ``r`` against
the target's sampling variances alone does not work here: the donors' row
space is itself estimated from noisy, zero-filled data, and that error
leaves about a tenth of an in-span target's energy off it (measured on
:func:`lrl_core.synthetic.segment_world.segment_world`), far beyond sampling
noise, with a spread across targets no chi-square describes. So the
threshold is calibrated on the donors themselves, whose outcomes are in the
span by construction of the question: each donor's unexplained share
against the row space of the other donors (same rank, its observed columns
only), and the threshold is their conformal quantile at
:attr:`SIConfig.test_level`, the ``ceil((N + 1) level)``-th smallest of the
``N``. A target exchangeable with the donors fails it with probability at
most ``1 - level``; with fewer than ``level / (1 - level)`` donors (19 at
95%) the threshold is the largest donor's share and the false alarm rate
up to ``1 / (N + 1)``.

Plain arrays in, small result objects out; no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["SIConfig", "SIEstimate", "SyntheticInterventions", "gavish_donoho_rank", "observed_effects"]

MISSING_COLUMNS = ["segment", "intervention", "metric", "effect", "se", "lower", "upper", "rank", "n_donors",
                   "test_statistic", "test_passed", "reason"]


@dataclass(frozen=True)
class SIConfig:
    """Settings of :class:`SyntheticInterventions`; the defaults need no tuning."""

    level: float = 0.95
    """Coverage of the interval ``effect +- z se``."""
    min_donors: int = 3
    """Fewest donors (segments in the target's experiment) for an estimate."""
    min_shared: int = 2
    """Fewest interventions of other experiments, shared by the target and the donors, to regress on."""
    min_holdouts: int = 2
    """Fewest experiments the target was in that can be held out to measure the model error."""
    test_level: float = 0.95
    """The subspace-inclusion test fails a target whose unexplained share exceeds this conformal
    quantile of the donors' own (module docstring)."""


@dataclass
class SIEstimate:
    """The SI estimate for one target segment under one treated intervention.

    ``effect`` and ``se`` are ``(J,)``, NaN where not estimable (``reason`` says why;
    a metric the experiment does not report is NaN without a reason). ``donors`` are
    segment indices and ``weights`` their affine weights (summing to one); ``n_shared``
    the interventions regressed on, ``n_holdouts`` the experiments held out for the
    model error ``model_var (J,)``. The test fields are NaN / False when no estimate
    was made. ``level`` is the coverage :meth:`interval` aims at.
    """

    segment: int
    intervention: int
    effect: np.ndarray
    se: np.ndarray
    rank: int
    donors: np.ndarray
    weights: np.ndarray
    test_statistic: float
    test_threshold: float
    test_passed: bool
    n_shared: int
    n_holdouts: int
    model_var: np.ndarray = field(repr=False)
    level: float
    reason: str = ""

    def interval(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper) (J,)``: ``effect -+ z se``, ``z`` the normal quantile for :attr:`level`."""
        z = stats.norm.ppf(0.5 + self.level / 2)
        return self.effect - z * self.se, self.effect + z * self.se


def observed_effects(means: np.ndarray, ses: np.ndarray, control_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observed effects ``(S, D, J)``: each intervention's mean minus its control's in the same segment,
    with the standard error of a difference of independent means; NaN for controls and unobserved cells."""
    control_of = np.asarray(control_of)
    treated = (control_of != np.arange(len(control_of)))[None, :, None]
    effect = np.where(treated, means - means[:, control_of], np.nan)
    se = np.where(treated, np.sqrt(ses**2 + ses[:, control_of] ** 2), np.nan)
    return effect, se


def gavish_donoho_rank(singular_values: np.ndarray, shape: tuple[int, int]) -> int:
    """Singular values above Gavish and Donoho's optimal hard threshold for unknown noise,
    ``omega(beta) * median(singular_values)`` with the cubic ``omega`` (module docstring), kept
    within ``[1, min(shape) - 1]``."""
    beta = min(shape) / max(shape)
    omega = 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43
    count = int(np.sum(singular_values > omega * np.median(singular_values)))
    return int(np.clip(count, 1, max(min(shape) - 1, 1)))


@dataclass
class _Denoised:
    """A donor matrix after centring, filling, rescaling and hard thresholding at rank ``k``."""

    centre: np.ndarray  # (P,) column means over observed donors
    U: np.ndarray       # (N, k)
    s: np.ndarray       # (k,)
    V: np.ndarray       # (P, k)

    @property
    def rank(self) -> int:
        """``k``, the components kept."""
        return self.s.size

    def weights(self, target: np.ndarray) -> np.ndarray:
        """Affine PCR weights ``(N,)`` of an uncentred target row ``(P,)`` on the donors."""
        beta = ((target - self.centre) @ self.V / self.s) @ self.U.T
        return beta + (1.0 - beta.sum()) / beta.size


def _denoise(Y: np.ndarray, rank: int | None = None) -> _Denoised:
    """The SI missing-data denoising of a donor matrix ``Y (N, P)`` (NaN = missing), at ``rank`` or at
    the Gavish-Donoho rank. Every column needs an observed entry."""
    observed = np.isfinite(Y)
    centre = np.nanmean(Y, axis=0)
    filled = np.where(observed, Y - centre, 0.0) / observed.mean()
    U, s, Vt = np.linalg.svd(filled, full_matrices=False)
    k = gavish_donoho_rank(s, Y.shape) if rank is None else rank
    # Components of (numerically) zero size would divide the weights by zero; donors that do not vary
    # at all get no components, hence equal weights.
    k = min(k, int(np.sum(s > 1e-10 * max(s[0], np.finfo(float).tiny))))
    return _Denoised(centre, U[:, :k], s[:k], Vt[:k].T)


def _residual(row: np.ndarray, den: _Denoised) -> tuple[np.ndarray, np.ndarray]:
    """A row's centred observed entries minus their least-squares fit in the row space of ``den``
    (on those columns only) -> ``(residual, observed column mask)``."""
    seen = np.isfinite(row)
    centred = row[seen] - den.centre[seen]
    V = den.V[seen]
    coef = np.linalg.lstsq(V, centred, rcond=None)[0]
    return centred - V @ coef, seen


def _unexplained(row: np.ndarray, row_se: np.ndarray, den: _Denoised) -> float:
    """Share of a row's centred energy (observed entries) off the row space of ``den``, after taking out
    what its own sampling noise leaves there on average (``(P - k) / P`` of it); NaN when the row has
    no more observed entries than the rank."""
    if np.isfinite(row).sum() <= den.rank:
        return np.nan
    residual, seen = _residual(row, den)
    centred = row[seen] - den.centre[seen]
    noise = np.sum(row_se[seen] ** 2) * (seen.sum() - den.rank) / seen.sum()
    return float((residual @ residual - noise) / (centred @ centred))


@dataclass
class _TargetFit:
    """Everything about one (target segment, experiment) that its treated arms share."""

    donors: np.ndarray
    weights: np.ndarray
    rank: int
    n_shared: int
    n_holdouts: int
    model_var: np.ndarray  # (J,)
    test_statistic: float
    test_threshold: float
    reason: str = ""


class SyntheticInterventions:
    """Synthetic Interventions over a segment x intervention x metric table (module docstring).

    ``SyntheticInterventions(config).fit(means, ses, experiment_of, control_of)``, then
    :meth:`estimate` one (segment, treated intervention) or :meth:`estimate_missing` every
    one whose experiment left the segment out. A segment that *was* in the experiment can
    be estimated too: its own data there are ignored, which checks SI against the observed effect.

    Fitted attributes: ``in_experiment_ (S, K)`` which segment was in which experiment (see the
    module docstring), ``effects_`` and ``effect_ses_ (S, D, J)`` the observed effects
    (:func:`observed_effects`), ``scale_ (J,)`` each metric's spread of means, by which its
    columns are divided.
    """

    def __init__(self, config: SIConfig | None = None) -> None:
        self.config = config or SIConfig()

    def fit(self, means: np.ndarray, ses: np.ndarray, experiment_of: np.ndarray,
            control_of: np.ndarray) -> "SyntheticInterventions":
        """Keep the table and work out which segment was in which experiment.

        ``means, ses (S, D, J)``; ``experiment_of (D,)`` experiment index of each intervention;
        ``control_of (D,)`` the control intervention of each one's experiment (itself for a control).
        """
        means, ses = np.asarray(means, dtype=np.float64), np.asarray(ses, dtype=np.float64)
        if means.ndim != 3 or ses.shape != means.shape:
            raise ValueError(f"means and ses must be (S, D, J) of one shape; got {means.shape} and {ses.shape}")
        S, D, J = means.shape
        self.experiment_of_ = np.asarray(experiment_of, dtype=np.int64)
        self.control_of_ = np.asarray(control_of, dtype=np.int64)
        if self.experiment_of_.shape != (D,) or self.control_of_.shape != (D,):
            raise ValueError(f"experiment_of and control_of must be ({D},)")
        if np.any(self.experiment_of_[self.control_of_] != self.experiment_of_):
            raise ValueError("every intervention's control must belong to its experiment")
        valid = np.isfinite(means) & np.isfinite(ses)
        means, ses = np.where(valid, means, np.nan), np.where(valid, ses, np.nan)
        self.means_, self.ses_ = means, ses
        self.effects_, self.effect_ses_ = observed_effects(means, ses, self.control_of_)
        self.n_experiments_ = int(self.experiment_of_.max()) + 1
        reported = valid.any(axis=0)  # (D, J): the metrics each intervention reports
        in_exp = np.ones((S, self.n_experiments_), dtype=bool)
        for e in range(self.n_experiments_):
            arms = self.experiment_of_ == e
            in_exp[:, e] = (valid[:, arms] | ~reported[arms]).all(axis=(1, 2)) & valid[:, arms].any(axis=(1, 2))
        self.in_experiment_ = in_exp
        # Per-metric scale over the whole table, so every metric weighs alike in the regression.
        spread = np.array([np.nanstd(means[:, :, j]) if valid[:, :, j].any() else 1.0 for j in range(J)])
        self.scale_ = np.where(spread > 0, spread, 1.0)
        self._columns = (means / self.scale_).reshape(S, D * J)
        self._column_ses = (ses / self.scale_).reshape(S, D * J)
        self._column_experiment = np.repeat(self.experiment_of_, J)
        self._column_intervention = np.repeat(np.arange(D), J)
        self._fits: dict[tuple[int, int], _TargetFit] = {}
        return self

    # ---------------------------------------------------------------- results
    def estimate(self, segment: int, intervention: int) -> SIEstimate:
        """The SI estimate of treated ``intervention``'s effect on ``segment`` (module docstring)."""
        self._check_fitted()
        d = int(intervention)
        c = int(self.control_of_[d])
        if c == d:
            raise ValueError(f"intervention {d} is a control: effects are of treated interventions")
        fit = self._target_fit(int(segment), int(self.experiment_of_[d]))
        J = self.means_.shape[2]
        effect = se = np.full(J, np.nan)
        if not fit.reason:
            donor_effects = self.effects_[fit.donors, d]  # (N, J)
            effect = fit.weights @ donor_effects
            noise = fit.weights**2 @ self.effect_ses_[fit.donors, d] ** 2
            se = np.sqrt(noise + fit.model_var)
        return SIEstimate(segment=int(segment), intervention=d, effect=effect, se=se, rank=fit.rank,
                          donors=fit.donors, weights=fit.weights, test_statistic=fit.test_statistic,
                          test_threshold=fit.test_threshold,
                          test_passed=bool(fit.test_statistic <= fit.test_threshold), n_shared=fit.n_shared,
                          n_holdouts=fit.n_holdouts, model_var=fit.model_var, level=self.config.level,
                          reason=fit.reason)

    def estimate_missing(self) -> pd.DataFrame:
        """Every (segment, treated intervention) whose experiment left the segment out, one row per metric:
        ``segment``, ``intervention``, ``metric`` (indices), ``effect``, ``se``, ``lower`` and ``upper``
        (the interval at ``config.level``), ``rank``, ``n_donors``, ``test_statistic``, ``test_passed``,
        ``reason``."""
        self._check_fitted()
        treated = np.flatnonzero(self.control_of_ != np.arange(self.control_of_.size))
        J = self.means_.shape[2]
        rows = []
        for s, d in zip(*np.nonzero(~self.in_experiment_[:, self.experiment_of_[treated]])):
            est = self.estimate(int(s), int(treated[d]))
            lower, upper = est.interval()
            for j in range(J):
                rows.append((est.segment, est.intervention, j, est.effect[j], est.se[j], lower[j], upper[j],
                             est.rank, est.donors.size, est.test_statistic, est.test_passed, est.reason))
        return pd.DataFrame(rows, columns=MISSING_COLUMNS)

    # ------------------------------------------------------------ one target
    def _check_fitted(self) -> None:
        if not hasattr(self, "means_"):
            raise RuntimeError("SyntheticInterventions is not fitted: call fit() first")

    def _target_fit(self, s: int, e: int) -> _TargetFit:
        """The donors, weights, model error and test of target ``s`` for experiment ``e``, cached."""
        if (s, e) not in self._fits:
            self._fits[(s, e)] = self._fit_target(s, e)
        return self._fits[(s, e)]

    def _fit_target(self, s: int, e: int) -> _TargetFit:
        """:meth:`_target_fit` uncached; a fit with a ``reason`` when there is too little to go on."""
        cfg = self.config
        donors = np.flatnonzero(self.in_experiment_[:, e] & (np.arange(self.in_experiment_.shape[0]) != s))
        columns = self._pre_columns(s, donors, e)
        n_shared = np.unique(self._column_intervention[columns]).size
        J = self.means_.shape[2]
        unfit = _TargetFit(donors, np.full(donors.size, np.nan), 0, n_shared, 0, np.full(J, np.nan), np.nan, np.nan)
        if donors.size < cfg.min_donors:
            unfit.reason = f"{donors.size} donors, need {cfg.min_donors}"
            return unfit
        if n_shared < cfg.min_shared:
            unfit.reason = f"{n_shared} shared interventions, need {cfg.min_shared}"
            return unfit
        den = _denoise(self._columns[np.ix_(donors, columns)])
        model_var, n_holdouts = self._model_error(s, donors, columns)
        unfit.n_holdouts, unfit.rank = n_holdouts, den.rank
        if n_holdouts < cfg.min_holdouts:
            unfit.reason = f"{n_holdouts} held-out experiments to measure the model error, need {cfg.min_holdouts}"
            return unfit
        statistic, threshold = self._inclusion_test(s, donors, columns, den)
        return _TargetFit(donors, den.weights(self._columns[s, columns]), den.rank, n_shared, n_holdouts,
                          model_var, statistic, threshold)

    def _pre_columns(self, s: int, donors: np.ndarray, e: int) -> np.ndarray:
        """Columns (intervention x metric) the target has outside experiment ``e`` that at least one
        donor has too (a column no donor has cannot be centred)."""
        has = np.isfinite(self._columns[s]) & (self._column_experiment != e)
        has &= np.isfinite(self._columns[donors]).any(axis=0)
        return np.flatnonzero(has)

    def _model_error(self, s: int, donors: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, int]:
        """``(J,)`` model error variance of target ``s`` from leaving out, one at a time, the experiments
        among ``columns``, and how many could be left out (module docstring)."""
        cfg = self.config
        J = self.means_.shape[2]
        excess: list[np.ndarray] = []
        n_holdouts = 0
        treated = self.control_of_ != np.arange(self.control_of_.size)
        for held in np.unique(self._column_experiment[columns]):
            held_donors = donors[self.in_experiment_[donors, held]]
            kept = columns[self._column_experiment[columns] != held]
            kept = kept[np.isfinite(self._columns[np.ix_(held_donors, kept)]).any(axis=0)]
            if held_donors.size < cfg.min_donors or np.unique(self._column_intervention[kept]).size < cfg.min_shared:
                continue
            weights = _denoise(self._columns[np.ix_(held_donors, kept)]).weights(self._columns[s, kept])
            n_holdouts += 1
            for d in np.flatnonzero((self.experiment_of_ == held) & treated):
                error = weights @ self.effects_[held_donors, d] - self.effects_[s, d]
                noise = weights**2 @ self.effect_ses_[held_donors, d] ** 2 + self.effect_ses_[s, d] ** 2
                excess.append(error**2 - noise)
        if not excess:
            return np.full(J, np.nan), 0
        excess_array = np.array(excess)
        count = np.isfinite(excess_array).sum(axis=0)
        # A metric no held-out experiment reports has no model error estimate: NaN, then a NaN se.
        mean = np.where(count > 0, np.nansum(excess_array, axis=0) / np.maximum(count, 1), np.nan)
        return np.maximum(mean, 0.0), n_holdouts

    def _inclusion_test(self, s: int, donors: np.ndarray, columns: np.ndarray, den: _Denoised) -> tuple[float, float]:
        """The target's unexplained share off the donors' row space, and the donors' conformal quantile of
        theirs, each donor projected on the row space of the others (module docstring)."""
        Y = self._columns[np.ix_(donors, columns)]
        Y_se = self._column_ses[np.ix_(donors, columns)]
        shares = []
        for i in range(donors.size):
            others = np.arange(donors.size) != i
            # A column only donor i has cannot be centred without it.
            kept = np.isfinite(Y[others]).any(axis=0)
            loo = _denoise(Y[np.ix_(others, kept)], min(den.rank, others.sum() - 1))
            shares.append(_unexplained(Y[i, kept], Y_se[i, kept], loo))
        shares = np.sort(np.array(shares)[np.isfinite(shares)])
        if not shares.size:
            return np.nan, np.nan
        # Conformal: an exchangeable target exceeds the ceil((N + 1) level)-th smallest of N donors
        # with probability at most 1 - level (at fewer than 1 / (1 - level) - 1 donors, the largest).
        at = min(int(np.ceil((shares.size + 1) * self.config.test_level)), shares.size) - 1
        return _unexplained(self._columns[s, columns], self._column_ses[s, columns], den), float(shares[at])
