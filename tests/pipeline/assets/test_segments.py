"""segment_effects after a retrain on a world whose experiments leave segments out (issue 17), and
`lrl segments`."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lrl_core.synthetic.segment_world import segment_world
from lrl_core.synthetic_interventions import SyntheticInterventions
from lrl_pipeline import cli, runner
from lrl_pipeline.segments import SEGMENT_COLUMNS
from lrl_pipeline.storage import LRLDatabase, read_table, write_raw_tables

from tests.helpers import FAST


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    """A retrain, segmenting by the world's ``segment`` column, on 12 segments x 8 experiments."""
    root = tmp_path_factory.mktemp("segments")
    world = segment_world(seed=4, n_segments=12, n_experiments=8, n_metrics=2, units_per_cell=25)
    db = root / "lrl.duckdb"
    write_raw_tables(db, world.tables)
    config = {"ops": {**FAST["ops"], "segment_effects": {"config": {"segment_by": "segment"}}}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(root / "home"))
        mp.setenv("LRL_DUCKDB_PATH", str(db))
        mp.delenv("LRL_ARTIFACTS_DIR", raising=False)
        runner.run_retrain(db, root / "artifacts", progress=lambda _: None, run_config=config)
        with LRLDatabase(database=str(db)).connect(read_only=True) as con:
            rows = read_table(con, "segment_effects")
        yield world, db, rows, mp


def _cells(world, rows: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(estimate, truth, rows) of one source, with the true effect of each row."""
    part = rows[rows["source"] == source].reset_index(drop=True)
    s = pd.Index(world.segments).get_indexer(part["segment"])
    d = pd.MultiIndex.from_tuples(world.interventions).get_indexer(
        pd.MultiIndex.from_frame(part[["experiment_id", "arm"]]))
    j = pd.Index(world.metrics).get_indexer(part["metric"])
    return part["effect"].to_numpy(dtype=float), world.true_effects[s, d, j], part


def test_observed_cells_are_differences_of_the_segment_means(segmented):
    world, _, rows, _ = segmented
    means, _ = world.observed()
    observed = rows[rows["source"] == "observed"]
    s = pd.Index(world.segments).get_indexer(observed["segment"])
    d = pd.MultiIndex.from_tuples(world.interventions).get_indexer(
        pd.MultiIndex.from_frame(observed[["experiment_id", "arm"]]))
    j = pd.Index(world.metrics).get_indexer(observed["metric"])
    expected = means[s, d, j] - means[s, world.control_of[d], j]
    np.testing.assert_allclose(observed["effect"].to_numpy(dtype=float), expected, rtol=1e-9, atol=1e-9)
    # Every kept (segment, treated arm, metric) cell is there, and no left-out one.
    kept = (~world.excluded[:, world.experiment_of[world.treated]]).sum() * len(world.metrics)
    assert len(observed) == kept


def test_left_out_cells_get_the_core_si_estimate_and_an_lr_estimate(segmented):
    world, _, rows, _ = segmented
    assert list(rows.columns[:len(SEGMENT_COLUMNS)]) == SEGMENT_COLUMNS
    left_out = world.excluded[:, world.experiment_of[world.treated]].sum() * len(world.metrics)
    si, truth, part = _cells(world, rows, "si")
    lr, _, lr_part = _cells(world, rows, "lr")
    assert len(part) == left_out and len(lr_part) == left_out and np.isfinite(lr).all()
    assert part["si_test_passed"].notna().all() and np.isfinite(si).mean() > 0.8
    # The same estimates as the core estimator on the world's own segment means (computed in pandas).
    means, ses = world.observed()
    core = SyntheticInterventions().fit(means, ses, world.experiment_of, world.control_of).estimate_missing()
    core_cells = {(world.segments[r.segment], *world.interventions[r.intervention], world.metrics[r.metric]): r.effect
                  for r in core.itertuples()}
    expected = [core_cells[key] for key in zip(part["segment"], part["experiment_id"], part["arm"], part["metric"])]
    np.testing.assert_allclose(si, expected, rtol=1e-6, atol=1e-9)


def test_lrl_segments_prints_and_writes_the_rows_and_names_a_bad_column(segmented, tmp_path, capsys):
    _, db, rows, _ = segmented
    out = tmp_path / "segments.parquet"
    assert cli.main(["segments", "--db", str(db), "--by", "segment", "--experiment", "exp_000",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Effects by segment:" in printed and "observed" in printed and "si test" in printed
    written = pd.read_parquet(out)
    assert list(written.columns) == SEGMENT_COLUMNS and set(written["experiment_id"]) == {"exp_000"}
    assert len(written) == (rows["experiment_id"] == "exp_000").sum()

    assert cli.main(["segments", "--db", str(db), "--by", "country"]) == 1
    err = capsys.readouterr().err
    assert "no unit feature column 'country'" in err and "segment" in err and len(err.strip().splitlines()) == 1


def test_lrl_segments_computes_a_column_the_retrain_did_not_store(segmented, capsys):
    _, db, _, _ = segmented
    # x0 is continuous: far more levels than segments, refused in one line.
    assert cli.main(["segments", "--db", str(db), "--by", "x0"]) == 1
    assert "levels with outcomes" in capsys.readouterr().err


def test_the_asset_metadata_counts_the_cells_and_says_why_si_left_any_out(segmented):
    import dagster as dg

    world, _, rows, _ = segmented
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("segment_effects"))
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert metadata["segment_by"] == "segment" and metadata["segments"] == len(world.segments)
    assert metadata["dagster/row_count"] == len(rows)
    assert metadata["si_rows"] == (rows["source"] == "si").sum()
    assert metadata["si_estimated"] == rows.loc[rows["source"] == "si", "effect"].notna().sum()
    assert "heatmap" in metadata and metadata["heatmap"].startswith("![")
    unestimated = metadata["si_estimated"] < metadata["si_rows"]
    assert ("reason" in metadata["si_not_estimated"]) == unestimated
