"""The heads of one experiment on the frozen extractor, as the pipeline fits, stores and serves them.

:class:`ExperimentHead`: for an experiment the pooled model was trained on,
its own heads (``A_j e_arm``); for a new one, closed-form heads
(:mod:`lrl_core.ridge_heads`): structured for metrics the pooled model knows,
ridge for the rest; with standard errors that add the extractor's own error
(:mod:`lrl_core.uncertainty`), and plain records to store them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrl_core.ridge_heads import LinearHeads, RidgeHeads, StructuredHeads, as_head_inputs

__all__ = ["ExperimentHead", "HeadFit", "MIN_HEAD_ROWS", "TINY_ARM_ROWS", "fit_experiment_head", "trained_arms"]

MIN_HEAD_ROWS = 3
"""Fewest observed outcomes of an (arm, metric) for it to get a head: with none or one or two (a
metric reported only for control) the head would be carried over from the pooled model or fitted on
next to nothing, and its CATEs served as if estimated (issue 18: 0 treated rows gave CATEs with
median SE 0.003, 94.5% "significant"). Three is the fewest that leave a residual degree of freedom
beyond the intercept; small arms above it are fitted, and flagged by the pipeline."""


TINY_ARM_ROWS = 10
"""Experiments whose smallest arm has fewer observed rows than this are fitted but flagged as tiny."""


def trained_arms(description: dict, experiment_id: str, arm_names: list[str]) -> np.ndarray | None:
    """The extractor's global index of each of an experiment's arms (control first), when it was
    trained on exactly these arms; None for a new experiment or one whose arms changed.

    ``description``: the saved model's description (``experiments``, ``arm_names``, ``arm_experiment``).
    """
    if experiment_id not in description.get("experiments", []):
        return None
    k = description["experiments"].index(experiment_id)
    known = np.flatnonzero(np.asarray(description["arm_experiment"]) == k)
    index = {description["arm_names"][g]: g for g in known}
    if len(known) != len(arm_names) or any(name not in index for name in arm_names):
        return None
    return np.array([index[name] for name in arm_names], dtype=np.int64)


class ExperimentHead(LinearHeads):
    """The heads of one experiment: structured for metrics the learner knows, ridge for the rest.

    For an experiment the learner was trained on (``arms`` given to :meth:`fit`),
    a known metric's head is the pooled model's own: ``w = A_j e_arm`` with the
    trained arm embeddings (kind ``"pooled"``). Refitting ``e`` by ridge on the
    frozen ``v`` throws away what the joint fit learned: on the paper's world at
    25 units per arm the refitted heads had 7 times the PEHE of the pooled
    model's (0.72 vs 0.11). The structured ridge fit still gives its covariance.

    An (arm, metric) with fewer than :data:`MIN_HEAD_ROWS` observed outcomes
    gets no head (NaN coefficients), and so no CATE.

    Fitted: ``metric_names_ (J,)``, ``kinds_ (J,)`` (``"pooled"``,
    ``"structured"`` or ``"ridge"``), and per (arm, metric) ``coef_``, ``cov_``,
    ``sigma2_``, ``n_``, ``alpha_`` as in :class:`RidgeHeads`, and ``cate_var_``:
    the extractor's share of each treated arm's CATE variance (0 for control),
    added in :meth:`predict_cate_se`. For a pooled head it is the learner's jackknife
    variance (``learner.cate_var_``) less the head covariance's mean over the
    experiment's units, never below 0, so the two are not counted twice; for a
    new experiment ``learner.extractor_var_ * ||w||^2`` (see
    :mod:`lrl_core.uncertainty`). :meth:`to_records` and :meth:`from_records`
    turn all of it into plain rows and back, exactly.
    """

    def __init__(self, alpha: float | None = None) -> None:
        self.alpha = alpha

    def fit(self, V, arm_local, Y, metric_names, learner, n_arms: int | None = None,
            arms: np.ndarray | None = None) -> "ExperimentHead":
        """``V (n, d)`` from ``learner.transform``; ``arm_local (n,)``, 0 = control;
        ``Y (n, J)`` in original units with columns ``metric_names``; ``learner``: a
        fitted :class:`~lrl_core.training.LRLearner` (its ``metric_names_``,
        ``metric_operators_``, ``y_mean_``, ``y_scale_``, ``arm_embeddings_``,
        ``cate_var_``, ``extractor_var_``); ``arms (A,)``: the learner's global
        index of each local arm when it was trained on this experiment, else None."""
        V, arm_local, Y, n_arms = as_head_inputs(V, arm_local, Y, n_arms)
        names = [str(m) for m in metric_names]
        if len(names) != Y.shape[1] or len(set(names)) != len(names):
            raise ValueError(f"metric_names must be {Y.shape[1]} distinct names")
        known = {m: j for j, m in enumerate(learner.metric_names_)}
        kinds = ["structured" if m in known else "ridge" for m in names]
        d = V.shape[1]
        J = len(names)
        self.coef_ = np.full((n_arms, J, d + 1), np.nan)
        self.cov_ = np.full((n_arms, J, d + 1, d + 1), np.nan)
        self.sigma2_ = np.full((n_arms, J), np.nan)
        self.alpha_ = np.full((n_arms, J), np.nan)
        self.n_ = np.zeros((n_arms, J), dtype=np.int64)
        self.cate_var_ = np.zeros((n_arms, J))
        cols = [j for j, k in enumerate(kinds) if k == "structured"]
        if cols:
            pooled = [known[names[j]] for j in cols]
            heads = StructuredHeads(
                learner.metric_operators_[pooled], learner.y_mean_[pooled], learner.y_scale_[pooled], self.alpha
            ).fit(V, arm_local, Y[:, cols], n_arms)
            self._put(cols, heads, np.repeat(heads.alpha_[:, None], len(cols), axis=1))
            if arms is not None:
                arms = np.asarray(arms, dtype=np.int64)
                e = learner.arm_embeddings_[arms]
                w = learner.y_scale_[pooled][None, :, None] * np.einsum("jde,ae->ajd", learner.metric_operators_[pooled], e)
                trained = np.isfinite(self.coef_[:, cols, 0])
                self.coef_[:, cols, 1:] = np.where(trained[..., None], w, np.nan)
                for j in cols:
                    kinds[j] = "pooled"
                head_var = np.nanmean(self._head_variance(V)[:, :, cols], axis=0) if len(V) else 0.0
                jackknife = learner.cate_var_[arms[1:]][:, pooled]
                self.cate_var_[1:, cols] = np.where(np.isfinite(jackknife), np.maximum(jackknife - head_var, 0.0), 0.0)
        cols = [j for j, k in enumerate(kinds) if k == "ridge"]
        if cols:
            heads = RidgeHeads(self.alpha).fit(V, arm_local, Y[:, cols], n_arms)
            self._put(cols, heads, heads.alpha_)
        fresh = [j for j, k in enumerate(kinds) if k != "pooled"]
        if fresh:
            # The extractor variance per unit length of w is one number per metric; a metric the
            # learner never saw takes the median over the ones it did.
            known_var = learner.extractor_var_
            s2 = np.array([known_var[known[names[j]]] if names[j] in known else
                           (float(np.median(known_var)) if known_var.size else 0.0) for j in fresh])
            w = self.coef_[1:, fresh, 1:] - self.coef_[:1, fresh, 1:]
            self.cate_var_[1:, fresh] = np.nan_to_num(s2 * (w**2).sum(-1))
        too_few = self.n_ < MIN_HEAD_ROWS
        self.coef_[too_few], self.cov_[too_few] = np.nan, np.nan
        self.metric_names_, self.kinds_ = names, kinds
        return self

    def _extractor_variance(self) -> np.ndarray:
        return self.cate_var_

    def estimable(self) -> np.ndarray:
        """``(A, J)`` bool: the heads worth storing. A treated arm's head needs its control's for a
        CATE, and a control's head is kept only where some treated arm uses it."""
        finite = np.isfinite(self.coef_).all(axis=-1)
        pairs = finite[1:] & finite[:1]
        return np.vstack([pairs.any(axis=0, keepdims=True), pairs])

    def _put(self, cols, heads, alpha) -> None:
        self.coef_[:, cols], self.cov_[:, cols] = heads.coef_, heads.cov_
        self.sigma2_[:, cols], self.n_[:, cols], self.alpha_[:, cols] = heads.sigma2_, heads.n_, alpha

    def to_records(self) -> list[dict]:
        """One plain dict per (arm, metric): ``arm_index`` (local), ``metric``, ``kind``, ``coef`` (``d+1``
        floats, intercept first), ``cov`` (``(d+1)^2`` floats, row-major), ``sigma2``,
        ``alpha``, ``n``, ``cate_var``. NaN stays NaN."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("ExperimentHead is not fitted")
        return [
            {
                "arm_index": a,
                "metric": m,
                "kind": self.kinds_[j],
                "coef": self.coef_[a, j].tolist(),
                "cov": self.cov_[a, j].ravel().tolist(),
                "sigma2": float(self.sigma2_[a, j]),
                "alpha": float(self.alpha_[a, j]),
                "n": int(self.n_[a, j]),
                "cate_var": float(self.cate_var_[a, j]),
            }
            for a in range(self.coef_.shape[0])
            for j, m in enumerate(self.metric_names_)
        ]

    @classmethod
    def from_records(cls, records: list[dict], metric_names: list[str] | None = None) -> "ExperimentHead":
        """Inverse of :meth:`to_records`; metrics in ``metric_names`` order (default: first seen)."""
        records = list(records)
        if not records:
            raise ValueError("no records")
        names = list(dict.fromkeys(r["metric"] for r in records)) if metric_names is None else list(metric_names)
        col = {m: j for j, m in enumerate(names)}
        n_arms = max(int(r["arm_index"]) for r in records) + 1
        k = len(records[0]["coef"])
        head = cls()
        head.metric_names_ = names
        head.kinds_ = [""] * len(names)
        head.coef_ = np.full((n_arms, len(names), k), np.nan)
        head.cov_ = np.full((n_arms, len(names), k, k), np.nan)
        head.sigma2_ = np.full((n_arms, len(names)), np.nan)
        head.alpha_ = np.full((n_arms, len(names)), np.nan)
        head.n_ = np.zeros((n_arms, len(names)), dtype=np.int64)
        head.cate_var_ = np.zeros((n_arms, len(names)))
        for r in records:
            a, j = int(r["arm_index"]), col[r["metric"]]
            head.kinds_[j] = r["kind"]
            head.coef_[a, j] = r["coef"]
            head.cov_[a, j] = np.asarray(r["cov"], dtype=np.float64).reshape(k, k)
            head.sigma2_[a, j], head.alpha_[a, j], head.n_[a, j] = r["sigma2"], r["alpha"], r["n"]
            # Heads stored before the jackknife carry no extractor variance.
            cate_var = r.get("cate_var")
            head.cate_var_[a, j] = 0.0 if cate_var is None or not np.isfinite(cate_var) else cate_var
        return head


@dataclass
class HeadFit:
    """One experiment's head fit: ``head`` (None when it failed), ``status`` (``"fitted"`` or
    ``"failed"``), ``detail`` (one line that says what was fitted, or why not) and the
    ``non_finite`` CATEs that failed it. ``short_cells``: the (arm, metric) pairs left without a
    head for want of rows (fewer than :data:`MIN_HEAD_ROWS`)."""

    head: ExperimentHead | None
    status: str
    detail: str
    non_finite: int = 0

    @property
    def short_cells(self) -> list[tuple[int, int]]:
        if self.head is None:
            return []
        return [(int(a), int(j)) for a, j in zip(*np.nonzero(self.head.n_ < MIN_HEAD_ROWS))]


def fit_experiment_head(V, arm, Y, metric_names, learner, V_units, n_arms: int,
                        arms: np.ndarray | None = None) -> HeadFit:
    """Fit one experiment's :class:`ExperimentHead` and check it on all its units.

    ``V, arm, Y``: the fitting rows (embeddings, local arm, outcomes of ``metric_names``);
    ``V_units``: every unit of the experiment, whose CATEs must be finite; ``arms``: the
    learner's global arms when it was trained on this experiment (:func:`trained_arms`).
    A fit that fails, or gives a non-finite CATE, is a failed :class:`HeadFit` with the
    reason: it never stops the other experiments of a run.
    """
    try:
        head = ExperimentHead().fit(V, arm, Y, metric_names, learner, n_arms=n_arms, arms=arms)
    except (ValueError, np.linalg.LinAlgError) as error:
        return HeadFit(None, "failed", f"head fit failed: {error}")
    bad = int((~np.isfinite(head.predict_cate(V_units)[:, head.estimable()[1:]])).sum())
    if bad:
        return HeadFit(None, "failed", f"{bad} non-finite CATEs", bad)
    fit = HeadFit(head, "fitted", f"{int(head.estimable().sum())} heads on {len(V_units)} units")
    smallest = int(head.n_.max(axis=1).min())
    if smallest < TINY_ARM_ROWS:
        fit.detail += f"; tiny: its smallest arm has {smallest} observed rows, so its CATEs lean on the pooled model"
    if fit.short_cells:
        fit.detail += (f"; {len(fit.short_cells)} arm-metric cells without a head "
                       f"(fewer than {MIN_HEAD_ROWS} observed rows)")
    return fit
