"""The pipeline at the paper's real-data scale: 53 experiments, 5.3M exposure rows, 142 features, 5 metrics.

Generates data of that shape (``lrl_core.synthetic.nonlinear_synthetic``;
``--scale`` multiplies the units per arm, 50,000 at ``--scale 1``) straight
into a new DuckDB file, runs the pipeline's own steps on it and prints one
table, every figure from the same run:

- ingest: the raw tables written (``lrl_pipeline.storage.write_raw_tables``), then
  validated (the ``validated_tables`` asset);
- features: the ``unit_features`` and ``training_examples`` assets;
- training as the ``lr_learner`` asset does it: ``load_pooled`` (DuckDB ->
  prepared float32 features), ``LRLearner`` with the default ``LRLConfig``
  (early stopping decides the epochs; CUDA when present), the artifact saved;
  time per epoch and to convergence, rows per second;
- the training step against the bare network, in the same process right
  after training: a copy of the fitted ``v(.)`` on the same device, forward +
  backward + AdamW step on one pre-made batch of the training batch size (and
  forward passes for the validation rows), for as many steps as an epoch has,
  alternating with real training epochs (five of each; see
  ``_step_vs_bare``): the machine's practical limit for this model. Beside
  it, the step's FLOP rate and a 4096 fp32 matmul's;
- heads: the ``experiment_heads`` asset over every experiment in one run (as
  ``lrl retrain`` starts it), then over one experiment (what ``lrl update``
  does for a newly launched one: read, validate, embed, fit, check, write),
  and the closed-form head alone on 100,000 units;
- scoring, CATEs per second over units x experiments x arms x metrics: the
  pooled model (``predict_cate``), the stored heads, and ``score_units``
  (``lrl score``: long form with standard errors);
- peak resident memory of each step: every step runs in a fresh process, as
  under Dagster's multiprocess executor, and the GPU's peak when on CUDA;
- the same training rows through the independent T-learners: OLS
  (``OLSTLearner``, every arm and metric, BLAS on one thread as the
  ``t_learners`` asset runs it) and XGBoost (``XGBTLearner`` defaults, 100
  trees of depth 6): ``--xgb-models N`` times a sample of about ``N`` models
  spread over the experiments, once on all cores and once on one thread per
  model, and extrapolates the faster to all of them (the table says so);
  ``--xgb-models all`` fits every one on all cores.

"Full retrain" is validation + features + load + training + save + all heads;
the T-learner figures are model fits only, without features or loading.

A step whose process grows past ``--memory-limit-gb`` (default 85% of the
memory available at the start) is stopped and reported, with the steps that
need its output, instead of running the machine out of memory.

Results go to ``<out>/scale_<scale>_<device>.md`` and ``.json``.

Usage::

    python benchmarks/scale.py --scale 0.1                  # a few minutes on 2 cores
    python benchmarks/scale.py --scale 1                    # the paper's size
    python benchmarks/scale.py --scale 1 --device cuda --xgb-models all
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import multiprocessing
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

K_EXPERIMENTS = 53
UNITS_PER_ARM = 50_000  # at --scale 1
N_FEATURES = 142
N_METRICS = 5
NEW_EXPERIMENT_UNITS = 100_000
SCORE_UNITS = 100_000  # units per scoring measurement
CLI_SCORE_UNITS = 10_000  # units through score_units (265 long-form rows each)
MEMORY_POLL_S = 0.5
ROUNDS = 5  # alternating rounds of a bare-network epoch and a training epoch


# ---------------------------------------------------------------------------- helpers


def _log(t0: float, message: str) -> None:
    """A progress line: wall-clock time and time since the run started."""
    elapsed = int(time.time() - t0)
    print(f"[{dt.datetime.now():%H:%M:%S} +{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", flush=True)


def _peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _timed(fn, *args, **kwargs):
    """``(result, seconds)`` of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _database(db: str):
    from lrl_pipeline.storage import LRLDatabase

    return LRLDatabase(database=db)


def _artifacts(db: str) -> str:
    """The benchmark's own model store next to its database (never ``$LRL_ARTIFACTS_DIR``)."""
    return str(Path(db).with_name(Path(db).stem + "_artifacts"))


def _load_training_rows(db: str):
    """``load_pooled`` and the training / validation rows, as the ``lr_learner`` asset reads them."""
    from lrl_pipeline.storage import load_pooled

    with _database(db).connect() as con:
        pooled, X, split = load_pooled(con)
    return pooled, X, pooled.split_rows(split, 0), pooled.split_rows(split, 1)


# ---------------------------------------------------------------------------- steps (each in a fresh process)


def step_generate(p: dict) -> dict:
    """Draw the data and write the four raw tables (the platform's job)."""
    from lrl_core.synthetic import nonlinear_synthetic
    from lrl_pipeline.storage import write_raw_tables

    t0 = p["t0"]
    _log(t0, f"generating {K_EXPERIMENTS} experiments x 2 arms x {p['per_arm']:,} units, {N_FEATURES} features")
    data, gen_s = _timed(nonlinear_synthetic, K_EXPERIMENTS, p["per_arm"], N_FEATURES, N_METRICS, seed=p["seed"])
    tables = data.raw_tables()
    n_units, n_rows = data.X.shape[0], data.units.shape[0]
    del data
    _log(t0, f"generated in {gen_s:.1f} s; writing the raw tables")
    written, write_s = _timed(write_raw_tables, p["db"], tables)
    _log(t0, f"raw tables written in {write_s:.1f} s: {written}")
    return {"generate_s": gen_s, "write_raw_s": write_s, "n_units": n_units, "n_rows": n_rows,
            "raw_rows": written, "db_bytes": os.path.getsize(p["db"]), "peak_rss": _peak_rss()}


