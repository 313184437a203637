"""Report figures (lrl_core/report/figures.py) and their markdown export (lrl_core/report/plotting.py)."""
from __future__ import annotations

import pandas as pd

from lrl_core.report import figure_to_markdown
from lrl_core.report.figures import quarantine_bars
from test_report import assert_not_blank, decode_png


def test_figure_to_markdown_and_empty_quarantine_figure():
    empty = pd.DataFrame({"table": pd.Series(dtype=str), "reason": pd.Series(dtype=str),
                          "rows": pd.Series(dtype="int64")})
    markdown = figure_to_markdown(quarantine_bars(empty, {"outcomes": 10}), title="Data quality")
    assert markdown.startswith("![Data quality](data:image/png;base64,")
    assert_not_blank(decode_png(markdown[len("![Data quality]("):-1]))
