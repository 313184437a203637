"""CONTRACT.md's guarantees: bad input, hostile ids, killed retrains, overlapping commands, idempotence.

Each test plants the fault against a real DuckDB file and checks that the
valid rest flows, the raw tables are untouched and nothing outside the
database and the artifact store is written.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from lrl_core.artifacts import ArtifactStore
from lrl_pipeline.assets import features, ingest, training
from lrl_pipeline.definitions import build_definitions
from lrl_pipeline.storage import RAW_TABLES, write_raw_tables, LRLDatabase
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.runs import IN_FLIGHT, reap_dead_cli_runs
from lrl_pipeline.runner import PipelineError, run_retrain, run_update, score_units

REPO = Path(__file__).resolve().parents[2]
INJECT_EXP = "x'); DROP TABLE raw.outcomes; --"
TRAVERSAL_EXP = "../../etc/passwd"
LONG_EXP = "a" * 500
UNICODE_EXP = "名前"
HOSTILE_UNIT = "u'); DROP TABLE raw.unit_features; --"
HOSTILE_METRIC = "m'; DROP TABLE raw.experiments; --"
HOSTILE_ARM = "../evil"
HOSTILE_COLUMN = 'x"; DROP TABLE raw.exposures; --'


def raw_checksums(db: Path) -> dict[str, str]:
    """md5 of every raw table's rows (ordered) and of its columns and types, by table."""
    with duckdb.connect(str(db), read_only=True) as con:
        present = [row[0] for row in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw'").fetchall()]
        sums = {}
        for name in sorted(set(present) & set(RAW_TABLES)):
            # Names from RAW_TABLES only.
            rows = con.execute(f"SELECT md5(coalesce(string_agg(t::VARCHAR, '|' ORDER BY t::VARCHAR), '')) "
                               f"FROM raw.{name} t").fetchall()[0][0]
            columns = con.execute("SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position) "
                                  "FROM information_schema.columns WHERE table_schema = 'raw' AND table_name = ?",
                                  [name]).fetchall()[0][0]
            sums[name] = f"{rows}/{columns}"
        return sums


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _units(ids) -> list[str]:
    return [f"u{i}" for i in ids]


def planted_tables(tiny_raw: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], list[tuple[str, str, str]]]:
    """Every bad-input kind planted into the tiny data set (string unit ids so that ids can be hostile).

    Returns the tables and the expected quarantine entries ``(table, key, reason substring)``, where
    ``key`` is the unit, experiment or column the row names.
    """
    t = {name: frame.copy() for name, frame in tiny_raw.items()}
    for name in ("unit_features", "exposures", "outcomes"):
        t[name]["unit_id"] = "u" + t[name]["unit_id"].astype(str)
    features = t["unit_features"]
    features["colour"] = "red"  # non-numeric feature column
    features[HOSTILE_COLUMN] = 1.0  # hostile feature column name
    # Units u480.. exist only in unit_features: free for new experiments.
    extra_units = pd.DataFrame({"unit_id": [HOSTILE_UNIT, TRAVERSAL_EXP], "x0": 0.5})
    t["unit_features"] = pd.concat([features, extra_units], ignore_index=True)

    def experiment(eid: str, arms: dict[str, list[str]]) -> None:
        t["experiments"] = pd.concat([t["experiments"], pd.DataFrame(
            {"experiment_id": [eid], "launched_at": [pd.Timestamp("2026-02-01")]})], ignore_index=True)
        rows = [(u, eid, arm) for arm, units in arms.items() for u in units]
        t["exposures"] = pd.concat([t["exposures"], pd.DataFrame(rows, columns=["unit_id", "experiment_id", "arm"])],
                                   ignore_index=True)
        outcome_rows = [(u, eid, m, float(k)) for k, (u, _, _) in enumerate(rows) for m in ("metric_0", "metric_1")]
        t["outcomes"] = pd.concat([t["outcomes"], pd.DataFrame(
            outcome_rows, columns=["unit_id", "experiment_id", "metric", "value"])], ignore_index=True)

    experiment("no_control", {"treatment": _units(range(481, 485))})
    experiment("no_treated", {"control": _units(range(485, 489))})
    experiment(INJECT_EXP, {"control": _units(range(490, 493)), "treatment": _units(range(493, 496))})
    experiment(TRAVERSAL_EXP, {"control": _units(range(496, 499)), "treatment": _units(range(499, 502))})
    experiment(LONG_EXP, {"control": _units(range(502, 505)), "treatment": _units(range(505, 508))})
    experiment(UNICODE_EXP, {"control": _units(range(510, 520)), "treatment": _units(range(520, 530))})

    def add(name: str, rows: list[tuple]) -> None:
        t[name] = pd.concat([t[name], pd.DataFrame(rows, columns=t[name].columns)], ignore_index=True)

    add("exposures", [
        ("u6", "exp_000", "control"),  # duplicate of an existing assignment
        ("u7", "exp_000", "treatment"),  # u7 is a control unit of exp_000 too
        ("u489", "exp_002", "lonely"),  # an arm with a single unit
        ("u530", "exp_003", HOSTILE_ARM), ("u531", "exp_003", HOSTILE_ARM),
        (HOSTILE_UNIT, "exp_001", "treatment"), (TRAVERSAL_EXP, "exp_001", "control"),
    ])
    add("outcomes", [
        ("u480", "exp_001", "metric_0", 1.0),  # u480 was never exposed in exp_001
        ("u489", "exp_002", "metric_0", 1.0),
        ("u20", "exp_000", HOSTILE_METRIC, 1.0),
    ])
    outcomes = t["outcomes"]
    outcomes.loc[(outcomes["unit_id"] == "u3") & (outcomes["metric"] == "metric_0")
                 & (outcomes["experiment_id"] == "exp_000"), "value"] = None  # NULL outcome
    expected = [
        ("unit_features", "u0", "non-finite value in feature 'x0'"),
        ("unit_features", "u2", "non-finite value in feature 'x1'"),
        ("unit_features", "colour", "non-numeric feature column 'colour'"),
        ("unit_features", HOSTILE_COLUMN, "invalid feature column name"),
        ("unit_features", HOSTILE_UNIT, "contains a quote"),
        ("unit_features", TRAVERSAL_EXP, "contains a slash"),
        ("outcomes", "u3", "outcome value is NULL or NaN"),
        ("outcomes", "u4", "outcome value is not finite"),
        ("outcomes", "u5", "outcome value is not finite"),
        ("outcomes", "u480", "outcome of an unexposed unit"),
        ("outcomes", "u20", "contains a quote"),
        ("exposures", "u6", "duplicate assignment"),
        ("exposures", "u7", "unit in several arms of experiment"),
        ("exposures", "u530", "contains a slash"),
        ("experiments", "no_control", "no control arm"),
        ("experiments", "no_treated", "no treated arm"),
        ("experiments", INJECT_EXP, "contains a quote"),
        ("experiments", TRAVERSAL_EXP, "contains a slash"),
        ("experiments", LONG_EXP, "is longer than"),
        ("arms", "exp_002", "arm 'lonely' of experiment 'exp_002' has fewer than"),
    ]
    return t, expected


