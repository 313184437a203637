"""CONTRACT.md: bad input never stops good input, and ``raw.*`` is never changed; no id reaches SQL or a path.

Each test plants the fault against a real DuckDB file and checks that the
valid rest flows, the raw tables are untouched and nothing outside the
database and the artifact store is written.
"""
from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from lrl_core.artifacts import ArtifactStore
from lrl_core.data import SPLIT_NAMES, split_by_unit
from lrl_pipeline.definitions import build_definitions
from lrl_pipeline.storage import RAW_TABLES, write_raw_tables
from lrl_pipeline.runner import PipelineError, run_retrain, run_update, score_units

from tests.helpers import raw_checksums


INJECT_EXP = "x'); DROP TABLE raw.outcomes; --"


TRAVERSAL_EXP = "../../etc/passwd"


LONG_EXP = "a" * 500


UNICODE_EXP = "名前"


HOSTILE_UNIT = "u'); DROP TABLE raw.unit_features; --"


HOSTILE_METRIC = "m'; DROP TABLE raw.experiments; --"


HOSTILE_ARM = "../evil"


HOSTILE_COLUMN = 'x"; DROP TABLE raw.exposures; --'


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
    features["colour"] = "red"  # a categorical feature: kept
    features["contact"] = [f"user{i}@example.com" for i in range(len(features))]  # an id, not a feature
    features["signed_up"] = pd.Timestamp("2024-01-01")  # neither numeric nor categorical
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
        ("unit_features", "contact", "categorical feature column 'contact' looks like an id"),
        ("unit_features", "signed_up", "non-numeric feature column 'signed_up'"),
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
