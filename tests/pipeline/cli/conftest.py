"""The ``lrl`` command against a small database in a temporary directory.

One fixture, shared by the tests of this package, trains on tiny synthetic
data with its last experiment held back (through the runner, to pass a short
epoch budget), then launches that experiment and runs ``lrl update``; the
tests read what it left behind.
"""
from __future__ import annotations

import contextlib
import io

import pytest

from lrl_core.artifacts import ArtifactStore
from lrl_core.synthetic import nonlinear_synthetic
from lrl_pipeline import cli, runner
from lrl_pipeline.cli.demo import _held_back
from lrl_pipeline.storage import write_raw_tables, LRLDatabase

from tests.helpers import FAST


@pytest.fixture(scope="package")
def cli_env(tmp_path_factory):
    """A database path and Dagster home in a temp dir, exported as the CLI reads them."""
    root = tmp_path_factory.mktemp("lrl_cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LRL_DUCKDB_PATH", str(root / "store.duckdb"))
        mp.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        mp.delenv("LRL_ARTIFACTS_DIR", raising=False)
        yield root


@pytest.fixture(scope="package")
def updated(cli_env):
    """Retrain without the newest experiment, launch it, run ``lrl update``; record what happened."""
    data = nonlinear_synthetic(n_experiments=4, n_per_arm=60, n_features=5, n_metrics=2,
                               n_arms_per_experiment=[2, 3, 2, 2], overlap=0.2, feature_missing_rate=0.05,
                               seed=3)
    tables = data.raw_tables()
    newest = data.experiments[-1]
    db = cli_env / "store.duckdb"
    write_raw_tables(db, _held_back(tables, newest))
    runner.run_retrain(db, cli_env / "artifacts", progress=lambda _: None, run_config=FAST)
    store = ArtifactStore(cli_env / "artifacts")
    version = store.current_version()

    write_raw_tables(db, tables)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = cli.main(["update"])
    first_versions = store.versions()
    with LRLDatabase(database=str(db)).connect(read_only=True) as con:
        heads = con.sql("SELECT experiment_id, arm, metric, extractor_version FROM pipeline.experiment_heads").df()
    return dict(data=data, tables=tables, newest=newest, db=db, version_before=version, update_code=code,
                update_output=printed.getvalue(), version_after=store.current_version(), versions=first_versions,
                heads=heads)
