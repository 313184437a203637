"""Comparing effect estimates on segments an experiment left out (issue 17): plain tables in and out.

Rows are ``pipeline.segment_effects``' columns: ``segment, experiment_id, arm,
metric, source`` (``observed``, ``si``, ``lr``), ``effect, se, si_test_passed``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["disagreements"]


def disagreements(rows: pd.DataFrame, z: float = 1.96) -> pd.DataFrame:
    """Cells where SI and the LR-learner differ beyond their intervals:
    ``|si - lr| > z sqrt(se_si^2 + se_lr^2)``, largest standardised gap first."""
    keys = ["segment", "experiment_id", "arm", "metric"]
    both = rows[rows["source"] == "si"].merge(rows[rows["source"] == "lr"], on=keys, suffixes=("_si", "_lr"))
    gap = (both["effect_si"] - both["effect_lr"]).abs() / np.sqrt(both["se_si"] ** 2 + both["se_lr"] ** 2)
    both = both.assign(gap_in_se=gap)
    out = both[both["gap_in_se"] > z].sort_values("gap_in_se", ascending=False)
    return out[keys + ["effect_si", "se_si", "effect_lr", "se_lr", "gap_in_se", "si_test_passed_si"]].rename(
        columns={"si_test_passed_si": "si_test_passed"}).reset_index(drop=True)
