"""Shared fixtures: a tiny synthetic data set in a real DuckDB file, retrained once per session.

Four experiments (two arms, 60 units each), six features, two metrics; a
fifth experiment is held back as the "newly launched" one. The retrained
database and artifacts are copied per test, with a fresh Dagster instance
that knows the four partitions, so tests can change them freely. Used by
tests/pipeline and tests/guarantees.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from lrl_core.synthetic import nonlinear_synthetic
from lrl_pipeline.partitions import EXPERIMENT_PARTITIONS
from lrl_pipeline.storage import write_raw_tables
from lrl_pipeline.runner import run_retrain

from tests.helpers import FAST


def tiny_tables() -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], str]:
    """(raw tables without the newest experiment, the newest experiment's rows, its id)."""
    data = nonlinear_synthetic(n_experiments=5, n_per_arm=60, n_features=6, n_metrics=2, d=3,
                               feature_missing_rate=0.05, seed=3)
    tables = data.raw_tables()
    newest = data.experiments[-1]
    old = {name: frame[frame["experiment_id"] != newest] if "experiment_id" in frame else frame
           for name, frame in tables.items()}
    new = {name: frame[frame["experiment_id"] == newest] for name, frame in tables.items() if name != "unit_features"}
    return old, new, newest


@pytest.fixture
def tiny_raw() -> dict[str, pd.DataFrame]:
    """The four-experiment raw tables."""
    return tiny_tables()[0]


@pytest.fixture
def fast_run_config() -> dict:
    """:data:`FAST`, for tests that run the retrain job themselves."""
    return FAST


@dataclass
class Pipeline:
    """A retrained pipeline: database, artifact store and a Dagster instance that knows its partitions."""

    db: Path
    artifacts: Path
    instance: dg.DagsterInstance
    experiments: list[str]
    new_rows: dict[str, pd.DataFrame]
    new_experiment: str


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """One retrain of the four-experiment data set, shared read-only by every test."""
    root = tmp_path_factory.mktemp("template")
    old, _, _ = tiny_tables()
    write_raw_tables(root / "lrl.duckdb", old)
    with dg.instance_for_test() as instance:
        run_retrain(root / "lrl.duckdb", root / "artifacts", progress=lambda _: None, instance=instance,
                    run_config=FAST)
    return root / "lrl.duckdb", root / "artifacts", sorted(old["experiments"]["experiment_id"])


@pytest.fixture
def pipeline(trained_template, tmp_path) -> Pipeline:
    """A private copy of the retrained pipeline with a fresh instance."""
    db, artifacts, experiments = trained_template
    shutil.copy(db, tmp_path / "lrl.duckdb")
    shutil.copytree(artifacts, tmp_path / "artifacts")
    _, new_rows, newest = tiny_tables()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(EXPERIMENT_PARTITIONS, experiments)
        yield Pipeline(tmp_path / "lrl.duckdb", tmp_path / "artifacts", instance, experiments, new_rows, newest)
