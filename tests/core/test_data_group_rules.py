"""The group rules of validate_raw (lrl_core/data/group_rules.py): small arms, incomplete experiments, far outliers, constant metrics."""
from __future__ import annotations

import numpy as np
import pandas as pd

from clean_raw_tables import add_rows, clean_tables, quarantined, run
from lrl_core.data import validate_raw


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
