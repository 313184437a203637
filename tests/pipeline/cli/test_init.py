"""`lrl init --from-parquet`: raw.* as views over Parquet files, and every command on them (cli/init.py)."""
from __future__ import annotations

import hashlib

import dagster as dg
import numpy as np

from lrl_pipeline import cli
from lrl_pipeline.runner import run_retrain, score_units
from tests.helpers import FAST


def digest(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.parquet")}


def test_init_from_parquet_makes_views_that_retrain_and_score_use(tmp_path, tiny_raw, capsys):
    folder = tmp_path / "lake"
    (folder / "outcomes").mkdir(parents=True)
    tiny_raw["unit_features"].to_parquet(folder / "unit_features.parquet", index=False)
    tiny_raw["experiments"].to_parquet(folder / "experiments.parquet", index=False)
    exposures = tiny_raw["exposures"]
    half = len(exposures) // 2  # a glob of two files
    exposures.iloc[:half].to_parquet(folder / "exposures-0.parquet", index=False)
    exposures.iloc[half:].to_parquet(folder / "exposures-1.parquet", index=False)
    tiny_raw["outcomes"].to_parquet(folder / "outcomes" / "part-0.parquet", index=False)
    before = digest(folder)
    db = tmp_path / "lrl.duckdb"

    assert cli.main(["init", "--from-parquet", str(folder), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert f"raw.exposures: views over 2 file(s), {len(exposures):,} rows" in out

    with dg.instance_for_test() as instance:
        run_retrain(db, tmp_path / "artifacts", progress=lambda _: None, instance=instance, run_config=FAST)
    scores = score_units(db, tmp_path / "artifacts", tiny_raw["unit_features"].head(10))
    assert set(scores["experiment_id"]) == set(tiny_raw["experiments"]["experiment_id"])
    assert np.isfinite(scores["cate"]).all()
    assert digest(folder) == before  # the user's files are only read


def test_init_names_the_tables_it_cannot_find_in_one_line(tmp_path, tiny_raw, capsys):
    tiny_raw["experiments"].to_parquet(tmp_path / "experiments.parquet", index=False)
    assert cli.main(["init", "--from-parquet", str(tmp_path), "--db", str(tmp_path / "x.duckdb")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lrl init: no Parquet files for unit_features, exposures, outcomes") and "\n" not in err