def step_validate(p: dict) -> dict:
    """The ``validated_tables`` asset: read raw.*, validate, write pipeline.valid_* and the quarantine."""
    import dagster as dg

    from lrl_pipeline.assets import ingest

    _log(p["t0"], "validating the raw tables (asset validated_tables)")
    results, seconds = _timed(lambda: list(ingest.validated_tables(context=dg.build_asset_context(),
                                                                   database=_database(p["db"]))))
    quarantined = next(r.metadata["dagster/row_count"] for r in results if r.asset_key.path == ["quarantine"])
    _log(p["t0"], f"validated in {seconds:.1f} s ({quarantined} quarantine rows)")
    return {"validate_s": seconds, "quarantined": int(quarantined), "peak_rss": _peak_rss()}


def step_features(p: dict) -> dict:
    """The ``unit_features`` and ``training_examples`` assets."""
    import dagster as dg

    from lrl_pipeline.assets import features

    database = _database(p["db"])
    _log(p["t0"], "preparing features (asset unit_features)")
    meta, unit_s = _timed(features.unit_features, context=dg.build_asset_context(), database=database)
    _log(p["t0"], f"unit_features in {unit_s:.1f} s; building training examples (asset training_examples)")
    _, examples_s = _timed(features.training_examples, context=dg.build_asset_context(), database=database)
    _log(p["t0"], f"training_examples in {examples_s:.1f} s")
    return {"unit_features_s": unit_s, "training_examples_s": examples_s,
            "prepared_columns": int(meta.metadata["prepared_columns"]), "peak_rss": _peak_rss()}


def _step_vs_bare(learner, X, train, val, n_arms: int, metrics: list[str], batch_size: int, t0: float) -> dict:
    """The training step against the bare network, in alternating rounds.

    Each round times one epoch of the bare extractor (a copy of the fitted
    ``v(.)`` on the same device: forward + backward + AdamW on one pre-made
    batch of the training batch size, as many steps as a training epoch has,
    then forward passes over the validation rows) and, right after it, one
    real training epoch (the second epoch of a fresh two-epoch fit on the same
    rows, so neither warm-up nor data placement counts). Other processes only
    ever add time, so the fastest of each side is the machine's capability;
    the median of the per-round ratios is given beside it.
    """
    import torch

    from lrl_core.training import SMALL_STEP_MACS, LRLearner

    device, cfg = learner.device_, learner.config_
    net = copy.deepcopy(learner.model_.extractor).train()
    x = torch.randn(batch_size, X.shape[1], device=device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=device.type in ("cpu", "cuda"))

    def train_pass(steps: int) -> float:
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            loss = net(x).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(device)
        return time.perf_counter() - start

    @torch.no_grad()
    def eval_pass(steps: int) -> float:
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            net(x)
        _sync(device)
        return time.perf_counter() - start

    steps, eval_steps = math.ceil(len(train[0]) / batch_size), math.ceil(len(val[0]) / batch_size)
    # The learner's own rule: small CPU steps run on one thread (LRLearner.fit, SMALL_STEP_MACS).
    width = cfg.hidden * (X.shape[1] + cfg.d) if cfg.extractor == "mlp" else X.shape[1] * cfg.d
    threads = torch.get_num_threads()
    bare_threads = 1 if device.type == "cpu" and batch_size * width < SMALL_STEP_MACS else threads
    rounds = []
    for i in range(ROUNDS):
        torch.set_num_threads(bare_threads)
        if i == 0:
            train_pass(5)
            eval_pass(2)
        bare_train, bare_eval = train_pass(steps), eval_pass(eval_steps)
        torch.set_num_threads(threads)
        probe = LRLearner(cfg.replace(max_epochs=2)).fit(X, *train, n_arms=n_arms, validation=val,
                                                           metric_names=metrics)
        rounds.append((bare_train, bare_eval, probe.history_[-1]["seconds"]))
        _log(t0, f"bare network epoch {bare_train + bare_eval:.2f} s ({steps} steps + {eval_steps} forward "
                 f"passes), training epoch {rounds[-1][2]:.2f} s")
    bare_train, bare_eval, epoch = (np.array(column) for column in zip(*rounds))
    return {"bare_train_rows_per_s": float(steps * batch_size / bare_train.min()),
            "bare_eval_rows_per_s": float(eval_steps * batch_size / bare_eval.min()),
            "bare_epoch_s": float((bare_train + bare_eval).min()), "probe_epoch_s": float(epoch.min()),
            "step_efficiency": float((bare_train + bare_eval).min() / epoch.min()),
            "step_efficiency_paired": float(np.median((bare_train + bare_eval) / epoch)),
            "rounds": rounds}


def _matmul_gflops(device) -> float:
    """fp32 GFLOP/s of a 4096 x 4096 matrix product on ``device`` (median of 5)."""
    import torch

    n = 4096
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    times = []
    for _ in range(5):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / float(np.median(times)) / 1e9


