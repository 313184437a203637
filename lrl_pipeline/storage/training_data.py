"""The training data as the model reads it: valid tables, pooled rows and the prepared feature matrix."""
from __future__ import annotations

import os
import tempfile

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from lrl_core.data import QUARANTINE_COLUMNS, PooledData, ValidationResult, build_pooled_data, split_by_unit
from lrl_pipeline.paths import train_memory_bytes
from lrl_pipeline.storage.raw import arrow_to_pandas
from lrl_pipeline.storage.tables import read_table

__all__ = ["load_validated", "load_pooled"]

PREPARED_BATCH_ROWS = 262_144

# Experiments launched since the retrain have valid rows too (validated by their partition runs),
# but the model is trained and evaluated on the retrain's examples only.
_TRAINED = ("CAST(experiment_id AS VARCHAR) IN "
            "(SELECT DISTINCT CAST(experiment_id AS VARCHAR) FROM pipeline.training_examples)")
_TRAINED_OF = {name: f"SELECT * FROM pipeline.valid_{name} WHERE {_TRAINED}" for name in ("experiments", "outcomes")}


def load_validated(con: duckdb.DuckDBPyConnection, unit_columns: bool = True) -> ValidationResult:
    """The valid tables written by the validation asset, as a ``ValidationResult`` (empty quarantine).

    ``unit_columns=False`` reads only ``unit_id`` of the unit features, for
    callers that take features from elsewhere (the prepared table).
    """
    if unit_columns:
        units = read_table(con, "valid_unit_features")
    else:
        units = arrow_to_pandas(con.sql("SELECT unit_id FROM pipeline.valid_unit_features").to_arrow_table())
    return ValidationResult(
        unit_features=units,
        experiments=read_table(con, "valid_experiments"),
        exposures=read_table(con, "valid_exposures"),
        outcomes=read_table(con, "valid_outcomes"),
        quarantine=pd.DataFrame(columns=QUARANTINE_COLUMNS),
    )


def load_pooled(con: duckdb.DuckDBPyConnection,
                memory_bytes: int | None = None) -> tuple[PooledData, np.ndarray, np.ndarray]:
    """The pooled training rows with their prepared features and unit split.

    ``memory_bytes``: a budget for the feature matrix (default ``$LRL_TRAIN_MEMORY``, else
    none); a matrix larger than it is a memory-mapped file (see :func:`_matrix_storage`).

    Rows come from ``pipeline.training_examples``, outcomes from
    ``pipeline.valid_outcomes`` (of the experiments in the examples), features
    from ``pipeline.unit_features``. Returns
    ``(pooled, X, split)``: ``pooled`` (its raw ``features`` are empty,
    ``(n, 0)``), ``X (n, p)`` float32 prepared features in ``pooled.unit_ids``
    order and ``split (n,)`` int8 per unit (0 train, 1 validation, 2 test).
    """
    unit_ids = con.sql("SELECT unit_id FROM pipeline.unit_features").to_arrow_table()
    examples = read_table(con, "training_examples")
    # Pooled first: its temporaries (millions of outcome rows) are gone before the matrix arrives.
    pooled = build_pooled_data(ValidationResult(
        unit_features=arrow_to_pandas(unit_ids),
        experiments=arrow_to_pandas(con.sql(_TRAINED_OF["experiments"]).to_arrow_table()),
        exposures=examples[["unit_id", "experiment_id", "arm"]],
        outcomes=arrow_to_pandas(con.sql(_TRAINED_OF["outcomes"]).to_arrow_table()),
        quarantine=pd.DataFrame(columns=QUARANTINE_COLUMNS),
    ))
    del examples
    budget = memory_bytes if memory_bytes is not None else train_memory_bytes()
    return pooled, _prepared_matrix(con, unit_ids.column(0), budget), split_by_unit(pooled.unit_ids)


def _matrix_storage(shape: tuple[int, int], budget: int | None) -> np.ndarray:
    """An empty float32 matrix: in memory, or past ``budget`` bytes a memory-mapped file.

    The file (under ``$TMPDIR``) is unlinked as soon as it is mapped, so it
    lives exactly as long as the array, and the kernel pages it in and out:
    training gathers each batch's rows from it, and the process's own
    (anonymous) memory no longer holds the matrix. The values, and so every
    fit, are the same as in memory.
    """
    if budget is None or shape[0] * shape[1] * 4 <= budget:
        return np.empty(shape, dtype=np.float32)
    handle, path = tempfile.mkstemp(prefix="lrl-features-", suffix=".npy")
    os.close(handle)
    try:
        return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    finally:
        os.unlink(path)


def _prepared_matrix(con: duckdb.DuckDBPyConnection, unit_ids: pa.ChunkedArray,
                     budget: int | None = None) -> np.ndarray:
    """``pipeline.unit_features`` without ``unit_id`` as one float32 matrix, filled batch by batch.

    Streaming keeps memory at the matrix itself: an Arrow copy of the whole
    table would double it (and DuckDB's exported batches stay alive as long
    as any of their columns does, so nothing of a batch is kept). Prepared
    features have no NULLs; going through pandas would widen every float32
    column to float64. Each batch's ``unit_id`` must match ``unit_ids``, the
    order the caller pooled the rows in. Past ``budget`` bytes the matrix is a memory-mapped
    file (:func:`_matrix_storage`).
    """
    n = len(unit_ids)
    reader = con.sql("SELECT * FROM pipeline.unit_features").to_arrow_reader(PREPARED_BATCH_ROWS)
    X = _matrix_storage((n, len(reader.schema) - 1), budget)
    start = 0
    for batch in reader:
        expected = unit_ids.slice(start, batch.num_rows)
        if start + batch.num_rows > n or not pa.chunked_array([batch.column(0)]).equals(expected):
            raise RuntimeError("pipeline.unit_features changed while it was read: rerun the retrain")
        for j, column in enumerate(batch.columns[1:]):
            X[start:start + batch.num_rows, j] = column.to_numpy()
        start += batch.num_rows
    if start != n:
        raise RuntimeError("pipeline.unit_features changed while it was read: rerun the retrain")
    return X
