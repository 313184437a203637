"""What the commands reach for: the database, which must exist, and the runner, loaded on use."""
from __future__ import annotations

from pathlib import Path

from lrl_pipeline import paths
from lrl_pipeline.cli.errors import CLIError


def existing_db(explicit: str | None) -> Path:
    """The database path, which must exist: every command but ``demo``, ``init`` and ``ui`` reads it."""
    db = paths.db_path(explicit)
    if not db.is_file():
        raise CLIError(f"no database at {db}: run `lrl demo` or point --db / LRL_DUCKDB_PATH at your data")
    return db


def load_runner():
    """The ``lrl_pipeline.runner`` module, imported on first use."""
    # Imported on use: loading Dagster takes seconds, and `lrl --help` or a
    # missing-database error should not wait for it.
    from lrl_pipeline import runner

    return runner
