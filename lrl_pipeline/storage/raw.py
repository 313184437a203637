"""The four raw input tables (schema ``raw``): read them for validation, write them for demos and tests.

Reads go through Arrow into Arrow-backed pandas dtypes, so a SQL NULL (a
missing feature value: imputed) and a stored NaN (a non-finite value: bad
input) stay distinct all the way into :func:`lrl_core.data.validate_raw`.
"""
from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from lrl_core.data.validation import REQUIRED_COLUMNS
from lrl_core.memory import trim_heap
from lrl_pipeline.storage.database import LRLDatabase, transaction

__all__ = ["RAW_TABLES", "read_raw_tables", "read_raw_table", "read_experiment_tables", "count_raw_rows",
           "write_raw_tables", "table_exists", "arrow_to_pandas", "experiment_ids", "raw_arms",
           "attach_parquet_sources", "drop_cached_pages"]

RAW_TABLES = ("unit_features", "experiments", "exposures", "outcomes")
"""Table names in schema ``raw``, in the order ``validate_raw`` takes them."""
OPTIONAL_RAW_TABLES = ("policy_objectives",)
"""Raw tables the platform may keep: a policy's metric weights and guardrails per experiment."""

# Fixed SQL per table: names never come from data, so nothing is formatted into SQL.
_SELECT = {name: f"SELECT * FROM raw.{name}" for name in RAW_TABLES}
_COUNT = {name: f"SELECT count(*) FROM raw.{name}" for name in RAW_TABLES}
_REPLACE = {name: f"CREATE OR REPLACE TABLE raw.{name} AS SELECT * FROM _lrl_incoming"
            for name in RAW_TABLES + OPTIONAL_RAW_TABLES}
# The rows of some experiments (ids passed as one VARCHAR[] parameter), and their units' features.
_IDS = "SELECT unnest(?::VARCHAR[])"
_SUBSET = {
    "experiments": f"SELECT * FROM raw.experiments WHERE CAST(experiment_id AS VARCHAR) IN ({_IDS})",
    "exposures": f"SELECT * FROM raw.exposures WHERE CAST(experiment_id AS VARCHAR) IN ({_IDS})",
    "outcomes": f"SELECT * FROM raw.outcomes WHERE CAST(experiment_id AS VARCHAR) IN ({_IDS})",
    "unit_features": "SELECT * FROM raw.unit_features WHERE unit_id IN ("
    f"SELECT unit_id FROM raw.exposures WHERE CAST(experiment_id AS VARCHAR) IN ({_IDS}) "
    f"UNION SELECT unit_id FROM raw.outcomes WHERE CAST(experiment_id AS VARCHAR) IN ({_IDS}))",
}
# Scan order, as rowid gives for a table; a view (over Parquet files, say) has no rowid.
_EXPERIMENT_IDS = ("SELECT e FROM (SELECT CAST(experiment_id AS VARCHAR) AS e, row_number() OVER () AS i "
                   "FROM raw.experiments) WHERE e IS NOT NULL ORDER BY i")
_PARQUET_SOURCE = "SELECT * FROM read_parquet({files}, union_by_name = true)"
_COLUMNS = "SELECT column_name FROM information_schema.columns WHERE table_schema = 'raw' AND table_name = ?"
_ARMS = ("SELECT DISTINCT CAST(experiment_id AS VARCHAR) AS experiment_id, CAST(arm AS VARCHAR) AS arm "
         "FROM raw.exposures WHERE experiment_id IS NOT NULL AND arm IS NOT NULL")
_RAW_NAME = {name: name for name in RAW_TABLES}  # names from the contract only, never from input
_APPEND = {name: f"INSERT INTO raw.{name} BY NAME SELECT * FROM _lrl_incoming"
           for name in RAW_TABLES + OPTIONAL_RAW_TABLES}


def _arrow_backed(arrow_type: pa.DataType):
    """Arrow-backed pandas dtype for numbers, strings and booleans (None: pyarrow's default conversion).

    Arrow-backed columns keep the database's width (a FLOAT stays 4 bytes, an
    id stays Arrow string data rather than one Python object per row) and
    tell NULL (``pd.NA``) from a stored NaN. A numpy-backed nullable Float64
    takes 9 bytes (value and mask) per 4-byte FLOAT; at 5.3M units x 142
    features that is 6.8 GB for a 3 GB table.
    """
    if (pa.types.is_floating(arrow_type) or pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type)
            or pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)):
        return pd.ArrowDtype(arrow_type)
    return None


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow table -> DataFrame with Arrow-backed dtypes (NULL is ``pd.NA``, NaN stays NaN), without copying."""
    return table.to_pandas(types_mapper=_arrow_backed)


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Whether ``schema.table`` exists (names passed as parameters)."""
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchall()
    return bool(found[0][0])


