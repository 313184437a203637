"""Where the pipeline keeps its state: the DuckDB file, model artifacts, the Dagster instance.

Every command works from any working directory, so each location is
resolved once, here: an explicit argument, else an environment variable,
else a default (see CONTRACT.md, "Storage").
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["db_path", "artifacts_dir", "command_wait_s", "segment_by", "train_memory_bytes", "train_workers",
           "project_root", "dagster_home", "ensure_dagster_home"]

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def db_path(explicit: str | os.PathLike | None = None) -> Path:
    """The DuckDB database file: ``explicit``, else ``$LRL_DUCKDB_PATH``, else ``./data/lrl.duckdb``.

    Returned absolute, so a path resolved in one directory still names the same
    file after the process (or a Dagster run worker) changes directory.
    """
    chosen = explicit if explicit is not None else os.environ.get("LRL_DUCKDB_PATH")
    path = Path(chosen) if chosen else Path.cwd() / "data" / "lrl.duckdb"
    return path.expanduser().resolve()


def artifacts_dir(db: str | os.PathLike) -> Path:
    """Model artifacts: ``$LRL_ARTIFACTS_DIR``, else ``artifacts/`` next to the database file."""
    chosen = os.environ.get("LRL_ARTIFACTS_DIR")
    path = Path(chosen) if chosen else Path(db).expanduser().resolve().parent / "artifacts"
    return path.expanduser().resolve()


def command_wait_s() -> float:
    """How long a command waits for a database another process holds: ``$LRL_DB_WAIT_S``, else 60 s."""
    chosen = os.environ.get("LRL_DB_WAIT_S")
    try:
        return float(chosen) if chosen else 60.0
    except ValueError:
        raise ValueError(f"LRL_DB_WAIT_S must be a number of seconds, not {chosen!r}") from None


def segment_by() -> str:
    """The unit feature column whose levels segment the units for ``segment_effects``:
    ``$LRL_SEGMENT_BY``, else empty (none)."""
    return os.environ.get("LRL_SEGMENT_BY", "").strip()


def train_memory_bytes() -> int | None:
    """How much memory the prepared feature matrix may take: ``$LRL_TRAIN_MEMORY`` (e.g. ``8GB``,
    ``500MB``, bytes), else None (no budget: the matrix is held in memory)."""
    chosen = os.environ.get("LRL_TRAIN_MEMORY", "").strip().upper().replace(" ", "")
    if not chosen:
        return None
    number = chosen.rstrip("KMGTB")
    unit = chosen[len(number):]
    try:
        value = float(number) * _UNITS[unit]
    except (KeyError, ValueError):
        raise ValueError(f"LRL_TRAIN_MEMORY must be a size such as 8GB or 500MB, not {chosen!r}") from None
    return int(value)


def train_workers() -> int:
    """Data-parallel ranks of the LR-learner's fit: ``$LRL_TRAIN_WORKERS``, else 1 (in process)."""
    chosen = os.environ.get("LRL_TRAIN_WORKERS", "").strip()
    try:
        workers = int(chosen) if chosen else 1
    except ValueError:
        raise ValueError(f"LRL_TRAIN_WORKERS must be a whole number of ranks, not {chosen!r}") from None
    if workers < 1:
        raise ValueError(f"LRL_TRAIN_WORKERS must be at least 1, not {workers}")
    return workers


def project_root() -> Path:
    """The directory holding ``lrl_pipeline/`` (the repository root in a source checkout)."""
    return Path(__file__).resolve().parents[1]


def dagster_home() -> Path:
    """The Dagster instance directory: ``$DAGSTER_HOME``, else the project's ``dagster_home/``."""
    chosen = os.environ.get("DAGSTER_HOME")
    return Path(chosen).expanduser().resolve() if chosen else project_root() / "dagster_home"


def ensure_dagster_home() -> Path:
    """Create :func:`dagster_home` if needed and export it as ``$DAGSTER_HOME``; returns it.

    Runs started from the command line then land in the same instance the UI
    reads, so they show there.
    """
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    settings, project = home / "dagster.yaml", project_root() / "dagster_home" / "dagster.yaml"
    if not settings.exists() and project.is_file():
        # A home of the user's own gets the project's settings: without them every command prints
        # Dagster's no-configuration notice and telemetry banner, and the one-writer pool that
        # keeps DuckDB runs from colliding is missing.
        shutil.copyfile(project, settings)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
