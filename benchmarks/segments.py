"""Effects on segments an experiment left out (issue 17): Synthetic Interventions next to the LR-learner.

World: :func:`lrl_core.synthetic.segment_world.segment_world` with the issue's settings (40 segments,
30 two-arm experiments each leaving out 20-50% of the segments, 4 metrics on scales 0.1 to 10, rank 3,
60 units per segment and arm, noise sd 1), once as drawn and once with a planted off-span segment.
For every excluded (segment, treated arm, metric) cell:

- SI (:class:`lrl_core.synthetic_interventions.SyntheticInterventions`, defaults) on the observed
  segment means: RMSE, coverage of its 95% intervals, the share of in-span (segment, experiment)
  targets whose subspace-inclusion test passes, and the share of the off-span segment's targets
  it flags;
- naive: the arm's mean observed effect over the segments the experiment included;
- LR-learner (defaults, no jackknife refits: only point estimates are scored) fitted on all units
  with the raw features as the pipeline prepares them (the ``segment`` column and ``x0..x5``), its
  CATE averaged over the excluded segment's units; on the first ``--lr-seeds`` seeds of the drawn
  world only (a fit takes about half a minute on two cores).

Errors are in units of each metric's spread of true effects (their standard deviation over all
segments and treated arms) so that metrics on different scales weigh alike; 1.0 is what a constant
guess at the mean effect scores. Usage::

    python benchmarks/segments.py                 # 10 seeds, LR-learner on 5; about 7 minutes
    python benchmarks/segments.py --seeds 2 --lr-seeds 0
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from defaults import machine
from lrl_core.config import LRLConfig
from lrl_core.features import FeatureTransform
from lrl_core.synthetic.segment_world import SegmentWorld, segment_world
from lrl_core.synthetic_interventions import SyntheticInterventions, observed_effects
from lrl_core.training import LRLearner

WORLD = dict(n_segments=40, n_experiments=30, n_metrics=4, rank=3, arms_per_experiment=2, units_per_cell=60,
             exclude=(0.2, 0.5), noise_sd=1.0, n_features=6)

COLUMNS = [("seed", "seed", "{}"), ("world", "world", "{}"), ("cells", "excluded cells", "{:.0f}"),
           ("si_rmse", "SI RMSE", "{:.3f}"), ("naive_rmse", "naive RMSE", "{:.3f}"),
           ("lr_rmse", "LR-learner RMSE", "{:.3f}"), ("si_coverage", "SI 95% coverage", "{:.3f}"),
           ("in_span_pass", "in-span targets passing", "{:.3f}"),
           ("off_span_flagged", "off-span targets flagged", "{:.3f}"), ("off_span_rmse", "off-span SI RMSE", "{:.3f}"),
           ("off_span_coverage", "off-span SI coverage", "{:.3f}"),
           ("mean_rank", "mean rank", "{:.1f}"), ("si_seconds", "SI s", "{:.1f}"), ("lr_seconds", "LR s", "{:.0f}")]
"""Report columns: key, title, format."""


def scaled_rmse(estimate: np.ndarray, truth: np.ndarray, spread: np.ndarray) -> float:
    """Root mean squared error of ``estimate`` in units of ``spread`` (per cell)."""
    return float(np.sqrt(np.mean(((estimate - truth) / spread) ** 2)))


def lr_estimates(world: SegmentWorld, cells: pd.DataFrame) -> tuple[np.ndarray, float]:
    """The LR-learner's CATE for each cell, averaged over the cell's segment's units, and its fit seconds."""
    tables = world.tables
    features = tables["unit_features"]
    X = FeatureTransform().fit_frame(features).transform_frame(features)
    exposures = tables["exposures"]
    arms = pd.MultiIndex.from_tuples(world.interventions).get_indexer(
        pd.MultiIndex.from_frame(exposures[["experiment_id", "arm"]]))
    units = pd.Index(features["unit_id"]).get_indexer(exposures["unit_id"])
    wide = tables["outcomes"].pivot(index="unit_id", columns="metric", values="value")
    Y = wide.reindex(index=exposures["unit_id"], columns=world.metrics).to_numpy()
    started = time.perf_counter()
    learner = LRLearner(LRLConfig(interval_refits=0, progress=False)).fit(X, units, arms, Y,
                                                                         n_arms=len(world.interventions))
    seconds = time.perf_counter() - started
    treated = world.treated
    out = np.empty(len(cells))
    for s in np.unique(cells["segment"]):
        cate = learner.predict_cate(X[world.segment_of_unit == s], treated, world.control_of[treated]).mean(axis=0)
        rows = np.flatnonzero(cells["segment"].to_numpy() == s)
        at = np.searchsorted(treated, cells["intervention"].to_numpy()[rows])
        out[rows] = cate[at, cells["metric"].to_numpy()[rows]]
    return out, seconds