def step_train(p: dict) -> dict:
    """Training as the ``lr_learner`` asset does it; then the bare network and the pooled model's scoring."""
    import torch

    from lrl_core.artifacts import ArtifactStore
    from lrl_core.config import LRLConfig
    from lrl_core.features import FeatureTransform
    from lrl_core.training import LRLearner
    from lrl_pipeline.storage import read_table

    t0 = p["t0"]
    out: dict = {"torch_threads": torch.get_num_threads()}
    _log(t0, "loading the pooled rows and prepared features from DuckDB (load_pooled)")
    (pooled, X, train, val), out["load_s"] = _timed(_load_training_rows, p["db"])
    with _database(p["db"]).connect(read_only=True) as con:
        stored = read_table(con, "feature_transform")
    transform = FeatureTransform.from_dict(json.loads(stored["transform_json"].iloc[0]))
    out.update(peak_rss_load=_peak_rss(), feature_matrix_bytes=X.nbytes, train_rows=len(train[0]),
               val_rows=len(val[0]), n_features=X.shape[1], n_arms=pooled.n_arms)
    _log(t0, f"loaded {X.shape[0]:,} x {X.shape[1]} features, {pooled.n_rows:,} rows in {out['load_s']:.1f} s; "
             f"training on {out['train_rows']:,} rows, validating on {out['val_rows']:,}")

    config = LRLConfig(progress=False, device=p["device"])
    if p["max_epochs"] is not None:
        config = config.replace(max_epochs=p["max_epochs"])
    last = [time.perf_counter()]

    def log_epoch(record: dict) -> None:
        if record["epoch"] == 1 or record["epoch"] % 10 == 0 or time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            _log(t0, f"epoch {record['epoch']}: {record['seconds']:.2f} s, train {record['train_loss']:.4f}, "
                     f"validation {record['val_loss']:.4f}")

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    # As the pipeline's lr_learner asset: model selection, then the jackknife of the CATE SEs.
    learner = LRLearner(config).fit(X, *train, n_arms=pooled.n_arms, validation=val,
                                    metric_names=pooled.metrics, callback=log_epoch,
                                    controls=pooled.control_arm[pooled.arm_experiment])
    device = learner.device_
    out["device"] = str(device)
    if device.type == "cuda":
        out.update(gpu_name=torch.cuda.get_device_name(device), gpu_peak_bytes=torch.cuda.max_memory_allocated(device))
    epochs = [r["seconds"] for r in learner.history_]
    best = learner.history_[learner.best_epoch_ - 1]["val_loss"]
    near = next(r["epoch"] for r in learner.history_ if r["val_loss"] <= 1.01 * best)
    out.update(history=[[r["epoch"], r["seconds"], r["val_loss"]] for r in learner.history_],
               epoch_within_1pct=near, seconds_within_1pct=float(np.sum(epochs[:near])))
    out.update(fit_s=learner.fit_seconds_, epochs=learner.n_epochs_, best_epoch=learner.best_epoch_,
               epoch_median_s=float(np.median(epochs)), epoch_first_s=epochs[0],
               best_val_loss=learner.history_[learner.best_epoch_ - 1]["val_loss"],
               # The learner's own rule (LRLConfig.min_steps_per_epoch) for its batch size.
               batch_size=max(1, min(config.batch_size, math.ceil(out["train_rows"] / config.min_steps_per_epoch))),
               hidden=config.hidden, d=learner.config_.d, extractor=learner.config_.extractor,
               weight_decay=learner.config_.weight_decay, selection=learner.selection_,
               # Selection's cost against one fit of what it chose (the chosen run's own epochs).
               search_s=learner.search_seconds_, chosen_fit_s=float(np.sum(epochs)),
               jackknife_s=learner.fit_seconds_ - learner.search_seconds_)
    _log(t0, f"trained on {device}: {learner.n_epochs_} epochs (best {learner.best_epoch_}) in "
             f"{learner.fit_seconds_:.1f} s, median epoch {out['epoch_median_s']:.2f} s")
    _, out["save_s"] = _timed(ArtifactStore(_artifacts(p["db"])).save, learner, transform, {
        "experiments": pooled.experiments, "arm_names": pooled.arm_names,
        "arm_experiment": pooled.arm_experiment.tolist(), "control_arm": pooled.control_arm.tolist(),
        "metrics": pooled.metrics, "n_rows": pooled.n_rows})
    out["peak_rss_train"] = _peak_rss()

    out.update(_step_vs_bare(learner, X, train, val, pooled.n_arms, pooled.metrics, out["batch_size"], t0))
    out["matmul_gflops"] = _matmul_gflops(device)

    # The pooled model's own CATEs: every treatment arm of every experiment against its control.
    treated = np.flatnonzero(pooled.control_arm[pooled.arm_experiment] != np.arange(pooled.n_arms))
    controls = pooled.control_arm[pooled.arm_experiment[treated]]
    units = X[: min(SCORE_UNITS, X.shape[0])]
    learner.predict_cate(units[:1000], treated, controls)
    cate, seconds = _timed(learner.predict_cate, units, treated, controls)
    out.update(score_pooled_cates=int(cate.size), score_pooled_s=seconds, peak_rss=_peak_rss())
    _log(t0, f"pooled model scored {cate.size:,} CATEs in {seconds:.2f} s")
    return out


