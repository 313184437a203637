"""validate_raw (lrl_core/data/validation.py): the per-table rules, one test per rule family."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from clean_raw_tables import N_EXPOSURES, N_OUTCOMES, add_rows, clean_tables, quarantined, run
from lrl_core.data import validate_raw


@pytest.mark.parametrize("id_kind", ["int", "str", "arrow-int", "arrow-str"])
def test_clean_tables_pass_whole(id_kind):
    tables = clean_tables(id_kind)
    result = run(tables)
    assert result.quarantine.empty
    assert list(result.quarantine.columns) == ["table", "unit_id", "experiment_id", "metric", "column", "reason"]
    assert (len(result.unit_features), len(result.experiments), len(result.exposures), len(result.outcomes)) == (
        12, 3, N_EXPOSURES, N_OUTCOMES)
    assert list(result.unit_features.columns) == ["unit_id", "x1", "x2", "x3"]
    assert result.unit_features["x2"].isna().sum() == 1


def test_clean_arrow_tables_are_shared_not_copied():
    # At millions of rows a second copy of clean input is gigabytes: the valid part of a table
    # with nothing dropped shares the input's buffers (and changing it would not be allowed anyway).
    tables = clean_tables("arrow-str")
    result = run(tables)
    assert result.quarantine.empty
    for name in ("unit_features", "outcomes"):
        valid = pa.Table.from_pandas(getattr(result, name), preserve_index=False)
        given = pa.Table.from_pandas(tables[name], preserve_index=False)
        assert valid.equals(given)
        column = "x1" if name == "unit_features" else "value"
        assert (valid.column(column).chunk(0).buffers()[1].address
                == given.column(column).chunk(0).buffers()[1].address)


def test_inputs_are_never_mutated():
    tables = clean_tables("str")
    tables = add_rows(tables, "exposures", [("ü0", "E1", "treatment"), ("ü1", "E9", "control")])
    tables = add_rows(tables, "outcomes", [("ü5", "E1", "m2", np.inf), ("ü5", "E3", "m2", 1.0)])
    tables["unit_features"] = tables["unit_features"].assign(bad=["x"] * 12)
    before = copy.deepcopy(tables)
    result = run(tables)
    assert len(result.quarantine) > 0
    for name in tables:
        pd.testing.assert_frame_equal(tables[name], before[name])
        assert getattr(result, name) is not tables[name]


def test_invalid_ids_are_named():
    tables = clean_tables("str")
    tables = add_rows(tables, "unit_features", [
        ("", 1.0, 1.0, 1), ("  ", 1.0, 1.0, 1), ("a'b", 1.0, 1.0, 1), ("a/b", 1.0, 1.0, 1),
        ("x" * 201, 1.0, 1.0, 1), ("tab\tid", 1.0, 1.0, 1), ("Zoë-Ünicode", 1.0, 1.0, 1), (None, 1.0, 1.0, 1)])
    tables = add_rows(tables, "experiments", [("E.4", pd.Timestamp("2024-04-01"))])
    tables = add_rows(tables, "exposures", [("ü0", "E2", 'tr"x'), ("ü1", "E2", "t;x"), ("ü2", "E2", None)])
    tables = add_rows(tables, "outcomes", [("ü0", "E1", "m\\1", 1.0), ("ü0", "E1", None, 1.0)])
    tables["unit_features"]["bad.name"] = 1.0
    result = run(tables)

    features = quarantined(result, "unit_features")
    reasons = [r[-1] for r in features]
    for expected in ["invalid unit_id '': is empty", "invalid unit_id '  ': is empty",
                     "invalid unit_id \"a'b\": contains a quote", "invalid unit_id 'a/b': contains a slash",
                     "is longer than 200 characters", "invalid unit_id 'tab\\tid': contains a control character",
                     "unit_id is NULL", "invalid feature column name 'bad.name': contains a dot"]:
        assert sum(expected in r for r in reasons) == 1, expected
    assert len(features) == 8
    assert ("Zoë-Ünicode" in result.unit_features["unit_id"].tolist())  # unicode letters are fine
    assert "bad.name" not in result.unit_features.columns
    assert quarantined(result, "experiments") == [(None, "E.4", None, None,
                                                   "invalid experiment_id 'E.4': contains a dot")]
    assert sorted(r[-1] for r in quarantined(result, "exposures")) == sorted(
        ["invalid arm 'tr\"x': contains a quote", "invalid arm 't;x': contains a semicolon", "arm is NULL"])
    assert sorted(r[-1] for r in quarantined(result, "outcomes")) == [
        "invalid metric 'm\\\\1': contains a slash", "metric is NULL"]
    assert (len(result.exposures), len(result.outcomes)) == (N_EXPOSURES, N_OUTCOMES)


@pytest.mark.parametrize("id_kind", ["int", "arrow-int"])
def test_unit_feature_rules_and_their_cascade(id_kind):
    tables = clean_tables(id_kind)
    frame = tables["unit_features"].copy()
    frame["text"] = "a"
    frame["flag"] = True
    frame["when"] = pd.Timestamp("2024-01-01")
    frame["x1"] = frame["x1"].where(frame["x3"] != 4, np.inf)  # unit 4: in E1 (treatment) and E2 (control)
    duplicate = frame.iloc[[6]]  # unit 6 twice: both rows go
    tables["unit_features"] = pd.concat([frame, duplicate], ignore_index=True)
    result = run(tables)

    q = result.quarantine
    columns = q[q["column"].notna()]
    # Text and booleans are categorical features; a timestamp is not a feature.
    assert columns["column"].tolist() == ["when"] and "non-numeric" in columns["reason"].iloc[0]
    rows = q[(q["table"] == "unit_features") & q["column"].isna()]
    assert sorted(zip(rows["unit_id"], rows["reason"])) == [
        ("4", "non-finite value in feature 'x1'"),
        ("6", "duplicate unit_id in unit_features"), ("6", "duplicate unit_id in unit_features")]
    assert list(result.unit_features.columns) == ["unit_id", "x1", "x2", "x3", "text", "flag"]
    assert len(result.unit_features) == 10

    # Units 4 and 6 are gone everywhere, each row with the reason.
    for table in ("exposures", "outcomes"):
        dropped = q[q["table"] == table]
        assert set(dropped["unit_id"]) == {"4", "6"}
        assert set(dropped["reason"]) == {"unit quarantined in unit_features"}
    # unit 4: E1 and E2 exposures; unit 6: E2.
    assert len(result.exposures) == N_EXPOSURES - 3
    # unit 4: E1 m1, E2 m1, m3; unit 6: E2 m1, m3.
    assert len(result.outcomes) == N_OUTCOMES - 5


def test_nullable_float_nan_is_bad_but_null_is_missing():
    tables = clean_tables("arrow-int")
    x2 = pa.array([None, 1.0, float("nan")] + [1.0] * 9, type=pa.float64())
    tables["unit_features"] = tables["unit_features"].assign(x2=pd.Series(x2, dtype=pd.ArrowDtype(pa.float64())))
    tables["unit_features"]["x4"] = pd.array([pd.NA] + [0.5] * 11, dtype="Float64")
    result = run(tables)
    rows = quarantined(result, "unit_features")
    assert rows == [("2", None, None, None, "non-finite value in feature 'x2'")]
    assert result.unit_features["x2"].isna().sum() == 1 and result.unit_features["x4"].isna().sum() == 1


def test_registry_rules():
    tables = clean_tables()
    tables = add_rows(tables, "experiments", [("E2", pd.Timestamp("2025-01-01")), ("E_new", pd.Timestamp("2025-01-01"))])
    result = run(tables)
    assert quarantined(result, "experiments") == [(None, "E2", None, None, "duplicate registry row"),
                                                  (None, "E_new", None, None, "no valid exposures")]
    assert result.experiments["experiment_id"].tolist() == ["E1", "E2", "E3"]
    assert result.experiments["launched_at"].iloc[1] == pd.Timestamp("2024-02-01")  # the first row wins
    assert (len(result.exposures), len(result.outcomes)) == (N_EXPOSURES, N_OUTCOMES)


def test_exposure_rules():
    tables = clean_tables()
    tables = add_rows(tables, "exposures", [
        (0, "E9", "control"),          # unknown experiment
        (99, "E1", "control"),         # unit without features
        (1, "E1", "control"),          # exact duplicate of a valid assignment: one copy kept
        (6, "E2", "beta"),             # unit 6 is in E2 alpha already: both rows go
    ])
    tables = add_rows(tables, "outcomes", [(99, "E1", "m1", 1.0)])
    result = run(tables)
    assert quarantined(result, "exposures") == sorted([
        ("0", "E9", None, None, "unknown experiment (not in the valid registry)"),
        ("99", "E1", None, None, "unit has no row in unit_features"),
        ("1", "E1", None, None, "duplicate assignment"),
        ("6", "E2", None, None, "unit in several arms of experiment"),
        ("6", "E2", None, None, "unit in several arms of experiment"),
    ], key=repr)
    assert quarantined(result, "outcomes") == sorted([
        ("6", "E2", "m1", None, "its exposure was quarantined: unit in several arms of experiment"),
        ("6", "E2", "m3", None, "its exposure was quarantined: unit in several arms of experiment"),
        ("99", "E1", "m1", None, "unit has no row in unit_features"),
    ], key=repr)
    assert len(result.exposures) == N_EXPOSURES - 1
    assert len(result.outcomes) == N_OUTCOMES - 2
    assert not result.exposures.duplicated().any()


def test_outcome_rules():
    tables = clean_tables()
    outcomes = tables["outcomes"]
    outcomes.loc[(outcomes.unit_id == 0) & (outcomes.metric == "m1"), "value"] = np.nan
    outcomes.loc[(outcomes.unit_id == 1) & (outcomes.metric == "m1"), "value"] = -np.inf
    tables = add_rows(tables, "outcomes", [
        (6, "E1", "m1", 1.0),                      # unit 6 is not in E1
        (5, "E2", "m3", 2.0), (5, "E2", "m3", 2.0),  # a third copy: all three are ambiguous
    ])
    result = run(tables)
    assert quarantined(result, "outcomes") == sorted([
        ("0", "E1", "m1", None, "outcome value is NULL or NaN"),
        ("1", "E1", "m1", None, "outcome value is not finite"),
        ("6", "E1", "m1", None, "outcome of an unexposed unit"),
    ] + [("5", "E2", "m3", None, "duplicate outcome (same unit, experiment and metric; ambiguous)")] * 3, key=repr)
    assert len(result.outcomes) == N_OUTCOMES - 3
    assert len(result.exposures) == N_EXPOSURES


def test_schema_errors_are_clear():
    tables = clean_tables()
    with pytest.raises(ValueError, match="'outcomes' has no column 'value'"):
        run({**tables, "outcomes": tables["outcomes"].drop(columns="value")})
    with pytest.raises(ValueError, match="'exposures' has no column 'arm'"):
        run({**tables, "exposures": tables["exposures"].drop(columns="arm")})
    with pytest.raises(ValueError, match="same type.*exposures: string"):
        run({**tables, "exposures": tables["exposures"].assign(unit_id=lambda f: f.unit_id.map(str))})


def test_summary_counts():
    tables = add_rows(clean_tables(), "exposures", [(1, "E1", "control"), (1, "E1", "control")])
    summary = run(tables).summary()
    counts = {(t, k, r): c for t, k, r, c in summary.itertuples(index=False)}
    assert counts[("exposures", "rows in", None)] == N_EXPOSURES + 2
    assert counts[("exposures", "rows kept", None)] == N_EXPOSURES
    assert counts[("exposures", "quarantined", "duplicate assignment")] == 2
    assert counts[("outcomes", "rows kept", None)] == N_OUTCOMES


def test_a_text_column_with_a_value_per_unit_is_an_id_unless_a_full_validation_kept_it():
    """Issue 12: an e-mail per unit is left out with its reason; a 10-level column stays a feature."""
    tables = clean_tables("int")
    extra = pd.DataFrame({"unit_id": range(100, 300), "x1": 0.0, "x2": 0.0, "x3": 0})
    frame = pd.concat([tables["unit_features"], extra], ignore_index=True)
    frame["email"] = [f"user{i}@example.com" for i in range(len(frame))]
    frame["country"] = [f"c{i % 10}" for i in range(len(frame))]
    tables["unit_features"] = frame
    result = run(tables)

    columns = result.quarantine[result.quarantine["column"].notna()]
    assert columns["column"].tolist() == ["email"]
    assert "looks like an id" in columns["reason"].iloc[0] and "212 distinct values among 212 units" in columns["reason"].iloc[0]
    assert "country" in result.unit_features.columns and "email" not in result.unit_features.columns
    # A few new experiments' units cannot judge a column the full validation kept.
    again = validate_raw(**tables, known_columns=["email"])
    assert "email" in again.unit_features.columns and again.quarantine["column"].isna().all()


@pytest.mark.parametrize("id_kind", ["int", "arrow-str"])
def test_a_feature_check_that_keeps_everything_stands_in_for_the_feature_table(id_kind):
    from lrl_core.data import check_unit_features

    tables = add_rows(clean_tables(id_kind), "outcomes", [(tables_unit(id_kind, 99), "e1", "m1", 1.0)])
    check = check_unit_features(tables["unit_features"])
    assert check.keeps_all
    full = run(tables)
    without = validate_raw(None, tables["experiments"], tables["exposures"], tables["outcomes"], features=check)
    assert without.unit_features is None
    pd.testing.assert_frame_equal(without.quarantine, full.quarantine)  # a stray outcome, named the same way
    for name in ("experiments", "exposures", "outcomes"):
        pd.testing.assert_frame_equal(getattr(without, name), getattr(full, name))
    assert without.rows_in == full.rows_in
    pd.testing.assert_frame_equal(without.summary(), full.summary())


def tables_unit(id_kind: str, unit: int):
    return f"ü{unit}" if id_kind.endswith("str") else unit


def test_a_feature_check_that_drops_rows_or_columns_needs_the_table():
    from lrl_core.data import check_unit_features

    tables = clean_tables()
    tables["unit_features"] = tables["unit_features"].assign(x1=[np.inf] + [1.0] * 11)
    check = check_unit_features(tables["unit_features"])
    assert not check.keeps_all  # the unit with an infinite feature is dropped
    with pytest.raises(ValueError, match="pass the table too"):
        validate_raw(None, tables["experiments"], tables["exposures"], tables["outcomes"], features=check)
    with pytest.raises(ValueError, match="needs the unit_features table"):
        validate_raw(None, tables["experiments"], tables["exposures"], tables["outcomes"])
    result = validate_raw(tables["unit_features"], tables["experiments"], tables["exposures"], tables["outcomes"],
                          features=check)
    assert len(result.unit_features) == 11
    assert quarantined(result, "unit_features") == quarantined(run(tables), "unit_features")
