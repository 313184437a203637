"""Resources: one class per outside thing the assets touch (the DuckDB file, the model store)."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb
from pydantic import Field

from lrl_core.artifacts import ArtifactStore
from lrl_core.baselines import TLearners


__all__ = ["LRLDatabase", "ArtifactStoreResource", "DatabaseBusy", "is_lock_error"]


class DatabaseBusy(RuntimeError):
    """Another process held the DuckDB file for longer than we were willing to wait."""


def is_lock_error(error: BaseException) -> bool:
    """True for DuckDB's "another process holds the file" error (an ``IOException``)."""
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


class LRLDatabase(dg.ConfigurableResource):
    """The project's DuckDB file.

    DuckDB admits one writing process at a time, and no reader while it writes.
    Inside Dagster the ``duckdb`` concurrency pool serialises our own writers;
    the retry below covers everyone else (a notebook, ``lrl score``) with
    bounded exponential backoff instead of failing on the first refusal.
    """

    path: str = Field(description="DuckDB database file; created on first write.")
    write_timeout_s: float = Field(
        default=300.0, description="How long a writer waits for another process to release the file."
    )
    read_timeout_s: float = Field(
        default=3.0, description="How long a read-only open (sensors, scoring) waits before giving up."
    )
    memory_limit: str = Field(
        default="1GB",
        description="DuckDB's buffer pool (its own cache of table pages, in this process's memory). "
                    "DuckDB's default, 80% of RAM, let it cache whole tables beside the arrays the "
                    "pipeline holds; the pipeline's SQL is scans and appends, which need little.",
    )

    @contextlib.contextmanager
    def connect(self, read_only: bool = False, timeout_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file (retrying while another process holds its lock), yield, always close.

        Raises :class:`DatabaseBusy` when the lock is still held after
        ``timeout_s`` (default: ``read_timeout_s`` or ``write_timeout_s``), and
        ``FileNotFoundError`` for a read-only open of a file that does not exist.
        """
        path = Path(self.path)
        if read_only and not path.exists():
            raise FileNotFoundError(f"no database at {path}")
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        budget = timeout_s if timeout_s is not None else (self.read_timeout_s if read_only else self.write_timeout_s)
        deadline = time.monotonic() + budget
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(path), read_only=read_only, config={"memory_limit": self.memory_limit})
                break
            except duckdb.IOException as error:
                if not is_lock_error(error):
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DatabaseBusy(f"{path} is held by another process: {error}") from error
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 5.0)
        try:
            yield con
        finally:
            con.close()


class ArtifactStoreResource(dg.ConfigurableResource):
    """The versioned model store (extractor weights, feature transform, a ``CURRENT`` pointer)."""

    root: str = Field(description="Directory holding versions/ and CURRENT.")

    def store(self) -> ArtifactStore:
        """A fresh :class:`lrl_core.artifacts.ArtifactStore` over ``root`` (resources are frozen)."""
        return ArtifactStore(self.root)

    def baseline_store(self) -> ArtifactStore:
        """The T-learner baselines of each retrain, under ``root/t_learners``."""
        return ArtifactStore(Path(self.root) / "t_learners", learner_type=TLearners)
