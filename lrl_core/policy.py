"""From effects to decisions: a shallow policy tree over readable segments, with guardrails, and its
honest value on randomised held-out units (issue 15, core).

Meta's interpretable personalised experimentation (Wu, Tan, ..., Bakshy,
KDD 2022) turns black-box CATEs into segments a product team can read and
ship. Here, for one experiment with arms ``0`` (control) .. ``A-1`` and
metrics ``0 .. J-1``, given a model's predicted outcomes ``mu (n, A, J)``:

- the **reward** of arm ``a`` for a unit is ``sum_m w_m cate_am`` (an
  :class:`Objective` weighs metrics), and a **guardrail** ``cate_am >= g_m``
  must hold for a segment with confidence: on a 95% lower bound of the
  segment's doubly robust average effect, not on the point estimate (the
  segment's own interval, or its parent's shifted by the model's difference
  between the two, whichever is higher; see :func:`_guardrail_lower`);
- the **policy tree** is a multi-output regression tree (scikit-learn) on
  the arms' rewards and guardrail effects over the features; each leaf (a
  segment) gets the arm with the best average reward among those that pass
  every guardrail, control when none does or none beats it; the arms are
  ranked by the model's effects, the guardrails judged on the DR interval;
  its depth (1 to 4) is the one with the best value on separate units (by
  the model's outcomes there: a DR value's noise would pick depths by chance);
- the **value** of a policy per metric is the mean of the doubly robust
  (or inverse-propensity) score of the arm it assigns, on units whose arm was
  randomised with known shares ``p_a``:
  ``Gamma_ia = mu_a(x_i) + 1{T_i = a} / p_a (y_i - mu_a(x_i))``, with a
  standard error from the scores' spread.

And before any decision, an **explanation**: a shallow multi-output tree
distilled from the model's CATEs (every treated arm and metric) over the
readable features, its fidelity on held-out units, and each segment's rule,
size and average effects (:func:`explain_effects`).

Plain arrays in, small result objects out; no I/O.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.tree import DecisionTreeRegressor, _tree

__all__ = ["Describe", "Explanation", "Objective", "PolicyTree", "PolicyValue", "dr_scores", "explain_effects",
           "fit_policy_tree", "policy_value", "threshold_text"]

MAX_DEPTH = 4
MIN_SEGMENT = 50
"""Fewest fitting units in a segment: fewer give guardrail intervals too wide to pass."""


@dataclass
class Objective:
    """Metric weights of the reward and guardrails (metric -> least acceptable effect)."""

    weights: dict[int, float]
    guardrails: dict[int, float] = field(default_factory=dict)

    def reward(self, effects: np.ndarray) -> np.ndarray:
        """``effects (..., J)`` -> ``(...)`` the weighted sum over metrics."""
        return sum(w * effects[..., m] for m, w in self.weights.items())


def dr_scores(mu: np.ndarray, arm: np.ndarray, y: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """``(n, A, J)`` doubly robust scores ``mu_a(x) + 1{T = a} / p_a (y - mu_a(x))`` (unobserved y: mu)."""
    n, A, _ = mu.shape
    scores = mu.copy()
    rows = np.arange(n)
    residual = np.where(np.isfinite(y), y - mu[rows, arm], 0.0)
    scores[rows, arm] += residual / shares[arm][:, None]
    return scores


@dataclass
class PolicyValue:
    """A policy's value per metric (mean outcome had every unit followed it), with standard errors."""

    estimator: str
    value: np.ndarray  # (J,)
    se: np.ndarray     # (J,)


def policy_value(assigned: np.ndarray, mu: np.ndarray, arm: np.ndarray, y: np.ndarray, shares: np.ndarray,
                 estimator: str = "dr") -> PolicyValue:
    """Value per metric of assigning ``assigned (n,)`` arms, on randomised units (``arm``, ``y (n, J)``)
    with known arm ``shares (A,)``: ``dr`` (doubly robust) or ``ips`` (inverse propensity)."""
    if estimator not in ("dr", "ips"):
        raise ValueError(f"estimator must be 'dr' or 'ips', not {estimator!r}")
    rows = np.arange(len(arm))
    if estimator == "dr":
        scores = dr_scores(mu, arm, y, shares)[rows, assigned]
    else:
        # A unit whose outcome is missing has no IPS score (DR scores it by the model).
        scores = np.where((arm == assigned)[:, None], y / shares[arm][:, None], np.where(np.isnan(y), np.nan, 0.0))
    count = np.isfinite(scores).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return PolicyValue(estimator, np.nanmean(scores, axis=0), np.nanstd(scores, axis=0, ddof=1) / np.sqrt(count))


