"""``lrl demo``: the synthetic demo data set, and the command that trains on it end to end."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from lrl_pipeline import paths
from lrl_pipeline.cli.context import load_runner
from lrl_pipeline.cli.errors import CLIError
from lrl_pipeline.cli.output import print_locations, print_retrain_result, progress

DEMO_SHAPE = dict(
    n_experiments=20, n_per_arm=1000, n_features=20, n_metrics=5,
    # Two three-arm experiments; the last one (the "new launch") is a plain A/B test.
    n_arms_per_experiment=[3 if k in (4, 12) else 2 for k in range(20)],
    overlap=0.1, feature_missing_rate=0.02, missing_metric_rate=0.05, seed=0,
)
"""Arguments of ``nonlinear_synthetic`` for ``lrl demo``: 20 experiments, 1000 units per arm,
10% of units also in a second experiment, a few missing features and metrics."""


DEMO_SEGMENT_BY = "region"
"""The demo's segmentation column (``segment_effects``, ``lrl segments --by region``)."""


def _demo_data():
    from lrl_core.synthetic import nonlinear_synthetic

    return nonlinear_synthetic(**DEMO_SHAPE)


def _with_regions(data, tables: dict[str, pd.DataFrame], seed: int = 0) -> dict[str, pd.DataFrame]:
    """The demo's tables with a ``region`` unit feature (eight levels, from two of the features, so
    regions differ in outcomes and effects) and, as real tests do, experiments that ran only in
    some regions: every other experiment leaves out one or two regions (its rows there dropped)."""
    X = data.X
    quartile = np.searchsorted(np.nanquantile(X[:, 0], [0.25, 0.5, 0.75]), X[:, 0])
    region = np.asarray([f"region_{c}" for c in "abcdefgh"], dtype=object)[2 * quartile + (X[:, 1] > 0)]
    tables = dict(tables)
    tables["unit_features"] = tables["unit_features"].assign(**{DEMO_SEGMENT_BY: region[tables["unit_features"]["unit_id"]]})
    rng = np.random.default_rng(seed)
    levels = sorted(set(region))
    left_out = {e: set(rng.choice(levels, size=rng.integers(1, 3), replace=False))
                for e in data.experiments[:-1:2]}
    for name in ("exposures", "outcomes"):
        frame = tables[name]
        drop = np.array([region[u] in left_out.get(e, ()) for u, e in zip(frame["unit_id"], frame["experiment_id"])])
        tables[name] = frame[~drop].reset_index(drop=True)
    return tables


def _held_back(tables: dict[str, pd.DataFrame], experiment_id: str) -> dict[str, pd.DataFrame]:
    """The raw tables without one experiment's registry, exposure and outcome rows."""
    return {name: frame if name == "unit_features" else frame[frame["experiment_id"] != experiment_id]
            for name, frame in tables.items()}


def _refuse_foreign_data(db: Path, demo_ids: list[str]) -> None:
    """Stop before ``lrl demo`` replaces raw tables that hold someone's own experiments."""
    if not db.is_file():
        return
    from lrl_pipeline.storage import LRLDatabase, experiment_ids

    with LRLDatabase(database=str(db)).connect(read_only=True, timeout_s=30.0) as con:
        try:
            ids = set(experiment_ids(con))
        except LookupError:
            return
    foreign = sorted(ids - set(demo_ids))
    if foreign:
        raise CLIError(f"{db} already holds other experiments ({', '.join(foreign[:3])}, ...) that `lrl demo` "
                       "would replace: pass --db with a new file")


def demo_pehe(data, scores: pd.DataFrame) -> pd.DataFrame:
    """PEHE of served CATEs against the generator's true CATE, per metric.

    ``data``: the demo's ``SyntheticData`` (unit ids are row indices of its
    ``X``); ``scores``: ``lrl score`` long form for some of its units. Returns
    ``metric``, ``"pehe lr_heads"`` and ``"pehe true_cate_variance"`` (the
    PEHE of predicting no heterogeneity at all, for scale).
    """
    exp_index = {e: k for k, e in enumerate(data.experiments)}
    arm_index = {(data.experiments[data.arm_experiment[g]], name): g for g, name in enumerate(data.arm_names)}
    units = scores["unit_id"].to_numpy(dtype=np.int64)
    arms = np.array([arm_index[key] for key in zip(scores["experiment_id"], scores["arm"])], dtype=np.int64)
    controls = data.control_arm[np.array([exp_index[e] for e in scores["experiment_id"]], dtype=np.int64)]
    metric = np.array([data.metrics.index(m) for m in scores["metric"]], dtype=np.int64)
    truth = data.true_cate(units, arms, controls)[np.arange(len(scores)), metric]
    frame = pd.DataFrame({"metric": scores["metric"].to_numpy(), "sq_err": (scores["cate"].to_numpy() - truth) ** 2,
                          "truth": truth, "cell": list(zip(arms, metric))})
    # Variance of the true CATE within each (arm, metric) cell: what a constant effect would miss.
    frame["centred_sq"] = (frame["truth"] - frame.groupby("cell")["truth"].transform("mean")) ** 2
    out = frame.groupby("metric", sort=True).agg(pehe=("sq_err", "mean"), variance=("centred_sq", "mean"))
    out.columns = ["pehe lr_heads", "pehe true_cate_variance"]
    return out.reset_index()


def cmd_demo(args: argparse.Namespace) -> None:
    """Write a synthetic data set, retrain on it, then launch one new experiment and update."""
    from lrl_core.data import split_by_unit
    from lrl_pipeline.storage import write_raw_tables

    runner = load_runner()
    db = paths.db_path(args.db)
    artifacts = paths.artifacts_dir(db)
    data = _demo_data()
    _refuse_foreign_data(db, data.experiments)
    tables = _with_regions(data, data.raw_tables())
    newest = data.experiments[-1]
    first = _held_back(tables, newest)
    print(f"Writing a synthetic data set into {db}: {len(data.experiments) - 1} experiments, "
          f"{len(tables['unit_features'])} units, {len(first['exposures'])} exposures, "
          f"{len(data.metrics)} metrics ({newest} is held back, to be launched later)")
    write_raw_tables(db, first, replace=True)
    say = progress()
    result = runner.run_retrain(db, artifacts, progress=say, run_config={
        "ops": {"segment_effects": {"config": {"segment_by": DEMO_SEGMENT_BY}}}})

    print(f"\nLaunching a new experiment, {newest}: its head is fitted on the saved extractor, no retrain")
    write_raw_tables(db, {name: tables[name] for name in ("experiments", "exposures", "outcomes")}, replace=True)
    fitted = runner.run_update(db, artifacts, progress=say)

    # The generator knows the true effects: score held-out units as `lrl score` would.
    units = tables["unit_features"][split_by_unit(data.unit_ids) == 2]
    scores = runner.score_units(db, artifacts, units)
    print_retrain_result(result, demo_pehe(data, scores))
    print(f"(PEHE of the CATEs `lrl score` gives {len(units)} test-split units for every experiment; "
          "true_cate_variance is the PEHE of the best constant effect per arm.)")
    print(f"\nHeads fitted for the new experiment without retraining: {', '.join(fitted) or '(none)'}")
    print_locations(db, artifacts)
