"""No confident effect from no data, and one bad feed moves nothing else."""
from __future__ import annotations

import duckdb
import numpy as np

from lrl_pipeline.storage import write_raw_tables
from lrl_pipeline.runner import run_retrain


def _retrain_and_score(tables, path, fast_run_config):
    import dagster as dg

    from lrl_pipeline.scoring import score_units

    path.mkdir()
    write_raw_tables(path / "lrl.duckdb", tables)
    with dg.instance_for_test() as instance:
        run_retrain(path / "lrl.duckdb", path / "artifacts", progress=lambda _: None, instance=instance,
                    run_config=fast_run_config)
    with duckdb.connect(str(path / "lrl.duckdb"), read_only=True) as con:
        quarantine = con.execute("SELECT * FROM pipeline.quarantine").df()
    units = tables["unit_features"].head(200)
    return quarantine, score_units(path / "lrl.duckdb", path / "artifacts", units)


def test_a_broken_feed_is_quarantined_and_moves_no_other_experiment(tmp_path, fast_run_config, tiny_raw):
    """Issue 18: 1e12 outcome rows are quarantined by row, and the other experiments keep their CATEs."""
    clean = {name: frame.copy() for name, frame in tiny_raw.items()}
    broken = {name: frame.copy() for name, frame in tiny_raw.items()}
    feed = sorted(clean["experiments"]["experiment_id"])[0]
    outcomes = broken["outcomes"]
    bad = outcomes.index[(outcomes["experiment_id"] == feed) & (outcomes["metric"] == "metric_0")][:5]
    outcomes.loc[bad, "value"] = 1e12

    _, before = _retrain_and_score(clean, tmp_path / "clean", fast_run_config)
    quarantine, after = _retrain_and_score(broken, tmp_path / "broken", fast_run_config)

    far = quarantine[quarantine["reason"].str.contains("far outside metric 'metric_0'", regex=False)]
    assert len(far) == 5 and set(far["experiment_id"]) == {feed}
    keys = ["unit_id", "experiment_id", "arm", "metric"]
    others = before[(before["experiment_id"] != feed) & (before["metric"] == "metric_0")]
    joined = others.merge(after, on=keys, suffixes=("_before", "_after"))
    assert len(joined) == len(others)
    # Without the gate these became about 1e9 (correlation with before 0.04).
    assert np.corrcoef(joined["cate_before"], joined["cate_after"])[0, 1] > 0.9
    assert (joined["cate_after"] - joined["cate_before"]).abs().max() < 0.5 * joined["cate_before"].std()


def test_a_metric_reported_only_for_control_gets_no_treated_effect(tmp_path, fast_run_config, tiny_raw):
    """Issue 18: no treated rows of a metric, no head and no CATE for it, and the reason is recorded."""
    tables = {name: frame.copy() for name, frame in tiny_raw.items()}
    control_only = sorted(tables["experiments"]["experiment_id"])[1]
    outcomes = tables["outcomes"]
    treated = set(tables["exposures"].query("experiment_id == @control_only and arm != 'control'")["unit_id"])
    drop = (outcomes["experiment_id"] == control_only) & (outcomes["metric"] == "metric_1") & \
        outcomes["unit_id"].isin(treated)
    tables["outcomes"] = outcomes[~drop]

    quarantine, scores = _retrain_and_score(tables, tmp_path / "run", fast_run_config)

    short = quarantine[quarantine["reason"].str.contains("a head needs", regex=False)]
    assert set(zip(short["experiment_id"], short["metric"])) == {(control_only, "metric_1")}
    assert not ((scores["experiment_id"] == control_only) & (scores["metric"] == "metric_1")).any()
    assert ((scores["experiment_id"] == control_only) & (scores["metric"] == "metric_0")).any()
