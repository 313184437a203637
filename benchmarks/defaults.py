"""The product's defaults, untuned, on a family of synthetic worlds (issue 10, item 6).

What it measures, per world:

- **defaults**: the raw tables of the training units go into a fresh DuckDB
  file, ``lrl_pipeline.runner.run_retrain`` runs the full retrain exactly as
  ``lrl retrain`` does (Dagster, a throw-away ``DAGSTER_HOME``, no run
  config: whatever ``LRLConfig()`` and the assets default to at run time), and
  ``lrl_pipeline.scoring.score_units`` (``lrl score``) scores held-out units.
  PEHE = mean over (held-out unit, treatment arm of its experiment, metric) of
  ``(cate - true_cate)^2`` against the noise-free CATE, per metric, then
  averaged over metrics. Coverage = share of rows with ``|cate - true| <=
  1.96 cate_se`` (rows with NULL ``cate_se`` are left out and counted).
  Retrain wall seconds, and the learner's own fit seconds from
  ``pipeline.extractor_versions``. Where ``lrl score`` has a ``model``
  column, the share of rows each model served.
- **OLS-T / XGB-T**: independent T-learners (``lrl_core.baselines``) fitted on
  every exposure row written to the raw tables (the held-out units never are),
  on features prepared by ``FeatureTransform`` fitted on the training split's
  units, as the pipeline prepares them. XGBoost uses the pipeline's
  ``t_learners`` settings (``BaselineConfig``).
- **oracle**: the best single configuration in hindsight (lowest held-out
  PEHE) over ``ORACLE_GRID`` (extractor x d x weight_decay), each fitted with
  the core API on the pipeline's training split of units
  (``split_by_unit == 0``) with early stopping on its validation split (1).
  Every grid point is written to ``results/defaults_oracle.csv``, with its
  validation loss, so "what validation would have chosen" can be read too.
  defaults/oracle can fall below 1: the product may search values outside
  this grid, and what it serves need not be one grid fit.

CATE variance: per metric, the mean squared deviation of the true CATE from
its mean within each (experiment, arm): the PEHE of the best constant effect
per arm. "PEHE/var" below 0.5 is the issue's "estimate is good" bar for
coverage.

Worlds (``--worlds``, comma-separated; all by default): ``paper25``,
``paper50``, ``paper100``, ``paper1000`` (Algorithm 2), ``overlap``
(nonlinear, noise sd 0.5, units in 2-3 experiments), ``multiarm`` (2-5 arms,
imbalanced shares, metrics missing wholesale in some experiments),
``unrelated`` (experiments with independent nonlinear surfaces, nothing
low-rank shared). See ``WORLDS`` and each builder's docstring.

Held out: about 20% of each arm's units (at least 200 units in all), chosen
per unit before anything is written; their features and true CATEs are kept
for scoring, their rows never reach the raw tables.

Usage::

    python benchmarks/defaults.py                         # every world (paper1000 dominates; not yet timed in full)
    python benchmarks/defaults.py --quick --worlds paper25,unrelated   # smoke run, minutes
    python benchmarks/defaults.py --worlds overlap,multiarm --no-oracle

Writes ``results/defaults.md`` and ``results/defaults.csv`` (``--quick``:
``results/defaults_quick.*``, so a smoke run never overwrites the real table),
plus ``*_oracle.csv`` with every grid fit.
"""
from __future__ import annotations

import argparse
import itertools
import contextlib
import dataclasses
import math
import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from lrl_core.baselines import OLSTLearner, XGBTLearner
from lrl_core.config import LRLConfig
from lrl_core.data import build_pooled_data, split_by_unit, validate_raw
from lrl_core.features import FeatureTransform
from lrl_core.selection import SEARCH_SPACE
from lrl_core.synthetic import SyntheticData, nonlinear_synthetic, paper_synthetic
from lrl_core.training import LRLearner

RESULTS = Path(__file__).resolve().parent / "results"
BASE_SEED = 31_415
"""Seeds of our own: world ``i`` of ``WORLDS`` is drawn with ``BASE_SEED + 1000 * i + --seed``."""
EVAL_SHARE = 0.2
MIN_EVAL_UNITS = 200
ORACLE_GRID = [dict(zip(SEARCH_SPACE, values)) for values in itertools.product(*SEARCH_SPACE.values())]
"""Oracle configurations: the product's own search space (``lrl_core.selection.SEARCH_SPACE``:
extractor {linear, mlp} x d {16, 32} x weight_decay {1, 10, 100}), every other LRLConfig field
at its default, so defaults/oracle measures how well validation chose and what the rest of the
product (heads, serving) adds or costs."""


# ---------------------------------------------------------------------------- worlds


@dataclass
class World:
    """One benchmark world: what the platform would hold, and what only we know.

    ``tables``: the four contract raw tables of the training units only.
    ``eval_features``: ``unit_id`` plus the feature columns of the held-out units
    (what ``lrl score`` is given). ``truth``: one row per held-out unit,
    treatment arm of each experiment the unit is in, and metric reported in that
    experiment's training rows: ``unit_id, experiment_id, arm, metric, true_cate``
    (noise-free).
    """

    name: str
    description: str
    tables: dict[str, pd.DataFrame]
    eval_features: pd.DataFrame
    truth: pd.DataFrame

    @property
    def n_rows(self) -> int:
        return len(self.tables["exposures"])

    @property
    def n_units(self) -> int:
        return len(self.tables["unit_features"])

    @property
    def n_eval(self) -> int:
        return len(self.eval_features)


