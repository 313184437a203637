"""Bad input is quarantined by name and reason; everything valid still flows to heads and reports."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from lrl_core.data import SPLIT_NAMES, split_by_unit
from lrl_pipeline.raw import write_raw_tables
from lrl_pipeline.runner import run_retrain


def test_bad_rows_and_experiments_are_named_and_good_data_flows(tmp_path, fast_run_config, tiny_raw):
    import dagster as dg

    tables = {name: frame.copy() for name, frame in tiny_raw.items()}
    features = tables["unit_features"]
    features["x0"] = features["x0"].astype("float64")
    features.loc[features.index[0], "x0"] = np.inf  # a non-finite feature: its unit goes
    bad_unit = int(features["unit_id"].iloc[0])
    outcomes = tables["outcomes"]
    outcomes.loc[outcomes.index[5], "value"] = np.nan  # NaN here reads back as NULL: a bad outcome
    nan_unit = int(outcomes["unit_id"].iloc[5])
    # An experiment with treated units and no control.
    unit_ids = features["unit_id"].iloc[10:14].to_numpy()
    tables["experiments"] = pd.concat([tables["experiments"], pd.DataFrame({
        "experiment_id": ["no_control"], "launched_at": [pd.Timestamp("2025-01-01")]})], ignore_index=True)
    tables["exposures"] = pd.concat([tables["exposures"], pd.DataFrame({
        "unit_id": unit_ids, "experiment_id": "no_control", "arm": "treatment"})], ignore_index=True)
    db = tmp_path / "lrl.duckdb"
    write_raw_tables(db, tables)

    with dg.instance_for_test() as instance:
        result = run_retrain(db, tmp_path / "artifacts", progress=lambda _: None, instance=instance,
                             run_config=fast_run_config)
        event = instance.get_latest_materialization_event(dg.AssetKey("quarantine"))
        reasons_md = event.asset_materialization.metadata["by_reason"].value

    with duckdb.connect(str(db), read_only=True) as con:
        quarantine = con.execute("SELECT * FROM pipeline.quarantine").df()
        heads = con.execute("SELECT DISTINCT experiment_id FROM pipeline.experiment_heads").df()
        status = con.execute("SELECT * FROM pipeline.head_status").df().set_index("experiment_id")
        examples = con.execute("SELECT unit_id, split FROM pipeline.training_examples").df()

    by_table = quarantine.groupby("table_name")["reason"].apply(set)
    assert any("non-finite value in feature 'x0'" in r for r in by_table["unit_features"])
    assert str(bad_unit) in set(quarantine.loc[quarantine["table_name"] == "unit_features", "unit_id"])
    assert str(nan_unit) in set(quarantine.loc[quarantine["table_name"] == "outcomes", "unit_id"])
    assert "no control arm" in by_table["experiments"]
    assert "no control arm" in reasons_md and result.n_quarantined == len(quarantine)

    # The four good experiments still get heads; the bad one is recorded as quarantined.
    assert sorted(heads["experiment_id"]) == sorted(tiny_raw["experiments"]["experiment_id"])
    assert status.loc["no_control", "status"] == "quarantined"
    assert "no control arm" in status.loc["no_control", "detail"]
    # The split is the stable hash of unit_id.
    expected = np.asarray(SPLIT_NAMES, dtype=object)[split_by_unit(examples["unit_id"].to_numpy())]
    assert (examples["split"].to_numpy() == expected).all()
