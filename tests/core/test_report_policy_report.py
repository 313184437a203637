"""The policy page of one experiment (report/policy_report.py)."""
from __future__ import annotations

import pandas as pd
import pytest

from lrl_core.report import POLICY_SECTIONS, PolicyReportData, build_policy_report
from tests.core.test_report import check_report


def _data() -> PolicyReportData:
    segments = pd.DataFrame({"segment": [0, 1], "rule": ["age <= 30", "age > 30 and plan is '<gold>'"],
                             "units": [1200, 800], "arm": ["treatment", "control"],
                             "reward treatment": [0.12, -0.03]})
    values = pd.DataFrame([(p, m, e, v, 0.01) for p, v in (("tree", 0.52), ("control", 0.45), ("best_arm", 0.5),
                                                           ("argmax", 0.53))
                           for m in ("revenue", "latency") for e in ("dr", "ips")],
                          columns=["policy", "metric", "estimator", "value", "se"])
    return PolicyReportData("checkout_v2", "revenue x 1; latency >= -0.01", segments, values, {"depth": 1})


def test_policy_report_has_its_sections_segments_and_value_figure(tmp_path):
    result = build_policy_report(_data(), tmp_path / "policy.html")
    text, _ = check_report(result.path, POLICY_SECTIONS, n_images=1)
    assert result.sections == POLICY_SECTIONS and "value" in result.key_figures
    assert "age &gt; 30 and plan is &#x27;&lt;gold&gt;&#x27;" in text or "plan is '&lt;gold&gt;'" in text
    assert "treatment to 1,200 units" in text and "control to 800 units" in text
    assert "revenue: the tree" in text and "+0.07" in text


def test_policy_report_refuses_an_empty_policy(tmp_path):
    data = _data()
    data.values = data.values.iloc[:0]
    with pytest.raises(ValueError, match="segments and values"):
        build_policy_report(data, tmp_path / "policy.html")
