"""Per-row verdicts of one raw table and the quarantine rows they turn into.

A ``_Verdicts`` holds a reason code per row (0 keeps it, the first reason
wins); rules flag rows, cascade the fate of rows in other tables, and finally
render one quarantine row per dropped row with ``QUARANTINE_COLUMNS``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .columns import _at
from .ids import _id_problems, _Ids

if TYPE_CHECKING:
    from .validation import FeatureCheck


QUARANTINE_COLUMNS = ["table", "unit_id", "experiment_id", "metric", "column", "reason"]


class _Verdicts:
    """Per-row reason codes of one table: 0 keeps the row, and the first reason wins."""

    def __init__(self, n: int):
        # int32: a code indexes ``reasons``, a list of distinct strings, never near 2**31 long.
        self.code = np.zeros(n, dtype=np.int32)
        self.reasons: list[str | None] = [None]

    @property
    def kept(self) -> np.ndarray:
        return self.code == 0

    def flag(self, mask: np.ndarray, reason: str) -> None:
        """Drop the still-kept rows of ``mask`` for ``reason``."""
        new = mask & self.kept
        if new.any():
            self.reasons.append(reason)
            self.code[new] = len(self.reasons) - 1

    def flag_each(self, mask: np.ndarray, reasons: np.ndarray) -> None:
        """Drop the still-kept rows of ``mask``, each for its own entry of ``reasons`` (rows,)."""
        new = np.flatnonzero(mask & self.kept)
        if len(new):
            distinct, which = np.unique(reasons[new].astype(str), return_inverse=True)
            self.code[new] = len(self.reasons) + which
            self.reasons.extend(distinct.tolist())

    def cascade(self, rows_of_other: np.ndarray, other: "_Verdicts", prefix: str = "") -> None:
        """Drop rows whose row in ``other`` (index, -1 = none) was dropped, with its reason."""
        other_code = _at(other.code, rows_of_other, 0)
        new = (other_code > 0) & self.kept
        if new.any():
            offset = len(self.reasons)
            self.reasons.extend(f"{prefix}{r}" for r in other.reasons)
            self.code[new] = offset + other_code[new]

    def quarantine(self, table: str, unit_ids: _Ids | None = None, experiment_ids: _Ids | None = None,
                   metrics: _Ids | None = None) -> pd.DataFrame:
        """One quarantine row per dropped row."""
        rows = np.flatnonzero(~self.kept)
        none = np.full(len(rows), None, dtype=object)
        return pd.DataFrame({
            "table": np.full(len(rows), table, dtype=object),
            "unit_id": unit_ids.text(rows) if unit_ids is not None else none,
            "experiment_id": experiment_ids.text(rows) if experiment_ids is not None else none,
            "metric": metrics.text(rows) if metrics is not None else none,
            "column": none,
            "reason": np.asarray(self.reasons, dtype=object)[self.code[rows]],
        })


def _flag_bad_ids(verdicts: _Verdicts, ids: _Ids, column: str, problems: np.ndarray | None = None) -> None:
    """Flag NULL and invalid ids; ``problems`` (per unique) may be given when already known."""
    verdicts.flag(ids.codes < 0, f"{column} is NULL")
    if ids.uniques.dtype == object:  # integer unit ids can only be NULL
        if problems is None:
            problems = _id_problems(ids.uniques, column)
        problems = ids.rows(problems, fill=None)
        verdicts.flag_each(pd.notna(problems), problems)


def _flag_bad_unit_ids(verdicts: _Verdicts, units: _Ids, feat: "FeatureCheck") -> np.ndarray:
    """Flag NULL and invalid unit ids of exposures / outcomes; return row -> position in unit_features.

    Ids also found in unit_features reuse its verdict, so only the strays are
    checked again (millions of ids otherwise, in every table).
    """
    position = feat.unit_index.get_indexer(units.uniques)
    if units.uniques.dtype == object:
        problems = _at(feat.unit_problems, position, None)
        stray = np.flatnonzero(position < 0)
        problems[stray] = _id_problems(units.uniques[stray], "unit_id")
    else:
        problems = None
    _flag_bad_ids(verdicts, units, "unit_id", problems)
    return units.rows(position)