def _primary_arm(data: SyntheticData) -> np.ndarray:
    """``(n,)`` the arm of each unit's first exposure row (its fresh assignment); -1 if none."""
    primary = np.full(len(data.unit_ids), -1, dtype=np.int64)
    units, first = np.unique(data.units, return_index=True)
    primary[units] = data.arms[first]
    return primary


def _hold_out(data: SyntheticData, rng: np.random.Generator, n_eval_of: Callable[[int], int],
              excluded: np.ndarray | None = None) -> np.ndarray:
    """Unit indices held out: ``n_eval_of(size)`` units drawn from each primary arm's units.

    ``excluded``: bool ``(n,)`` units that are in no table at all (dropped for imbalance).
    """
    primary = _primary_arm(data)
    if excluded is not None:
        primary = np.where(excluded, -1, primary)
    chosen = []
    for g in range(data.n_arms):
        members = np.flatnonzero(primary == g)
        k = min(n_eval_of(len(members)), len(members) - 2)  # the pipeline keeps arms of >= 2 units
        if k > 0:
            chosen.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(chosen))


def _share_of(n_units: int) -> Callable[[int], int]:
    """``EVAL_SHARE`` of every arm, raised so that at least ``MIN_EVAL_UNITS`` are held out."""
    share = max(EVAL_SHARE, MIN_EVAL_UNITS / max(n_units, 1))
    return lambda size: int(round(share * size))


def _finish(name: str, description: str, data: SyntheticData, held: np.ndarray,
            excluded: np.ndarray | None = None) -> World:
    """Split ``data.raw_tables()`` into training tables and the held-out units' features and truth."""
    tables = data.raw_tables()
    gone = np.zeros(len(data.unit_ids), dtype=bool)
    if excluded is not None:
        gone |= excluded
    is_eval = np.zeros(len(data.unit_ids), dtype=bool)
    is_eval[held] = True
    drop_ids = data.unit_ids[gone | is_eval]
    train = {key: frame[~frame["unit_id"].isin(drop_ids)].reset_index(drop=True)
             for key, frame in tables.items() if key != "experiments"}
    train["experiments"] = tables["experiments"]
    train = {key: train[key] for key in ("unit_features", "experiments", "exposures", "outcomes")}
    eval_features = tables["unit_features"][is_eval].reset_index(drop=True)

    # Truth: every treatment arm of every experiment an eval unit is in, every metric that
    # experiment reports in the training rows (a metric missing there has no head to serve).
    rows = np.flatnonzero(is_eval[data.units])
    member_unit, member_exp = data.units[rows], data.row_experiment[rows]
    treat = data.treatment_arms
    pair = pd.DataFrame({"u": member_unit, "k": member_exp}).merge(
        pd.DataFrame({"k": data.arm_experiment[treat], "g": treat}), on="k")
    u, g = pair["u"].to_numpy(), pair["g"].to_numpy()
    cate = data.true_cate(u, g, data.arm_controls[g])  # (L, J)
    truth = pd.DataFrame({
        "unit_id": np.repeat(data.unit_ids[u], len(data.metrics)),
        "experiment_id": np.repeat(np.asarray(data.experiments, dtype=object)[pair["k"].to_numpy()],
                                   len(data.metrics)),
        "arm": np.repeat(np.asarray(data.arm_names, dtype=object)[g], len(data.metrics)),
        "metric": np.tile(np.asarray(data.metrics, dtype=object), len(pair)),
        "true_cate": cate.reshape(-1),
    })
    reported = train["outcomes"][["experiment_id", "metric"]].drop_duplicates()
    truth = truth.merge(reported, on=["experiment_id", "metric"]).reset_index(drop=True)
    return World(name, description, train, eval_features, truth)


def paper_world(n_per_arm: int, seed: int, quick: bool) -> World:
    """Algorithm 2 (``paper_synthetic`` defaults: K = 50, m = 128, J = 5, d = 32, noise sd 0.1,
    balanced arms, one experiment per unit) with ``n_per_arm`` *training* units per arm;
    ``ceil(n / 4)`` more per arm (at least 200 in all) are drawn and held out.
    ``--quick``: K = 20 experiments and at most 200 units per arm."""
    K = 20 if quick else 50
    name = f"paper{n_per_arm}"
    if quick:
        n_per_arm = min(n_per_arm, 200)
    n_eval = max(math.ceil(n_per_arm / 4), math.ceil(MIN_EVAL_UNITS / (2 * K)))
    data = paper_synthetic(n_per_arm + n_eval, n_experiments=K, seed=seed)
    held = _hold_out(data, np.random.default_rng(seed + 1), lambda size: n_eval)
    return _finish(name, f"Algorithm 2, K={K}, {n_per_arm} training units per arm, noise sd 0.1",
                   data, held)


