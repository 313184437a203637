"""validate_raw (one test per rule family), build_pooled_data and split_by_unit."""
from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lrl_core.data import SPLIT_NAMES, build_pooled_data, split_by_unit, validate_raw

# The clean data set: experiment k (1..3), unit u, metric j (1..3) has value 1000 k + 10 u + j.
EXPOSURES = {
    "E1": {"control": [0, 1, 2], "treatment": [3, 4, 5]},
    # Treatment arms named to sort before "control" and given in reverse order: control must come first anyway.
    "E2": {"beta": [9, 10, 11], "control": [3, 4, 5], "alpha": [6, 7, 8]},
    "E3": {"control": [0, 1], "treatment": [2, 3]},
}
METRICS = {"E1": {"m1": range(6), "m2": range(4)}, "E2": {"m1": range(3, 12), "m3": range(3, 12)},
           "E3": {"m2": range(4)}}
N_EXPOSURES, N_OUTCOMES = 19, 32


def value(experiment: str, unit: int, metric: str) -> float:
    return 1000.0 * int(experiment[1]) + 10.0 * unit + int(metric[1])


def clean_tables(id_kind: str = "int") -> dict[str, pd.DataFrame]:
    """The four raw tables; ``unit_id`` int or str (``ü<n>``), numpy or Arrow-backed (``arrow-int``, ``arrow-str``)."""
    uid = (lambda u: f"ü{u}") if id_kind.endswith("str") else (lambda u: u)
    units = list(range(12))
    unit_features = pd.DataFrame({
        "unit_id": [uid(u) for u in units],
        "x1": [float(u) for u in units],
        "x2": [np.nan if u == 2 else 0.5 * u for u in units],  # a missing value is kept
        "x3": units,
    })
    experiments = pd.DataFrame({"experiment_id": list(EXPOSURES),
                                "launched_at": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"])})
    exposures = pd.DataFrame([(uid(u), e, arm) for e, arms in EXPOSURES.items() for arm, us in arms.items()
                              for u in us], columns=["unit_id", "experiment_id", "arm"])
    outcomes = pd.DataFrame([(uid(u), e, j, value(e, u, j)) for e, ms in METRICS.items() for j, us in ms.items()
                             for u in us], columns=["unit_id", "experiment_id", "metric", "value"])
    tables = {"unit_features": unit_features, "experiments": experiments, "exposures": exposures,
              "outcomes": outcomes}
    if id_kind.startswith("arrow"):
        tables = {k: to_arrow(v) for k, v in tables.items()}
    return tables


def to_arrow(frame: pd.DataFrame) -> pd.DataFrame:
    """The dtypes the pipeline gets from DuckDB: pyarrow-backed, NULL-aware."""
    return pa.Table.from_pandas(frame, preserve_index=False).to_pandas(types_mapper=pd.ArrowDtype)


def add_rows(tables: dict, table: str, rows: list[tuple]) -> dict:
    tables = dict(tables)
    extra = pd.DataFrame(rows, columns=tables[table].columns).astype(tables[table].dtypes.to_dict(), errors="ignore")
    tables[table] = pd.concat([tables[table], extra], ignore_index=True)
    return tables


def run(tables: dict):
    return validate_raw(tables["unit_features"], tables["experiments"], tables["exposures"], tables["outcomes"])


def quarantined(result, table: str) -> list[tuple]:
    q = result.quarantine[result.quarantine["table"] == table]
    return sorted(map(tuple, q[["unit_id", "experiment_id", "metric", "column", "reason"]].to_numpy().tolist()),
                  key=repr)


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
    assert sorted(columns["column"]) == ["flag", "text", "when"]
    assert all(f"'{c}'" in r and "non-numeric" in r for c, r in zip(columns["column"], columns["reason"]))
    rows = q[(q["table"] == "unit_features") & q["column"].isna()]
    assert sorted(zip(rows["unit_id"], rows["reason"])) == [
        ("4", "non-finite value in feature 'x1'"),
        ("6", "duplicate unit_id in unit_features"), ("6", "duplicate unit_id in unit_features")]
    assert list(result.unit_features.columns) == ["unit_id", "x1", "x2", "x3"]
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


def test_experiment_level_rules():
    tables = clean_tables()
    exposures = tables["exposures"]
    # E1 loses all treated units but unit 3 (a one-unit arm), E3 becomes control-only through the arm rule,
    # and a new experiment E4 has exposures but no outcome.
    exposures = exposures[~((exposures.experiment_id == "E1") & exposures.unit_id.isin([4, 5]))]
    exposures = exposures[~((exposures.experiment_id == "E3") & (exposures.unit_id == 0))]
    tables["exposures"] = exposures
    tables["outcomes"] = tables["outcomes"][~((tables["outcomes"].experiment_id == "E1")
                                              & tables["outcomes"].unit_id.isin([4, 5]))
                                            & ~((tables["outcomes"].experiment_id == "E3")
                                                & (tables["outcomes"].unit_id == 0))]
    tables = add_rows(tables, "experiments", [("E4", pd.Timestamp("2024-05-01"))])
    tables = add_rows(tables, "exposures", [(0, "E4", "control"), (1, "E4", "control"), (2, "E4", "t"),
                                            (3, "E4", "t")])
    result = run(tables)

    assert quarantined(result, "arms") == sorted([
        (None, "E1", None, None, "arm 'treatment' of experiment 'E1' has fewer than 2 valid units"),
        (None, "E3", None, None, "arm 'control' of experiment 'E3' has fewer than 2 valid units"),
    ], key=repr)
    assert quarantined(result, "experiments") == [
        (None, "E1", None, None, "no treated arm"), (None, "E3", None, None, "no control arm"),
        (None, "E4", None, None, "no valid outcomes")]
    small_e1 = "arm 'treatment' of experiment 'E1' has fewer than 2 valid units"
    small_e3 = "arm 'control' of experiment 'E3' has fewer than 2 valid units"
    assert quarantined(result, "exposures") == sorted(
        [(str(u), "E1", None, None, "experiment 'E1' quarantined: no treated arm") for u in (0, 1, 2)]
        + [("3", "E1", None, None, small_e1), ("1", "E3", None, None, small_e3)]
        + [(str(u), "E3", None, None, "experiment 'E3' quarantined: no control arm") for u in (2, 3)]
        + [(str(u), "E4", None, None, "experiment 'E4' quarantined: no valid outcomes") for u in range(4)],
        key=repr)
    outcomes_q = result.quarantine[result.quarantine.table == "outcomes"]
    assert outcomes_q.groupby("experiment_id").size().to_dict() == {"E1": 8, "E3": 3}
    assert set(outcomes_q[outcomes_q.unit_id == "3"].reason) == {small_e1, "experiment 'E3' quarantined: no control arm"}
    assert result.experiments["experiment_id"].tolist() == ["E2"]
    assert set(result.exposures["experiment_id"]) == {"E2"} and len(result.exposures) == 9
    assert set(result.outcomes["experiment_id"]) == {"E2"} and len(result.outcomes) == 18


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


@pytest.mark.parametrize("id_kind", ["int", "str", "arrow-int", "arrow-str"])
def test_pooled_data_places_every_outcome(id_kind):
    tables = clean_tables(id_kind)
    # Shuffle the long tables: the pooling must not depend on their order.
    tables["outcomes"] = tables["outcomes"].sample(frac=1.0, random_state=0)
    tables["exposures"] = tables["exposures"].sample(frac=1.0, random_state=1)
    pooled = build_pooled_data(run(tables))

    assert pooled.experiments == ["E1", "E2", "E3"]
    assert pooled.metrics == ["m1", "m2", "m3"]
    assert [pooled.arm_label(g) for g in range(pooled.n_arms)] == [
        "E1/control", "E1/treatment", "E2/control", "E2/alpha", "E2/beta", "E3/control", "E3/treatment"]
    assert pooled.control_arm.tolist() == [0, 2, 5]
    assert (pooled.n_units, pooled.n_rows, pooled.Y.shape) == (12, N_EXPOSURES, (N_EXPOSURES, 3))
    assert pooled.features.shape == (12, 3) and pooled.feature_names == ["x1", "x2", "x3"]

    unit_number = np.array([int(str(u).lstrip("ü")) for u in pooled.unit_ids])
    np.testing.assert_array_equal(pooled.features[:, 0], unit_number.astype(float))  # features follow unit_ids
    assert np.isnan(pooled.features[unit_number == 2, 1]).all()

    expected_arm = {(e, u): arm for e, arms in EXPOSURES.items() for arm, us in arms.items() for u in us}
    n_observed = 0
    for row in range(pooled.n_rows):
        unit = unit_number[pooled.row_unit[row]]
        experiment = pooled.experiments[pooled.row_experiment[row]]
        assert pooled.arm_names[pooled.row_arm[row]] == expected_arm[(experiment, unit)]
        assert pooled.treated[row] == (expected_arm[(experiment, unit)] != "control")
        for j, metric in enumerate(pooled.metrics):
            reported = unit in METRICS[experiment].get(metric, ())
            if reported:
                assert pooled.Y[row, j] == value(experiment, unit, metric)
                n_observed += 1
            else:
                assert np.isnan(pooled.Y[row, j])
    assert n_observed == N_OUTCOMES

    # A unit in several experiments (unit 3: E1 treatment, E2 control, E3 treatment) has one row in each.
    unit3 = np.flatnonzero(unit_number[pooled.row_unit] == 3)
    assert sorted(pooled.row_experiment[unit3].tolist()) == [0, 1, 2]


def test_pooled_data_keeps_unexposed_units_and_take_rows():
    tables = add_rows(clean_tables(), "unit_features", [(42, 1.0, 2.0, 3)])
    pooled = build_pooled_data(run(tables))
    assert 42 in pooled.unit_ids.tolist() and pooled.unit_ids.dtype == np.int64
    assert 42 not in pooled.unit_ids[pooled.row_unit].tolist()

    first_experiment = pooled.take_rows(pooled.row_experiment == 0)
    assert first_experiment.n_rows == 6 and first_experiment.n_units == pooled.n_units
    assert first_experiment.n_arms == pooled.n_arms
    np.testing.assert_array_equal(first_experiment.Y, pooled.Y[pooled.row_experiment == 0])
    by_index = pooled.take_rows(np.array([3, 1]))
    np.testing.assert_array_equal(by_index.row_unit, pooled.row_unit[[3, 1]])


def test_split_is_stable_and_balanced():
    ids = np.arange(100_000, dtype=np.int64)
    split = split_by_unit(ids)
    assert split.dtype == np.int8 and set(np.unique(split)) == {0, 1, 2}
    shares = np.bincount(split, minlength=3) / len(ids)
    np.testing.assert_allclose(shares, [0.8, 0.1, 0.1], atol=0.01)
    np.testing.assert_array_equal(split_by_unit(ids), split)

    order = np.random.default_rng(0).permutation(len(ids))
    np.testing.assert_array_equal(split_by_unit(ids[order]), split[order])
    np.testing.assert_array_equal(split_by_unit([str(i) for i in ids[:1000]]), split[:1000])
    assert (split_by_unit(ids, salt="other") != split).mean() > 0.2
    assert SPLIT_NAMES[split[0]] in ("train", "validation", "test")
    with pytest.raises(ValueError, match="fractions"):
        split_by_unit(ids, fractions=(0.5, 0.5, 0.5))


def test_split_is_identical_in_another_process():
    code = ("import numpy as np; from lrl_core.data import split_by_unit; "
            "print(''.join(map(str, split_by_unit(np.array(['a', 'b', 'ü'] + [f'u{i}' for i in range(200)])))))")
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
        for seed in ("1", "2")
    }
    local = "".join(map(str, split_by_unit(np.array(["a", "b", "ü"] + [f"u{i}" for i in range(200)]))))
    assert outputs == {local}


def _noisy_tables(seed: int = 0, n_per_arm: int = 200):
    """Two experiments x two arms, metrics m1 (normal), m2 (log-normal, sigma 2), one row each per unit."""
    rng = np.random.default_rng(seed)
    n = 4 * n_per_arm
    exposures = pd.DataFrame({"unit_id": np.arange(n), "experiment_id": np.repeat(["E1", "E2"], 2 * n_per_arm),
                              "arm": np.tile(np.repeat(["control", "treatment"], n_per_arm), 2)})
    outcomes = pd.concat([
        pd.DataFrame({"unit_id": np.arange(n), "experiment_id": exposures["experiment_id"], "metric": "m1",
                      "value": rng.normal(size=n)}),
        pd.DataFrame({"unit_id": np.arange(n), "experiment_id": exposures["experiment_id"], "metric": "m2",
                      "value": rng.lognormal(sigma=2.0, size=n)}),
    ], ignore_index=True)
    return {"unit_features": pd.DataFrame({"unit_id": np.arange(n), "x": rng.normal(size=n)}),
            "experiments": pd.DataFrame({"experiment_id": ["E1", "E2"]}), "exposures": exposures, "outcomes": outcomes}


def test_a_broken_feed_is_quarantined_by_row_and_heavy_tails_are_not():
    tables = _noisy_tables()
    broken = tables["outcomes"].index[(tables["outcomes"]["metric"] == "m1")
                                      & (tables["outcomes"]["experiment_id"] == "E2")][:20]
    tables["outcomes"].loc[broken, "value"] = 1e12
    result = validate_raw(**tables)
    q = result.quarantine
    far = q[q["reason"].str.contains("far outside metric 'm1'", na=False)]
    assert sorted(far["unit_id"].astype(int)) == sorted(tables["outcomes"].loc[broken, "unit_id"])
    # Nothing else: the log-normal metric's tail and the other experiment stay.
    assert len(q) == 20 and len(result.outcomes) == len(tables["outcomes"]) - 20


def test_a_constant_metric_of_an_experiment_is_not_estimated():
    tables = _noisy_tables()
    rows = (tables["outcomes"]["metric"] == "m2") & (tables["outcomes"]["experiment_id"] == "E1")
    tables["outcomes"].loc[rows, "value"] = 3.0
    q = validate_raw(**tables).quarantine
    assert len(q) == rows.sum()
    assert set(q["reason"]) == {"metric 'm2' is constant (3) in experiment 'E1': no effect to estimate"}
    assert set(q["experiment_id"]) == {"E1"} and set(q["metric"]) == {"m2"}