_BINARY_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


EVICTION_LIMIT = "64MiB"
"""DuckDB's memory limit for the moment of an eviction: not zero, because anything else DuckDB
allocates in that moment fails (a retrain once failed on "failed to allocate data of size 2.0
KiB (0 bytes/0 bytes used)" in a test run beside another; a thread querying the same database
while the limit was zero failed once in 300 evictions here, never in 900 at 64 MiB). 64 MiB left cached
is nothing beside the 0.9 GB evicted."""


def drop_cached_pages(con: duckdb.DuckDBPyConnection) -> None:
    """Evict the table pages DuckDB keeps cached after a scan, keeping its memory limit, and hand
    the freed heap memory back to the OS (see :func:`lrl_core.memory.trim_heap`).

    DuckDB's buffer pool holds the pages a scan read until its ``memory_limit``
    (1 GB in :data:`~lrl_pipeline.storage.database.DEFAULT_CONFIG`) needs the room: after
    reading ``raw.unit_features`` that is 0.9 GB beside the frame just read, for
    nothing (the frame has the values). Lowering the limit to :data:`EVICTION_LIMIT` evicts
    them; the limit is then set back, rounded up to a whole KiB, as DuckDB shows it. DuckDB
    refuses the low limit when more pages are pinned, after evicting the others. Safe inside a
    transaction. A limit it cannot show exactly in KiB (none, or PiB) leaves the cache alone.
    """
    shown = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    number, _, unit = str(shown).partition(" ")
    if unit not in _BINARY_UNITS:
        return
    kib = max(1, math.ceil(float(number) * _BINARY_UNITS[unit] / 1024))
    # A cursor of its own: the refusal (an error) then aborts nothing of ``con``'s open transaction.
    cursor = con.cursor()
    try:
        cursor.execute(f"SET memory_limit='{EVICTION_LIMIT}'")
    except duckdb.OutOfMemoryException:
        pass  # what is pinned stays (an open transaction's pages, say); the rest was evicted
    finally:
        cursor.execute(f"SET memory_limit='{kib}KiB'")
        cursor.close()
    trim_heap()


def read_raw_table(con: duckdb.DuckDBPyConnection, name: str) -> pd.DataFrame:
    """One raw table as an Arrow-backed DataFrame (NULL is ``pd.NA``); ``name`` is one of :data:`RAW_TABLES`.

    DuckDB's cached pages of the table are evicted after the read (:func:`drop_cached_pages`).
    """
    if name not in _SELECT:
        raise ValueError(f"unknown raw table {name!r}; expected one of {RAW_TABLES}")
    if not table_exists(con, "raw", name):
        raise LookupError(f"table raw.{name} does not exist: load the raw tables first (e.g. `lrl demo`)")
    frame = arrow_to_pandas(con.sql(_SELECT[name]).to_arrow_table())
    drop_cached_pages(con)
    return frame


def experiment_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """``raw.experiments``' ids in row order, as strings (repeats kept; ``LookupError`` without the table)."""
    if not table_exists(con, "raw", "experiments"):
        raise LookupError("raw.experiments does not exist yet")
    return [row[0] for row in con.execute(_EXPERIMENT_IDS).fetchall()]


