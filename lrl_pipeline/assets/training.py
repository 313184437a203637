"""Training: the pooled LR-learner (saved as a versioned extractor) and the T-learner baselines.

Both train on the training split and stop or get scored on the validation
split; the test split is left for the report. The database is opened only
to read and to record, never during a fit, so readers are not locked out.
"""
# No `from __future__ import annotations`: Dagster reads the context, config and
# resource annotations at definition time to inject them.
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Optional

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from lrl_core.baselines import OLSTLearner, TLearners, XGBTLearner
from lrl_core.config import LRLConfig
from lrl_core.features import FeatureTransform
from lrl_core.metrics import metric_scale, risk_table
from lrl_core.report.figures import figure_to_markdown, training_curves
from lrl_core.training import LRLearner
from lrl_pipeline.compute import one_blas_thread
from lrl_pipeline.paths import train_workers
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.storage import (
    ensure_schema, extractor_versions_in_use, load_pooled, LRLDatabase, read_table,
    record_extractor_version, replace_table, utc_now,
)

from lrl_pipeline.workers.train import command as worker_command, read_learner, write_inputs

GROUP = "training"


def training_description(pooled) -> dict:
    """What a saved model was trained on: experiments, arms (global order) and metrics."""
    return {
        "experiments": pooled.experiments, "arm_names": pooled.arm_names,
        "arm_experiment": pooled.arm_experiment.tolist(), "control_arm": pooled.control_arm.tolist(),
        "metrics": pooled.metrics, "n_rows": pooled.n_rows, "trained_at": utc_now().isoformat(),
    }


def describe_choice(learner: LRLearner) -> str:
    """One line: the configuration trained, and how it was chosen."""
    cfg = learner.config_
    line = f"{cfg.extractor} extractor, d={cfg.d}, weight_decay={cfg.weight_decay:g}"
    if learner.selection_:
        line += f" (best validation loss of {len(learner.selection_)} candidates)"
    return line


def selection_markdown(learner: LRLearner) -> str:
    """The candidates of model selection and their validation losses, as a markdown table."""
    if not learner.selection_:
        return "Nothing searched: every searchable field was set."
    table = pd.DataFrame(learner.selection_).sort_values("val_loss")
    return table.to_markdown(index=False, floatfmt=".4f")
KEEP_VERSIONS = 5
"""Extractor versions kept in the artifact store (the current one always is)."""
_DEFAULT = LRLConfig()


class TrainingConfig(dg.Config):
    """Hyperparameters of the LR-learner; the defaults are ``LRLConfig()``'s. The extractor, ``d``
    and ``weight_decay`` are chosen on the validation split unless set here (a set one is fixed)."""

    d: Optional[int] = Field(default=_DEFAULT.d, description="Embedding dimension of v(x); unset: chosen.")
    extractor: Optional[str] = Field(default=_DEFAULT.extractor,
                                     description="'mlp' (two layers, ReLU) or 'linear'; unset: chosen.")
    hidden: int = Field(default=_DEFAULT.hidden, description="Hidden width of the MLP extractor.")
    lr: float = Field(default=_DEFAULT.lr, description="Adam learning rate (halved on validation plateaus).")
    weight_decay: Optional[float] = Field(default=_DEFAULT.weight_decay,
                                          description="L2 penalty of the summed objective; unset: chosen.")
    batch_size: int = Field(default=_DEFAULT.batch_size)
    max_epochs: int = Field(default=_DEFAULT.max_epochs, description="Ceiling; early stopping decides.")
    patience: int = Field(default=_DEFAULT.patience,
                          description="Patience of early stopping, in optimizer steps expressed as epochs of "
                                      "the smallest data sets (see LRLConfig.patience).")
    interval_refits: int = Field(default=_DEFAULT.interval_refits,
                                 description="Jackknife refits for the CATE standard errors; 0: none.")
    seed: int = Field(default=_DEFAULT.seed)
    workers: int = Field(default=0, description="Data-parallel ranks (torchrun through the Pipes client "
                                                "resource); 0: $LRL_TRAIN_WORKERS, else 1 (in process).")

    def lrl_config(self) -> LRLConfig:
        """The learner's configuration: these fields, and an epoch bar only when a person watches.

        Device choice stays with LRLearner (LRL_DEVICE, else CUDA when present). ``lrl retrain`` runs
        the job in its own process, so at a terminal the bar shows there; in the UI's and the
        daemon's runs stderr is a log file, which tqdm would only clutter.
        """
        return LRLConfig(**self.model_dump(exclude={"workers"}), progress=sys.stderr.isatty())