def overlap_world(seed: int, quick: bool) -> World:
    """Nonlinear low-rank world, noise sd 0.5, every unit in 2 or 3 experiments.

    ``nonlinear_synthetic(20, 375, 30, d=8, overlap=1.0, feature_missing_rate=0.02)``
    puts every unit in exactly two experiments (its own arm plus one uniform arm
    of one other experiment); then a random half of the units join a third
    experiment (uniform among those it is not in, uniform arm), its outcomes
    drawn from the generator's own ``true_outcomes`` plus the same noise. About
    300 training units per primary arm after the 20% hold-out. ``--quick``: 8
    experiments, 150 per arm, 20 features.
    """
    K, n_per_arm, m = (8, 150, 20) if quick else (20, 375, 30)
    rng = np.random.default_rng(seed + 1)
    data = nonlinear_synthetic(K, n_per_arm, m, n_metrics=5, d=8, overlap=1.0, feature_missing_rate=0.02,
                               noise_sd=0.5, seed=seed)
    n = len(data.unit_ids)
    member = np.zeros((n, K), dtype=bool)
    member[data.units, data.row_experiment] = True
    joins = np.flatnonzero(rng.random(n) < 0.5)
    # A uniform experiment among those the unit is not in: rank a random key, members last.
    keys = np.where(member[joins], np.inf, rng.random((len(joins), K)))
    third = keys.argmin(axis=1)
    n_arms = np.bincount(data.arm_experiment, minlength=K)
    arm = data.control_arm[third] + (rng.random(len(joins)) * n_arms[third]).astype(np.int64)
    Y_new = data.true_outcomes(joins, arm) + data.noise_sd * rng.standard_normal((len(joins), len(data.metrics)))
    data = dataclasses.replace(data, units=np.concatenate([data.units, joins]),
                               arms=np.concatenate([data.arms, arm]), Y=np.vstack([data.Y, Y_new]))
    held = _hold_out(data, rng, _share_of(n))
    return _finish("overlap", f"nonlinear, K={K}, m={m}, noise sd 0.5, units in 2-3 experiments", data, held)


def multiarm_world(seed: int, quick: bool) -> World:
    """Several treatment arms with imbalanced shares, metrics missing wholesale in some experiments.

    ``nonlinear_synthetic`` with 2-5 arms per experiment (K = 12), 400 units per
    arm drawn, noise sd 0.5, 5% of outcome values missing at random. Imbalance:
    in an experiment with 3 or more arms the last treatment arm keeps 15% of its
    units and the one before it 50%; in every second two-arm experiment the
    treatment arm keeps 30% (the dropped units exist nowhere). Missing metrics:
    ``metric_4`` has no outcome rows in experiments ``k % 3 == 1``, ``metric_3``
    none in ``k % 4 == 2``. Then 20% of every arm's remaining units are held out.
    ``--quick``: K = 6, 160 units per arm drawn.
    """
    layout = [2, 3, 4, 2, 3, 5, 2, 3, 4, 2, 3, 2]
    K, n_per_arm = (6, 160) if quick else (12, 400)
    layout = layout[:K]
    rng = np.random.default_rng(seed + 1)
    data = nonlinear_synthetic(K, n_per_arm, 25, n_metrics=5, d=8, n_arms_per_experiment=layout,
                               missing_metric_rate=0.05, noise_sd=0.5, seed=seed)
    keep_share = np.ones(data.n_arms)
    two_arm_seen = 0
    for k, a in enumerate(layout):
        c = data.control_arm[k]
        if a >= 3:
            keep_share[c + a - 1], keep_share[c + a - 2] = 0.15, 0.5
        else:
            keep_share[c + 1] = 0.3 if two_arm_seen % 2 else 1.0
            two_arm_seen += 1
    primary = _primary_arm(data)
    excluded = rng.random(len(data.unit_ids)) >= keep_share[primary]
    Y = data.Y.copy()
    exp = data.row_experiment
    Y[np.isin(exp, [k for k in range(K) if k % 3 == 1]), 4] = np.nan
    Y[np.isin(exp, [k for k in range(K) if k % 4 == 2]), 3] = np.nan
    data = dataclasses.replace(data, Y=Y)
    held = _hold_out(data, rng, _share_of(int((~excluded).sum())), excluded)
    return _finish("multiarm", f"nonlinear, K={K}, arms {layout}, imbalanced, metrics missing by experiment",
                   data, held, excluded)


