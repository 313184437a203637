"""build_pooled_data and PooledData (lrl_core/data/pooling.py)."""
from __future__ import annotations

import numpy as np
import pytest

from clean_raw_tables import METRICS, N_EXPOSURES, N_OUTCOMES, EXPOSURES, add_rows, clean_tables, run, value
from lrl_core.data import build_pooled_data


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


def _pivot_of_whole_columns(valid, pooled) -> np.ndarray:
    """``Y`` as the pivot computed it before it went chunk by chunk: int64 keys of every outcome at once."""
    import pandas as pd

    from lrl_core.data.columns import column_as_float
    from lrl_core.data.ids import _factorize_text_ids, _locate, _unit_ids_of_tables

    outcomes, k = valid.outcomes, len(pooled.experiments)
    unit_ids = _unit_ids_of_tables({"outcomes": outcomes})["outcomes"]
    out_metric = _locate(_factorize_text_ids(outcomes["metric"]), pd.Index(pooled.metrics))
    out_key = _locate(unit_ids, pd.Index(pooled.unit_ids)) * k + _locate(
        _factorize_text_ids(outcomes["experiment_id"]), pd.Index(pooled.experiments))
    out_row = pd.Index(pooled.row_unit * k + pooled.row_experiment).get_indexer(out_key)
    Y = np.full((pooled.n_rows, len(pooled.metrics)), np.nan)
    Y[out_row, out_metric] = column_as_float(pd.to_numeric(outcomes["value"]))[0]
    return Y


@pytest.mark.parametrize("id_kind", ["int", "arrow-str"])
@pytest.mark.parametrize("values", ["float", "text"])
def test_outcomes_pivoted_chunk_by_chunk_equal_the_whole_column_pivot(monkeypatch, id_kind, values):
    # The pivot computes its keys a few outcome rows at a time to save memory: the values it
    # places must be exactly those of the whole-column pivot, whatever the chunk size.
    import dataclasses

    from lrl_core.data import pooling

    tables = clean_tables(id_kind)
    tables["outcomes"] = tables["outcomes"].sample(frac=1.0, random_state=2)
    valid = run(tables)
    if values == "text":  # a column of numbers as text: converted as a whole, as before
        valid = dataclasses.replace(valid, outcomes=valid.outcomes.assign(
            value=[repr(v) for v in valid.outcomes["value"]]))
    whole = build_pooled_data(valid)
    assert pooling.PIVOT_CHUNK_ROWS > N_OUTCOMES
    np.testing.assert_array_equal(whole.Y, _pivot_of_whole_columns(valid, whole))
    for chunk in (1, 5, N_OUTCOMES - 1):
        monkeypatch.setattr(pooling, "PIVOT_CHUNK_ROWS", chunk)
        chunked = build_pooled_data(valid)
        assert chunked.Y.dtype == np.float64 and np.isnan(chunked.Y).sum() == np.isnan(whole.Y).sum()
        np.testing.assert_array_equal(chunked.Y, whole.Y)
        for field in ("unit_ids", "row_unit", "row_arm", "arm_experiment", "control_arm"):
            np.testing.assert_array_equal(getattr(chunked, field), getattr(whole, field))
        assert (chunked.metrics, chunked.arm_names) == (whole.metrics, whole.arm_names)


def test_chunked_pivot_refuses_bad_outcomes_as_the_whole_column_did(monkeypatch):
    # An outcome of an unexposed unit in the last chunk is refused before the values are read, so
    # a bad value elsewhere does not change which error comes; a bad value alone is pandas' own.
    import dataclasses

    import pandas as pd

    from lrl_core.data import pooling

    valid = run(clean_tables())
    monkeypatch.setattr(pooling, "PIVOT_CHUNK_ROWS", 4)
    unexposed = pd.DataFrame([(11, "E1", "m1", 1.0)], columns=valid.outcomes.columns)
    spoilt = valid.outcomes.astype({"value": object})
    spoilt.loc[spoilt.index[0], "value"] = "lots"
    for outcomes, error in (
            (pd.concat([valid.outcomes, unexposed], ignore_index=True), "outcomes of unexposed units"),
            (pd.concat([spoilt, unexposed.astype({"value": object})], ignore_index=True),
             "outcomes of unexposed units"),
            (spoilt, "Unable to parse string")):
        with pytest.raises(ValueError, match=error):
            build_pooled_data(dataclasses.replace(valid, outcomes=outcomes))