@dataclass
class PolicyTree:
    """A fitted policy: the tree, each segment's arm and evidence, and readable rules."""

    tree: DecisionTreeRegressor
    depth: int
    arms: dict[int, int]              # leaf id -> assigned arm
    segments: list[dict]              # per leaf: leaf, rule, units, arm, reward (A,), lower guardrail bounds

    def assign(self, X: np.ndarray) -> np.ndarray:
        """``(n,)`` the arm the policy gives each unit of ``X``."""
        leaves = self.tree.apply(np.asarray(X, dtype=np.float32))
        return np.array([self.arms[leaf] for leaf in leaves], dtype=np.int64)


Describe = Callable[[int, float], tuple[str, str]]
"""``(feature index, threshold) -> (text of the left branch, text of the right branch)``."""


def threshold_text(names: list[str]) -> Describe:
    """The default :data:`Describe`: ``name <= t`` and ``name > t``."""
    return lambda j, t: (f"{names[j]} <= {t:.4g}", f"{names[j]} > {t:.4g}")


def _rules(tree: DecisionTreeRegressor, describe: Describe) -> dict[int, str]:
    """Leaf id -> its path as ``condition and ...``."""
    inner = tree.tree_
    rules: dict[int, str] = {}

    def walk(node: int, path: list[str]) -> None:
        if inner.feature[node] == _tree.TREE_UNDEFINED:
            rules[node] = " and ".join(path) or "everyone"
            return
        left, right = describe(int(inner.feature[node]), float(inner.threshold[node]))
        walk(inner.children_left[node], [*path, left])
        walk(inner.children_right[node], [*path, right])

    walk(0, [])
    return rules


def _dr_lower(effect_scores: np.ndarray) -> np.ndarray:
    """``(A-1, J)`` the lower end of the 95% interval of the mean DR effect of ``effect_scores (n, A-1, J)``."""
    se = effect_scores.std(axis=0, ddof=1) / np.sqrt(len(effect_scores))
    return effect_scores.mean(axis=0) - 1.96 * se


def _guardrail_lower(effect_scores, cate, in_leaf, in_parent) -> np.ndarray:
    """``(A-1, J)`` a lower confidence bound of each arm's effect in a segment (a leaf).

    The larger of two one-sided 97.5% bounds, so a 95% bound (Bonferroni): the
    segment's own DR interval, and its parent's DR interval shifted by the
    model's difference between the segment and its parent. A deeper tree's
    segments are smaller and their own intervals wider; the second bound keeps
    them from failing a guardrail on noise alone, while the DR scores, not the
    model, still carry the level (the model only says how the segment differs
    from its parent, which its per-unit noise barely moves).
    """
    own = _dr_lower(effect_scores[in_leaf])
    if in_parent is None:
        return own
    shift = cate[in_leaf].mean(axis=0) - cate[in_parent].mean(axis=0)
    return np.maximum(own, _dr_lower(effect_scores[in_parent]) + shift)


def _parents(tree: DecisionTreeRegressor) -> np.ndarray:
    """``(nodes,)`` each node's parent (-1 for the root)."""
    inner = tree.tree_
    parent = np.full(inner.node_count, -1)
    for node in range(inner.node_count):
        for child in (inner.children_left[node], inner.children_right[node]):
            if child >= 0:
                parent[child] = node
    return parent


def _fit_depth(X, mu, arm, y, shares, objective: Objective, depth: int, describe: Describe) -> PolicyTree:
    """The policy tree of one depth, segments decided on the DR scores of the fitting units."""
    cate = mu[:, 1:] - mu[:, :1]  # (n, A-1, J)
    guards = sorted(objective.guardrails)
    targets = np.concatenate([objective.reward(cate), *(cate[:, :, m] for m in guards)], axis=1)
    scale = targets.std(axis=0)
    tree = DecisionTreeRegressor(max_depth=depth, min_samples_leaf=MIN_SEGMENT, random_state=0)
    features = np.asarray(X, dtype=np.float32)
    tree.fit(features, targets / np.where(scale > 0, scale, 1.0))
    scores = dr_scores(mu, arm, y, shares)
    effect_scores = scores[:, 1:] - scores[:, :1]  # (n, A-1, J): DR effect of each arm against control
    leaves, paths, parent = tree.apply(features), tree.decision_path(features).tocsc(), _parents(tree)
    rules, arms, segments = _rules(tree, describe), {}, []
    for leaf in np.unique(leaves):
        in_leaf = leaves == leaf
        in_parent = paths[:, parent[leaf]].toarray().ravel().astype(bool) if parent[leaf] >= 0 else None
        # The model's effects rank the arms (its noise is far below the DR scores'); the DR scores
        # carry the guardrails' level, so that none is passed on a model's say-so.
        reward = objective.reward(cate[in_leaf].mean(axis=0))
        bound = _guardrail_lower(effect_scores, cate, in_leaf, in_parent)
        lower = {m: bound[:, m] for m in guards}
        passing = np.ones(len(reward), dtype=bool)
        for m in guards:
            passing &= lower[m] >= objective.guardrails[m]
        best = np.where(passing, reward, -np.inf)
        chosen = int(np.argmax(best)) + 1 if passing.any() and best.max() > 0 else 0
        arms[int(leaf)] = chosen
        segments.append({"leaf": int(leaf), "rule": rules[int(leaf)], "units": int(in_leaf.sum()), "arm": chosen,
                         "reward": reward, "guardrail_lower": lower})
    return PolicyTree(tree, depth, arms, segments)


