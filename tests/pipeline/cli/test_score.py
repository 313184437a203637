"""``lrl score`` (lrl_pipeline/cli/score.py): the contract's long form, bad units and files, what it serves."""
from __future__ import annotations

import itertools
import shutil

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lrl_core.artifacts import ArtifactStore
from lrl_pipeline import cli, paths, runner
from lrl_pipeline.storage import read_raw_table, write_raw_tables, LRLDatabase


SCORE_COLUMNS = ["unit_id", "experiment_id", "arm", "metric", "cate", "cate_se", "model", "in_range"]


def test_score_writes_the_contract_long_form(cli_env, updated, tmp_path):
    data = updated["data"]
    units = updated["tables"]["unit_features"].iloc[::37].reset_index(drop=True)
    assert units.drop(columns="unit_id").isna().any().any(), "the sample should include missing features"
    units.to_parquet(tmp_path / "units.parquet", index=False)
    out = tmp_path / "scores" / "out.parquet"

    assert cli.main(["score", "--units", str(tmp_path / "units.parquet"), "--out", str(out)]) == 0

    schema = pq.read_schema(out)
    assert schema.names == SCORE_COLUMNS
    assert schema.field("cate").type == pa.float64() and schema.field("cate_se").type == pa.float64()
    scores = pd.read_parquet(out)
    treated = [(data.experiments[data.arm_experiment[g]], data.arm_names[g]) for g in data.treatment_arms]
    expected = {(u, e, a, m) for u, (e, a), m in itertools.product(units["unit_id"], treated, data.metrics)}
    got = set(zip(scores["unit_id"], scores["experiment_id"], scores["arm"], scores["metric"]))
    assert got == expected and len(scores) == len(expected)
    assert np.isfinite(scores["cate"].to_numpy(dtype=float)).all()
    assert (scores["cate_se"].dropna() > 0).all()
    # Which estimator served each row.
    assert set(scores["model"]) <= {"lr_learner", "ols_t", "xgb_t", "lr_learner+ols_t", "lr_learner+xgb_t"}


def test_score_leaves_out_infinite_units_by_name_and_flags_extrapolation(cli_env, updated, tmp_path, capsys):
    units = updated["tables"]["unit_features"].head(6).reset_index(drop=True)
    units["x0"] = units["x0"].astype("float64")
    units.loc[0, "x0"] = np.inf
    units.loc[1, "x1"] = 1e6  # a million training standard deviations or so away
    bad, far = units.loc[0, "unit_id"], units.loc[1, "unit_id"]
    units.to_parquet(tmp_path / "units.parquet", index=False)
    out = tmp_path / "o.parquet"

    assert cli.main(["score", "--units", str(tmp_path / "units.parquet"), "--out", str(out)]) == 0

    printed = capsys.readouterr().out
    assert f"Left out 1 unit(s) with an infinite feature value: unit_id {bad}" in printed
    assert "1 unit(s) lie beyond the training range" in printed
    scores = pd.read_parquet(out)
    assert bad not in set(scores["unit_id"]) and scores["unit_id"].nunique() == 5
    assert set(scores.loc[~scores["in_range"], "unit_id"]) == {far}