def unrelated_synthetic(n_experiments: int, n_per_arm: int, n_features: int = 20, n_metrics: int = 3,
                        hidden: int = 12, products: int = 2, steepness: tuple[float, float] = (2.0, 4.0),
                        noise_sd: float = 0.5, seed: int = 0) -> SyntheticData:
    """Experiments that share nothing low-rank: each its own nonlinear baseline and effect surfaces.

    ``x ~ N(0, I_m)``. Experiment ``k`` owns ``hidden`` random soft steps
    ``tanh(w (x_a - t))`` (one random feature each, ``|w| ~ U(steepness)`` with
    a random sign, threshold ``t ~ N(0, 0.7^2)``) and ``products`` random
    feature products ``x_a x_b``, each standardised: a block of the latent that
    no other experiment uses. Per metric, the control outcome is a random
    combination of the block (coefficients ``N(0, 1/H)``) plus a ``N(0, 1)``
    level; the treatment adds another random combination (the effect surface,
    variance about 1) and a ``N(0, 0.5^2)`` shift. One experiment per unit,
    balanced arms, Gaussian noise of sd ``noise_sd``.

    Axis-aligned steps and two-feature products are what depth-4 trees learn:
    with the defaults, 2,000 training units per arm and noise sd 0.5 (sd 0.25
    gains XGBoost little: the surfaces, not the noise, limit it), XGBoost
    T-learners reached PEHE 0.15 against OLS 0.36 (CATE variance 0.99) on one
    draw of four experiments; with 4 products instead of 2, 0.28 against 0.63.
    A rank-``d`` embedding can only share these surfaces if it spans ``K * H``
    directions.

    Returned as a :class:`SyntheticData` (latent = all blocks side by side,
    block-sparse arm weights), so ``raw_tables`` and ``true_cate`` are the
    library's own.
    """
    rng = np.random.default_rng(seed)
    K, m, J, H = n_experiments, n_features, n_metrics, hidden + products
    G = 2 * K
    n = G * n_per_arm
    X = rng.standard_normal((n, m))
    latent = np.empty((n, K * H))
    for k in range(K):
        pairs = np.array([rng.choice(m, size=2, replace=False) for _ in range(H)])
        w = rng.uniform(*steepness, size=hidden) * rng.choice([-1.0, 1.0], size=hidden)
        t = 0.7 * rng.standard_normal(hidden)
        block = np.empty((n, H))
        block[:, :hidden] = np.tanh(w * (X[:, pairs[:hidden, 0]] - t))
        block[:, hidden:] = X[:, pairs[hidden:, 0]] * X[:, pairs[hidden:, 1]]
        block = (block - block.mean(axis=0)) / block.std(axis=0)
        latent[:, k * H:(k + 1) * H] = block
    arm_weights = np.zeros((G, K * H, J))
    arm_bias = np.zeros((G, J))
    for k in range(K):
        span = slice(k * H, (k + 1) * H)
        base = rng.standard_normal((H, J)) / np.sqrt(H)
        effect = rng.standard_normal((H, J)) / np.sqrt(H)
        arm_weights[2 * k, span] = base
        arm_weights[2 * k + 1, span] = base + effect
        arm_bias[2 * k] = rng.standard_normal(J)
        arm_bias[2 * k + 1] = arm_bias[2 * k] + 0.5 * rng.standard_normal(J)
    units = np.arange(n, dtype=np.int64)
    arms = np.repeat(np.arange(G, dtype=np.int64), n_per_arm)
    data = SyntheticData(
        X=X, unit_ids=units.copy(), units=units, arms=arms, Y=np.zeros((n, J)),
        arm_experiment=np.repeat(np.arange(K, dtype=np.int64), 2), control_arm=2 * np.arange(K, dtype=np.int64),
        experiments=[f"exp_{k:03d}" for k in range(K)], arm_names=["control", "treatment"] * K,
        metrics=[f"metric_{j}" for j in range(J)], noise_sd=noise_sd,
        _latent=latent, _arm_weights=arm_weights, _arm_bias=arm_bias,
    )
    data.Y = data.true_outcomes(units, arms) + noise_sd * rng.standard_normal((n, J))
    return data


def unrelated_world(seed: int, quick: bool) -> World:
    """:func:`unrelated_synthetic` with K = 8 experiments, 2,500 units per arm drawn
    (about 4,000 training units per experiment after the hold-out), m = 20, J = 3, noise
    sd 0.5. ``--quick``: K = 4, 750 per arm."""
    K, n_per_arm = (4, 750) if quick else (8, 2500)
    data = unrelated_synthetic(K, n_per_arm, seed=seed)
    held = _hold_out(data, np.random.default_rng(seed + 1), _share_of(len(data.unit_ids)))
    return _finish("unrelated", f"unrelated nonlinear experiments, K={K}, m=20, J=3, noise sd 0.5", data, held)


WORLDS: dict[str, Callable[[int, bool], World]] = {
    "paper25": lambda seed, quick: paper_world(25, seed, quick),
    "paper50": lambda seed, quick: paper_world(50, seed, quick),
    "paper100": lambda seed, quick: paper_world(100, seed, quick),
    "paper1000": lambda seed, quick: paper_world(1000, seed, quick),
    "overlap": overlap_world,
    "multiarm": multiarm_world,
    "unrelated": unrelated_world,
}


# ---------------------------------------------------------------------------- scoring


def pehe(truth: pd.DataFrame, estimate: np.ndarray) -> float:
    """Mean over metrics of the mean squared error per metric; rows with no estimate (NaN) left out."""
    err = pd.DataFrame({"metric": truth["metric"].to_numpy(), "sq": (estimate - truth["true_cate"].to_numpy()) ** 2})
    per_metric = err.dropna().groupby("metric")["sq"].mean()
    return float(per_metric.mean()) if len(per_metric) else float("nan")


