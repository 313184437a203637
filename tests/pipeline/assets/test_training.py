"""The training assets' run config (lrl_pipeline/assets/training.py)."""
from __future__ import annotations

import io
import sys

import dagster as dg
import pytest

from lrl_core.synthetic import nonlinear_synthetic
from lrl_pipeline import paths, runner
from lrl_pipeline.assets.training import TrainingConfig
from lrl_pipeline.storage import write_raw_tables

from tests.helpers import FAST


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_epoch_bar_shows_at_a_terminal_and_stays_out_of_log_files(monkeypatch):
    """Issue 12 item 3: `lrl retrain` at a terminal shows training epochs; runs logging to files do not."""
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert TrainingConfig().lrl_config().progress is True
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    config = TrainingConfig(d=8).lrl_config()
    assert config.progress is False and config.d == 8


def _fit(root, workers: int) -> dict:
    """A retrain of a small world with ``workers`` ranks; the lr_learner materialization's metadata."""
    root.mkdir()
    data = nonlinear_synthetic(n_experiments=4, n_per_arm=150, n_features=5, n_metrics=2, seed=3)
    write_raw_tables(root / "lrl.duckdb", data.raw_tables())
    fixed = {"d": 4, "extractor": "mlp", "weight_decay": 1.0, "workers": workers}
    config = {"ops": {**FAST["ops"], "lr_learner": {"config": {**FAST["ops"]["lr_learner"]["config"], **fixed}}}}
    with dg.instance_for_test() as instance:
        runner.run_retrain(root / "lrl.duckdb", root / "artifacts", progress=lambda _: None, instance=instance,
                           run_config=config)
        event = instance.get_latest_materialization_event(dg.AssetKey("lr_learner"))
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_two_data_parallel_ranks_through_pipes_fit_what_one_process_fits(tmp_path):
    """Issue 16: 2 gloo ranks under torchrun, launched through the Pipes client resource; the
    asset's metadata lists both ranks, and the validation loss is the single process's (same
    global batches and epochs; only the order of floating-point sums differs)."""
    one, two = _fit(tmp_path / "one", 1), _fit(tmp_path / "two", 2)
    assert one["workers"] == 1 and two["workers"] == 2 and "ranks" not in one
    ranks = two["ranks"].splitlines()[2:]
    assert [line.split("|")[1].strip() for line in ranks] == ["0", "1"]
    assert abs(two["validation_loss"] - one["validation_loss"]) <= 0.01 * one["validation_loss"]
    assert two["epochs"] == one["epochs"]


def test_train_workers_comes_from_the_environment_and_bad_values_are_named(monkeypatch):
    monkeypatch.delenv("LRL_TRAIN_WORKERS", raising=False)
    assert paths.train_workers() == 1
    monkeypatch.setenv("LRL_TRAIN_WORKERS", "3")
    assert paths.train_workers() == 3
    for bad in ("two", "0"):
        monkeypatch.setenv("LRL_TRAIN_WORKERS", bad)
        with pytest.raises(ValueError, match="LRL_TRAIN_WORKERS"):
            paths.train_workers()
