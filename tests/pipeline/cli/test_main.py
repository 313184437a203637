"""The parser and the installed entry point (lrl_pipeline/cli/main.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lrl_pipeline import cli


def test_installed_command_fails_cleanly_from_another_directory(cli_env, tmp_path):
    lrl = Path(sys.executable).parent / "lrl"
    environ = dict(os.environ, LRL_DUCKDB_PATH=str(tmp_path / "absent.duckdb"))
    done = subprocess.run([str(lrl), "update"], cwd=tmp_path, env=environ, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"lrl update: no database at {tmp_path / 'absent.duckdb'}: run `lrl demo` "
                                   "or point --db / LRL_DUCKDB_PATH at your data")


def test_every_command_takes_db():
    parser = cli.build_parser()
    for command in ["demo", "retrain", "update", "report", "ui"]:
        assert parser.parse_args([command, "--db", "a.duckdb"]).db == "a.duckdb"
    args = parser.parse_args(["score", "--db", "a.duckdb", "--units", "u.parquet", "--out", "o.parquet"])
    assert (args.db, args.units, args.out) == ("a.duckdb", "u.parquet", "o.parquet")
