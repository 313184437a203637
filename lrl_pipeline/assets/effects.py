"""Effects across experiments: which metrics' effects move together, and which short-term metric
predicts a north star's (issue 14).

After each retrain, per treated arm of the trained experiments: its effect on
every metric (difference in means, aggregated inside DuckDB), the noise of
that effect, the same on two halves of its units, and the pooled model's
arm-average effect. From these, :mod:`lrl_core.effect_covariance` estimates
the covariance across arms of the *true* effects (naive, total-covariance,
split-sample JIVE, LIML and the pooled model's) and the best linear proxies
of each metric. Outside tools read the two tables.
"""
# No `from __future__ import annotations`: Dagster reads the context and resource
# annotations at definition time to inject them.
import time

import dagster as dg
import numpy as np
import pandas as pd

from lrl_core.arm_effects import arm_effects
from lrl_core.effect_covariance import ESTIMATORS, effect_covariances, proxy_weights
from lrl_pipeline.compute import one_blas_thread
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.storage import (
    LRLDatabase, arm_covariances, arm_moments, ensure_schema, load_pooled, replace_table, transaction, utc_now,
)

GROUP = "effects"


def pooled_arm_effects(learner, pooled, X: np.ndarray, labels: list[tuple[str, str]]) -> np.ndarray:
    """``(A, J)`` the pooled model's CATE of each labelled arm against its control, averaged over
    the units of its experiment (every arm), in ``pooled.metrics`` order; NaN for an arm it lacks."""
    arm_of = {(pooled.experiments[k], pooled.arm_names[g]): g for g, k in enumerate(pooled.arm_experiment)}
    row_experiment = pooled.arm_experiment[pooled.row_arm]
    out = np.full((len(labels), len(pooled.metrics)), np.nan)
    for i, key in enumerate(labels):
        g = arm_of.get(key)
        if g is None:
            continue
        k = pooled.arm_experiment[g]
        units = np.unique(pooled.row_unit[row_experiment == k])
        out[i] = learner.predict_cate(X[units], [g], [pooled.control_arm[k]])[:, 0, :].mean(axis=0)
    return out


def arm_effect_rows(labels: list[tuple[str, str]], arms, metrics: list[str]) -> pd.DataFrame:
    """pipeline.arm_effects' rows: every treated arm's effect on every metric it reports."""
    A, J = arms.effect.shape
    frame = pd.DataFrame({
        "experiment_id": np.repeat([e for e, _ in labels], J), "arm": np.repeat([a for _, a in labels], J),
        "metric": np.tile(metrics, A), "effect": arms.effect.reshape(-1),
        "effect_se": np.sqrt(np.diagonal(arms.noise, axis1=1, axis2=2)).reshape(-1),
        "half_a": arms.half_a.reshape(-1), "half_b": arms.half_b.reshape(-1),
        "pooled": (arms.pooled if arms.pooled is not None else np.full((A, J), np.nan)).reshape(-1)})
    return frame[frame["effect"].notna()].reset_index(drop=True)


def covariance_rows(estimates: dict, metrics: list[str]) -> pd.DataFrame:
    """pipeline.effect_covariance's rows: every estimator, every ordered pair of metrics."""
    rows = []
    for name, estimate in estimates.items():
        correlation = estimate.correlation
        for a, metric_a in enumerate(metrics):
            for b, metric_b in enumerate(metrics):
                rows.append((metric_a, metric_b, name, estimate.covariance[a, b], correlation[a, b],
                             estimate.se[a, b], int(estimate.n_arms[a, b])))
    return pd.DataFrame(rows, columns=["metric_a", "metric_b", "estimator", "covariance", "correlation", "se",
                                       "n_arms"])


def proxy_rows(arms, metrics: list[str], estimators: list[str]) -> pd.DataFrame:
    """pipeline.metric_proxies' rows: for each metric as north star, its best linear proxy on every
    other metric by each estimator (weights with standard errors; r2 of the whole proxy)."""
    rows = []
    for n, north_star in enumerate(metrics):
        proxies = [j for j in range(len(metrics)) if j != n]
        if not proxies:
            continue
        for name in estimators:
            fit = proxy_weights(arms, n, proxies, name)
            rows.extend((north_star, metrics[p], name, w, se, fit.r2, fit.r2_se, fit.n_arms)
                        for p, w, se in zip(fit.proxies, fit.weight, fit.weight_se))
    return pd.DataFrame(rows, columns=["north_star", "proxy", "estimator", "weight", "weight_se", "r2", "r2_se",
                                       "n_arms"])


