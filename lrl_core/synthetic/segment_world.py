"""Experiments that leave segments out, on a known segment-level low-rank tensor (issue 17).

Segments ``s`` carry factors ``A[s] (r,)``; each intervention ``d`` (every
arm of every experiment, control included) carries ``B[d] (r, J)``; the true
mean outcome of segment ``s`` under ``d`` on metric ``j`` is
``mu[s, d, j] = scale_j * A[s] @ B[d, :, j]``, with ``scale_j`` spread from
0.1 to 10 so that a method which does not standardise metrics lets the
largest dominate. A treatment arm is its control plus an effect:
``B[d] = B[c] + Delta[d]``, so effects ``A[s] @ Delta[d]`` vary across
segments and the mean effect over the segments an experiment saw is a poor
guess for the ones it left out.

Each experiment excludes a random 20-50% of the segments (every segment is
left out somewhere and seen in at least a third of the experiments). Units
sit in one experiment, one arm (balanced) and one segment; their outcome is
``mu[s, d, j]`` plus Gaussian noise of sd ``noise_sd * scale_j``. Their
features are a ``segment`` column (``"seg_07"``) and ``n_features``
continuous columns ``x = A[s] @ W + 0.5 * noise``, which carry the segment's
factors noisily so that a feature-based model (the LR-learner) can
extrapolate to excluded segments.

``off_span_segment=True`` plants one segment (the last) whose factor has an
extra dimension no other segment loads on, with a loading as large as the
norm of its shared factors (about half its variation off the others' span),
and effects along it: Synthetic Interventions cannot reach it from the
donors, and its subspace-inclusion test should say so.

Plain arrays and DataFrames; no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .base import _LAUNCH_START, _arm_layout, _names

__all__ = ["SegmentWorld", "cell_means", "segment_world"]

EFFECT_SD = 0.5
"""Standard deviation of each entry of a treatment's factor shift ``Delta[d]``: segment effects of
sd about ``0.5 sqrt(r)``, several times a cell's sampling error at 60 units per arm."""
OFF_SPAN_LOADING = 1.0
"""The planted segment's loading on its own extra dimension, relative to the norm of its shared factors."""
FEATURE_NOISE = 0.5
"""Standard deviation of the noise on the continuous features around ``A[s] @ W``."""


@dataclass(eq=False)
class SegmentWorld:
    """A segment x intervention x metric world with its raw tables and its truth.

    Attributes (``S`` segments, ``K`` experiments, ``D`` interventions, ``J`` metrics):
        tables: the four raw tables of the user contract (``unit_features`` with ``unit_id``,
            ``segment`` and ``x0..``; ``experiments``; ``exposures``; ``outcomes`` long form).
        segment_of_unit: ``(n,)`` segment index of each row of ``tables["unit_features"]``.
        means: ``(S, D, J)`` true mean outcomes, every cell (observed or not).
        true_effects: ``(S, D, J)`` true effect of each treated intervention against its
            control; NaN for controls.
        experiment_of: ``(D,)`` experiment index of each intervention.
        control_of: ``(D,)`` the control intervention of each intervention's experiment.
        excluded: ``(S, K)`` True where the experiment left the segment out.
        segments, experiments, arm_names, metrics: names (``arm_names`` per intervention).
        off_span: index of the planted off-span segment, or -1.
    """

    tables: dict[str, pd.DataFrame]
    segment_of_unit: np.ndarray
    means: np.ndarray
    true_effects: np.ndarray
    experiment_of: np.ndarray
    control_of: np.ndarray
    excluded: np.ndarray
    segments: list[str]
    experiments: list[str]
    arm_names: list[str]
    metrics: list[str]
    off_span: int

    @property
    def interventions(self) -> list[tuple[str, str]]:
        """``(experiment_id, arm)`` of each intervention."""
        return [(self.experiments[k], arm) for k, arm in zip(self.experiment_of, self.arm_names)]

    @property
    def treated(self) -> np.ndarray:
        """``(D - K,)`` indices of the treatment interventions."""
        return np.flatnonzero(self.control_of != np.arange(len(self.control_of)))

    def observed(self) -> tuple[np.ndarray, np.ndarray]:
        """Observed ``means, ses (S, D, J)`` from the unit rows of :attr:`tables` (see :func:`cell_means`)."""
        return cell_means(self.tables, self.segments, self.interventions, self.metrics)


