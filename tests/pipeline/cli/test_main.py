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


def _run_lrl(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    lrl = Path(sys.executable).parent / "lrl"
    return subprocess.run([str(lrl), *args], cwd=cwd, env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def test_a_normal_run_prints_no_dagster_notice_and_a_type_mismatch_fails_in_one_line(cli_env, updated, tmp_path):
    """Issue 18: in a fresh Dagster home, `lrl update` runs a job with no instance notice or telemetry
    banner; `unit_id` VARCHAR in exposures but BIGINT in features ends in one line, not a BinderException."""
    import shutil

    import duckdb

    def fresh_copy(name: str) -> Path:
        """The updated database with its newest experiment not yet validated, so `lrl update` fits it."""
        db = tmp_path / name / "store.duckdb"
        db.parent.mkdir()
        shutil.copy(updated["db"], db)
        shutil.copytree(cli_env / "artifacts", db.parent / "artifacts")
        with duckdb.connect(str(db)) as con:
            con.execute("DELETE FROM pipeline.valid_experiments WHERE experiment_id = ?", [updated["newest"]])
            con.execute("DELETE FROM pipeline.head_status WHERE experiment_id = ?", [updated["newest"]])
        return db

    home = tmp_path / "fresh_home"
    done = _run_lrl(["update", "--db", str(fresh_copy("good"))], tmp_path, DAGSTER_HOME=str(home))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "nothing to do" not in output and updated["newest"] in output
    for noise in ("No dagster instance configuration file", "Telemetry", "telemetry", "Traceback", "DEBUG"):
        assert noise not in output, noise

    db = fresh_copy("mismatch")
    with duckdb.connect(str(db)) as con:
        con.execute("ALTER TABLE raw.exposures ALTER unit_id TYPE VARCHAR")
    done = _run_lrl(["update", "--db", str(db)], tmp_path, DAGSTER_HOME=str(home))
    assert done.returncode == 1 and "Traceback" not in done.stderr and "Binder" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "unit_id" in lines[0] and "same type" in lines[0], done.stderr


def test_output_cut_short_by_its_reader_ends_quietly(cli_env, updated, monkeypatch):
    """`lrl status | head -1`: the reader closes the pipe early; no BrokenPipeError traceback, status 0."""
    import io

    read_end, write_end = os.pipe()

    class ClosedPipe(io.TextIOBase):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self):
            return write_end

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    try:
        assert cli.main(["status"]) == 0
    finally:
        os.close(read_end)
        os.close(write_end)
