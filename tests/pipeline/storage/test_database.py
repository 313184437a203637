"""The DuckDB resource against real files: lock waits and missing files (lrl_pipeline/storage/database.py)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import duckdb
import pytest

from lrl_pipeline.storage import DatabaseBusy, LRLDatabase


def hold_lock(db, seconds: float) -> subprocess.Popen:
    """Another process that holds the database file for ``seconds``."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, time
        con = duckdb.connect({str(db)!r})
        print("locked", flush=True)
        time.sleep({seconds})
        con.close()
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_connect_waits_for_another_writer_then_gives_up(tmp_path):
    db = tmp_path / "x.duckdb"
    duckdb.connect(str(db)).close()
    database = LRLDatabase(database=str(db), read_timeout_s=0.3)
    holder = hold_lock(db, 1.5)
    try:
        with pytest.raises(DatabaseBusy):
            with database.connect(read_only=True):
                pass
        start, said = time.monotonic(), []
        # retried with backoff until the holder exits, saying once why it waits
        with database.connect(timeout_s=30, on_wait=said.append) as con:
            assert con.execute("SELECT 42").fetchall() == [(42,)]
        assert time.monotonic() - start > 0.2
        assert len(said) == 1 and "held by another process" in said[0] and "waiting up to 30 s" in said[0]
    finally:
        holder.kill()
        holder.wait()


def test_read_only_connect_of_a_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        with LRLDatabase(database=str(tmp_path / "none.duckdb")).connect(read_only=True):
            pass
