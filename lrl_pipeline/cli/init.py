"""``lrl init --from-parquet DIR``: the four raw tables as views over the Parquet files where users keep them."""
from __future__ import annotations

import argparse
from pathlib import Path

from lrl_pipeline import paths
from lrl_pipeline.cli.errors import CLIError

RAW_NAMES = ("unit_features", "experiments", "exposures", "outcomes")


def parquet_files(folder: Path, name: str) -> list[Path]:
    """A raw table's files in ``folder``: ``<name>.parquet``, ``<name>-*.parquet`` / ``<name>_*.parquet``
    (a glob of parts), or every ``.parquet`` file under a ``<name>/`` folder; sorted."""
    found = [folder / f"{name}.parquet"] if (folder / f"{name}.parquet").is_file() else []
    for pattern in (f"{name}-*.parquet", f"{name}_*.parquet"):
        found += sorted(p for p in folder.glob(pattern) if p.is_file())
    if (folder / name).is_dir():
        found += sorted(p for p in (folder / name).rglob("*.parquet") if p.is_file())
    return found


def cmd_init(args: argparse.Namespace) -> None:
    """Create ``raw.*`` as views over (or, with ``--copy``, tables loaded from) a folder of Parquet files."""
    from lrl_pipeline.storage import DatabaseBusy, LRLDatabase, attach_parquet_sources

    folder = Path(args.from_parquet).expanduser().resolve()
    if not folder.is_dir():
        raise CLIError(f"--from-parquet {folder} is not a folder")
    files = {name: parquet_files(folder, name) for name in RAW_NAMES}
    missing = [name for name, found in files.items() if not found]
    if missing:
        raise CLIError(f"no Parquet files for {', '.join(missing)} in {folder} (expected <table>.parquet, "
                       "<table>-*.parquet or a <table>/ folder of .parquet files)")
    db = paths.db_path(args.db)
    try:
        with LRLDatabase(database=str(db)).connect(timeout_s=30.0) as con:
            counts = attach_parquet_sources(con, {k: [str(p) for p in v] for k, v in files.items()}, copy=args.copy)
    except (ValueError, DatabaseBusy) as error:
        raise CLIError(str(error)) from error
    except Exception as error:  # DuckDB's own: an unreadable or non-Parquet file
        raise CLIError(f"cannot read the Parquet files: {str(error).splitlines()[0]}") from error
    kind = "tables loaded from" if args.copy else "views over"
    for name in RAW_NAMES:
        print(f"raw.{name}: {kind} {len(files[name])} file(s), {counts[name]:,} rows")
    print(f"Database: {db}. Next: `lrl retrain --db {db}`")
