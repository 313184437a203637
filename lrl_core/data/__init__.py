"""Raw-table validation, the pooled data model and the stable unit split.

- :mod:`.validation`: ``validate_raw`` and ``ValidationResult``, the per-table rules;
  :mod:`.group_rules` the rules over groups of rows (outliers, small arms, ...).
- :mod:`.verdicts`: per-row reasons and ``QUARANTINE_COLUMNS``.
- :mod:`.ids`: id factorisation and the characters an id may not hold.
- :mod:`.columns`: ``column_as_float`` and array helpers.
- :mod:`.pooling`: ``PooledData`` and ``build_pooled_data``.
- :mod:`.splits`: ``split_by_unit`` and ``SPLIT_NAMES``.
"""
from __future__ import annotations

from .columns import column_as_float, is_categorical_feature, level_text
from .ids import CONTROL
from .pooling import PooledData, build_pooled_data
from .splits import SPLIT_NAMES, split_by_unit
from .validation import FeatureCheck, ValidationResult, check_unit_features, validate_raw
from .verdicts import QUARANTINE_COLUMNS

__all__ = [
    "CONTROL",
    "FeatureCheck",
    "QUARANTINE_COLUMNS",
    "SPLIT_NAMES",
    "PooledData",
    "ValidationResult",
    "build_pooled_data",
    "check_unit_features",
    "column_as_float",
    "is_categorical_feature",
    "level_text",
    "split_by_unit",
    "validate_raw",
]