def fit_policy_tree(X: np.ndarray, mu: np.ndarray, arm: np.ndarray, y: np.ndarray, shares: np.ndarray,
                    objective: Objective, feature_names: Sequence[str] | Describe, validation: np.ndarray,
                    depths=range(1, MAX_DEPTH + 1)) -> PolicyTree:
    """The policy tree whose depth gives the best doubly robust value of the reward on the
    ``validation (n,) bool`` units, fitted on the others (see the module docstring).

    ``X (n, p)`` readable features (original units; NaN is not allowed, impute first),
    ``mu (n, A, J)`` predicted outcomes of every arm (arm 0 the control), ``arm (n,)`` the
    randomised arm, ``y (n, J)`` outcomes (NaN unobserved), ``shares (A,)`` arm probabilities;
    ``feature_names``, or a :data:`Describe` that writes a split readably (e.g. in the original
    units of standardised features).
    """
    describe = feature_names if callable(feature_names) else threshold_text(list(feature_names))
    fit = ~validation
    best, best_value = None, -np.inf
    rows = np.arange(int(validation.sum()))
    for depth in depths:
        policy = _fit_depth(X[fit], mu[fit], arm[fit], y[fit], shares, objective, depth, describe)
        # Depths compared by the model's own outcomes on the held-out units: a DR value's noise
        # (inverse shares times the outcome variance) would pick depths by chance.
        assigned = policy.assign(X[validation])
        reward = float(objective.reward(mu[validation][rows, assigned].mean(axis=0)))
        if reward > best_value + 1e-12:
            best, best_value = policy, reward
    return best


@dataclass
class Explanation:
    """A shallow tree distilled from CATEs: its held-out fidelity and its segments."""

    tree: DecisionTreeRegressor
    fidelity: float                 # R-squared of the tree's CATEs against the model's on held-out units
    segments: list[dict]            # per leaf: leaf, rule, units, effect (K,) mean, effect_se (K,)


def explain_effects(X: np.ndarray, cate: np.ndarray, feature_names: Sequence[str] | Describe,
                    held_out: np.ndarray, depth: int = 3) -> Explanation:
    """Distil ``cate (n, K)`` (every treated arm and metric of an experiment) into a depth-``depth``
    tree over the readable features ``X (n, p)``, fitted on the units not ``held_out``.

    Give the columns in comparable units (e.g. each metric's CATEs over that metric's outcome
    standard deviation): the tree splits on, and fidelity weighs, their variance as given; a
    column whose CATEs barely vary then barely counts, where standardising it would make its
    noise a target. Fidelity: the variance-weighted R-squared of the tree's prediction against
    ``cate`` on the held-out units. Segments: the leaves' rules, fitting-unit counts, and the
    mean CATE of their units with its standard error across units.
    """
    X = np.asarray(X, dtype=np.float32)
    fit = ~held_out
    tree = DecisionTreeRegressor(max_depth=depth, min_samples_leaf=MIN_SEGMENT, random_state=0)
    tree.fit(X[fit], cate[fit])
    truth = cate[held_out]
    predicted = tree.predict(X[held_out]).reshape(truth.shape)
    fidelity = 1.0 - ((truth - predicted) ** 2).sum() / ((truth - truth.mean(axis=0)) ** 2).sum()
    describe = feature_names if callable(feature_names) else threshold_text(list(feature_names))
    leaves, rules, segments = tree.apply(X[fit]), _rules(tree, describe), []
    for leaf in np.unique(leaves):
        members = cate[fit][leaves == leaf]
        segments.append({"leaf": int(leaf), "rule": rules[int(leaf)], "units": int(len(members)),
                         "effect": members.mean(axis=0),
                         "effect_se": members.std(axis=0, ddof=1) / np.sqrt(len(members))})
    return Explanation(tree, float(fidelity), segments)