def plant_non_finite(db: Path) -> None:
    """NaN and inf can only be stored with SQL: pandas/Arrow turn NaN into NULL (a missing value)."""
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE raw.unit_features SET x0 = 'inf'::REAL WHERE unit_id = 'u0'")
        con.execute("UPDATE raw.unit_features SET x1 = 'nan'::REAL WHERE unit_id = 'u2'")
        con.execute("UPDATE raw.outcomes SET value = 'nan'::DOUBLE "
                    "WHERE unit_id = 'u4' AND experiment_id = 'exp_000' AND metric = 'metric_0'")
        con.execute("UPDATE raw.outcomes SET value = '-inf'::DOUBLE "
                    "WHERE unit_id = 'u5' AND experiment_id = 'exp_000' AND metric = 'metric_0'")


def test_every_bad_input_is_named_the_rest_flows_and_raw_is_untouched(tmp_path, tiny_raw, fast_run_config,
                                                                      monkeypatch):
    tables, expected = planted_tables(tiny_raw)
    db = tmp_path / "lrl.duckdb"
    write_raw_tables(db, tables)
    plant_non_finite(db)
    before = raw_checksums(db)
    monkeypatch.chdir(tmp_path)  # a relative path built from an id would land here

    with dg.instance_for_test() as instance:
        # The scheduled retrain's job, then the heads as `lrl update` (and the sensor) fit them.
        job = build_definitions(db, tmp_path / "artifacts").resolve_job_def("retrain_job")
        # The T-learner baselines see only valid tables, like the LR-learner: left out to save time.
        keys = [dg.AssetKey(k) for k in ("valid_unit_features", "valid_experiments", "valid_exposures",
                                         "valid_outcomes", "quarantine", "unit_features", "training_examples",
                                         "lr_learner")]
        assert job.execute_in_process(instance=instance, asset_selection=keys,
                                      run_config={"ops": {"lr_learner": fast_run_config["ops"]["lr_learner"]}}).success
        fitted = run_update(db, tmp_path / "artifacts", progress=lambda _: None, instance=instance)
        metadata = instance.get_latest_materialization_event(dg.AssetKey("quarantine")).asset_materialization.metadata
        by_reason = metadata["by_reason"].value

    assert raw_checksums(db) == before
    with duckdb.connect(str(db), read_only=True) as con:
        quarantine = con.execute("SELECT * FROM pipeline.quarantine").df()
        heads = set(con.execute("SELECT DISTINCT experiment_id FROM pipeline.experiment_heads").df()["experiment_id"])
        status = con.execute("SELECT experiment_id, status FROM pipeline.head_status").df()
        tables_now = set(con.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables")
                         .df().iloc[:, 0])
    # A row is named by its unit, else its column, else its experiment.
    key = quarantine["unit_id"].fillna(quarantine["column_name"]).fillna(quarantine["experiment_id"])
    keyed = quarantine.assign(key=key)
    for table, key, reason in expected:
        hit = keyed[(keyed["table_name"] == table) & ((keyed["key"] == key) | (keyed["experiment_id"] == key))]
        assert hit["reason"].str.contains(reason, regex=False).any(), (table, key, reason, hit)
        # Dagster's metadata tabulates reasons; long ids are shortened there as in the table.
        assert any(r[:40] in by_reason for r in hit["reason"]), (table, key)
    # The validation's rows, and besides them the heads' (arm, metric) cells too small for a head.
    head_cells = quarantine["reason"].str.contains("a head needs", regex=False)
    assert metadata["dagster/row_count"].value == (~head_cells).sum()
    assert (quarantine.loc[head_cells, "table_name"] == "arms").all()

    valid = {"exp_000", "exp_001", "exp_002", "exp_003", UNICODE_EXP}
    # Unicode ids are fine; every hostile or broken experiment is left out.
    assert heads == valid and set(fitted) == valid
    quarantined = set(status.loc[status["status"] == "quarantined", "experiment_id"])
    assert {"no_control", "no_treated", INJECT_EXP, TRAVERSAL_EXP, LONG_EXP} <= quarantined
    assert {f"raw.{name}" for name in RAW_TABLES} <= tables_now
    # Nothing but the database and the artifact store was written, and no file is named after an id.
    outside = {p for p in files_under(tmp_path) if not p.startswith(("artifacts", "lrl.duckdb"))}
    assert outside == set()
    assert not any(bad in p for p in files_under(tmp_path / "artifacts") for bad in ("passwd", "evil", "DROP"))


