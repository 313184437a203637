"""``lrl ui``: the Dagster UI over the project's workspace, and the address it listens on."""
from __future__ import annotations

import argparse
import os
import sys

from lrl_pipeline import paths
from lrl_pipeline.cli.errors import CLIError

UI_HOST = "127.0.0.1"
UI_PORT = 3000


def cmd_ui(args: argparse.Namespace) -> None:
    """Replace this process with ``dagster dev`` over the project's workspace."""
    db = paths.db_path(args.db)
    workspace = paths.project_root() / "workspace.yaml"
    if not workspace.is_file():
        raise CLIError(f"no workspace.yaml in {workspace.parent}: `lrl ui` needs the project checkout")
    # The code server and run workers resolve the database from the
    # environment: an absolute path keeps them on this shell's file.
    os.environ["LRL_DUCKDB_PATH"] = str(db)
    print(f"Dagster UI for {db} at http://{UI_HOST}:{UI_PORT} (Ctrl-C stops it)", flush=True)
    # workspace.yaml's working_directory is relative to the current directory.
    os.chdir(workspace.parent)
    os.execv(sys.executable, [sys.executable, "-m", "dagster", "dev", "-w", str(workspace),
                              "-h", UI_HOST, "-p", str(UI_PORT)])
