"""``lrl proxies`` (lrl_pipeline/cli/proxies.py): what it prints from the two tables."""
from __future__ import annotations

import pandas as pd

from lrl_pipeline.cli.proxies import proxy_lines


def _tables(variance: float, se: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    covariance = pd.DataFrame([
        ("retention", "retention", "jive", variance, 1.0, se, 200),
        ("retention", "clicks", "jive", 0.5, 0.7, 0.1, 200),
        ("retention", "sessions", "jive", 0.1, float("nan"), 0.1, 150),
    ], columns=["metric_a", "metric_b", "estimator", "covariance", "correlation", "se", "n_arms"])
    proxies = pd.DataFrame([
        ("retention", "clicks", "jive", 0.8, 0.1, 0.49, 0.05, 150),
        ("retention", "sessions", "jive", 0.1, 0.2, 0.49, 0.05, 150),
    ], columns=["north_star", "proxy", "estimator", "weight", "weight_se", "r2", "r2_se", "n_arms"])
    return covariance, proxies


def test_an_identified_north_star_gets_correlations_and_its_proxy_with_intervals():
    lines = proxy_lines(*_tables(1.0, 0.1), "retention", "jive")
    assert lines[0] == "retention (jive, 200 treated arms)"
    assert lines[1] == "  variance of its true effects across arms: +1.000 ± 0.196"
    assert lines[2] == "  effect correlation with clicks: +0.700"
    assert "n/a (its effects vary less than their noise)" in lines[3]
    assert lines[4] == ("  best linear proxy (weights, 95% intervals): clicks +0.800 ± 0.196, sessions +0.100 ± 0.392; "
                        "explains 49% ± 10% of its effect variance")


def test_a_north_star_whose_effects_are_noise_gets_no_proxy():
    lines = proxy_lines(*_tables(0.01, 0.1), "retention", "jive")
    assert "not distinguishable from 0" in lines[1]
    assert lines[-1].startswith("  best linear proxy: not estimated")


def test_liml_says_its_r2_is_an_assumption():
    covariance, proxies = _tables(1.0, 0.1)
    covariance["estimator"], proxies["estimator"] = "liml", "liml"
    lines = proxy_lines(covariance, proxies, "retention", "liml")
    assert lines[-1].endswith("LIML assumes the proxy explains all of its effect variance")
