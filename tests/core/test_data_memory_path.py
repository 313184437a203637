"""The memory-saving paths of validate_raw give the verdicts and values of the plain ones.

Arrow-backed input is factorised by Arrow with int32 codes, per-row positions are
int32, and the constant-metric rule indexes a small (experiment x metric) grid
directly: a spoiled data set must come out the same whichever way it goes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from clean_raw_tables import add_rows, clean_tables, quarantined, run, to_arrow
from lrl_core.data import group_rules
from lrl_core.data.ids import _factorize


@pytest.mark.parametrize("chunks", [
    [["b", "a", None], ["a", "c"]],
    [[3, 1, None, 3], [7]],
    [[None, None]],
    [],
])
def test_arrow_factorize_is_pandas_factorize_with_int32_codes(chunks):
    data = pa.chunked_array(chunks, type=pa.string() if chunks and isinstance(chunks[0][0], str) else None) \
        if chunks else pa.chunked_array([], type=pa.string())
    series = pd.Series(pd.arrays.ArrowExtensionArray(data))
    codes, uniques = _factorize(series)
    expected_codes, expected_uniques = pd.factorize(series)
    assert codes.dtype == np.int32
    np.testing.assert_array_equal(codes, expected_codes)
    assert list(uniques) == list(expected_uniques)
    assert uniques.dtype == expected_uniques.dtype


def _spoiled(id_kind: str) -> dict[str, pd.DataFrame]:
    """Bad rows of every outcome rule, and some of the others, on the clean data set."""
    tables = clean_tables(id_kind.replace("arrow-", ""))
    uid = (lambda u: f"ü{u}") if id_kind.endswith("str") else (lambda u: u)
    outcomes = tables["outcomes"]
    outcomes.loc[(outcomes.unit_id == uid(0)) & (outcomes.metric == "m1"), "value"] = np.nan
    outcomes.loc[(outcomes.unit_id == uid(1)) & (outcomes.metric == "m1"), "value"] = -np.inf
    outcomes.loc[(outcomes.experiment_id == "E3") & (outcomes.metric == "m2"), "value"] = 7.0  # constant
    tables = add_rows(tables, "outcomes", [
        (uid(7), "E1", "m1", 1.0),                         # not exposed in E1
        (uid(5), "E2", "m3", 2.0), (uid(5), "E2", "m3", 2.0),  # ambiguous
        (uid(99), "E1", "m1", 1.0),                        # unknown unit
        (uid(3), "E9", "m1", 1.0),                         # unknown experiment
        (uid(4), "E1", None, 1.0),                         # NULL metric
    ])
    tables = add_rows(tables, "exposures", [(uid(6), "E1", "control"), (uid(6), "E1", "treatment")])
    tables = add_rows(tables, "unit_features", [(uid(12), np.inf, 1.0, 3)])
    # A far outlier of a metric with enough values for its quartiles: 60 units of E4.
    units = [uid(u) for u in range(20, 80)]
    tables = add_rows(tables, "unit_features", [(u, 1.0, 1.0, 1) for u in units])
    tables = add_rows(tables, "experiments", [("E4", pd.Timestamp("2024-04-01"))])
    tables = add_rows(tables, "exposures", [(u, "E4", "control" if i % 2 else "treatment")
                                            for i, u in enumerate(units)])
    tables = add_rows(tables, "outcomes", [(u, "E4", "m4", 1e12 if i == 0 else float(i % 7))
                                           for i, u in enumerate(units)])
    if id_kind.startswith("arrow"):
        tables = {name: to_arrow(frame) for name, frame in tables.items()}
    return tables


def _rows(frame: pd.DataFrame) -> list[list]:
    """Rows as Python values, NULL (and a numpy NaN, which is NULL there) as None."""
    return frame.astype(object).where(frame.notna(), None).to_numpy().tolist()


def _outcome(result) -> list[tuple]:
    return sorted(map(tuple, _rows(result.outcomes)), key=repr)


@pytest.mark.parametrize("kind", ["int", "str"])
def test_arrow_input_gives_the_verdicts_and_values_of_numpy_input(kind):
    plain, arrow = run(_spoiled(kind)), run(_spoiled(f"arrow-{kind}"))
    for table in ("unit_features", "experiments", "arms", "exposures", "outcomes"):
        assert quarantined(arrow, table) == quarantined(plain, table), table
    reasons = set(plain.quarantine["reason"])
    assert any(r.startswith("outcome value far outside metric 'm4'") for r in reasons)
    assert any(r.startswith("metric 'm2' is constant (7) in experiment 'E3'") for r in reasons)
    assert {"outcome value is NULL or NaN", "outcome value is not finite", "outcome of an unexposed unit",
            "duplicate outcome (same unit, experiment and metric; ambiguous)", "metric is NULL",
            "unknown experiment (not in the valid registry)", "unit has no row in unit_features"} <= reasons
    for table in ("unit_features", "experiments", "exposures"):
        assert _rows(getattr(arrow, table)) == _rows(getattr(plain, table)), table
    assert _outcome(arrow) == _outcome(plain)


def test_constant_metric_rule_numbers_groups_the_same_either_way(monkeypatch):
    dense = run(_spoiled("arrow-int"))
    monkeypatch.setattr(group_rules, "_DENSE_GROUPS", 0)
    tables = _spoiled("arrow-int")
    # More (experiment x metric) cells than kept rows: the np.unique numbering.
    tables = add_rows(tables, "experiments", [(f"X{i}", pd.Timestamp("2025-01-01")) for i in range(200)])
    tables = {name: to_arrow(frame.astype(object).where(frame.notna(), None)) if name == "experiments" else frame
              for name, frame in tables.items()}
    sparse = run(tables)
    assert quarantined(sparse, "outcomes") == quarantined(dense, "outcomes")
    assert _outcome(sparse) == _outcome(dense)
