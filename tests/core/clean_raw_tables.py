"""The clean raw tables the lrl_core.data tests start from, and helpers to spoil and validate them.

Not a test module: imported by ``test_data_*.py``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from lrl_core.data import validate_raw

__all__ = ["EXPOSURES", "METRICS", "N_EXPOSURES", "N_OUTCOMES", "add_rows", "clean_tables", "quarantined", "run",
           "to_arrow", "value"]


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
