"""``lrl proxies``: which metrics' effects move with a north star's, from the latest retrain."""
from __future__ import annotations

import argparse

import pandas as pd

from lrl_pipeline.cli.context import existing_db
from lrl_pipeline.cli.errors import CLIError

ESTIMATOR_CHOICES = ("jive", "liml", "tc", "pooled", "naive")
"""``--estimator`` values; JIVE by default: unbiased whatever the noise, and it needs no model."""


def _read(db) -> tuple[pd.DataFrame, pd.DataFrame]:
    from lrl_pipeline.storage import LRLDatabase, read_table

    with LRLDatabase(database=str(db)).connect(read_only=True) as con:
        try:
            return read_table(con, "effect_covariance"), read_table(con, "metric_proxies")
        except LookupError as error:
            raise CLIError(f"no effect covariance in {db} yet: run `lrl retrain`") from error


def _interval(value: float, se: float) -> str:
    return f"{value:+.3f}" + (f" ± {1.96 * se:.3f}" if pd.notna(se) else "")


def proxy_lines(covariance: pd.DataFrame, proxies: pd.DataFrame, north_star: str, estimator: str) -> list[str]:
    """What ``lrl proxies`` prints for one north star: effect correlations, then the best linear proxy."""
    pairs = covariance[(covariance["estimator"] == estimator) & (covariance["metric_a"] == north_star)
                       & (covariance["metric_b"] != north_star)].sort_values("correlation", ascending=False,
                                                                           key=lambda c: c.abs())
    fit = proxies[(proxies["estimator"] == estimator) & (proxies["north_star"] == north_star)]
    own = covariance[(covariance["estimator"] == estimator) & (covariance["metric_a"] == north_star)
                     & (covariance["metric_b"] == north_star)]
    lines = [f"{north_star} ({estimator}, {int(pairs['n_arms'].max()) if len(pairs) else 0} treated arms)"]
    identified = False
    if len(own):
        variance, se = float(own["covariance"].iloc[0]), float(own["se"].iloc[0])
        identified = variance > 1.96 * se
        lines.append(f"  variance of its true effects across arms: {_interval(variance, se)}"
                     + ("" if identified else
                        "  (not distinguishable from 0: too few or too weak experiments to tell what moves with it)"))
    lines += [f"  effect correlation with {row.metric_b}: "
              + (f"{row.correlation:+.3f}" if pd.notna(row.correlation) else "n/a (its effects vary less than their noise)")
              for row in pairs.itertuples()]
    if len(fit) and not identified:
        lines.append("  best linear proxy: not estimated, as the north star's effects are not told apart from noise")
    elif len(fit):
        terms = ", ".join(f"{row.proxy} {_interval(row.weight, row.weight_se)}" for row in fit.itertuples())
        first = fit.iloc[0]
        if estimator == "liml":  # LIML assumes an exact linear proxy: its r2 is 1 by construction
            explained = "LIML assumes the proxy explains all of its effect variance"
        elif pd.notna(first["r2"]):
            explained = f"explains {first['r2']:.0%} ± {1.96 * first['r2_se']:.0%} of its effect variance"
        else:
            explained = "explains an unknown share (no effect variance to explain)"
        lines.append(f"  best linear proxy (weights, 95% intervals): {terms}; {explained}")
    return lines


def cmd_proxies(args: argparse.Namespace) -> None:
    """Effect correlations with a north-star metric and its best linear proxy, per the chosen estimator."""
    db = existing_db(args.db)
    covariance, proxies = _read(db)
    metrics = sorted(set(covariance["metric_a"]))
    if args.north_star is not None and args.north_star not in metrics:
        raise CLIError(f"no metric {args.north_star!r} in the effect covariance: {', '.join(metrics)}")
    if args.estimator not in set(covariance["estimator"]) | set(proxies["estimator"]):
        raise CLIError(f"no {args.estimator} estimates in {db} (the pooled ones need a saved model)")
    for north_star in [args.north_star] if args.north_star else metrics:
        print("\n".join(proxy_lines(covariance, proxies, north_star, args.estimator)))