def test_a_missing_raw_table_is_a_clear_error_and_changes_nothing(tmp_path, tiny_raw):
    db = tmp_path / "lrl.duckdb"
    write_raw_tables(db, {name: tiny_raw[name] for name in ("unit_features", "experiments", "exposures")})
    before = raw_checksums(db)
    with dg.instance_for_test() as instance, pytest.raises(PipelineError, match=r"raw\.outcomes"):
        run_retrain(db, tmp_path / "artifacts", progress=lambda _: None, instance=instance)
    assert raw_checksums(db) == before and len(before) == 3
    assert not (tmp_path / "artifacts").exists()


def test_empty_raw_tables_fail_with_a_clear_error_and_keep_the_model(pipeline, tiny_raw):
    version = ArtifactStore(pipeline.artifacts).current_version()
    write_raw_tables(pipeline.db, {name: frame.iloc[:0] for name, frame in tiny_raw.items()})
    with pytest.raises(PipelineError, match=r"no valid experiment.*raw\.experiments.*empty.*pipeline\.quarantine"):
        run_retrain(pipeline.db, pipeline.artifacts, progress=lambda _: None, instance=pipeline.instance)
    assert ArtifactStore(pipeline.artifacts).current_version() == version


def test_score_rejects_missing_feature_columns_by_name_and_ignores_extra_ones(pipeline, tiny_raw):
    units = tiny_raw["unit_features"].head(5)
    with pytest.raises(PipelineError, match="missing feature columns \\['x3'\\]"):
        score_units(pipeline.db, pipeline.artifacts, units.drop(columns=["x3"]))
    scores = score_units(pipeline.db, pipeline.artifacts, units)
    assert np.isfinite(scores["cate"]).all() and set(scores["unit_id"]) == set(units["unit_id"])
    assert scores.attrs["ignored_columns"] == []
    # CONTRACT.md: columns the model left out are ignored.
    extra = score_units(pipeline.db, pipeline.artifacts, units.assign(surprise=1.0, plan_tier="gold"))
    pd.testing.assert_frame_equal(extra, scores)
    assert extra.attrs["ignored_columns"] == ["surprise", "plan_tier"]


