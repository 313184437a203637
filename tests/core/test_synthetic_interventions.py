"""Synthetic Interventions for segments an experiment left out (issue 17): accuracy, intervals,
the subspace-inclusion test, and what happens with too few donors or missing donor entries."""
from __future__ import annotations

import numpy as np
import pytest

from lrl_core.synthetic.segment_world import segment_world
from lrl_core.synthetic_interventions import SIConfig, SyntheticInterventions, gavish_donoho_rank, observed_effects

SMALL = dict(n_segments=24, n_experiments=14, units_per_cell=40)


def _fit(world, means=None, ses=None, config=None):
    if means is None:
        means, ses = world.observed()
    return SyntheticInterventions(config).fit(means, ses, world.experiment_of, world.control_of)


@pytest.fixture(scope="module")
def small_runs():
    """``(world, estimate_missing frame)`` for three seeds of a small low-rank world."""
    runs = []
    for seed in range(3):
        world = segment_world(seed, **SMALL)
        runs.append((world, _fit(world).estimate_missing()))
    return runs


def test_observed_means_match_the_truth_within_their_standard_errors():
    world = segment_world(0, **SMALL)
    means, ses = world.observed()
    assert np.array_equal(np.isnan(means).any(axis=2), world.excluded[:, world.experiment_of])
    z = ((means - world.means) / ses)[np.isfinite(means)]
    assert abs(z.std() - 1) < 0.1 and abs(z.mean()) < 0.1


def test_observed_effects_are_differences_against_the_control():
    means = np.array([[[1.0], [3.0], [6.0]]])
    ses = np.array([[[0.3], [0.4], [0.0]]])
    effect, se = observed_effects(means, ses, np.array([0, 0, 0]))
    assert np.isnan(effect[0, 0, 0]) and np.isnan(se[0, 0, 0])
    assert effect[0, 1, 0] == pytest.approx(2.0) and se[0, 1, 0] == pytest.approx(0.5)
    assert effect[0, 2, 0] == pytest.approx(5.0) and se[0, 2, 0] == pytest.approx(0.3)


def test_intervals_cover_excluded_cells_at_about_the_nominal_rate(small_runs):
    covered = []
    for world, frame in small_runs:
        assert (frame["reason"] == "").all()
        truth = world.true_effects[frame["segment"], frame["intervention"], frame["metric"]]
        covered.append((frame["lower"] <= truth) & (truth <= frame["upper"]))
    coverage = np.concatenate(covered).mean()
    assert 0.85 <= coverage <= 0.995


def test_error_is_well_below_the_naive_mean_over_observed_segments(small_runs):
    for world, frame in small_runs:
        means, _ = world.observed()
        effect, _ = observed_effects(means, np.zeros_like(means), world.control_of)
        naive = np.nanmean(effect[:, frame["intervention"], frame["metric"]], axis=0)
        truth = world.true_effects[frame["segment"], frame["intervention"], frame["metric"]]
        spread = np.nanstd(world.true_effects, axis=(0, 1))[frame["metric"]]
        si_error = np.sqrt(np.mean(((frame["effect"] - truth) / spread) ** 2))
        naive_error = np.sqrt(np.mean(((naive - truth) / spread) ** 2))
        assert si_error < 0.5 * naive_error


def test_the_planted_off_span_segment_is_flagged_and_in_span_segments_pass():
    world = segment_world(1, off_span_segment=True)
    frame = _fit(world).estimate_missing()
    verdicts = frame.groupby(["segment", "intervention"])["test_passed"].first().reset_index()
    off = verdicts["segment"] == world.off_span
    assert off.sum() >= 5
    assert verdicts.loc[off, "test_passed"].mean() <= 0.2
    assert verdicts.loc[~off, "test_passed"].mean() >= 0.8


def test_a_target_with_too_few_donors_gets_nan_and_a_reason():
    world = segment_world(2, **SMALL)
    means, ses = world.observed()
    e = 0
    arms = world.experiment_of == e
    kept = np.flatnonzero(~world.excluded[:, e])[:2]
    drop = np.setdiff1d(np.arange(len(world.segments)), kept)
    means[np.ix_(drop, arms)], ses[np.ix_(drop, arms)] = np.nan, np.nan
    model = _fit(world, means, ses, SIConfig(min_donors=3))
    treated = np.flatnonzero(arms & (world.control_of != np.arange(len(arms))))[0]
    estimate = model.estimate(int(drop[0]), int(treated))
    assert np.isnan(estimate.effect).all() and np.isnan(estimate.se).all()
    assert estimate.reason == "2 donors, need 3"
    assert not estimate.test_passed
    frame = model.estimate_missing()
    rows = frame[frame["intervention"] == treated]
    assert len(rows) == len(drop) * len(world.metrics) and (rows["reason"] == "2 donors, need 3").all()


def test_a_control_intervention_is_refused():
    world = segment_world(0, **SMALL)
    with pytest.raises(ValueError, match="control"):
        _fit(world).estimate(0, int(world.control_of[0]))


def test_gavish_donoho_recovers_the_planted_rank_of_a_clean_low_rank_matrix():
    rng = np.random.default_rng(0)
    for shape, rank in [((100, 60), 3), ((40, 200), 5)]:
        signal = rng.standard_normal((shape[0], rank)) @ rng.standard_normal((rank, shape[1]))
        noisy = signal + 0.05 * rng.standard_normal(shape)
        assert gavish_donoho_rank(np.linalg.svd(noisy, compute_uv=False), shape) == rank
    pure_noise = rng.standard_normal((60, 60))
    assert gavish_donoho_rank(np.linalg.svd(pure_noise, compute_uv=False), (60, 60)) == 1


def test_missing_donor_entries_leak_no_nan_into_estimates():
    world = segment_world(3, **SMALL)
    means, ses = world.observed()
    # Also knock out single cells, so that segments are partly observed in some experiments.
    rng = np.random.default_rng(0)
    holes = rng.random(means.shape[:2]) < 0.05
    means[holes], ses[holes] = np.nan, np.nan
    model = _fit(world, means, ses)
    frame = model.estimate_missing()
    estimate = model.estimate(int(frame["segment"].iloc[0]), int(frame["intervention"].iloc[0]))
    other = world.experiment_of != world.experiment_of[estimate.intervention]
    assert np.isnan(means[np.ix_(estimate.donors, np.flatnonzero(other))]).any()
    assert (frame["reason"] == "").all()
    assert np.isfinite(frame[["effect", "se", "lower", "upper", "test_statistic"]].to_numpy()).all()
    assert np.isfinite(estimate.weights).all() and estimate.weights.sum() == pytest.approx(1.0)
    # A partly observed segment counts as left out: it is estimated, not reported as observed.
    treated = world.experiment_of[world.control_of != np.arange(len(world.control_of))]
    assert len(frame) > world.excluded[:, treated].sum() * len(world.metrics)