def step_baselines(p: dict) -> dict:
    """The independent T-learners on the training rows: OLS for every model, XGBoost for all or a sample."""
    from lrl_core.baselines import OLSTLearner, XGBTLearner
    from lrl_pipeline.compute import one_blas_thread

    t0 = p["t0"]
    pooled, X, (units, arms, Y), _ = _load_training_rows(p["db"])
    G = pooled.n_arms
    _log(t0, f"OLS T-learners on {len(units):,} rows ({G} arms x {Y.shape[1]} metrics)")
    with one_blas_thread():  # as the t_learners asset fits them: many small solves
        ols, ols_s = _timed(OLSTLearner().fit, X, units, arms, Y, n_arms=G)
    observed = np.zeros((G, Y.shape[1]), dtype=np.int64)
    np.add.at(observed, arms, np.isfinite(Y).astype(np.int64))
    total = int((observed > 0).sum())
    _log(t0, f"OLS T-learners: {int((ols.n_obs_ > 0).sum())} models in {ols_s:.1f} s")

    if p["xgb_models"] is None or p["xgb_models"] >= total:
        chosen = np.arange(G)
    else:
        # Whole arms (all their metrics), spread evenly over the experiments.
        count = max(1, math.ceil(p["xgb_models"] / Y.shape[1]))
        chosen = np.unique(np.linspace(0, G - 1, count).round().astype(np.int64))
    rows = np.isin(arms, chosen)
    out = {"ols_s": ols_s, "ols_models": int((ols.n_obs_ > 0).sum()), "xgb_models_total": total,
           "rows_per_model": len(units) / G}
    # Threads per model: all cores is fastest on a quiet machine, one thread when other processes
    # hold the cores; a sample is fitted both ways and the faster one counts (all cores for 'all').
    settings = {"all_cores": None, "one_thread": 1} if chosen.size < G else {"all_cores": None}
    for label, n_jobs in settings.items():
        _log(t0, f"XGBoost T-learners ({label}): fitting {int((observed[chosen] > 0).sum())} of {total} models")
        xgb, seconds = _timed(XGBTLearner(n_jobs=n_jobs, progress=False).fit, X, units[rows], arms[rows], Y[rows],
                              n_arms=G)
        out[f"xgb_{label}_s_per_model"] = seconds / len(xgb.models_)
        _log(t0, f"XGBoost ({label}): {len(xgb.models_)} models in {seconds:.1f} s ({seconds / len(xgb.models_):.2f} s each)")
    fitted = len(xgb.models_)
    best = min(settings, key=lambda label: out[f"xgb_{label}_s_per_model"])
    out.update(xgb_models_fitted=fitted, xgb_best=best, xgb_fit_s=out[f"xgb_{best}_s_per_model"] * fitted,
               xgb_all_s=out[f"xgb_{best}_s_per_model"] * total, xgb_extrapolated=fitted < total,
               peak_rss=_peak_rss())
    return out