def cate_variance(truth: pd.DataFrame) -> float:
    """Mean over metrics of the true CATE's variance within each (experiment, arm): the best constant's PEHE."""
    cell = truth.groupby(["experiment_id", "arm", "metric"])["true_cate"].transform("mean")
    centred = pd.DataFrame({"metric": truth["metric"], "sq": (truth["true_cate"] - cell) ** 2})
    return float(centred.groupby("metric")["sq"].mean().mean())


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables for the block, restoring the previous values after."""
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_defaults(world: World, workdir: Path, log: Callable[[str], None]) -> dict:
    """Write the raw tables, retrain as ``lrl retrain`` does, score the held-out units as ``lrl score``."""
    from lrl_pipeline import runner
    from lrl_pipeline.paths import project_root
    from lrl_pipeline.storage import LRLDatabase, write_raw_tables

    db, artifacts, home = workdir / "lrl.duckdb", workdir / "artifacts", workdir / "dagster_home"
    write_raw_tables(db, world.tables, replace=True)
    # A throw-away Dagster instance: runner.run_retrain with instance=None takes $DAGSTER_HOME,
    # as the CLI does after paths.ensure_dagster_home().
    with _env(DAGSTER_HOME=str(home), LRL_ARTIFACTS_DIR=str(artifacts)):
        home.mkdir(parents=True, exist_ok=True)
        # The project's instance settings (telemetry off, one DuckDB writer per pool), not its runs.
        settings = project_root() / "dagster_home" / "dagster.yaml"
        (home / "dagster.yaml").write_text(settings.read_text() if settings.is_file()
                                           else "telemetry:\n  enabled: false\n")
        started = time.perf_counter()
        result = runner.run_retrain(db, artifacts, progress=lambda line: log(f"  pipeline: {line}"))
        retrain_s = time.perf_counter() - started
        started = time.perf_counter()
        scores = runner.score_units(db, artifacts, world.eval_features)
        score_s = time.perf_counter() - started
    out = {"retrain_s": retrain_s, "score_s": score_s, "quarantine_rows": result.n_quarantined,
           "learner_fit_s": np.nan, "chosen": ""}
    with LRLDatabase(database=str(db)).connect(read_only=True, timeout_s=60.0) as con:
        try:
            versions = con.sql("SELECT * FROM pipeline.extractor_versions").df()
            row = versions[versions["version"] == result.extractor_version]
            if len(row) and "seconds" in row:
                out["learner_fit_s"] = float(row["seconds"].iloc[-1])
        except Exception as error:  # the table is internal; its absence costs one column
            log(f"  (no learner seconds: {error})")
    out["chosen"] = _chosen_config(artifacts, result.extractor_version)

    keys = ["unit_id", "experiment_id", "arm", "metric"]
    served = world.truth.merge(scores, on=keys, how="left")
    cate = served["cate"].to_numpy(dtype=np.float64, na_value=np.nan)
    se = served["cate_se"].to_numpy(dtype=np.float64, na_value=np.nan)
    truth = served["true_cate"].to_numpy()
    has_cate, has_se = np.isfinite(cate), np.isfinite(cate) & np.isfinite(se)
    out.update({
        "pehe_defaults": pehe(world.truth, cate),
        "unserved_rows": int((~has_cate).sum()),
        "coverage": float(np.mean(np.abs(cate - truth)[has_se] <= 1.96 * se[has_se])) if has_se.any() else np.nan,
        "null_se_rows": int((has_cate & ~has_se).sum()),
        "mean_cate_se": float(np.mean(se[has_se])) if has_se.any() else np.nan,
        # Calibrated Gaussian intervals have RMS(se) about RMS(error); far above 1, coverage comes cheap.
        "se_over_rmse": (float(np.sqrt(np.mean(se[has_se] ** 2) / np.mean((cate - truth)[has_se] ** 2)))
                         if has_se.any() else np.nan),
    })
    if "model" in served.columns:
        shares = served.loc[has_cate, "model"].astype(str).value_counts(normalize=True)
        out["models_served"] = ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
    else:
        out["models_served"] = ""
    return out


def _chosen_config(artifacts: Path, version: str) -> str:
    """What the saved learner trained with (extractor, d, weight_decay), where the artifact says."""
    try:
        from lrl_core.artifacts import ArtifactStore

        learner = ArtifactStore(artifacts).load(version).learner
        cfg = getattr(learner, "config_", None) or learner.config
        return _config_name(cfg.extractor, cfg.d, cfg.weight_decay)
    except Exception:  # informational only
        return ""


def _config_name(extractor, d, weight_decay) -> str:
    wd = f"{weight_decay:g}" if isinstance(weight_decay, (int, float)) else str(weight_decay)
    return f"{extractor} d={d} wd={wd}"


# ---------------------------------------------------------------------------- core-API fits


@dataclass
class CoreData:
    """The world's training rows as the pipeline pools them, prepared features, eval index."""

    X: np.ndarray           # (n, p) prepared features of the training-table units
    X_eval: np.ndarray      # (n_eval, p) prepared features of the held-out units
    units: np.ndarray       # (r,) row -> unit (row of X)
    arms: np.ndarray        # (r,) row -> global arm
    Y: np.ndarray           # (r, J)
    row_split: np.ndarray   # (r,) 0 train, 1 validation, 2 test (split_by_unit of the row's unit)
    n_arms: int
    eval_unit: np.ndarray   # (L,) truth row -> row of X_eval
    eval_arm: np.ndarray    # (L,) truth row -> global arm (-1: unknown to the pooled data)
    eval_control: np.ndarray
    eval_metric: np.ndarray  # (L,) truth row -> metric column


