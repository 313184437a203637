"""The effects assets after a retrain: per-arm statistics from DuckDB, the two tables, `lrl proxies`."""
from __future__ import annotations

import numpy as np

from lrl_core.arm_effects import arm_effects
from lrl_pipeline import cli
from lrl_pipeline.storage import LRLDatabase, arm_covariances, arm_moments, read_table


def test_arm_effects_from_duckdb_equal_a_pandas_difference_in_means(pipeline):
    with LRLDatabase(database=str(pipeline.db)).connect(read_only=True) as con:
        moments, covariances = arm_moments(con), arm_covariances(con)
        exposures, outcomes = read_table(con, "valid_exposures"), read_table(con, "valid_outcomes")
    metrics = sorted(set(moments["metric"]))
    labels, arms = arm_effects(moments, covariances, metrics)
    rows = outcomes.merge(exposures, on=["unit_id", "experiment_id"])
    means = rows.groupby(["experiment_id", "arm", "metric"])["value"].agg(["mean", "var", "count"])
    assert len(labels) == len(pipeline.experiments) and arms.effect.shape == (len(labels), len(metrics))
    for i, (experiment, arm) in enumerate(labels):
        for j, metric in enumerate(metrics):
            treated, control = means.loc[(experiment, arm, metric)], means.loc[(experiment, "control", metric)]
            np.testing.assert_allclose(arms.effect[i, j], treated["mean"] - control["mean"], rtol=1e-9)
            np.testing.assert_allclose(arms.noise[i, j, j], treated["var"] / treated["count"]
                                       + control["var"] / control["count"], rtol=1e-9)
    # The halves split every arm's units, so their effects straddle the whole arm's.
    assert np.isfinite(arms.half_a).all() and np.isfinite(arms.half_b).all()
    assert not np.allclose(arms.half_a, arms.half_b)
    np.testing.assert_allclose(arms.noise, np.swapaxes(arms.noise, 1, 2))


def test_the_retrain_writes_the_effect_covariance_and_proxies_and_lrl_proxies_prints_them(pipeline, capsys):
    with LRLDatabase(database=str(pipeline.db)).connect(read_only=True) as con:
        covariance, proxies = read_table(con, "effect_covariance"), read_table(con, "metric_proxies")
    metrics = sorted(set(covariance["metric_a"]))
    assert len(metrics) == 2
    assert {"naive", "tc", "jive", "pooled"} <= set(covariance["estimator"])
    for _, part in covariance.groupby("estimator"):
        assert len(part) == len(metrics) ** 2  # every ordered pair, each metric with itself
        square = part.pivot(index="metric_a", columns="metric_b", values="covariance").to_numpy(dtype=float)
        np.testing.assert_allclose(square, square.T)
    naive = covariance[(covariance["estimator"] == "naive") & (covariance["metric_a"] == covariance["metric_b"])]
    tc = covariance[(covariance["estimator"] == "tc") & (covariance["metric_a"] == covariance["metric_b"])]
    # The naive variance of effects carries the noise; total covariance takes it out.
    assert (naive["covariance"].to_numpy(dtype=float) > tc["covariance"].to_numpy(dtype=float)).all()
    assert set(proxies["north_star"]) == set(metrics) and {"jive", "liml"} <= set(proxies["estimator"])

    assert cli.main(["proxies", "--db", str(pipeline.db), "--north-star", metrics[0]]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{metrics[0]} (jive,") and f"effect correlation with {metrics[1]}" in out
    assert "best linear proxy" in out
    assert cli.main(["proxies", "--db", str(pipeline.db), "--north-star", "nope"]) == 1
    assert "no metric 'nope'" in capsys.readouterr().err
