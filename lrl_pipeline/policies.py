"""``lrl policy``: a policy tree with guardrails for one experiment, from its stored heads.

The experiment's valid rows and units are read as the heads read them, the
heads give every arm's predicted outcomes, and :mod:`lrl_core.policy` fits
the tree on the training split (depth chosen on the validation split) and
values it, with the alternatives, on the test split; the split is the
pipeline's own stable hash of ``unit_id``. Rules are written in the raw
features' units (:meth:`lrl_core.features.FeatureTransform.describe_split`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lrl_core.features import FeatureTransform
from lrl_core.heads import ExperimentHead
from lrl_core.policy import Objective, PolicyTree, fit_policy_tree, policy_value
from lrl_pipeline.experiment_rows import ExperimentRows, read_experiment_rows
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.scoring import PipelineError
from lrl_pipeline.storage import LRLDatabase, read_heads

__all__ = ["ExperimentPolicy", "experiment_policy", "fit_experiment_policy"]

POLICIES = ("tree", "control", "best_arm", "argmax")
"""The policy tree against everyone on control, everyone on the single best arm, and each unit on
the arm with its best predicted reward (no guardrails, no segments)."""


@dataclass
class ExperimentPolicy:
    """What ``lrl policy`` prints: the objective, the segments and the value of each policy."""

    experiment_id: str
    objective: Objective
    metrics: list[str]
    arms: list[str]
    policy: PolicyTree
    segments: pd.DataFrame  # segment, rule, units, arm
    values: pd.DataFrame    # policy, metric, estimator, value, se
    rewards: pd.DataFrame   # per segment, "reward <arm>": the model's predicted reward of each treated arm
    transform: FeatureTransform  # the features the tree splits, as the model it was fitted with prepares them

    def objective_text(self) -> str:
        """The objective in one line, e.g. ``revenue x 1; latency >= -0.01``."""
        return "; ".join([*(f"{self.metrics[m]} x {w:g}" for m, w in self.objective.weights.items()),
                          *(f"{self.metrics[m]} >= {g:g}" for m, g in self.objective.guardrails.items())])


def _objective(weights: dict[str, float], guardrails: dict[str, float], metrics: list[str]) -> Objective:
    unknown = sorted((set(weights) | set(guardrails)) - set(metrics))
    if unknown:
        raise PipelineError(f"no metric {', '.join(unknown)} in this experiment's heads: {', '.join(metrics)}")
    chosen = weights or {metrics[0]: 1.0}
    return Objective({metrics.index(m): w for m, w in chosen.items()},
                     {metrics.index(m): g for m, g in guardrails.items()})


MAX_FIT_UNITS = 20_000
"""A policy tree fits on at most this many units (a seeded sample): its few thresholds need no more,
and an experiment of 100,000 units would otherwise cost seconds per depth tried."""


def fit_experiment_policy(rows: ExperimentRows, records: pd.DataFrame, experiment_id: str, transform: FeatureTransform,
                          weights: dict[str, float] | None = None, guardrails: dict[str, float] | None = None,
                          depth: int | None = None) -> ExperimentPolicy:
    """The policy tree of one experiment from its valid rows (as heads read them) and its stored
    head ``records``; ``PipelineError`` when it has too few units (see :func:`experiment_policy`)."""
    if rows.experiment(experiment_id) is None or records.empty:
        raise PipelineError(f"no valid rows or heads of experiment {experiment_id!r} on the current extractor")
    head = ExperimentHead.from_records(records.to_dict("records"))
    data = rows.arrays(experiment_id)
    metrics = list(head.metric_names_)
    objective = _objective(weights or {}, guardrails or {}, metrics)
    X, arm = rows.X[data.unit], data.arm
    y = data.Y[:, [data.metrics.index(m) for m in metrics]]
    mu = head.predict_outcomes(rows.V[data.unit])
    shares = np.bincount(arm, minlength=len(data.arm_names)) / len(arm)
    role = rows.split[data.unit]
    if (role == 2).sum() < 10 or (role == 1).sum() < 10:
        raise PipelineError(f"experiment {experiment_id!r} has too few units to fit and value a policy")
    known = np.flatnonzero(role < 2)
    if known.size > MAX_FIT_UNITS:
        known = np.sort(np.random.default_rng(0).choice(known, MAX_FIT_UNITS, replace=False))
    policy = fit_policy_tree(X[known], mu[known], arm[known], y[known], shares, objective, transform.describe_split,
                             validation=role[known] == 1, depths=[depth] if depth else range(1, 5))

    test = role == 2
    reward = objective.reward(mu[test] - mu[test][:, :1])  # (n, A): predicted reward of each arm
    assigned = {"tree": policy.assign(X[test]), "control": np.zeros(int(test.sum()), dtype=np.int64),
                "best_arm": np.full(int(test.sum()), int(np.argmax(reward.mean(axis=0)))),
                "argmax": np.argmax(reward, axis=1)}
    values = pd.DataFrame([
        (name, metrics[j], estimator, v.value[j], v.se[j])
        for name in POLICIES
        for estimator in ("dr", "ips")
        for v in [policy_value(assigned[name], mu[test], arm[test], y[test], shares, estimator)]
        for j in range(len(metrics))], columns=["policy", "metric", "estimator", "value", "se"])
    segments = pd.DataFrame([(i, s["rule"], s["units"], data.arm_names[s["arm"]])
                             for i, s in enumerate(policy.segments)], columns=["segment", "rule", "units", "arm"])
    rewards = pd.DataFrame([s["reward"] for s in policy.segments],
                           columns=[f"reward {name}" for name in data.arm_names[1:]])
    return ExperimentPolicy(experiment_id, objective, metrics, data.arm_names, policy, segments, values, rewards,
                            transform)


def experiment_policy(db: Path, artifacts: Path, experiment_id: str, weights: dict[str, float] | None = None,
                      guardrails: dict[str, float] | None = None, depth: int | None = None) -> ExperimentPolicy:
    """Fit and value the policy tree of ``experiment_id`` (see the module docstring).

    ``weights``: metric -> weight of the reward (default: the first metric, weight 1);
    ``guardrails``: metric -> least acceptable effect, judged on the lower end of each
    segment's 95% interval; ``depth``: fixed instead of chosen (1 to 4).
    """
    model = ArtifactStoreResource(root=str(Path(artifacts).resolve())).store().load()
    with LRLDatabase(database=str(Path(db).resolve())).connect(read_only=True) as con:
        records = read_heads(con, [experiment_id], model.version)
        if records.empty:
            raise PipelineError(f"no heads of experiment {experiment_id!r} on the current extractor: "
                                "check the id (`lrl status`), or run `lrl update`")
        rows = read_experiment_rows(con, [experiment_id], model)
    return fit_experiment_policy(rows, records, experiment_id, model.transform, weights, guardrails, depth)