# ---------------------------------------------------------------------------------- crashes

_CHILD_RETRAIN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import lrl_core.training as training
    marker = Path(sys.argv[3])
    original = training.LRLearner.fit
    def slow_fit(self, *args, **kwargs):
        marker.write_text("training")
        time.sleep(120)  # the parent kills us here
        return original(self, *args, **kwargs)
    training.LRLearner.fit = slow_fit
    from lrl_pipeline.runner import run_retrain
    run_retrain(Path(sys.argv[1]), Path(sys.argv[2]), progress=lambda _: None,
                run_config={"ops": {"lr_learner": {"config": {"max_epochs": 2}}}})
""")


def _wait_for(path: Path, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the child never reached the point to kill"
        time.sleep(0.1)


def test_a_retrain_killed_during_training_keeps_the_model_and_frees_the_pipeline(pipeline, tmp_path, monkeypatch,
                                                                                 tiny_raw):
    store = ArtifactStore(pipeline.artifacts)
    version, versions = store.current_version(), store.versions()
    home = tmp_path / "dagster_home"
    home.mkdir()
    marker = tmp_path / "marker"
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD_RETRAIN, str(pipeline.db), str(pipeline.artifacts),
                              str(marker)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(marker, child)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)

    assert store.current_version() == version and store.versions() == versions
    assert not any(p.name.startswith(".tmp-") for p in (pipeline.artifacts / "versions").iterdir())
    scores = score_units(pipeline.db, pipeline.artifacts, tiny_raw["unit_features"].head(3))
    assert set(scores["experiment_id"]) == set(pipeline.experiments) and np.isfinite(scores["cate"]).all()
    # The dead run is marked failed and its duckdb pool slot freed, so later runs are not blocked.
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        dead = instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT))
        assert [r.dagster_run.run_id for r in dead] == reap_dead_cli_runs(instance) and len(dead) == 1
        assert not instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT))


def test_materializing_twice_gives_the_same_tables_and_the_same_head(pipeline):
    """Ingest and features rebuilt give identical tables; a head refitted on the same extractor is identical."""
    names = ["valid_unit_features", "valid_experiments", "valid_exposures", "valid_outcomes", "quarantine",
             "unit_features", "training_examples"]

    def snapshot() -> dict[str, pd.DataFrame]:
        with duckdb.connect(str(pipeline.db), read_only=True) as con:
            out = {}
            for name in names:
                frame = con.execute(f"SELECT * FROM pipeline.{name}").df()  # fixed names above
                frame = frame.drop(columns=[c for c in frame.columns if c.endswith("_at")])
                out[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
            return out

    first = snapshot()  # the fixture's retrain materialized them once
    assets = [ingest.validated_tables, features.unit_features, features.training_examples]
    resources = {"database": LRLDatabase(database=str(pipeline.db)),
                 "artifacts": ArtifactStoreResource(root=str(pipeline.artifacts))}
    assert dg.materialize(assets, resources=resources, instance=pipeline.instance).success
    for name, frame in snapshot().items():
        pd.testing.assert_frame_equal(first[name], frame, obj=name)

    defs = build_definitions(pipeline.db, pipeline.artifacts)
    experiment = pipeline.experiments[0]
    query = ("SELECT * EXCLUDE (fitted_at) FROM pipeline.experiment_heads WHERE experiment_id = ? "
             "ORDER BY arm_index, metric")

    def heads() -> pd.DataFrame:
        with duckdb.connect(str(pipeline.db), read_only=True) as con:
            return con.execute(query, [experiment]).df()

    first = heads()
    result = defs.resolve_job_def("head_job").execute_in_process(instance=pipeline.instance, partition_key=experiment)
    assert result.success
    second = heads()
    assert len(first) > 0
    pd.testing.assert_frame_equal(first, second)


def test_a_retrain_never_prunes_an_extractor_that_heads_are_fitted_on(pipeline, fast_run_config):
    store = ArtifactStore(pipeline.artifacts)
    in_use = store.current_version()  # every head of the fixture is on it
    loaded = store.load()
    for _ in range(training.KEEP_VERSIONS):  # enough newer versions to push it out of the kept window
        store.save(loaded.learner, loaded.transform, loaded.metadata)
    newer = store.versions()[1:]
    resources = {"database": LRLDatabase(database=str(pipeline.db)),
                 "artifacts": ArtifactStoreResource(root=str(pipeline.artifacts))}
    config = {"ops": {"lr_learner": fast_run_config["ops"]["lr_learner"]}}
    assert dg.materialize([training.lr_learner], resources=resources, instance=pipeline.instance,
                          run_config=config).success
    versions = store.versions()
    assert in_use in versions and store.load(in_use).version == in_use
    assert newer[0] not in versions  # pruning still works on unused versions
    assert len(versions) == training.KEEP_VERSIONS + 1


# ---------------------------------------------------------------------------------- overlap

# What the schedule runs: retrain_job (validation, features, a new extractor), heads left to the sensor.
_CHILD_SCHEDULED_RETRAIN = textwrap.dedent("""
    import sys
    import dagster as dg
    from lrl_pipeline.definitions import build_definitions
    from lrl_pipeline.runs import PIPELINE_TAG
    job = build_definitions(sys.argv[1], sys.argv[2]).resolve_job_def("retrain_job")
    result = job.execute_in_process(instance=dg.DagsterInstance.get(), tags={PIPELINE_TAG: "retrain"},
        run_config={"ops": {"lr_learner": {"config": {"max_epochs": 3, "d": 4, "hidden": 16}},
                            "t_learners": {"config": {"n_estimators": 5, "max_depth": 2}}}})
    sys.exit(0 if result.success else 1)