def test_score_names_a_missing_feature_column(cli_env, updated, tmp_path, capsys):
    units = updated["tables"]["unit_features"].head(5).drop(columns="x2")
    units.to_parquet(tmp_path / "units.parquet", index=False)
    code = cli.main(["score", "--units", str(tmp_path / "units.parquet"), "--out", str(tmp_path / "o.parquet")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert "x2" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.parquet").exists()


def test_score_takes_the_columns_of_raw_unit_features_when_training_left_one_out(
        cli_env, tiny_raw, fast_run_config, tmp_path, capsys):
    """CONTRACT.md: units carry raw.unit_features' columns; those the model left out are ignored.

    Issue 12: text and boolean columns are categorical features (levels in the stored transform),
    a text column with a value per unit is an id, left out with its reason; a level unseen in
    training is scored as "other", and said.
    """
    features = tiny_raw["unit_features"]
    n = len(features)
    tables = {**tiny_raw, "unit_features": features.assign(
        country=[f"c{i % 10}" for i in range(n)],
        plan_tier=pd.Series(np.array(["free", "gold", "pro"])[np.arange(n) % 3]).where(np.arange(n) % 7 > 0),
        is_mobile=np.arange(n) % 2 == 0,
        email=[f"user{i}@example.com" for i in range(n)])}
    db = tmp_path / "lrl.duckdb"
    write_raw_tables(db, tables)
    with dg.instance_for_test() as instance:
        runner.run_retrain(db, paths.artifacts_dir(db), progress=lambda _: None, instance=instance,
                           run_config=fast_run_config)
    with duckdb.connect(str(db), read_only=True) as con:
        reasons = con.execute("SELECT column_name, reason FROM pipeline.quarantine WHERE column_name IS NOT NULL"
                              ).fetchall()
        prepared = con.execute("SELECT * FROM pipeline.unit_features LIMIT 0").df().columns
        units = read_raw_table(con, "unit_features").iloc[::40].reset_index(drop=True)
    assert [c for c, _ in reasons] == ["email"] and "looks like an id" in reasons[0][1]
    transform = ArtifactStore(paths.artifacts_dir(db)).load().transform
    assert sorted(transform.categories_["country"]) == [f"c{i}" for i in range(10)]
    assert sorted(transform.categories_["plan_tier"]) == ["free", "gold", "pro"]
    assert sorted(transform.categories_["is_mobile"]) == ["false", "true"]
    assert transform.level_counts_["plan_tier"]["(null)"] > 0
    assert {"country__level0", "country__other", "plan_tier__null", "is_mobile__level1"} <= set(prepared)
    assert "email" in units.columns and units.drop(columns="unit_id").isna().any().any()
    units.loc[:2, "country"] = "never-seen"
    units.to_parquet(tmp_path / "units.parquet", index=False)
    out = tmp_path / "scores.parquet"

    assert cli.main(["score", "--db", str(db), "--units", str(tmp_path / "units.parquet"), "--out", str(out)]) == 0

    printed = capsys.readouterr().out
    assert "Ignored 1 column(s) the model left out: email" in printed
    assert "Scored as level 'other'" in printed and "country (3)" in printed
    scores = pd.read_parquet(out)
    assert list(scores.columns) == SCORE_COLUMNS
    # One row per unit x experiment x treated arm x metric: 4 experiments, one treated arm each, 2 metrics.
    assert set(scores["unit_id"]) == set(units["unit_id"]) and len(scores) == len(units) * 4 * 1 * 2
    assert np.isfinite(scores["cate"].to_numpy(dtype=float)).all()


def test_score_with_a_truncated_model_file_fails_in_one_line_naming_it(cli_env, updated, tmp_path, capsys):
    """Issue 18: a truncated weights file is named, with what to do, in one line and no traceback."""
    copy = tmp_path / "copy"
    shutil.copytree(cli_env / "artifacts", copy / "artifacts")
    shutil.copy(updated["db"], copy / "store.duckdb")
    version = ArtifactStore(copy / "artifacts").current_version()
    weights = copy / "artifacts" / "versions" / version / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    units = updated["tables"]["unit_features"].head(3)
    units.to_parquet(tmp_path / "units.parquet", index=False)

    code = cli.main(["score", "--db", str(copy / "store.duckdb"), "--units", str(tmp_path / "units.parquet"),
                     "--out", str(tmp_path / "o.parquet")])

    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(weights) in err and "lrl retrain" in err


def _score_cli(*args) -> int:
    return cli.main(["score", *map(str, args)])


def test_score_rough_edges_fail_in_one_line(cli_env, updated, tmp_path, capsys):
    """Issue 12: --out naming a directory, an empty or duplicated units file, an unknown experiment."""
    units = updated["tables"]["unit_features"].head(4)
    good = tmp_path / "units.parquet"
    units.to_parquet(good, index=False)
    units.head(0).to_parquet(tmp_path / "empty.parquet", index=False)
    pd.concat([units, units.head(1)]).to_parquet(tmp_path / "dup.parquet", index=False)
    (tmp_path / "outdir").mkdir()
    cases = [
        ((good, tmp_path / "outdir"), "is a directory"),
        ((tmp_path / "empty.parquet", tmp_path / "o.parquet"), "has no units to score"),
        ((tmp_path / "dup.parquet", tmp_path / "o.parquet"), f"1 unit_id(s) more than once ({units['unit_id'].iloc[0]})"),
        ((tmp_path / "units.txt", tmp_path / "o.parquet"), "no units file"),
    ]
    for (source, out), message in cases:
        assert _score_cli("--units", source, "--out", out) == 1, message
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert _score_cli("--units", good, "--out", tmp_path / "o.parquet", "--experiments", "nope") == 1
    assert "no experiment_id nope" in capsys.readouterr().err


def test_score_reads_csv_and_restricts_experiments_and_metrics(cli_env, updated, tmp_path):
    units = updated["tables"]["unit_features"].head(5)
    units.to_parquet(tmp_path / "units.parquet", index=False)
    units.to_csv(tmp_path / "units.csv", index=False)
    data = updated["data"]
    experiment, metric = data.experiments[0], data.metrics[1]

    assert _score_cli("--units", tmp_path / "units.parquet", "--out", tmp_path / "all.parquet") == 0
    assert _score_cli("--units", tmp_path / "units.csv", "--out", tmp_path / "some.parquet",
                      "--experiments", experiment, "--metrics", metric) == 0

    everything, some = pd.read_parquet(tmp_path / "all.parquet"), pd.read_parquet(tmp_path / "some.parquet")
    assert set(some["experiment_id"]) == {experiment} and set(some["metric"]) == {metric}
    expected = everything[(everything["experiment_id"] == experiment) & (everything["metric"] == metric)]
    np.testing.assert_allclose(some["cate"].to_numpy(), expected["cate"].to_numpy(), rtol=1e-6)


def test_a_blended_cell_serves_its_weighted_mix_of_pooled_and_t_learner_cates(cli_env, updated):
    """What pipeline.served_models records is what `lrl score` serves: w * pooled + (1 - w) * T-learner."""
    from lrl_pipeline.resources import ArtifactStoreResource
    from lrl_pipeline.scoring import score_units

    db, artifacts = updated["db"], cli_env / "artifacts"
    with LRLDatabase(database=str(db)).connect(read_only=True) as con:
        served = con.sql("SELECT * FROM pipeline.served_models WHERE model <> 'lr_learner'").df()
    assert len(served), "this fixture's data should give at least one blended cell"
    units = updated["tables"]["unit_features"].head(30)
    scores = score_units(db, artifacts, units)
    resource = ArtifactStoreResource(root=str(artifacts))
    pooled_model = resource.store().load()
    for row in served.itertuples():
        saved = resource.baseline_store().load(row.baseline_version)
        names = saved.metadata
        g = next(i for i, k in enumerate(names["arm_experiment"])
                 if names["experiments"][k] == row.experiment_id and names["arm_names"][i] == row.arm)
        control = names["control_arm"][names["arm_experiment"][g]]
        t_cate = saved.learner.models[row.model.removeprefix("lr_learner+")].predict_cate(
            saved.transform.transform_frame(units), [g], [control])[:, 0, names["metrics"].index(row.metric)]
        pooled = pooled_model.learner.predict_cate(pooled_model.transform.transform_frame(units), [g], [control])[
            :, 0, pooled_model.learner.metric_names_.index(row.metric)]
        cell = scores[(scores["experiment_id"] == row.experiment_id) & (scores["arm"] == row.arm)
                      & (scores["metric"] == row.metric)]
        assert (cell["model"] == row.model).all()
        # The pooled standard error scaled by se_scale: NULL exactly where the scale is unknown.
        if np.isfinite(row.se_scale):
            assert 0 < row.se_scale <= 1 and (cell["cate_se"].astype(float) > 0).all()
        else:
            assert cell["cate_se"].isna().all()
        np.testing.assert_allclose(cell["cate"], row.pooled_weight * pooled + (1 - row.pooled_weight) * t_cate,
                                   rtol=1e-4, atol=1e-5)


def test_score_and_update_on_a_held_database_say_so_in_one_line(cli_env, updated, tmp_path, capsys, monkeypatch):
    """Issue 18: another writer holding the file past ``LRL_DB_WAIT_S`` ends in one line, no traceback."""
    from tests.pipeline.storage.test_database import hold_lock

    units = updated["tables"]["unit_features"].head(3)
    units.to_parquet(tmp_path / "units.parquet", index=False)
    monkeypatch.setenv("LRL_DB_WAIT_S", "0.5")
    holder = hold_lock(updated["db"], 60)
    try:
        for argv in (["score", "--units", str(tmp_path / "units.parquet"), "--out", str(tmp_path / "o.parquet")],
                     ["update"]):
            code = cli.main(argv)
            captured = capsys.readouterr()
            lines = captured.err.strip().splitlines()
            assert code == 1 and "Traceback" not in captured.err + captured.out
            assert len(lines) == 1 and "held by another process" in lines[0] and "try again" in lines[0]
            # the wait was announced, once, before giving up
            assert (captured.out + captured.err).count("waiting up to") <= 1
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "o.parquet").exists()
