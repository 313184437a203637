"""The ``lrl`` command against a small database in a temporary directory.

One module fixture trains on tiny synthetic data with its last experiment
held back (through the runner, to pass a short epoch budget), then launches
that experiment and runs ``lrl update``; the tests read what it left behind.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lrl_core.artifacts import ArtifactStore
from lrl_core.synthetic import nonlinear_synthetic
from lrl_pipeline import cli, paths, runner
from lrl_pipeline.cli.demo import _held_back
from lrl_pipeline.storage import read_raw_table, write_raw_tables, LRLDatabase

FAST = {"ops": {"lr_learner": {"config": {"max_epochs": 15, "patience": 5, "d": 4, "hidden": 16}},
                "t_learners": {"config": {"n_estimators": 10, "max_depth": 2, "n_jobs": 1}}}}
SCORE_COLUMNS = ["unit_id", "experiment_id", "arm", "metric", "cate", "cate_se", "model", "in_range"]


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """A database path and Dagster home in a temp dir, exported as the CLI reads them."""
    root = tmp_path_factory.mktemp("lrl_cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LRL_DUCKDB_PATH", str(root / "store.duckdb"))
        mp.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        mp.delenv("LRL_ARTIFACTS_DIR", raising=False)
        yield root


@pytest.fixture(scope="module")
def updated(cli_env):
    """Retrain without the newest experiment, launch it, run ``lrl update``; record what happened."""
    data = nonlinear_synthetic(n_experiments=4, n_per_arm=60, n_features=5, n_metrics=2,
                               n_arms_per_experiment=[2, 3, 2, 2], overlap=0.2, feature_missing_rate=0.05,
                               seed=3)
    tables = data.raw_tables()
    newest = data.experiments[-1]
    db = cli_env / "store.duckdb"
    write_raw_tables(db, _held_back(tables, newest))
    runner.run_retrain(db, cli_env / "artifacts", progress=lambda _: None, run_config=FAST)
    store = ArtifactStore(cli_env / "artifacts")
    version = store.current_version()

    write_raw_tables(db, tables)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = cli.main(["update"])
    first_versions = store.versions()
    with LRLDatabase(database=str(db)).connect(read_only=True) as con:
        heads = con.sql("SELECT experiment_id, arm, metric, extractor_version FROM pipeline.experiment_heads").df()
    return dict(data=data, tables=tables, newest=newest, db=db, version_before=version, update_code=code,
                update_output=printed.getvalue(), version_after=store.current_version(), versions=first_versions,
                heads=heads)


def test_update_fits_the_new_experiment_on_the_saved_extractor(updated):
    assert updated["update_code"] == 0
    assert f"Fitted heads for 1 experiment(s): {updated['newest']}" in updated["update_output"]
    assert updated["version_after"] == updated["version_before"]
    assert updated["versions"] == [updated["version_before"]]  # no retrain wrote a new version
    heads = updated["heads"]
    new = heads[heads["experiment_id"] == updated["newest"]]
    assert len(new) > 0
    assert set(new["extractor_version"]) == {updated["version_before"]}
    assert set(new["metric"]) == set(updated["data"].metrics)


def test_a_second_update_has_nothing_to_do(cli_env, updated, capsys):
    assert cli.main(["update"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_report_prints_the_retrain_report_path(cli_env, updated, capsys):
    assert cli.main(["report"]) == 0
    report = Path(capsys.readouterr().out.strip())
    assert report.is_file() and report.suffix == ".html"
    assert report.is_relative_to(cli_env / "artifacts")


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
    # Which estimator served each row; a T-learner's rows carry no standard error.
    assert set(scores["model"]) <= {"lr_learner", "ols_t", "xgb_t", "lr_learner+ols_t", "lr_learner+xgb_t"}
    assert scores.loc[scores["model"] != "lr_learner", "cate_se"].isna().all()


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
    # CONTRACT.md: units carry raw.unit_features' columns; those the model left out are ignored.
    features = tiny_raw["unit_features"]
    tables = {**tiny_raw, "unit_features": features.assign(plan_tier=np.where(features.index % 3, "free", "gold"))}
    db = tmp_path / "lrl.duckdb"
    write_raw_tables(db, tables)
    with dg.instance_for_test() as instance:
        runner.run_retrain(db, paths.artifacts_dir(db), progress=lambda _: None, instance=instance,
                           run_config=fast_run_config)
    with duckdb.connect(str(db), read_only=True) as con:
        reasons = con.execute("SELECT reason FROM pipeline.quarantine WHERE column_name = 'plan_tier'").fetchall()
        units = read_raw_table(con, "unit_features").iloc[::40].reset_index(drop=True)
    assert reasons and "non-numeric feature column 'plan_tier'" in reasons[0][0]
    assert "plan_tier" in units.columns and units.drop(columns="unit_id").isna().any().any()
    units.to_parquet(tmp_path / "units.parquet", index=False)
    out = tmp_path / "scores.parquet"

    assert cli.main(["score", "--db", str(db), "--units", str(tmp_path / "units.parquet"), "--out", str(out)]) == 0

    assert "Ignored 1 column(s) the model left out: plan_tier" in capsys.readouterr().out
    scores = pd.read_parquet(out)
    assert list(scores.columns) == SCORE_COLUMNS
    # One row per unit x experiment x treated arm x metric: 4 experiments, one treated arm each, 2 metrics.
    assert set(scores["unit_id"]) == set(units["unit_id"]) and len(scores) == len(units) * 4 * 1 * 2
    assert np.isfinite(scores["cate"].to_numpy(dtype=float)).all()


@pytest.mark.parametrize("command", [["retrain"], ["update"], ["report"],
                                     ["score", "--units", "u.parquet", "--out", "o.parquet"]])
def test_missing_database_is_one_line_that_says_what_to_do(cli_env, tmp_path, capsys, command):
    missing = tmp_path / "nowhere" / "x.duckdb"
    assert cli.main([*command, "--db", str(missing)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert f"no database at {missing}" in err and "lrl demo" in err
    assert not missing.exists()


def test_installed_command_fails_cleanly_from_another_directory(cli_env, tmp_path):
    lrl = Path(sys.executable).parent / "lrl"
    environ = dict(os.environ, LRL_DUCKDB_PATH=str(tmp_path / "absent.duckdb"))
    done = subprocess.run([str(lrl), "update"], cwd=tmp_path, env=environ, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"lrl update: no database at {tmp_path / 'absent.duckdb'}: run `lrl demo` "
                                   "or point --db / LRL_DUCKDB_PATH at your data")


def test_demo_refuses_to_replace_someone_elses_experiments(cli_env, tmp_path, capsys):
    db = tmp_path / "theirs.duckdb"
    registry = pd.DataFrame({"experiment_id": ["checkout_v2"], "launched_at": [pd.Timestamp("2026-01-01")]})
    write_raw_tables(db, {"experiments": registry})
    assert cli.main(["demo", "--db", str(db)]) == 1
    assert "checkout_v2" in capsys.readouterr().err
    with LRLDatabase(database=str(db)).connect(read_only=True) as con:
        assert con.execute("SELECT experiment_id FROM raw.experiments").fetchall() == [("checkout_v2",)]


def test_every_command_takes_db():
    parser = cli.build_parser()
    for command in ["demo", "retrain", "update", "report", "ui"]:
        assert parser.parse_args([command, "--db", "a.duckdb"]).db == "a.duckdb"
    args = parser.parse_args(["score", "--db", "a.duckdb", "--units", "u.parquet", "--out", "o.parquet"])
    assert (args.db, args.units, args.out) == ("a.duckdb", "u.parquet", "o.parquet")


def test_demo_pehe_is_zero_for_true_effects_and_grows_with_error():
    data = nonlinear_synthetic(n_experiments=3, n_per_arm=20, n_features=4, n_metrics=2, seed=5)
    rows = [(u, data.experiments[data.arm_experiment[g]], data.arm_names[g], m, g, j)
            for u in range(0, 60, 7) for g in data.treatment_arms for j, m in enumerate(data.metrics)]
    frame = pd.DataFrame(rows, columns=["unit_id", "experiment_id", "arm", "metric", "g", "j"])
    truth = data.true_cate(frame["unit_id"], frame["g"], data.arm_controls[frame["g"]])
    frame["cate"] = truth[np.arange(len(frame)), frame["j"]]

    exact = cli.demo_pehe(data, frame)
    shifted = cli.demo_pehe(data, frame.assign(cate=frame["cate"] + 0.5))
    assert list(exact["metric"]) == data.metrics
    np.testing.assert_allclose(exact["pehe lr_heads"], 0.0, atol=1e-12)
    np.testing.assert_allclose(shifted["pehe lr_heads"], 0.25, rtol=1e-9)
    assert (exact["pehe true_cate_variance"] > 0).all()


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


def test_status_says_where_the_pipeline_stands(cli_env, updated, capsys):
    """Issue 12: the extractor, heads on it, the sensor's view, recent runs and the next retrain."""
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^extractor +{updated['version_after']}, trained", out, re.MULTILINE)
    n = len(updated["data"].experiments)
    assert f"{n} registered; {n} with heads on the current extractor" in out
    assert "nothing to do: every experiment has heads" in out
    assert "head_job" in out and "next retrain" in out and "UTC" in out


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
        assert (cell["model"] == row.model).all() and cell["cate_se"].isna().all()
        np.testing.assert_allclose(cell["cate"], row.pooled_weight * pooled + (1 - row.pooled_weight) * t_cate,
                                   rtol=1e-4, atol=1e-5)