def cell_means(tables: dict[str, pd.DataFrame], segments: list[str], interventions: list[tuple[str, str]],
               metrics: list[str], by: str = "segment") -> tuple[np.ndarray, np.ndarray]:
    """Mean outcome and its standard error per segment x intervention x metric, from raw tables.

    What the pipeline computes in SQL: the outcomes of each unit joined to its
    arm and to its segment (the ``by`` column of ``unit_features``), then per
    cell the mean and the sample standard deviation over the square root of
    the count. Returns ``means, ses (S, D, J)`` in the order of ``segments``,
    ``interventions`` (``(experiment_id, arm)`` pairs) and ``metrics``; NaN
    where a cell has no unit (``ses`` also where it has one).
    """
    rows = tables["outcomes"].merge(tables["exposures"], on=["unit_id", "experiment_id"])
    rows = rows.merge(tables["unit_features"][["unit_id", by]], on="unit_id")
    cells = rows.groupby([by, "experiment_id", "arm", "metric"])["value"].agg(["mean", "std", "count"]).reset_index()
    s = pd.Index(segments).get_indexer(cells[by])
    d = pd.MultiIndex.from_tuples(interventions).get_indexer(pd.MultiIndex.from_frame(cells[["experiment_id", "arm"]]))
    j = pd.Index(metrics).get_indexer(cells["metric"])
    keep = (s >= 0) & (d >= 0) & (j >= 0)
    means = np.full((len(segments), len(interventions), len(metrics)), np.nan)
    ses = np.full_like(means, np.nan)
    means[s[keep], d[keep], j[keep]] = cells["mean"].to_numpy()[keep]
    ses[s[keep], d[keep], j[keep]] = (cells["std"] / np.sqrt(cells["count"])).to_numpy()[keep]
    return means, ses


def segment_world(seed: int, n_segments: int = 40, n_experiments: int = 30, n_metrics: int = 4, rank: int = 3,
                  arms_per_experiment: int = 2, units_per_cell: int = 60, exclude: tuple[float, float] = (0.2, 0.5),
                  noise_sd: float = 1.0, n_features: int = 6, off_span_segment: bool = False) -> SegmentWorld:
    """Draw a :class:`SegmentWorld` (module docstring): ``units_per_cell`` units per segment and arm of
    every experiment that includes the segment; ``exclude`` bounds the share of segments each
    experiment leaves out."""
    rng = np.random.default_rng(seed)
    experiment_of, control_arm, arm_names = _arm_layout([arms_per_experiment] * n_experiments)
    control_of = control_arm[experiment_of]
    factors, loadings = _factors(rng, n_segments, rank, experiment_of, control_of, n_metrics, off_span_segment)
    scale = np.geomspace(0.1, 10.0, n_metrics) if n_metrics > 1 else np.ones(1)
    means = np.einsum("sr,drj->sdj", factors, loadings) * scale
    treated = control_of != np.arange(len(control_of))
    true_effects = np.where(treated[None, :, None], means - means[:, control_of], np.nan)
    excluded = _exclusions(rng, n_segments, n_experiments, exclude)

    # One unit per (segment, intervention, replicate) for every cell its experiment kept.
    seg, arm = np.nonzero(~excluded[:, experiment_of])
    seg, arm = np.repeat(seg, units_per_cell), np.repeat(arm, units_per_cell)
    n = seg.size
    features = factors[seg] @ rng.standard_normal((factors.shape[1], n_features)) / np.sqrt(rank)
    features += FEATURE_NOISE * rng.standard_normal(features.shape)
    values = means[seg, arm] + noise_sd * scale * rng.standard_normal((n, n_metrics))

    segments = _names("seg", n_segments, width=2)
    experiments = _names("exp", n_experiments)
    metrics = _names("metric", n_metrics, width=1)
    tables = _raw_tables(features, seg, arm, values, segments, experiments, experiment_of, arm_names, metrics)
    return SegmentWorld(tables=tables, segment_of_unit=seg, means=means, true_effects=true_effects,
                        experiment_of=experiment_of, control_of=control_of, excluded=excluded, segments=segments,
                        experiments=experiments, arm_names=arm_names, metrics=metrics,
                        off_span=n_segments - 1 if off_span_segment else -1)