def core_data(world: World) -> CoreData:
    """Pool the raw tables as the pipeline does (``validate_raw``, ``build_pooled_data``,
    ``split_by_unit``, ``FeatureTransform`` fitted on the training split's units)."""
    valid = validate_raw(**world.tables)
    pooled = build_pooled_data(valid)
    unit_split = split_by_unit(pooled.unit_ids)
    transform = FeatureTransform().fit(pooled.features[unit_split == 0], pooled.feature_names)
    X = transform.transform(pooled.features)
    X_eval = transform.transform_frame(world.eval_features)

    truth = world.truth
    eval_pos = pd.Index(world.eval_features["unit_id"]).get_indexer(truth["unit_id"])
    arm_key = {(pooled.experiments[pooled.arm_experiment[g]], name): g for g, name in enumerate(pooled.arm_names)}
    exp_index = {e: k for k, e in enumerate(pooled.experiments)}
    eval_arm = np.array([arm_key.get(key, -1) for key in zip(truth["experiment_id"], truth["arm"])], dtype=np.int64)
    eval_exp = np.array([exp_index.get(e, -1) for e in truth["experiment_id"]], dtype=np.int64)
    eval_control = np.where(eval_exp >= 0, pooled.control_arm[np.maximum(eval_exp, 0)], -1)
    eval_metric = pd.Index(pooled.metrics).get_indexer(truth["metric"])
    return CoreData(X=X, X_eval=X_eval, units=pooled.row_unit, arms=pooled.row_arm, Y=pooled.Y,
                    row_split=unit_split[pooled.row_unit], n_arms=pooled.n_arms, eval_unit=eval_pos,
                    eval_arm=eval_arm, eval_control=eval_control, eval_metric=eval_metric)


def predict_truth_rows(model, core: CoreData) -> np.ndarray:
    """``model.predict_cate`` at every truth row, one call per experiment (its units, its arms)."""
    out = np.full(len(core.eval_unit), np.nan)
    known = (core.eval_arm >= 0) & (core.eval_metric >= 0)
    for control in np.unique(core.eval_control[known]):
        rows = np.flatnonzero(known & (core.eval_control == control))
        units, u_at = np.unique(core.eval_unit[rows], return_inverse=True)
        arms, a_at = np.unique(core.eval_arm[rows], return_inverse=True)
        pred = model.predict_cate(core.X_eval[units], arms, np.full(len(arms), control))
        out[rows] = pred[u_at, a_at, core.eval_metric[rows]]
    return out


def xgb_settings() -> dict:
    """The pipeline's ``t_learners`` XGBoost settings (falls back to its documented defaults)."""
    try:
        from lrl_pipeline.assets.training import BaselineConfig

        return dict(BaselineConfig().model_dump())
    except Exception:
        return dict(n_estimators=100, max_depth=4, learning_rate=0.1, n_jobs=1)


def run_baselines(world: World, core: CoreData, log: Callable[[str], None]) -> dict:
    """OLS and XGBoost T-learners on every written exposure row; PEHE on the held-out units."""
    out = {}
    fit = (core.X, core.units, core.arms, core.Y)
    for name, model in (("ols_t", OLSTLearner()),
                        ("xgb_t", XGBTLearner(**xgb_settings(), progress=False))):
        started = time.perf_counter()
        model.fit(*fit, n_arms=core.n_arms)
        out[f"pehe_{name}"] = pehe(world.truth, predict_truth_rows(model, core))
        out[f"{name}_s"] = time.perf_counter() - started
        log(f"  {name}: PEHE {out[f'pehe_{name}']:.4g} ({out[f'{name}_s']:.0f} s)")
    return out


def run_oracle(world: World, core: CoreData, log: Callable[[str], None]) -> tuple[dict, list[dict]]:
    """Every ``ORACLE_GRID`` configuration on the training split, early-stopped on the validation split."""
    train, val = core.row_split == 0, core.row_split == 1
    grid = []
    for point in ORACLE_GRID:
        name = _config_name(point["extractor"], point["d"], point["weight_decay"])
        started = time.perf_counter()
        try:
            learner = LRLearner(LRLConfig(**point, progress=False)).fit(
                core.X, core.units[train], core.arms[train], core.Y[train], n_arms=core.n_arms,
                validation=(core.units[val], core.arms[val], core.Y[val]))
        except Exception as error:
            log(f"  oracle {name}: failed: {error}")
            grid.append({"world": world.name, "config": name, **point, "pehe": np.nan, "val_loss": np.nan,
                         "epochs": np.nan, "seconds": time.perf_counter() - started, "error": str(error)})
            continue
        history = getattr(learner, "history_", None)
        best = getattr(learner, "best_epoch_", None)
        val_loss = history[best - 1]["val_loss"] if history and best else np.nan
        row = {"world": world.name, "config": name, **point,
               "pehe": pehe(world.truth, predict_truth_rows(learner, core)), "val_loss": val_loss,
               "epochs": getattr(learner, "n_epochs_", np.nan), "seconds": time.perf_counter() - started,
               "error": ""}
        grid.append(row)
        log(f"  oracle {name}: PEHE {row['pehe']:.4g}, validation loss {val_loss:.4g} "
            f"({row['epochs']} epochs, {row['seconds']:.0f} s)")
    frame = pd.DataFrame(grid)
    ok = frame.dropna(subset=["pehe"])
    if ok.empty:
        return {"pehe_oracle": np.nan, "oracle_config": "", "pehe_val_choice": np.nan, "val_choice_config": ""}, grid
    best = ok.loc[ok["pehe"].idxmin()]
    by_val = ok.loc[ok["val_loss"].idxmin()] if ok["val_loss"].notna().any() else best
    return {"pehe_oracle": float(best["pehe"]), "oracle_config": best["config"],
            "pehe_val_choice": float(by_val["pehe"]), "val_choice_config": by_val["config"],
            "oracle_s": float(frame["seconds"].sum())}, grid


