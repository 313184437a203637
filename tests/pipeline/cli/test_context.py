"""The database every command needs (lrl_pipeline/cli/context.py): a missing one is one line that says what to do."""
from __future__ import annotations

import pytest

from lrl_pipeline import cli


@pytest.mark.parametrize("command", [["retrain"], ["update"], ["report"],
                                     ["score", "--units", "u.parquet", "--out", "o.parquet"]])
def test_missing_database_is_one_line_that_says_what_to_do(cli_env, tmp_path, capsys, command):
    missing = tmp_path / "nowhere" / "x.duckdb"
    assert cli.main([*command, "--db", str(missing)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert f"no database at {missing}" in err and "lrl demo" in err
    assert not missing.exists()
