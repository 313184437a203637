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
from lrl_pipeline.storage.raw import arrow_to_pandas, drop_cached_pages
from lrl_pipeline.storage.tables import read_table

__all__ = ["load_validated", "load_pooled"]

PREPARED_BATCH_ROWS = 122_880
"""Rows of the prepared matrix read by one query: one DuckDB row group (its default size), so no
compressed segment is read twice; at most :data:`PREPARED_BATCH_BYTES` of float32 (see
:func:`_prepared_matrix`)."""
PREPARED_BATCH_BYTES = 128 * 2**20
"""The most float32 bytes of the prepared matrix one query reads (wide tables: fewer rows)."""
_PREPARED_ROWIDS = "SELECT min(rowid), max(rowid) FROM pipeline.unit_features"
_PREPARED_RANGE = "SELECT * FROM pipeline.unit_features WHERE rowid >= $first AND rowid < $end"

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
    examples = read_table(con, "training_examples")[["unit_id", "experiment_id", "arm"]]
    valid = ValidationResult(
        unit_features=arrow_to_pandas(unit_ids),
        experiments=arrow_to_pandas(con.sql(_TRAINED_OF["experiments"]).to_arrow_table()),
        exposures=examples,
        outcomes=arrow_to_pandas(con.sql(_TRAINED_OF["outcomes"]).to_arrow_table()),
        quarantine=pd.DataFrame(columns=QUARANTINE_COLUMNS),
    )
    del examples
    drop_cached_pages(con)  # the pages of the tables just read: the frames hold their values
    # Pooled first: its temporaries (millions of outcome rows) are gone before the matrix arrives,
    # and so are the split's (a str per unit). Arrow's allocator keeps the pages of the frames and
    # of its hash tables for reuse, the C heap those of DuckDB's results: both are handed back.
    pooled = build_pooled_data(valid)
    del valid
    split = split_by_unit(pooled.unit_ids)
    pa.default_memory_pool().release_unused()
    drop_cached_pages(con)
    budget = memory_bytes if memory_bytes is not None else train_memory_bytes()
    return pooled, _prepared_matrix(con, unit_ids.column(0), budget), split


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

    The table is read in rowid ranges (:data:`PREPARED_BATCH_ROWS`), one query each, in the
    order one scan gives (rowids may have gaps). DuckDB keeps every page a scan reads cached up
    to its memory limit (1 GB beside the matrix, at any scale), so the pages are evicted after
    each range (:func:`~lrl_pipeline.storage.raw.drop_cached_pages`); that cannot be done during
    one streamed scan, whose worker threads may be pinning pages at that moment.
    """
    n = len(unit_ids)
    first, last = con.execute(_PREPARED_ROWIDS).fetchall()[0]
    p = len(con.sql("SELECT * FROM pipeline.unit_features").columns) - 1
    X = _matrix_storage((n, p), budget)
    rows = max(1, min(PREPARED_BATCH_ROWS, PREPARED_BATCH_BYTES // (4 * max(p, 1))))
    start = 0
    for lower in range(0 if first is None else first, 0 if last is None else last + 1, rows):
        start = _fill_range(con.sql(_PREPARED_RANGE, params={"first": lower, "end": lower + rows})
                            .to_arrow_reader(rows), unit_ids, X, start)
        drop_cached_pages(con)
    if start != n:
        raise RuntimeError("pipeline.unit_features changed while it was read: rerun the retrain")
    return X


def _fill_range(reader: pa.RecordBatchReader, unit_ids: pa.ChunkedArray, X: np.ndarray, start: int) -> int:
    """Copy the batches of ``reader`` into ``X`` from row ``start`` on; the next row. Nothing of them
    outlives the call."""
    for batch in reader:
        expected = unit_ids.slice(start, batch.num_rows)
        if start + batch.num_rows > len(unit_ids) or not pa.chunked_array([batch.column(0)]).equals(expected):
            raise RuntimeError("pipeline.unit_features changed while it was read: rerun the retrain")
        for j, column in enumerate(batch.columns[1:]):
            X[start:start + batch.num_rows, j] = column.to_numpy()
        start += batch.num_rows
    return start