# ---------------------------------------------------------------------------- report

COLUMNS = [
    ("world", "world", None),
    ("rows", "rows", "d"),
    ("eval_units", "eval units", "d"),
    ("cate_var", "CATE var", "g"),
    ("pehe_defaults", "PEHE defaults", "g"),
    ("pehe_ols_t", "OLS-T", "g"),
    ("pehe_xgb_t", "XGB-T", "g"),
    ("oracle", "oracle (config)", None),
    ("defaults_over_oracle", "defaults/oracle", "ratio"),
    ("defaults_vs_ols_pct", "defaults vs OLS", "pct"),
    ("defaults_over_var", "PEHE/var", "ratio"),
    ("coverage_text", "coverage (NULL se)", None),
    ("se_over_rmse", "RMS se/RMSE", "ratio"),
    ("retrain_text", "retrain s (learner)", None),
    ("chosen", "defaults chose", None),
    ("models_served", "served by", None),
]


def _fmt(value, kind) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    if kind == "d":
        return f"{int(value)}"
    if kind == "g":
        return f"{value:.4g}"
    if kind == "ratio":
        return f"{value:.2f}"
    if kind == "pct":
        return f"{value:+.0f}%"
    return str(value)


def table_frame(results: list[dict]) -> pd.DataFrame:
    """The printed table, one row per world (strings)."""
    rows = []
    for r in results:
        r = dict(r)
        oracle = r.get("pehe_oracle", np.nan)
        r["oracle"] = f"{oracle:.4g} ({r['oracle_config']})" if np.isfinite(oracle) else "-"
        d = r.get("pehe_defaults", np.nan)
        r["defaults_over_oracle"] = d / oracle if np.isfinite(oracle) else np.nan
        r["defaults_vs_ols_pct"] = 100.0 * (d / r.get("pehe_ols_t", np.nan) - 1.0)
        r["defaults_over_var"] = d / r["cate_var"]
        cov = r.get("coverage", np.nan)
        r["coverage_text"] = (f"{cov:.3f} ({r['null_se_rows']})" if np.isfinite(cov)
                              else (f"- ({r['null_se_rows']})" if "null_se_rows" in r else "-"))
        if "retrain_s" in r:
            r["retrain_text"] = f"{r['retrain_s']:.0f} ({_fmt(r.get('learner_fit_s'), 'g')})"
        else:
            r["retrain_text"] = "failed" if r.get("defaults_error") else "-"
        rows.append({title: _fmt(r.get(key), kind) for key, title, kind in COLUMNS})
    return pd.DataFrame(rows)


def to_markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def machine() -> str:
    import torch

    try:
        import xgboost

        xgb = xgboost.__version__
    except Exception:
        xgb = "?"
    cpu = platform.processor() or platform.machine()
    return (f"{platform.node()}, {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, torch {torch.__version__} "
            f"(CUDA {'yes' if torch.cuda.is_available() else 'no'}), numpy {np.__version__}, "
            f"pandas {pd.__version__}, xgboost {xgb}")


