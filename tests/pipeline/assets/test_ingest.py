"""validated_tables: the feature table copied inside DuckDB when kept whole, taken row by row otherwise."""
import dagster as dg
import numpy as np

from lrl_pipeline.assets.ingest import validated_tables
from lrl_pipeline.storage import LRLDatabase, write_raw_tables


def _validate(tmp_path, tables) -> tuple:
    db = str(tmp_path / "lrl.duckdb")
    write_raw_tables(db, tables)
    list(validated_tables(context=dg.build_asset_context(), database=LRLDatabase(database=db)))
    with LRLDatabase(database=db).connect(read_only=True) as con:
        valid = con.sql("SELECT * FROM pipeline.valid_unit_features ORDER BY unit_id").df()
        raw = con.sql("SELECT * FROM raw.unit_features ORDER BY unit_id").df()
        quarantine = con.sql("SELECT * FROM pipeline.quarantine WHERE table_name = 'unit_features'").df()
    return valid, raw, quarantine


def test_a_clean_feature_table_is_kept_whole_with_its_types_and_values(tmp_path, tiny_raw):
    valid, raw, quarantine = _validate(tmp_path, tiny_raw)
    assert quarantine.empty
    assert list(valid.dtypes) == list(raw.dtypes)
    np.testing.assert_array_equal(valid.to_numpy(), raw.to_numpy())


def test_a_bad_feature_row_is_left_out_of_the_valid_table_and_named(tmp_path, tiny_raw):
    features = tiny_raw["unit_features"].copy()
    bad = int(features["unit_id"].iloc[7])
    features.loc[7, "x1"] = np.inf
    valid, raw, quarantine = _validate(tmp_path, {**tiny_raw, "unit_features": features})
    assert len(valid) == len(raw) - 1 and bad not in set(valid["unit_id"])
    assert quarantine["unit_id"].tolist() == [str(bad)]
    assert "non-finite value in feature 'x1'" in quarantine["reason"].iloc[0]