class BaselineConfig(dg.Config):
    """The XGBoost T-learner: modest trees, so a retrain of the demo stays within minutes on two cores."""

    n_estimators: int = Field(default=100)
    max_depth: int = Field(default=4)
    learning_rate: float = Field(default=0.1)
    # One thread: on a few hundred rows per model threads gain little, and when the cores are
    # shared, OpenMP threads waiting on each other made fits 10x slower (measured).
    n_jobs: int = Field(default=1, description="Threads per XGBoost model.")


def _fit_data_parallel(context: dg.AssetExecutionContext, client: dg.PipesSubprocessClient, workers: int,
                       X: np.ndarray, train: tuple, validation: tuple | None, pooled, controls: np.ndarray,
                       lrl_config: LRLConfig) -> tuple[LRLearner, list[dict]]:
    """The fit on ``workers`` torchrun ranks through the Pipes client: inputs to a temporary folder,
    the ranks' logs and throughput back through Pipes, the learner rank 0 wrote."""
    # The ranks read and write this folder: on another machine (a pod), a volume both mount.
    with tempfile.TemporaryDirectory(prefix="lrl-ddp-", dir=os.environ.get("LRL_WORKER_DIR") or None) as folder:
        write_inputs(Path(folder), X, train, validation, pooled.n_arms, pooled.metrics, controls, lrl_config)
        context.log.info(f"training on {workers} data-parallel ranks (torchrun through {type(client).__name__})")
        # One BLAS thread per core a rank has: torchrun's own default is 1, and it says so on stderr.
        threads = max(1, (os.cpu_count() or 1) // workers)
        with warnings.catch_warnings():
            # The subprocess client's message reader calls a preview API of Dagster's own.
            warnings.simplefilter("ignore", dg.PreviewWarning)
            invocation = client.run(context=context, command=worker_command(Path(folder), workers),
                                    env={"OMP_NUM_THREADS": str(threads)})
        messages = [m for m in invocation.get_custom_messages() if isinstance(m, dict) and "ranks" in m]
        if not messages:
            raise dg.Failure("the data-parallel ranks finished without reporting: see the run's logs")
        return read_learner(Path(folder)), messages[-1]["ranks"]


@dg.asset(group_name=GROUP, kinds={"pytorch"}, pool="duckdb", code_version="1", deps=["training_examples"])
def lr_learner(context: dg.AssetExecutionContext, config: TrainingConfig, database: LRLDatabase,
               artifacts: ArtifactStoreResource, pipes_client: dg.PipesSubprocessClient) -> dg.MaterializeResult:
    """The pooled LR-learner; its extractor v(.) and feature transform are saved as a new artifact
    version, which becomes the current one. With more than one worker, the fit runs data-parallel
    under ``torchrun`` through the Pipes client (see :mod:`lrl_pipeline.workers.train`)."""
    with database.connect() as con:
        pooled, X, split = load_pooled(con)
        stored = read_table(con, "feature_transform")
    transform = FeatureTransform.from_dict(json.loads(stored["transform_json"].iloc[0]))
    train, val = pooled.split_rows(split, 0), pooled.split_rows(split, 1)
    validation = val if len(val[0]) else None
    controls = pooled.control_arm[pooled.arm_experiment]
    workers = config.workers or train_workers()
    ranks: list[dict] = []
    if workers > 1:
        learner, ranks = _fit_data_parallel(context, pipes_client, workers, X, train, validation, pooled, controls,
                                            config.lrl_config().replace(progress=False))
    else:
        def log_epoch(record: dict) -> None:
            if record["epoch"] == 1 or record["epoch"] % 10 == 0:
                context.log.info(f"{record['candidate']}, epoch {record['epoch']}: train "
                                 f"{record['train_loss']:.4f}, validation {record['val_loss']:.4f}")

        learner = LRLearner(config.lrl_config()).fit(
            X, *train, n_arms=pooled.n_arms, validation=validation, metric_names=pooled.metrics,
            callback=log_epoch, controls=controls)
    context.log.info(f"chose {describe_choice(learner)}")
    store = artifacts.store()
    version = store.save(learner, transform, training_description(pooled))
    best = learner.history_[learner.best_epoch_ - 1]
    with database.connect() as con:
        # A few old versions stay loadable for rollbacks, and every version a stored head was
        # fitted on stays until the sensor has refitted it.
        pruned = store.prune(keep=KEEP_VERSIONS, protect=extractor_versions_in_use(con))
        record_extractor_version(con, {
            "version": version, "trained_at": utc_now(), "n_units": pooled.n_units, "n_rows": pooled.n_rows,
            "n_experiments": len(pooled.experiments), "n_metrics": len(pooled.metrics),
            "epochs": learner.n_epochs_, "best_val_loss": best["val_loss"], "seconds": learner.fit_seconds_,
            "device": str(learner.device_), "chosen": describe_choice(learner)})
    return dg.MaterializeResult(
        metadata={
            "extractor_version": version,
            "versions_pruned": len(pruned),
            "device": str(learner.device_),
            "train_rows": len(train[0]),
            "validation_rows": len(val[0]),
            "epochs": learner.n_epochs_,
            "best_epoch": learner.best_epoch_,
            "train_loss": best["train_loss"],
            "validation_loss": best["val_loss"],
            "fit_seconds": round(learner.fit_seconds_, 2),
            "chosen_config": describe_choice(learner),
            "workers": max(workers, 1),
            **({"ranks": dg.MetadataValue.md(pd.DataFrame(ranks).to_markdown(index=False, floatfmt=".4g"))}
               if ranks else {}),
            "model_selection": dg.MetadataValue.md(selection_markdown(learner)),
            "training_curve": dg.MetadataValue.md(
                figure_to_markdown(training_curves(learner.history_, learner.best_epoch_))),
        },
        data_version=dg.DataVersion(version),
    )


@dg.asset(group_name=GROUP, kinds={"python"}, pool="duckdb", code_version="1", deps=["training_examples"])
def t_learners(context: dg.AssetExecutionContext, config: BaselineConfig,
               database: LRLDatabase, artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    """Independent T-learners (OLS, XGBoost) per arm and metric, scored on the validation and test
    splits (pipeline.t_learner_risks) for the evaluation report."""
    with database.connect() as con:
        pooled, X, split = load_pooled(con)
        stored = read_table(con, "feature_transform")
    scale = metric_scale(pooled, split)
    models = {
        "ols_t": OLSTLearner(),
        "xgb_t": XGBTLearner(n_estimators=config.n_estimators, max_depth=config.max_depth,
                             learning_rate=config.learning_rate, n_jobs=config.n_jobs, progress=False),
    }
    tables, seconds = [], {}
    with one_blas_thread():
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(X, *pooled.split_rows(split, 0), n_arms=pooled.n_arms)
            seconds[name] = round(time.perf_counter() - start, 2)
            for part, split_name in ((1, "validation"), (2, "test")):
                risks = risk_table(model, X, *pooled.split_rows(split, part),
                                   arm_experiment=pooled.arm_experiment, control_arm=pooled.control_arm,
                                   experiments=pooled.experiments, arm_names=pooled.arm_names,
                                   metrics=pooled.metrics, y_scale=scale)
                tables.append(risks.assign(model=name, split=split_name))
    rows = pd.concat(tables, ignore_index=True).assign(evaluated_at=utc_now())
    # Kept with their features' transform, so that where validation says one of them beats the
    # pooled model, `lrl score` can serve it (pipeline.served_models).
    transform = FeatureTransform.from_dict(json.loads(stored["transform_json"].iloc[0]))
    store = artifacts.baseline_store()
    version = store.save(TLearners(models), transform, training_description(pooled))
    store.prune(keep=KEEP_VERSIONS)
    with database.connect() as con:
        ensure_schema(con)
        n = replace_table(con, "t_learner_risks", rows)
    means = rows.groupby(["model", "split"])[["mu_risk", "tau_risk"]].mean().reset_index()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": n,
        "baseline_version": version,
        **{f"fit_seconds_{name}": s for name, s in seconds.items()},
        "mean_risks": dg.MetadataValue.md(means.to_markdown(index=False, floatfmt=".4f")),
    })