def write_report(results: list[dict], grid: list[dict], args, prefix: Path, started: float) -> str:
    table = table_frame(results)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]])
    header = [
        "# Defaults, untuned, through the pipeline (issue 10 item 6)",
        "",
        f"- Command: `{command}`",
        f"- Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; total {time.perf_counter() - started:.0f} s",
        f"- Machine: {machine()} (shared with other jobs: times are upper bounds)",
        f"- Seeds: world i drawn with {BASE_SEED} + 1000 i + {args.seed}"
        + (" ; --quick (smaller worlds)" if args.quick else ""),
        "- PEHE: mean over metrics of the mean over (held-out unit, treatment arm of its experiment) of "
        "(cate - true CATE)^2; CATE var: the true CATE's variance within each (experiment, arm), "
        "mean over metrics; PEHE/var < 0.5 is the issue's bar for judging coverage.",
        "- defaults: raw tables of the training units -> fresh DuckDB -> `runner.run_retrain` (as `lrl retrain`, "
        "fresh DAGSTER_HOME) -> `score_units` (as `lrl score`) on the held-out units. "
        "coverage: share of rows with |cate - true| <= 1.96 cate_se (in parentheses: rows with NULL cate_se, "
        "left out); RMS se/RMSE: root mean cate_se^2 over root mean squared error on those rows (about 1 when the "
        "intervals' width is calibrated). retrain s: wall time of run_retrain (in parentheses: the learner's fit seconds from "
        "pipeline.extractor_versions). defaults vs OLS: PEHE defaults / OLS-T - 1 (negative = better).",
        "- OLS-T, XGB-T: `lrl_core.baselines` T-learners on every written exposure row, features by "
        f"`FeatureTransform` fitted on the training split's units; XGBoost {xgb_settings()}.",
        "- oracle: lowest held-out PEHE over the product's search space, extractor {linear, mlp} x d {16, 32} x weight_decay {1, 10, 100} "
        "(other LRLConfig fields default), each fitted with the core API on split_by_unit == 0, early-stopped "
        "on == 1; every grid fit, with its validation loss, in "
        f"`{prefix.name}_oracle.csv`.",
        "- Held out: about 20% of each arm's units (>= 200 units) drawn per unit before writing; "
        "overlap world: nonlinear_synthetic with overlap=1.0 (every unit in 2 experiments), then half the "
        "units join a third experiment (uniform arm, outcomes from the generator's true_outcomes + noise).",
        "",
        "",
    ]
    worlds = ["", "Worlds:", ""] + [f"- `{r['world']}`: {r['description']}; {r['units']} training units, "
                                    f"{r['rows']} exposure rows, {r['eval_units']} held-out units, "
                                    f"{r['truth_rows']} scored rows"
                                    + (f"; unserved rows {r['unserved_rows']}" if r.get("unserved_rows") else "")
                                    + (f"; defaults failed: {r['defaults_error']}" if r.get("defaults_error") else "")
                                    for r in results]
    text = "\n".join(header) + to_markdown(table) + "\n" + "\n".join(worlds) + "\n"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".md").write_text(text)
    pd.DataFrame(results).to_csv(prefix.with_suffix(".csv"), index=False)
    if grid:
        pd.DataFrame(grid).to_csv(prefix.parent / f"{prefix.name}_oracle.csv", index=False)
    return table.to_string(index=False)


# ---------------------------------------------------------------------------- main


def run_world(name: str, index: int, args, log: Callable[[str], None]) -> tuple[dict, list[dict]]:
    started = time.perf_counter()
    world = WORLDS[name](BASE_SEED + 1000 * index + args.seed, args.quick)
    result = {"world": world.name, "description": world.description, "units": world.n_units, "rows": world.n_rows,
              "eval_units": world.n_eval, "truth_rows": len(world.truth), "cate_var": cate_variance(world.truth)}
    log(f"[{world.name}] {world.description}: {world.n_units} training units, {world.n_rows} exposure rows, "
        f"{world.n_eval} held out ({len(world.truth)} scored rows), CATE variance {result['cate_var']:.4g} "
        f"({time.perf_counter() - started:.0f} s to build)")

    log(f"[{world.name}] defaults: lrl retrain + lrl score")
    with tempfile.TemporaryDirectory(prefix=f"lrl-defaults-{world.name}-") as tmp:
        try:
            result.update(run_defaults(world, Path(tmp), log))
            log(f"[{world.name}] defaults: PEHE {result['pehe_defaults']:.4g}, coverage {result['coverage']:.3f} "
                f"({result['null_se_rows']} NULL se, {result['unserved_rows']} unserved), "
                f"retrain {result['retrain_s']:.0f} s, chose {result['chosen'] or '?'}"
                + (f", served by {result['models_served']}" if result["models_served"] else ""))
        except Exception as error:  # the estimator may be mid-change: keep going with the rest
            result["defaults_error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
            log(f"[{world.name}] defaults FAILED: {result['defaults_error']}")
            if args.verbose:
                traceback.print_exc()

    core = core_data(world)
    log(f"[{world.name}] T-learners")
    result.update(run_baselines(world, core, log))
    grid: list[dict] = []
    if args.oracle:
        log(f"[{world.name}] oracle grid ({len(ORACLE_GRID)} fits)")
        summary, grid = run_oracle(world, core, log)
        result.update(summary)
    result["world_s"] = time.perf_counter() - started
    log(f"[{world.name}] done in {result['world_s']:.0f} s")
    return result, grid


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", default=",".join(WORLDS),
                        help=f"comma-separated, from {', '.join(WORLDS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller worlds, for a smoke run")
    parser.add_argument("--no-oracle", dest="oracle", action="store_false", help="skip the oracle grid")
    parser.add_argument("--seed", type=int, default=0, help="added to every world's seed")
    parser.add_argument("--out", default=None,
                        help="output prefix (default results/defaults, with --quick results/defaults_quick)")
    parser.add_argument("--verbose", action="store_true", help="tracebacks of failed retrains")
    args = parser.parse_args(argv)
    names = [w.strip() for w in args.worlds.split(",") if w.strip()]
    unknown = [w for w in names if w not in WORLDS]
    if unknown:
        parser.error(f"unknown worlds {unknown}; choose from {list(WORLDS)}")
    prefix = Path(args.out) if args.out else RESULTS / ("defaults_quick" if args.quick else "defaults")
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"{time.perf_counter() - started:7.0f}s {line}", flush=True)

    results, grid = [], []
    for name in names:
        result, points = run_world(name, list(WORLDS).index(name), args, log)
        results.append(result)
        grid.extend(points)
        write_report(results, grid, args, prefix, started)  # after every world: a crash keeps what ran
    print()
    print(write_report(results, grid, args, prefix, started))
    print(f"\nWrote {prefix.with_suffix('.md')} and {prefix.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
