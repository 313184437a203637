"""The retrain report (lrl_core/report/retrain_report.py): every section, its figures, atomic rewrite, bad inputs."""
from __future__ import annotations

import re

import numpy as np
import pytest

from lrl_core.report import RETRAIN_SECTIONS, RetrainReportData, build_retrain_report
from test_report import assert_not_blank, check_report, decode_png, retrain_data


def test_retrain_report_has_every_section_and_a_nonempty_figure(tmp_path):
    data = retrain_data(np.random.default_rng(6))
    result = build_retrain_report(data, tmp_path / "reports" / "retrain.html")
    assert result.path.exists() and result.sections == RETRAIN_SECTIONS
    # Risk bars, singular values, a correlation heatmap per metric (2), calibration deciles and slopes,
    # the embedding heatmap, training curves, the effects scatter and data quality.
    text, parser = check_report(result.path, RETRAIN_SECTIONS, n_images=10)
    # Tables 3-4 layout: every model and a relative improvement per baseline, coloured by direction.
    for name in ("LR-learner", "T-learner (OLS)", "T-learner (XGBoost)", "Δ vs T-learner (OLS)"):
        assert f"<th>{name}</th>" in text, name
    for risk in ("μ-risk", "τ-risk", "PEHE"):
        assert f'<td class="label">{risk}</td>' in text, risk
    assert 'class="better"' in text
    assert re.search(r"<td>\d+\.\d{4}</td>", text)
    assert "BCV rank" in text and "kept epoch" in text and "non-finite value" in text
    # The levels each categorical column kept, escaped like every other table cell.
    assert "Categorical features" in text and "us (900), &lt;b&gt;de&lt;/b&gt; (600)" in text
    assert "<td>400</td><td>100</td>" in text
    # Effects across experiments: correlations by estimator, the strongest pair's arm effects.
    assert "Correlation of true effects across arms, by estimator" in text
    assert "Treated arms&#x27; effects on sessions against revenue" in text or "effects on sessions against revenue" in text
    assert re.search(r"revenue \d+ of 7 arms, sessions \d+ of 6 arms", text)
    assert set(result.key_figures) >= {"risks", "singular_values", "correlation", "calibration", "training"}
    for markdown in result.key_figures.values():
        match = re.fullmatch(r"!\[([^\]]+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
        assert match, markdown[:80]
        assert_not_blank(decode_png("data:image/png;base64," + match.group(2)))
    # Written atomically: no temporary file is left beside the report.
    assert [p.name for p in result.path.parent.iterdir()] == ["retrain.html"]


def test_retrain_report_with_only_risks_still_has_every_section(tmp_path):
    data = retrain_data(np.random.default_rng(7), full=False)
    result = build_retrain_report(data, tmp_path / "retrain.html")
    text, _ = check_report(result.path, RETRAIN_SECTIONS, n_images=3)
    assert "No rows quarantined" in text
    assert '<td class="label">μ-risk</td>' in text and '<td class="label">PEHE</td>' not in text


def test_report_rewrite_replaces_the_file(tmp_path):
    path = tmp_path / "r.html"
    path.write_text("stale")
    build_retrain_report(retrain_data(np.random.default_rng(9), full=False), path)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_builders_reject_inputs_they_cannot_report(tmp_path):
    data = retrain_data(np.random.default_rng(10), full=False)
    with pytest.raises(ValueError, match="reference model"):
        build_retrain_report(RetrainReportData(risks=data.risks, reference_model="nope"), tmp_path / "x.html")
    with pytest.raises(ValueError, match="risk table"):
        build_retrain_report(RetrainReportData(risks=data.risks.iloc[:0]), tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_the_segments_section_shows_the_heatmap_and_where_si_and_the_lr_learner_disagree(tmp_path):
    import dataclasses

    import pandas as pd

    rows = pd.DataFrame([
        # segment, experiment, arm, metric, source, effect, se, si test
        ("north", "exp_a", "treatment", "revenue", "observed", 0.5, 0.1, None),
        ("south", "exp_a", "treatment", "revenue", "si", 0.4, 0.1, True),
        ("south", "exp_a", "treatment", "revenue", "lr", 0.45, 0.1, None),
        ("north", "exp_b", "treatment", "revenue", "si", 2.0, 0.1, False),
        ("north", "exp_b", "treatment", "revenue", "lr", -1.0, 0.1, None),
        ("south", "exp_b", "treatment", "revenue", "observed", 0.1, 0.1, None),
    ], columns=["segment", "experiment_id", "arm", "metric", "source", "effect", "se", "si_test_passed"])
    rows = rows.assign(segment_by="region", si_test_passed=rows["si_test_passed"].astype("boolean"))
    data = dataclasses.replace(retrain_data(np.random.default_rng(6)), segment_effects=rows)
    result = build_retrain_report(data, tmp_path / "retrain.html")
    text, _ = check_report(result.path, RETRAIN_SECTIONS, n_images=11)
    assert "Effects by segment (region)" in text and "Effects on revenue by region" in text
    # Only exp_b's cell disagrees (3 against 0.14 standard errors apart), and its failed test shows.
    assert "Cells where SI and the LR-learner disagree beyond their intervals" in text
    table = text.split("disagree beyond their intervals</h3>")[1].split("</table>")[0]
    assert "exp_b" in table and "exp_a" not in table
    assert "2 left-out segment cells by region: SI estimated 2, its test failed on 1" in text