def _factors(rng, n_segments, rank, experiment_of, control_of, n_metrics, off_span) -> tuple[np.ndarray, np.ndarray]:
    """Segment factors ``(S, r')`` and intervention loadings ``(D, r', J)``; ``r' = r + 1`` with the
    off-span segment (the last), the only one loading on the extra dimension."""
    width = rank + int(off_span)
    factors = rng.standard_normal((n_segments, width))
    if off_span:
        factors[:, rank] = 0.0
        factors[-1, rank] = OFF_SPAN_LOADING * np.linalg.norm(factors[-1, :rank])
    controls = rng.standard_normal((len(control_of), width, n_metrics))
    shift = EFFECT_SD * rng.standard_normal(controls.shape)
    treated = (control_of != np.arange(len(control_of)))[:, None, None]
    loadings = controls[control_of] + np.where(treated, shift, 0.0)
    return factors, loadings


def _exclusions(rng, n_segments: int, n_experiments: int, share: tuple[float, float]) -> np.ndarray:
    """``(S, K)`` excluded mask: each experiment leaves out a share drawn from ``share``; redrawn until
    every segment is left out somewhere and seen in at least ``max(3, K // 3)`` experiments, so that
    each has donors' outcomes to be regressed on."""
    need = min(max(3, n_experiments // 3), n_experiments - 1)
    for _ in range(1000):
        counts = np.round(rng.uniform(*share, n_experiments) * n_segments).astype(int).clip(1, n_segments - 1)
        excluded = np.zeros((n_segments, n_experiments), dtype=bool)
        for k, count in enumerate(counts):
            excluded[rng.choice(n_segments, count, replace=False), k] = True
        seen = (~excluded).sum(axis=1)
        if excluded.any(axis=1).all() and (seen >= need).all():
            return excluded
    raise ValueError(f"no exclusion pattern of {n_segments} segments and {n_experiments} experiments "
                     f"leaves every segment out once and in {need} times; use more experiments")


def _raw_tables(features, seg, arm, values, segments, experiments, experiment_of, arm_names,
                metrics) -> dict[str, pd.DataFrame]:
    """The four raw tables of the contract; unit ids are ``0..n-1`` in row order."""
    n, n_metrics = values.shape
    unit_id = np.arange(n, dtype=np.int64)
    unit_features = pd.DataFrame(features, columns=[f"x{i}" for i in range(features.shape[1])])
    unit_features.insert(0, "segment", np.asarray(segments, dtype=object)[seg])
    unit_features.insert(0, "unit_id", unit_id)
    exp_names = np.asarray(experiments, dtype=object)[experiment_of[arm]]
    exposures = pd.DataFrame({"unit_id": unit_id, "experiment_id": exp_names,
                              "arm": np.asarray(arm_names, dtype=object)[arm]})
    outcomes = pd.DataFrame({
        "unit_id": np.repeat(unit_id, n_metrics),
        "experiment_id": np.repeat(exp_names, n_metrics),
        "metric": np.tile(np.asarray(metrics, dtype=object), n),
        "value": values.ravel(),
    })
    registry = pd.DataFrame({"experiment_id": np.asarray(experiments, dtype=object),
                             "launched_at": _LAUNCH_START + pd.to_timedelta(np.arange(len(experiments)), unit="D")})
    return {"unit_features": unit_features, "experiments": registry, "exposures": exposures, "outcomes": outcomes}
