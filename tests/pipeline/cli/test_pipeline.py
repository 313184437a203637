"""``lrl update``, ``lrl report`` and ``lrl status`` (lrl_pipeline/cli/pipeline.py)."""
from __future__ import annotations

import re
from pathlib import Path

from lrl_pipeline import cli


def test_update_fits_the_new_experiment_on_the_saved_extractor(updated):
    assert updated["update_code"] == 0
    assert f"Fitted heads for 1 experiment(s): {updated['newest']}" in updated["update_output"]
    assert updated["version_after"] == updated["version_before"]
    assert updated["versions"] == [updated["version_before"]]  # no retrain wrote a new version
    heads = updated["heads"]
    new = heads[heads["experiment_id"] == updated["newest"]]
    assert len(new) > 0
    assert set(new["extractor_version"]) == {updated["version_before"]}
    assert set(new["metric"]) == set(updated["data"].metrics)


def test_a_second_update_has_nothing_to_do(cli_env, updated, capsys):
    assert cli.main(["update"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_report_prints_the_retrain_report_path(cli_env, updated, capsys):
    assert cli.main(["report"]) == 0
    report = Path(capsys.readouterr().out.strip())
    assert report.is_file() and report.suffix == ".html"
    assert report.is_relative_to(cli_env / "artifacts")


def test_status_says_where_the_pipeline_stands(cli_env, updated, capsys):
    """Issue 12: the extractor, heads on it, the sensor's view, recent runs and the next retrain."""
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^extractor +{updated['version_after']}, trained", out, re.MULTILINE)
    n = len(updated["data"].experiments)
    assert f"{n} registered; {n} with heads on the current extractor" in out
    assert "nothing to do: every experiment has heads" in out
    assert "head_job" in out and "next retrain" in out and "UTC" in out
