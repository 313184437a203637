"""The new-experiment report (lrl_core/report/experiment_report.py)."""
from __future__ import annotations

import numpy as np

from lrl_core.report import EXPERIMENT_SECTIONS, build_experiment_report
from test_report import check_report, experiment_data


def test_experiment_report_has_every_section_and_a_nonempty_figure(tmp_path):
    data = experiment_data(np.random.default_rng(8))
    result = build_experiment_report(data, tmp_path / "exp_new.html")
    assert result.sections == EXPERIMENT_SECTIONS
    # Histograms, calibration deciles, slopes, SE scatter, risk bars, agreement scatter.
    text, _ = check_report(result.path, EXPERIMENT_SECTIONS, n_images=6)
    assert "Δ vs T-learner (OLS)" in text and "share |CATE| &gt; 1.96 SE" in text
    assert set(result.key_figures) == {"cate_distribution", "calibration", "head_vs_tlearner"}