def raw_arms(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every (experiment_id, arm) of ``raw.exposures``, as strings (empty without the table)."""
    if not table_exists(con, "raw", "exposures"):
        return pd.DataFrame(columns=["experiment_id", "arm"])
    return con.sql(_ARMS).df()


def attach_parquet_sources(con: duckdb.DuckDBPyConnection, files: dict[str, list[str]],
                           copy: bool = False) -> dict[str, int]:
    """Make ``raw.<name>`` a view over the Parquet ``files`` of each table (or, with ``copy``, a
    table holding their rows), in one transaction; rows per table. The files are only read.

    ``ValueError`` naming the table when a raw name already holds a table (a view is replaced),
    or when the files lack a contract column.
    """
    unknown = set(files) - set(RAW_TABLES)
    if unknown:
        raise ValueError(f"unknown raw tables {sorted(unknown)}; expected some of {RAW_TABLES}")
    counts = {}
    with transaction(con):
        con.execute("CREATE SCHEMA IF NOT EXISTS raw")
        for name, paths in files.items():
            if table_exists(con, "raw", name) and _kind(con, name) == "BASE TABLE":
                raise ValueError(f"raw.{name} already exists as a table in this database: use a new --db")
            # A view's definition cannot take parameters, so the file names go in as SQL string literals.
            literal = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"
            kind = "TABLE" if copy else "VIEW"
            con.execute(f"DROP VIEW IF EXISTS raw.{_RAW_NAME[name]}")
            con.execute(f"CREATE {kind} raw.{_RAW_NAME[name]} AS " + _PARQUET_SOURCE.format(files=literal))
            columns = {row[0] for row in con.execute(_COLUMNS, [name]).fetchall()}
            missing = [c for c in REQUIRED_COLUMNS[name] if c not in columns]
            if missing:
                raise ValueError(f"raw.{name} ({', '.join(map(str, paths[:3]))}) lacks column(s) "
                                 f"{', '.join(missing)} that the contract requires")
            counts[name] = con.execute(_COUNT[name]).fetchall()[0][0]
    return counts


def _kind(con: duckdb.DuckDBPyConnection, name: str) -> str:
    found = con.execute("SELECT table_type FROM information_schema.tables WHERE table_schema = 'raw' "
                        "AND table_name = ?", [name]).fetchall()
    return found[0][0] if found else ""


def count_raw_rows(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows in each existing raw table."""
    return {name: con.execute(_COUNT[name]).fetchall()[0][0] for name in RAW_TABLES if table_exists(con, "raw", name)}


def read_raw_tables(con: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    """All four raw tables, keyed as :data:`RAW_TABLES`."""
    return {name: read_raw_table(con, name) for name in RAW_TABLES}


def read_experiment_tables(con: duckdb.DuckDBPyConnection, experiment_ids: list[str]) -> dict[str, pd.DataFrame]:
    """The raw rows of some experiments and the features of their units, keyed as :data:`RAW_TABLES`.

    Validating this subset gives the same verdicts on its rows as validating
    everything: every rule looks at a unit, an experiment or a column type,
    never across experiments.
    """
    for name in RAW_TABLES:
        if not table_exists(con, "raw", name):
            raise LookupError(f"table raw.{name} does not exist: load the raw tables first (e.g. `lrl demo`)")
    # The subset is selected by joins on unit_id, which DuckDB refuses across types with a binder
    # error; the full validation's message says what is wrong instead.
    types = {name: str(dict(zip(con.table(f"raw.{name}").columns, con.table(f"raw.{name}").types))["unit_id"])
             for name in RAW_TABLES if name != "experiments"}
    if len(set(types.values())) > 1:
        listed = ", ".join(f"{name}: {kind}" for name, kind in types.items())
        raise ValueError(f"unit_id must have the same type in every table, got {listed}")
    ids = [str(e) for e in experiment_ids]
    return {
        name: arrow_to_pandas(con.sql(_SUBSET[name], params=[ids] * _SUBSET[name].count("?")).to_arrow_table())
        for name in RAW_TABLES
    }


def write_raw_tables(db: str | Path, tables: dict[str, pd.DataFrame], replace: bool = True) -> dict[str, int]:
    """Write raw tables in one transaction (the platform's job; used by ``lrl demo`` and tests).

    ``tables``: some of :data:`RAW_TABLES` and :data:`OPTIONAL_RAW_TABLES` -> DataFrame. ``replace=True``
    replaces each given table; ``replace=False`` appends rows by column name
    (creating a table that does not exist yet). Returns rows written per table.
    """
    unknown = set(tables) - set(RAW_TABLES + OPTIONAL_RAW_TABLES)
    if unknown:
        raise ValueError(f"unknown raw tables {sorted(unknown)}; expected some of {RAW_TABLES + OPTIONAL_RAW_TABLES}")
    written = {}
    with LRLDatabase(database=str(Path(db).resolve())).connect() as con:
        with transaction(con):
            con.execute("CREATE SCHEMA IF NOT EXISTS raw")
            for name, frame in tables.items():
                incoming = pa.Table.from_pandas(frame, preserve_index=False)
                con.register("_lrl_incoming", incoming)
                append = not replace and table_exists(con, "raw", name)
                con.execute(_APPEND[name] if append else _REPLACE[name])
                con.unregister("_lrl_incoming")
                written[name] = incoming.num_rows
    return written
