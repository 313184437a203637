"""Where the database, the artifacts and the Dagster home are (lrl_pipeline/paths.py)."""
from __future__ import annotations

from lrl_pipeline import paths


def test_paths_prefer_argument_then_environment_then_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LRL_DUCKDB_PATH", raising=False)
    monkeypatch.delenv("LRL_ARTIFACTS_DIR", raising=False)
    assert paths.db_path() == tmp_path / "data" / "lrl.duckdb"
    assert paths.artifacts_dir(paths.db_path()) == tmp_path / "data" / "artifacts"
    monkeypatch.setenv("LRL_DUCKDB_PATH", str(tmp_path / "env.duckdb"))
    monkeypatch.setenv("LRL_ARTIFACTS_DIR", str(tmp_path / "models"))
    assert paths.db_path() == tmp_path / "env.duckdb"
    assert paths.db_path("rel/x.duckdb") == tmp_path / "rel" / "x.duckdb"
    assert paths.artifacts_dir(tmp_path / "env.duckdb") == tmp_path / "models"


def test_dagster_home_defaults_to_the_project(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert paths.dagster_home() == paths.project_root() / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert paths.ensure_dagster_home() == tmp_path / "home" and (tmp_path / "home").is_dir()
    # A fresh home gets the project's settings (no banner, the one-writer pool); an existing one is kept.
    written = (tmp_path / "home" / "dagster.yaml").read_text()
    assert written == (paths.project_root() / "dagster_home" / "dagster.yaml").read_text()
    (tmp_path / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    paths.ensure_dagster_home()
    assert (tmp_path / "home" / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