""")


def test_scheduled_retrain_update_score_and_sensor_at_once_all_succeed(pipeline, tiny_raw, tmp_path):
    from lrl_pipeline.sensors import experiment_sensor

    write_raw_tables(pipeline.db, pipeline.new_rows, replace=False)  # update has an experiment to fit
    before = raw_checksums(pipeline.db)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("LRL_ARTIFACTS_DIR", "LRL_DUCKDB_PATH")}
    env.update(DAGSTER_HOME=str(home), PYTHONPATH=str(REPO))
    # The instance's storage exists before anything runs at once, as it does wherever the daemon has
    # ever run: two processes creating the SQLite storage of a brand-new home race in Dagster itself.
    subprocess.run([sys.executable, "-c", "import dagster; i = dagster.DagsterInstance.get(); "
                    "i.get_runs(limit=1); i.get_asset_keys(); i.all_instigator_state()"],
                   env=env, check=True, capture_output=True)
    commands = {
        "retrain": [sys.executable, "-c", _CHILD_SCHEDULED_RETRAIN, str(pipeline.db), str(pipeline.artifacts)],
        "update": [sys.executable, "-m", "lrl_pipeline.cli", "update", "--db", str(pipeline.db)],
    }
    children = {name: subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
                for name, command in commands.items()}
    resources = {"database": LRLDatabase(database=str(pipeline.db)),
                 "artifacts": ArtifactStoreResource(root=str(pipeline.artifacts))}
    units = tiny_raw["unit_features"].head(20)
    ticks, scored = [], []
    try:
        # Meanwhile this process plays the daemon's sensor and `lrl score` (both read-only), in turn.
        while any(child.poll() is None for child in children.values()):
            context = dg.build_sensor_context(instance=pipeline.instance, resources=resources)
            ticks.append(experiment_sensor(context))  # must not raise: it runs or skips
            scored.append(score_units(pipeline.db, pipeline.artifacts, units))  # must not raise: it waits
            time.sleep(2.0)
        outputs = {name: child.communicate(timeout=5)[0] for name, child in children.items()}
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
    for name, child in children.items():
        assert child.returncode == 0, (name, outputs[name])
    assert ticks and all(isinstance(t, (dg.SensorResult, dg.SkipReason)) for t in ticks)
    for scores in scored:
        assert set(pipeline.experiments) <= set(scores["experiment_id"]) and np.isfinite(scores["cate"]).all()

    assert raw_checksums(pipeline.db) == before
    store = ArtifactStore(pipeline.artifacts)
    assert store.current_version() != store.versions()[0]  # the retrain landed
    with duckdb.connect(str(pipeline.db), read_only=True) as con:
        heads = con.execute("SELECT experiment_id, extractor_version FROM pipeline.experiment_heads").df()
        registry = set(con.execute("SELECT experiment_id FROM raw.experiments").df()["experiment_id"])
    assert set(heads["experiment_id"]) == registry and set(heads["extractor_version"]) <= set(store.versions())
    # After the dust settles, scoring the same units sees every experiment, the new one included.
    assert set(score_units(pipeline.db, pipeline.artifacts, tiny_raw["unit_features"].head(5))["experiment_id"]) \
        == registry
