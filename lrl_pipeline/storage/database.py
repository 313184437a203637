"""The DuckDB file as a Dagster resource: connections with a bounded wait for the file's lock."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable, Iterator

import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

__all__ = ["Connection", "LRLDatabase", "DatabaseBusy", "is_lock_error", "transaction"]

Connection = duckdb.DuckDBPyConnection
"""What :meth:`LRLDatabase.connect` yields; the storage package's functions take it."""


DEFAULT_CONFIG = {"memory_limit": "1GB"}
"""DuckDB's buffer pool (its own cache of table pages, in this process's memory). DuckDB's
default, 80% of RAM, let it cache whole tables beside the arrays the pipeline holds; the
pipeline's SQL is scans and appends, which need little."""


class DatabaseBusy(RuntimeError):
    """Another process held the DuckDB file for longer than we were willing to wait."""


def is_lock_error(error: BaseException) -> bool:
    """True for DuckDB's "another process holds the file" error (an ``IOException``)."""
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


class LRLDatabase(DuckDBResource):
    """The project's DuckDB file: ``dagster_duckdb``'s resource with bounded, lock-aware waits.

    ``database`` is the file (created on first write); ``connection_config``
    DuckDB's settings (default: a 1 GB buffer pool, see :data:`DEFAULT_CONFIG`).
    DuckDB admits one writing process at a time, and no reader while it writes.
    Inside Dagster the ``duckdb`` concurrency pool serialises our own writers;
    the retry below covers everyone else (a notebook, ``lrl score``) with
    bounded exponential backoff instead of failing on the first refusal.
    """

    connection_config: dict = Field(default_factory=lambda: dict(DEFAULT_CONFIG),
                                    description="DuckDB settings for every connection.")
    write_timeout_s: float = Field(
        default=300.0, description="How long a writer waits for another process to release the file."
    )
    read_timeout_s: float = Field(
        default=3.0, description="How long a read-only open (sensors, scoring) waits before giving up."
    )

    @contextlib.contextmanager
    def connect(self, read_only: bool = False, timeout_s: float | None = None,
                on_wait: Callable[[str], None] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file (retrying while another process holds its lock), yield, always close.

        Raises :class:`DatabaseBusy` when the lock is still held after
        ``timeout_s`` (default: ``read_timeout_s`` or ``write_timeout_s``), and
        ``FileNotFoundError`` for a read-only open of a file that does not exist.
        ``on_wait`` gets one line when the first attempt finds the file held, so a
        command says why it pauses instead of hanging silently.
        """
        path = Path(self.database)
        if read_only and not path.exists():
            raise FileNotFoundError(f"no database at {path}")
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        budget = timeout_s if timeout_s is not None else (self.read_timeout_s if read_only else self.write_timeout_s)
        deadline = time.monotonic() + budget
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(path), read_only=read_only, config=self.connection_config)
                break
            except duckdb.IOException as error:
                if not is_lock_error(error):
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DatabaseBusy(f"{path} is held by another process: {error}") from error
                if on_wait is not None and delay == 0.05:
                    on_wait(f"{path} is held by another process (another lrl command, the UI's run or a "
                            f"notebook); waiting up to {budget:.0f} s for it")
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 5.0)
        try:
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """``DuckDBResource``'s API: a writing connection, with this resource's waits."""
        with self.connect() as con:
            yield con


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """``BEGIN`` ... ``COMMIT``, or ``ROLLBACK`` when the block raises: all of its writes or none."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