def run_world(seed: int, off_span: bool, with_lr: bool) -> dict:
    """One world: SI, naive and (optionally) LR-learner scores on its excluded cells."""
    world = segment_world(seed, off_span_segment=off_span, **WORLD)
    means, ses = world.observed()
    started = time.perf_counter()
    cells = SyntheticInterventions().fit(means, ses, world.experiment_of, world.control_of).estimate_missing()
    si_seconds = time.perf_counter() - started
    segment, arm, metric = (cells[c].to_numpy() for c in ("segment", "intervention", "metric"))
    truth = world.true_effects[segment, arm, metric]
    spread = np.nanstd(world.true_effects, axis=(0, 1))[metric]
    effects, _ = observed_effects(means, ses, world.control_of)
    naive = np.nanmean(effects[:, arm, metric], axis=0)
    in_span = segment != world.off_span
    covered = (cells["lower"] <= truth) & (truth <= cells["upper"])
    targets = cells.groupby(["segment", "intervention"])["test_passed"].first().reset_index()
    off_target = targets["segment"] == world.off_span
    row = {
        "seed": seed, "world": "off-span" if off_span else "low-rank", "cells": int(in_span.sum()),
        "si_rmse": scaled_rmse(cells["effect"][in_span], truth[in_span], spread[in_span]),
        "naive_rmse": scaled_rmse(naive[in_span], truth[in_span], spread[in_span]),
        "lr_rmse": np.nan, "si_coverage": float(covered[in_span].mean()),
        "in_span_pass": float(targets.loc[~off_target, "test_passed"].mean()),
        "off_span_flagged": float((~targets.loc[off_target, "test_passed"]).mean()) if off_span else np.nan,
        "off_span_rmse": (scaled_rmse(cells["effect"][~in_span], truth[~in_span], spread[~in_span])
                          if off_span else np.nan),
        "off_span_coverage": float(covered[~in_span].mean()) if off_span else np.nan,
        "mean_rank": float(cells["rank"].mean()), "si_seconds": si_seconds, "lr_seconds": np.nan,
        "unestimated": int((cells["reason"] != "").sum()),
    }
    if with_lr:
        lr, row["lr_seconds"] = lr_estimates(world, cells)
        row["lr_rmse"] = scaled_rmse(lr[in_span], truth[in_span], spread[in_span])
    return row


def summary_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per world (LR-learner columns over the seeds it ran on)."""
    means = frame.drop(columns="seed").groupby("world", sort=False).mean(numeric_only=True).reset_index()
    means.insert(0, "seed", [f"mean of {n}" for n in frame.groupby("world", sort=False).size()])
    return means


def to_markdown(frame: pd.DataFrame) -> str:
    """The table of :data:`COLUMNS`, NaN as blank."""
    def cell(value, form: str) -> str:
        return "" if not isinstance(value, str) and pd.isna(value) else form.format(value)

    header = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|" + "---|" * len(COLUMNS)
    lines = ["| " + " | ".join(cell(row[key], form) for key, _, form in COLUMNS) + " |"
             for _, row in frame.iterrows()]
    return "\n".join([header, rule, *lines])


def write_report(frame: pd.DataFrame, args, started: float) -> str:
    """Markdown with the command, date, machine and settings; also writes the per-seed CSV."""
    table = to_markdown(pd.concat([summary_rows(frame), frame], ignore_index=True))
    both = frame.dropna(subset=["lr_rmse"])
    same_seeds = ([f"- on the {len(both)} seeds with an LR-learner fit: SI RMSE {both['si_rmse'].mean():.3f},"
                   f" LR-learner {both['lr_rmse'].mean():.3f}, naive {both['naive_rmse'].mean():.3f}"]
                  if len(both) else [])
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    text = "\n".join([
        "# Segments an experiment left out: Synthetic Interventions and the LR-learner (issue 17)",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {time.perf_counter() - started:.0f} s",
        f"- machine: {machine()}",
        f"- world: `segment_world(seed, {', '.join(f'{k}={v}' for k, v in WORLD.items())})`, seeds "
        f"0..{args.seeds - 1}; `off-span` adds `off_span_segment=True`",
        f"- SI: `SyntheticInterventions()` defaults (`SIConfig()`); LR-learner: `LRLConfig(interval_refits=0)`,"
        f" seeds 0..{args.lr_seeds - 1} of the low-rank world",
        "- RMSE in units of each metric's standard deviation of true effects, over the excluded cells of"
        " in-span segments (the off-span segment's own cells in `off-span SI RMSE`); coverage of"
        " `effect +- 1.96 se`; test shares per (segment, experiment) target",
        *same_seeds,
        "",
        table,
        "",
    ])
    prefix = Path(args.out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.md").write_text(text)
    frame.to_csv(f"{prefix}.csv", index=False)
    return text


def main(argv=None) -> None:
    """Parse the arguments, run every seed, print and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per world (default 10)")
    parser.add_argument("--lr-seeds", type=int, default=5, help="seeds with an LR-learner fit (default 5)")
    parser.add_argument("--out", default="benchmarks/results/segments", help="prefix of the .md and .csv")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = []
    for seed in range(args.seeds):
        for off_span in (False, True):
            rows.append(run_world(seed, off_span, with_lr=not off_span and seed < args.lr_seeds))
            print(f"seed {seed} {rows[-1]['world']}: SI {rows[-1]['si_rmse']:.3f}, LR {rows[-1]['lr_rmse']:.3f}, "
                  f"coverage {rows[-1]['si_coverage']:.3f}", file=sys.stderr, flush=True)
    print(write_report(pd.DataFrame(rows), args, started))


if __name__ == "__main__":
    main()
