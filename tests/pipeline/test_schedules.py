"""The retrain schedule: on by default, weekly unless LRL_RETRAIN_CRON says otherwise."""
from __future__ import annotations

import dagster as dg
import pytest

from lrl_pipeline.definitions import build_definitions
from lrl_pipeline.schedules import DEFAULT_RETRAIN_CRON, build_retrain_schedule


def test_schedule_tick_requests_the_retrain(tmp_path):
    defs = build_definitions(tmp_path / "lrl.duckdb", tmp_path / "artifacts")
    schedule = defs.resolve_schedule_def("retrain_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    with dg.instance_for_test() as instance:
        data = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
    assert len(data.run_requests) == 1
    assert schedule.job_name == "retrain_job"
    selected = defs.resolve_job_def("retrain_job").asset_layer.executable_asset_keys
    assert {key.to_user_string() for key in selected} >= {"lr_learner", "t_learners", "valid_exposures"}


def test_cron_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("LRL_RETRAIN_CRON", raising=False)
    assert build_retrain_schedule().cron_schedule == DEFAULT_RETRAIN_CRON
    monkeypatch.setenv("LRL_RETRAIN_CRON", "15 2 * * *")
    assert build_retrain_schedule().cron_schedule == "15 2 * * *"
    monkeypatch.setenv("LRL_RETRAIN_CRON", "every sunday")
    with pytest.raises(ValueError, match="LRL_RETRAIN_CRON"):
        build_retrain_schedule()