@dg.multi_asset(
    group_name=GROUP, pool="duckdb",
    specs=[
        dg.AssetSpec("arm_effects", kinds={"duckdb", "python"}, deps=["lr_learner"],
                     description="Each treated arm's effect on each metric: difference in means with its "
                                 "standard error, on two halves of the units, and the pooled model's "
                                 "(pipeline.arm_effects)."),
        dg.AssetSpec("effect_covariance", kinds={"duckdb", "python"}, deps=["lr_learner"],
                     description="Covariance and correlation across experiment arms of the true effects on each "
                                 "pair of metrics, by five estimators (pipeline.effect_covariance)."),
        dg.AssetSpec("metric_proxies", kinds={"duckdb", "python"}, deps=["lr_learner"],
                     description="For each metric as north star, the best linear proxy on the other metrics' "
                                 "effects, with weights, standard errors and r2 (pipeline.metric_proxies)."),
    ],
)
def effects_across_experiments(context: dg.AssetExecutionContext, database: LRLDatabase,
                               artifacts: ArtifactStoreResource):
    """Per-arm effect statistics in DuckDB, then the effect covariance and the metric proxies."""
    started = time.perf_counter()
    model = artifacts.store().load()
    with database.connect() as con:
        moments, covariances = arm_moments(con), arm_covariances(con)
        pooled, X, _ = load_pooled(con)
    aggregated = time.perf_counter() - started
    metrics = list(pooled.metrics)
    labels, arms = arm_effects(moments, covariances, metrics)
    if len(labels) < 3:
        raise dg.Failure(f"{len(labels)} treated arm(s): the effect covariance needs at least 3")
    with one_blas_thread():
        arms.pooled = pooled_arm_effects(model.learner, pooled, X, labels)
        estimates = effect_covariances(arms)
        estimators = [name for name in ESTIMATORS if name in estimates or name == "liml"]
        covariance, proxies = covariance_rows(estimates, metrics), proxy_rows(arms, metrics, estimators)
    per_arm = arm_effect_rows(labels, arms, metrics)
    stamp = {"extractor_version": model.version, "computed_at": utc_now()}
    with database.connect() as con:
        ensure_schema(con)
        with transaction(con):
            replace_table(con, "arm_effects", per_arm.assign(**stamp))
            replace_table(con, "effect_covariance", covariance.assign(**stamp))
            replace_table(con, "metric_proxies", proxies.assign(**stamp))
    seconds = time.perf_counter() - started
    common = {"treated_arms": len(labels), "metrics": len(metrics), "seconds": round(seconds, 2),
              "aggregation_seconds": round(aggregated, 2), "extractor_version": model.version}
    yield dg.MaterializeResult(asset_key="arm_effects", metadata={**common, "dagster/row_count": len(per_arm)})
    yield dg.MaterializeResult(asset_key="effect_covariance", metadata={
        **common, "dagster/row_count": len(covariance),
        "correlations": dg.MetadataValue.md(correlation_markdown(covariance))})
    yield dg.MaterializeResult(asset_key="metric_proxies", metadata={
        **common, "dagster/row_count": len(proxies),
        "best_proxies": dg.MetadataValue.md(best_proxies_markdown(proxies, "jive"))})


def correlation_markdown(covariance: pd.DataFrame) -> str:
    """The effect correlation of every pair of distinct metrics, one column per estimator."""
    pairs = covariance[covariance["metric_a"] < covariance["metric_b"]]
    table = pairs.pivot_table(index=["metric_a", "metric_b"], columns="estimator", values="correlation")
    return table.reset_index().to_markdown(index=False, floatfmt=".3f")


def best_proxies_markdown(proxies: pd.DataFrame, estimator: str) -> str:
    """Per north star, the proxy weights of one estimator and the share of effect variance explained."""
    part = proxies[proxies["estimator"] == estimator]
    return part[["north_star", "proxy", "weight", "weight_se", "r2"]].to_markdown(index=False, floatfmt=".3f")
