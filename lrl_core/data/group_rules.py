"""Validation rules that judge groups of rows rather than one row at a time.

Far outliers and constant values of a metric, arms with too few valid
units, and experiments left without exposures, a control, a treated unit or
an outcome. They run after the per-table rules of :mod:`.validation`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .columns import _at
from .ids import CONTROL, _Ids
from .verdicts import QUARANTINE_COLUMNS, _Verdicts

if TYPE_CHECKING:
    from .validation import _ExposureCheck, _OutcomeCheck, _RegistryCheck


MIN_UNITS_PER_ARM = 2

OUTLIER_SPANS = 10_000.0
"""An outcome further than this many interquartile ranges outside the quartiles of its metric's
valid values is quarantined as a broken feed, not a measurement: one 1e12 row among values of order
one made every experiment's CATEs of that metric about 1e9 (issue 18). Quartiles, unlike the 1st and
99th percentiles, stay put when a bad feed is a few percent of the rows; 10,000 ranges leave heavy
tails alone (a log-normal metric with sigma 2 passes it in all but about one row in ten million; a
Pareto tail of index 1.5 in all but one in a million). A metric with more than half its values
equal falls back to its 1st-99th percentile span."""
OUTLIER_MIN_ROWS = 50
"""Fewest valid values of a metric for its percentile range to be trusted by the outlier rule."""


_DENSE_GROUPS = 1 << 16
"""(experiment, metric) grids up to this size (or the rows' count) are indexed directly by the
constant-metric rule; larger ones are numbered by ``np.unique``."""


def _flag_far_outliers(verdicts: _Verdicts, values: np.ndarray, metrics: _Ids) -> None:
    """Quarantine values beyond ``OUTLIER_SPANS`` percentile spans of their metric (see there)."""
    kept = verdicts.kept
    found = []  # (rows, reason) per metric with far values; the per-row arrays only when there are any
    for code, name in enumerate(metrics.uniques):
        rows = np.flatnonzero(kept & (metrics.codes == code))
        if rows.size < OUTLIER_MIN_ROWS:
            continue
        metric_values = values[rows]
        q01, low, high, q99 = np.quantile(metric_values, [0.01, 0.25, 0.75, 0.99])
        span = high - low if high > low else q99 - q01
        if not span > 0:
            continue  # (near-)constant: the constant-metric rule speaks for it
        lo, hi = low - OUTLIER_SPANS * span, high + OUTLIER_SPANS * span
        far = rows[(metric_values < lo) | (metric_values > hi)]
        if far.size:
            found.append((far, f"outcome value far outside metric {name!r}'s range: more than "
                               f"{OUTLIER_SPANS:,.0f} times its spread ({span:.4g}) beyond its quartiles "
                               f"({low:.4g}, {high:.4g})"))
    if not found:
        return
    bad = np.zeros(len(values), dtype=bool)
    reasons = np.full(len(values), None, dtype=object)
    for far, reason in found:
        bad[far] = True
        reasons[far] = reason
    verdicts.flag_each(bad, reasons)


def _flag_constant_metrics(verdicts: _Verdicts, values: np.ndarray, metrics: _Ids, exp_pos: np.ndarray,
                           reg: "_RegistryCheck") -> None:
    """Quarantine the values of a metric that is constant within an experiment: it has no effect to
    estimate, and a head fitted to it would report noise as effects."""
    mask = verdicts.kept & (exp_pos >= 0)
    if not mask.any():
        return
    n_metrics = max(len(metrics.uniques), 1)
    # Group = (experiment, metric) as one int64; min, max and count per group. The groups present
    # are numbered by np.unique unless the whole (experiment x metric) grid is small enough to
    # index directly, which spares sorting and an inverse array as long as the table.
    group = exp_pos[mask].astype(np.int64) * n_metrics + metrics.codes[mask]
    n_groups = max(len(reg.index), 1) * n_metrics
    if n_groups <= max(len(group), _DENSE_GROUPS):
        inverse = group
        counts = np.bincount(group, minlength=n_groups)
        keys = np.arange(n_groups)
    else:
        keys, inverse = np.unique(group, return_inverse=True)
        counts = np.bincount(inverse, minlength=keys.size)
    del group
    low = np.full(keys.size, np.inf)
    high = np.full(keys.size, -np.inf)
    kept_values = values[mask]
    np.minimum.at(low, inverse, kept_values)
    np.maximum.at(high, inverse, kept_values)
    del kept_values
    constant = (counts >= 2) & (high - low <= 1e-12 * np.maximum(1.0, np.abs(high)))
    if not constant.any():
        return
    # Messages for the constant groups only; rows of other groups never read theirs.
    which = np.flatnonzero(constant)
    exps, codes = np.divmod(keys[which], n_metrics)
    messages = np.full(keys.size, None, dtype=object)
    messages[which] = [f"metric {metrics.uniques[c]!r} is constant ({v:.6g}) in experiment "
                       f"{reg.index[e]!r}: no effect to estimate" for e, c, v in zip(exps, codes, low[which])]
    bad = np.zeros(len(values), dtype=bool)
    rows = np.flatnonzero(mask)
    bad[rows[constant[inverse]]] = True
    reasons = np.full(len(values), None, dtype=object)
    reasons[bad] = messages[inverse[constant[inverse]]]
    verdicts.flag_each(bad, reasons)


def _drop_small_arms(expo: _ExposureCheck, outc: _OutcomeCheck, reg: _RegistryCheck) -> pd.DataFrame:
    """Drop arms with fewer than ``MIN_UNITS_PER_ARM`` valid units; one quarantine row per arm."""
    kept = expo.verdicts.kept
    arm_key = expo.exp_pos * max(len(expo.arm_ids.uniques), 1) + expo.arm_ids.codes
    keys, counts = np.unique(arm_key[kept], return_counts=True)
    small = keys[counts < MIN_UNITS_PER_ARM]
    exps, arms = np.divmod(small, max(len(expo.arm_ids.uniques), 1))
    messages = np.array([f"arm {a!r} of experiment {e!r} has fewer than {MIN_UNITS_PER_ARM} valid units"
                         for e, a in zip(reg.index[exps], expo.arm_ids.uniques[arms])], dtype=object)
    in_small = np.isin(arm_key, small) & kept
    if in_small.any():
        expo.verdicts.flag_each(in_small, messages[np.searchsorted(small, np.where(in_small, arm_key, small[0]))])
        outc.verdicts.cascade(outc.exposure_row, expo.verdicts)
    return pd.DataFrame({"table": "arms", "unit_id": None, "experiment_id": reg.index[exps].astype(object),
                         "metric": None, "column": None, "reason": messages}, columns=QUARANTINE_COLUMNS)


def _drop_incomplete_experiments(expo: _ExposureCheck, outc: _OutcomeCheck, reg: _RegistryCheck) -> None:
    """Drop registry experiments with no valid exposures, no control, no treated unit or no outcome."""
    n_exp = len(reg.index)
    kept = expo.verdicts.kept
    pos = expo.exp_pos[kept]
    control = expo.arm_ids.rows(expo.arm_ids.uniques == CONTROL, fill=False)[kept]
    exposures = np.bincount(pos, minlength=n_exp)
    controls = np.bincount(pos[control], minlength=n_exp)
    treated = np.bincount(pos[~control], minlength=n_exp)
    outcomes = np.bincount(outc.exp_pos[outc.verdicts.kept], minlength=n_exp)
    problem = np.select(
        [exposures == 0, controls == 0, treated == 0, outcomes == 0],
        ["no valid exposures", "no control arm", "no treated arm", "no valid outcomes"], default="")
    bad = np.flatnonzero(problem != "")
    if not len(bad):
        return
    is_bad = np.zeros(n_exp, dtype=bool)
    is_bad[bad] = True
    registry_mask = np.zeros(len(reg.verdicts.code), dtype=bool)
    registry_mask[reg.row_of[bad]] = True
    registry_reasons = np.full(len(registry_mask), None, dtype=object)
    registry_reasons[reg.row_of[bad]] = problem[bad]
    reg.verdicts.flag_each(registry_mask, registry_reasons)

    cascade = np.array([f"experiment {e!r} quarantined: {p}" for e, p in zip(reg.index, problem)], dtype=object)
    expo.verdicts.flag_each(_at(is_bad, expo.exp_pos, False), _at(cascade, expo.exp_pos, None))
    outc.verdicts.flag_each(_at(is_bad, outc.exp_pos, False), _at(cascade, outc.exp_pos, None))