def step_heads(p: dict) -> dict:
    """The ``experiment_heads`` asset over all experiments, then over one; the head alone; scoring from heads."""
    import dagster as dg
    import pandas as pd

    from lrl_core.artifacts import ArtifactStore
    from lrl_core.heads import ExperimentHead
    from lrl_pipeline.assets import heads
    from lrl_pipeline.compute import one_blas_thread
    from lrl_pipeline.partitions import EXPERIMENT_PARTITIONS
    from lrl_pipeline.storage import read_heads, read_raw_table
    from lrl_pipeline.resources import ArtifactStoreResource
    from lrl_pipeline.runner import score_units

    t0 = p["t0"]
    database = _database(p["db"])
    artifacts = ArtifactStoreResource(root=_artifacts(p["db"]))
    with database.connect(read_only=True) as con:
        experiments = [str(e) for e in read_raw_table(con, "experiments")["experiment_id"]]
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(EXPERIMENT_PARTITIONS, experiments)

    def run(first: str, last: str):
        context = dg.build_asset_context(partition_key_range=dg.PartitionKeyRange(first, last), instance=instance)
        return heads.experiment_heads(context=context, database=database, artifacts=artifacts)

    out: dict = {}
    _log(t0, f"fitting the heads of all {len(experiments)} experiments in one run (asset experiment_heads)")
    result, out["heads_all_s"] = _timed(run, experiments[0], experiments[-1])
    out.update(heads_fitted=int(result.metadata["experiments_fitted"]), heads_rows=int(result.metadata["heads"]),
               peak_rss_heads_all=_peak_rss())
    _log(t0, f"{out['heads_fitted']} experiments' heads in {out['heads_all_s']:.1f} s")

    new = experiments[len(experiments) // 2]
    out["head_one_s"] = float(np.median([_timed(run, new, new)[1] for _ in range(3)]))
    with database.connect(read_only=True) as con:
        out["head_one_units"] = int(con.execute(
            "SELECT count(*) FROM raw.exposures WHERE experiment_id = ?", [new]).fetchall()[0][0])
    _log(t0, f"one experiment ({out['head_one_units']:,} units) end to end: {out['head_one_s']:.2f} s (median of 3)")

    # The closed-form head alone on 100k units (BLAS on one thread, as in the asset): embed, fit both arms.
    model = ArtifactStore(_artifacts(p["db"])).load()
    rng = np.random.default_rng(p["seed"])
    X = rng.standard_normal((max(NEW_EXPERIMENT_UNITS, SCORE_UNITS), model.learner.n_features_in_), dtype=np.float32)
    with one_blas_thread():
        V, out["embed_100k_s"] = _timed(model.learner.transform, X[:NEW_EXPERIMENT_UNITS])
        arm = (rng.random(NEW_EXPERIMENT_UNITS) < 0.5).astype(np.int64)
        Y = V[:, :N_METRICS] + rng.standard_normal((NEW_EXPERIMENT_UNITS, N_METRICS))
        _, out["head_fit_100k_s"] = _timed(ExperimentHead().fit, V, arm, Y, model.learner.metric_names_[:N_METRICS],
                                           model.learner)
    _log(t0, f"100k units: embedding {out['embed_100k_s']:.3f} s, head fit {out['head_fit_100k_s']:.3f} s")

    # Scoring from the stored heads: the arithmetic of `lrl score` without its long-form output.
    with database.connect(read_only=True) as con:
        stored = read_heads(con)
    stored = stored[stored["extractor_version"] == model.version]
    fitted = [ExperimentHead.from_records(r.to_dict("records"))
              for _, r in stored.groupby("experiment_id", sort=True)]
    with one_blas_thread():
        start = time.perf_counter()
        V = model.learner.transform(X[:SCORE_UNITS])
        out["score_heads_cates"] = int(sum(h.predict_cate(V).size for h in fitted))
        out["score_heads_s"] = time.perf_counter() - start
        start = time.perf_counter()
        out["score_heads_se_cates"] = int(sum(h.predict_cate_se(V).size for h in fitted))
        out["score_heads_se_s"] = time.perf_counter() - start
    _log(t0, f"heads scored {out['score_heads_cates']:,} CATEs in {out['score_heads_s']:.2f} s; their standard "
             f"errors in {out['score_heads_se_s']:.2f} s")

    frame = pd.DataFrame(X[:CLI_SCORE_UNITS], columns=model.transform.feature_names_)
    frame.insert(0, "unit_id", np.arange(len(frame)))
    scored, out["score_cli_s"] = _timed(score_units, Path(p["db"]), Path(_artifacts(p["db"])), frame)
    out.update(score_cli_cates=len(scored), peak_rss=_peak_rss())
    _log(t0, f"score_units: {len(scored):,} long-form rows in {out['score_cli_s']:.2f} s")
    return out


def step_effects(p: dict) -> dict:
    """The effects assets (``arm_effects``, ``effect_covariance``, ``metric_proxies``) as the retrain runs them."""
    import dagster as dg

    from lrl_pipeline.assets import effects
    from lrl_pipeline.resources import ArtifactStoreResource

    t0 = p["t0"]
    _log(t0, "effects across experiments: per-arm sums in DuckDB, five estimators, proxies")
    context = dg.build_asset_context()
    results, seconds = _timed(lambda: list(effects.effects_across_experiments(
        context=context, database=_database(p["db"]), artifacts=ArtifactStoreResource(root=_artifacts(p["db"])))))
    meta = results[0].metadata
    out = {"effects_s": seconds, "effects_aggregation_s": float(meta["aggregation_seconds"]),
           "effects_arms": int(meta["treated_arms"]), "peak_rss": _peak_rss()}
    _log(t0, f"effects of {out['effects_arms']} arms in {seconds:.1f} s ({out['effects_aggregation_s']:.1f} s in DuckDB)")
    return out


STEPS = {"generate": step_generate, "validate": step_validate, "features": step_features,
         "train": step_train, "effects": step_effects, "heads": step_heads, "baselines": step_baselines}
NEEDS = {"validate": "generate", "features": "validate", "train": "features", "effects": "train", "heads": "train",
         "baselines": "features"}


def _child(name: str, params: dict, conn) -> None:
    try:
        conn.send(("ok", STEPS[name](params)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which carries on
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _rss_of(pid: int) -> int:
    """Current resident set size of a process in bytes (0 where /proc is not there)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _run_step(name: str, params: dict, memory_limit: int) -> dict:
    """Run one step in a fresh process, so that its peak memory is its own.

    Returns the step's results with the load average around it, or
    ``{"failed": reason}``; a process that grows past ``memory_limit`` bytes is
    killed before it can exhaust the machine.
    """
    before = os.getloadavg()[0]
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(name, params, send), daemon=True)
    process.start()
    send.close()
    message = None
    while message is None:
        if receive.poll(MEMORY_POLL_S):
            try:
                message = receive.recv()
            except EOFError:
                process.join()
                message = ("error", f"the process died (exit code {process.exitcode}; killed by the system?)")
        elif _rss_of(process.pid) > memory_limit:
            rss = _rss_of(process.pid)
            process.kill()
            message = ("error", f"stopped at {rss / 1e9:.1f} GB resident, past the {memory_limit / 1e9:.1f} GB limit")
        elif not process.is_alive() and not receive.poll(0):
            message = ("error", f"the process died (exit code {process.exitcode}; killed by the system?)")
    process.join()
    status, value = message
    if status == "error":
        _log(params["t0"], f"step {name} FAILED: {value.strip().splitlines()[-1]}")
        return {"failed": value.strip().splitlines()[-1], "traceback": value}
    value["load_before"], value["load_after"] = before, os.getloadavg()[0]
    return value


# ---------------------------------------------------------------------------- report


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def _rate(n: float) -> str:
    return f"{n / 1e6:.2f} M/s"


def _machine(device: str) -> str:
    """CPU model and count, memory, torch version, GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    import torch

    text = f"{os.cpu_count()} CPUs ({cpu}), {memory / 2**30:.0f} GiB RAM, torch {torch.__version__}"
    if device == "cuda":
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def _revision() -> str:
    """The checkout's commit, ``+changes`` when the tree differs from it: which code a result measured."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if changed else "")


def _available_memory() -> int:
    """MemAvailable from /proc/meminfo (total physical memory elsewhere), bytes."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def summarise(r: dict) -> dict:
    """Derived figures (throughputs, ratios, the full retrain), from the steps that ran."""
    ok = {k: v for k, v in r.items() if "failed" not in v}
    s: dict = {}
    if "train" in ok:
        t = ok["train"]
        # Extractor forward FLOPs per row, for the extractor model selection chose.
        flop_row = (2 * (t["n_features"] * t["hidden"] + t["hidden"] * t["d"]) if t.get("extractor", "mlp") == "mlp"
                    else 2 * t["n_features"] * t["d"])
        s.update(
            train_rows_per_s=t["train_rows"] / t["epoch_median_s"],
            # Backward costs about twice the forward: 3x the forward's FLOPs per trained row.
            train_gflops=(3 * t["train_rows"] + t["val_rows"]) * flop_row / t["probe_epoch_s"] / 1e9,
            bare_gflops=3 * flop_row * t["bare_train_rows_per_s"] / 1e9,
            score_pooled_per_s=t["score_pooled_cates"] / t["score_pooled_s"],
        )
    if "heads" in ok:
        h = ok["heads"]
        s.update(score_heads_per_s=h["score_heads_cates"] / h["score_heads_s"],
                 score_heads_se_per_s=h["score_heads_se_cates"] / h["score_heads_se_s"],
                 score_cli_per_s=h["score_cli_cates"] / h["score_cli_s"])
    if all(k in ok for k in ("validate", "features", "train", "heads")):
        f, t = ok["features"], ok["train"]
        s["retrain_parts_s"] = {"validation": ok["validate"]["validate_s"],
                                "features": f["unit_features_s"] + f["training_examples_s"],
                                "load": t["load_s"], "fit": t["fit_s"], "save": t["save_s"],
                                "heads": ok["heads"]["heads_all_s"]}
        if "effects" in ok:
            s["retrain_parts_s"]["effects"] = ok["effects"]["effects_s"]
        s["retrain_s"] = sum(s["retrain_parts_s"].values())
        if "baselines" in ok:
            s["xgb_ratio"] = ok["baselines"]["xgb_all_s"] / s["retrain_s"]
            s["ols_ratio"] = ok["baselines"]["ols_s"] / s["retrain_s"]
    pipeline = [ok[k]["peak_rss"] for k in ("validate", "features", "train", "effects", "heads", "baselines")
                if k in ok]
    if pipeline:
        s["peak_rss_max"] = max(pipeline)
    if "train" in ok and pipeline:
        s["memory_ratio"] = s["peak_rss_max"] / ok["train"]["feature_matrix_bytes"]
    return s


def table(r: dict, per_arm: int) -> str:
    """The results table (markdown); a failed step shows why, and what it blocked."""
    s = r["summary"]
    rows: list[tuple[str, str, str]] = []
    ok = {k: v for k, v in r.items() if k in STEPS and "failed" not in v}
    n_units = ok["generate"]["n_units"] if "generate" in ok else K_EXPERIMENTS * 2 * per_arm
    fm = ok["train"]["feature_matrix_bytes"] if "train" in ok else n_units * N_FEATURES * 4
    n_rows = ok["generate"]["n_rows"] if "generate" in ok else n_units
    data = (f"{n_units:,} units, {n_rows:,} exposure rows, {K_EXPERIMENTS} experiments x 2 arms, "
            f"{N_FEATURES} features, {N_METRICS} metrics; float32 feature matrix {_gb(fm)}")
    if "generate" in ok:
        data += f"; DuckDB file {_gb(ok['generate']['db_bytes'])}"
    rows.append(("data", data, ""))
    for name in STEPS:
        if name in r and "failed" in r[name]:
            rows.append((f"**step {name} failed**", "-", r[name]["failed"].replace("|", "/")))
        elif name not in r:
            rows.append((f"step {name}", "not run", f"needs step {NEEDS[name]}"))
    if "generate" in ok:
        g = ok["generate"]
        if g.get("reused"):
            rows.append(("raw tables", "reused", "from an earlier run (--reuse-raw); ingest not timed"))
        else:
            rows += [("generate (not part of the pipeline)", f"{g['generate_s']:.1f} s",
                      f"peak RSS {_gb(g['peak_rss'])}"),
                     ("ingest: write raw tables", f"{g['write_raw_s']:.1f} s",
                      f"{g['raw_rows']['outcomes']:,} outcome rows")]
    if "validate" in ok:
        v = ok["validate"]
        rows.append(("ingest: validate (validated_tables)", f"{v['validate_s']:.1f} s", f"peak RSS {_gb(v['peak_rss'])}"))
    if "features" in ok:
        f = ok["features"]
        rows += [("feature table (unit_features)", f"{f['unit_features_s']:.1f} s", f"peak RSS {_gb(f['peak_rss'])}"),
                 ("training examples (training_examples)", f"{f['training_examples_s']:.1f} s", "")]
    if "train" in ok:
        t = ok["train"]
        rows += [
            ("load for training (load_pooled)", f"{t['load_s']:.1f} s",
             f"{n_units / t['load_s'] / 1e6:.2f} M units/s; peak RSS {_gb(t['peak_rss_load'])}"),
            ("training: epoch (median, with its validation pass)", f"{t['epoch_median_s']:.2f} s",
             f"{_rate(s['train_rows_per_s'])} training rows; first epoch {t['epoch_first_s']:.2f} s; "
             f"batch {t['batch_size']}, {t['device']}, {t['torch_threads']} threads"),
            ("training: to convergence (fit)", f"{t['fit_s']:.1f} s",
             f"{t['epochs']} epochs, best {t['best_epoch']} (validation MSE {t['best_val_loss']:.4f}; within 1% "
             f"of it from epoch {t['epoch_within_1pct']}, after {t['seconds_within_1pct']:.0f} s of epochs); "
             f"{t['train_rows']:,} training + {t['val_rows']:,} validation rows; peak RSS {_gb(t['peak_rss_train'])}"),
            ("model selection: search / one fit of the chosen configuration",
             f"{t['search_s']:.1f} s / {t['chosen_fit_s']:.1f} s = {t['search_s'] / t['chosen_fit_s']:.2f}x",
             f"chose {t['extractor']} d={t['d']} weight_decay={t['weight_decay']:g} of {len(t['selection'])} "
             f"candidates (target: at most 1.5x)"),
            ("jackknife of the CATE standard errors (2 refits)", f"{t['jackknife_s']:.1f} s",
             f"{t['jackknife_s'] / t['chosen_fit_s']:.2f}x the chosen fit"),
            ("bare network: same v(.), fwd + bwd + AdamW, pre-made batch", _rate(t["bare_train_rows_per_s"]),
             f"forward only {_rate(t['bare_eval_rows_per_s'])}; fastest of {ROUNDS}"),
            ("training step vs bare network (bare epoch / training epoch)", f"{100 * t['step_efficiency']:.0f} %",
             f"fastest of {ROUNDS} alternating each: {t['bare_epoch_s']:.2f} s vs {t['probe_epoch_s']:.2f} s; "
             f"median of the {ROUNDS} paired ratios {100 * t['step_efficiency_paired']:.0f} %"),
            ("FLOP rate: training / bare network / fp32 matmul 4096",
             f"{s['train_gflops']:.1f} / {s['bare_gflops']:.1f} / {t['matmul_gflops']:.0f} GFLOP/s",
             "extractor FLOPs (backward = 2x forward), fastest epochs; matmul median of 5"),
            ("save artifact", f"{t['save_s']:.2f} s", ""),
            ("scoring: pooled model (predict_cate)", _rate(s["score_pooled_per_s"]),
             f"{t['score_pooled_cates']:,} CATEs in {t['score_pooled_s']:.2f} s"),
        ]
        if "gpu_peak_bytes" in t:
            rows.append(("GPU peak memory (training)", _gb(t["gpu_peak_bytes"]), t["gpu_name"]))
    if "heads" in ok:
        h = ok["heads"]
        rows += [
            (f"heads: all {h['heads_fitted']} experiments, one run (experiment_heads)", f"{h['heads_all_s']:.1f} s",
             f"{h['heads_rows']} heads; peak RSS {_gb(h['peak_rss_heads_all'])}"),
            (f"new experiment ({h['head_one_units']:,} units), end to end (experiment_heads, one partition)",
             f"{h['head_one_s']:.2f} s", "read + validate + embed + fit + check + write; median of 3"),
            (f"head alone, {NEW_EXPERIMENT_UNITS:,} units: embed + closed-form fit",
             f"{h['embed_100k_s'] + h['head_fit_100k_s']:.3f} s",
             f"embed {h['embed_100k_s']:.3f} s, fit {h['head_fit_100k_s']:.3f} s"),
            ("scoring: stored heads, CATE / with standard errors",
             f"{_rate(s['score_heads_per_s'])} / {_rate(s['score_heads_se_per_s'])}",
             f"{h['score_heads_cates']:,} CATEs (embedding included); standard errors {h['score_heads_se_s']:.2f} s"),
            ("scoring: score_units (`lrl score`, long form + SE)", _rate(s["score_cli_per_s"]),
             f"{h['score_cli_cates']:,} rows in {h['score_cli_s']:.2f} s"),
        ]
    if "effects" in ok:
        e = ok["effects"]
        rows.append(("effects across experiments (arm_effects, effect_covariance, metric_proxies)",
                     f"{e['effects_s']:.1f} s", f"{e['effects_arms']} treated arms; per-arm sums in DuckDB "
                     f"{e['effects_aggregation_s']:.1f} s (with loading the pooled rows); peak RSS {_gb(e['peak_rss'])}"))
    if "retrain_s" in s:
        rows.append(("full retrain: validation + features + load + fit + save + effects + all heads"
                     if "effects" in s["retrain_parts_s"] else
                     "full retrain: validation + features + load + fit + save + all heads", f"{s['retrain_s']:.1f} s",
                     " + ".join(f"{k} {v:.1f}" for k, v in s["retrain_parts_s"].items())))
    if "baselines" in ok:
        b = ok["baselines"]
        ratio = f"; {s['ols_ratio']:.2f}x the full retrain" if "ols_ratio" in s else ""
        rows.append(("OLS T-learners", f"{b['ols_s']:.1f} s", f"{b['ols_models']} models{ratio}"))
        per_model = " / ".join(f"{b[f'xgb_{label}_s_per_model']:.2f} s ({label.replace('_', ' ')})"
                               for label in ("all_cores", "one_thread") if f"xgb_{label}_s_per_model" in b)
        note = (f"**extrapolated** from {b['xgb_models_fitted']} measured fits per setting: {per_model} per "
                f"model" if b["xgb_extrapolated"] else f"all {b['xgb_models_fitted']} fitted")
        ratio = f"; {s['xgb_ratio']:.1f}x the full retrain" if "xgb_ratio" in s else ""
        rows.append(("XGBoost T-learners (100 trees, depth 6)", f"{b['xgb_all_s']:.0f} s",
                     f"{b['xgb_models_total']} models of {b['rows_per_model']:,.0f} rows, {note}{ratio}"))
    if "peak_rss_max" in s:
        peaks = ", ".join(f"{k} {_gb(ok[k]['peak_rss'])}" for k in ("validate", "features", "train", "effects",
                                                                     "heads", "baselines") if k in ok)
        ratio = f"{s['memory_ratio']:.1f}x the feature matrix; " if "memory_ratio" in s else ""
        rows.append(("peak RSS, largest pipeline step", _gb(s["peak_rss_max"]), ratio + peaks))
    loads = [x[k] for x in ok.values() for k in ("load_before", "load_after") if k in x]
    if loads:
        rows.append(("load average (1 min) around the steps", f"{min(loads):.1f} - {max(loads):.1f}",
                     f"{os.cpu_count()} CPUs"))
    lines = ["| step | measured | notes |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.1,
                        help="units per arm as a share of the paper's 50,000 (1 = 5.3M rows)")
    parser.add_argument("--db", type=Path, default=None,
                        help="DuckDB file to create (default: in a temporary directory, deleted afterwards)")
    parser.add_argument("--reuse-raw", action="store_true",
                        help="keep the raw tables already in --db (from an earlier run) instead of generating them")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="default: LRLConfig's ceiling; early stopping decides")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="training device (default: CUDA when present)")
    parser.add_argument("--xgb-models", default="20",
                        help="XGBoost models to time and extrapolate from, or 'all' (530 at this shape)")
    parser.add_argument("--memory-limit-gb", type=float, default=None,
                        help="stop a step past this resident size (default: 85%% of the memory available now)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the .md and .json results")
    args = parser.parse_args(argv)
    if args.xgb_models != "all" and not args.xgb_models.isdigit():
        parser.error("--xgb-models takes a positive number or 'all'")

    per_arm = max(2, int(round(UNITS_PER_ARM * args.scale)))
    scratch = None
    if args.db is None:
        scratch = Path(tempfile.mkdtemp(prefix="lrl_scale_"))
        db = scratch / "scale.duckdb"
    else:
        db = args.db.expanduser().resolve()
        if args.reuse_raw and not db.is_file():
            parser.error("--reuse-raw needs an existing --db")
        if db.exists() and not args.reuse_raw:
            parser.error(f"{db} exists: give a new path, or --reuse-raw to keep its raw tables")
    shutil.rmtree(_artifacts(str(db)), ignore_errors=True)
    memory_limit = int(args.memory_limit_gb * 1e9) if args.memory_limit_gb else int(0.85 * _available_memory())

    t0 = time.time()
    params = {"t0": t0, "db": str(db), "seed": args.seed, "per_arm": per_arm, "device": args.device,
              "max_epochs": args.max_epochs, "xgb_models": None if args.xgb_models == "all" else int(args.xgb_models)}
    started = dt.datetime.now()
    _log(t0, f"scale {args.scale}: {per_arm:,} units per arm; database {db}; memory limit per step "
             f"{memory_limit / 1e9:.1f} GB")
    results: dict = {}
    try:
        for name in STEPS:
            if name == "generate" and args.reuse_raw:
                results[name] = _reused_raw(str(db))
            elif name == "generate" or NEEDS[name] in results and "failed" not in results[NEEDS[name]]:
                results[name] = _run_step(name, params, memory_limit)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    results["summary"] = summarise({k: v for k, v in results.items() if k in STEPS})
    device = results.get("train", {}).get("device", args.device or "cpu").split(":")[0]
    command = "python benchmarks/scale.py " + " ".join(sys.argv[1:] if argv is None else argv)
    code = _revision()  # once: the .md and the .json name the same code
    text = (f"# benchmarks/scale.py --scale {args.scale:g} ({device})\n\n"
            f"- command: `{command.strip()}`\n"
            f"- date: {started:%Y-%m-%d %H:%M} (local), {(time.time() - t0) / 60:.1f} minutes in all\n"
            f"- machine: {_machine(device)}\n- code: {code}\n\n" + table(results, per_arm) + "\n")
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"scale_{args.scale:g}_{device}"
    (args.out / f"{stem}.md").write_text(text)
    results["meta"] = {"command": command.strip(), "date": started.isoformat(timespec="seconds"),
                       "machine": _machine(device), "code": code, "scale": args.scale, "per_arm": per_arm,
                       "memory_limit_bytes": memory_limit}
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=float))
    _log(t0, f"wrote {args.out / stem}.md and .json")


def _reused_raw(db: str) -> dict:
    """The raw tables already in ``db`` (``--reuse-raw``): their shape, nothing timed."""
    with _database(db).connect(read_only=True) as con:
        count = {name: con.execute(f"SELECT count(*) FROM raw.{name}").fetchall()[0][0]
                 for name in ("unit_features", "experiments", "exposures", "outcomes")}
    return {"reused": True, "n_units": count["unit_features"], "n_rows": count["exposures"], "raw_rows": count,
            "db_bytes": os.path.getsize(db)}


if __name__ == "__main__":
    main()
