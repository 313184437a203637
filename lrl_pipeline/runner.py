"""What the ``lrl`` command runs: retrain, update, score, summarise, all through Dagster.

Runs go to the Dagster instance at ``$DAGSTER_HOME`` (the project's
``dagster_home/`` by default), so they show in the UI, and carry tags that
let the one planner (:mod:`lrl_pipeline.planning`) see what is being fitted.
Expected failures raise :class:`PipelineError` with what to do.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import dagster as dg
import pandas as pd

from lrl_core.artifacts import CorruptArtifact
from lrl_pipeline.assets.reports import summary_frame
from lrl_pipeline.definitions import build_definitions
from lrl_pipeline.partitions import EXPERIMENT_PARTITIONS
from lrl_pipeline import paths
from lrl_pipeline.storage import (
    RAW_TABLES, chosen_config, Connection, DatabaseBusy, LRLDatabase, read_head_state, read_table,
    retrain_counts, served_counts, table_exists,
)
from lrl_pipeline.reporting import latest_retrain_report
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.planning import head_run_tags, plan_heads
from lrl_pipeline.runs import cli_tags, failure_summary, reap_dead_cli_runs, write_run_log
from lrl_pipeline.scoring import PipelineError, score_units

__all__ = ["PipelineError", "RetrainSummary", "run_retrain", "run_update", "score_units", "summary_table",
           "latest_report_path"]

HEAD_WAIT_S = 1800
"""How long a command waits for heads that another live run (the sensor's) is fitting."""

_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
"""Run config of the command line's runs: nothing on the console; a failure is one line that names
the file holding the run's full log (:func:`lrl_pipeline.runs.write_run_log`)."""


@dataclass
class RetrainSummary:
    """The outcome of :func:`run_retrain`; ``summary`` is :func:`summary_table`."""

    extractor_version: str
    n_experiments: int
    n_rows: int
    n_quarantined: int
    seconds: float
    summary: pd.DataFrame
    chosen: str
    """The configuration model selection trained, in one line."""
    served: dict
    """(experiment, arm, metric) cells per serving model (pipeline.served_models)."""


class _Session:
    """One command's Dagster definitions, instance and run tags over one database."""

    def __init__(self, db: Path, artifacts: Path, instance: dg.DagsterInstance | None,
                 run_config: dict | None, progress: Callable[[str], None]):
        self.defs = build_definitions(db, artifacts)
        self.database = LRLDatabase(database=str(Path(db).resolve()))
        self.store = ArtifactStoreResource(root=str(Path(artifacts).resolve())).store()
        if instance is None:
            paths.ensure_dagster_home()
            instance = dg.DagsterInstance.get()
        self.instance = instance
        self.retrain_config = {**_QUIET, **(run_config or {})}
        self.tags = cli_tags()
        self.progress = progress
        reap_dead_cli_runs(instance)

    def run(self, job: str, tags: dict | None = None, run_config: dict | None = None) -> None:
        """Execute a job in this process; :class:`PipelineError` naming the failed step."""
        result = self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, run_config=run_config or _QUIET,
            tags={**self.tags, **(tags or {})}, raise_on_error=False)
        if not result.success:
            detail = failure_summary(result.get_step_failure_events())
            log = write_run_log(self.instance, result.run_id)
            raise PipelineError(f"{job} failed (run {result.run_id}): {detail} (full log: {log})")

    def fit_stale_heads(self, progress: Callable[[str], None]) -> list[str]:
        """Add partitions for new experiments and fit every head not on the current extractor.

        Plans with :func:`~lrl_pipeline.planning.plan_heads`, as the sensor does: experiments a
        live run (the sensor's) is already fitting are waited for, not fitted again.
        """
        version = self.store.current_version()
        if version is None:
            raise PipelineError("no saved extractor yet: run `lrl retrain` first")
        started, announced, stale = time.monotonic(), False, None
        while True:
            with self.connect() as con:
                state = read_head_state(con)
            stale = state.stale(version) if stale is None else stale
            plan = plan_heads(self.instance, state, version, wait_for_retrain=False)
            if plan.new_partitions:
                self.instance.add_dynamic_partitions(EXPERIMENT_PARTITIONS, plan.new_partitions)
            if plan.runs and not announced:
                progress(f"Fitting heads for {len(stale)} experiment(s) on extractor {version}")
                announced = True
            for block in plan.runs:
                self.run("head_job", tags=head_run_tags(block, version))
            if not plan.in_flight:
                break
            if time.monotonic() - started > HEAD_WAIT_S:
                raise PipelineError(f"runs in flight still fit {len(plan.in_flight)} experiment(s) after "
                                    f"{HEAD_WAIT_S / 60:.0f} minutes: see `lrl status`, then `lrl update`")
            progress(f"Waiting for the runs in flight that fit {len(plan.in_flight)} experiment(s)")
            time.sleep(2.0)
        with self.connect() as con:
            status = read_table(con, "head_status")
        fitted = status[(status["extractor_version"] == version) & (status["status"] == "fitted")]
        return [e for e in stale if e in set(fitted["experiment_id"])]

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """The database, waiting up to :func:`paths.command_wait_s` for another process to let go of it."""
        try:
            with self.database.connect(timeout_s=paths.command_wait_s(), on_wait=self.progress) as con:
                yield con
        except DatabaseBusy as error:
            raise PipelineError(f"{error}; close the program that holds it and try again") from error

    def require_readable_model(self) -> None:
        """:class:`PipelineError` when the current model's files cannot be read: an update would
        fit nothing on it, and only a retrain writes a fresh one."""
        if self.store.current_version() is None:
            raise PipelineError("no saved extractor yet: run `lrl retrain` first")
        try:
            self.store.load()
        except (CorruptArtifact, FileNotFoundError) as error:
            raise PipelineError(f"the current model cannot be read ({error}): run `lrl retrain` to write a "
                                "fresh one") from error

    def require_raw(self) -> None:
        """:class:`PipelineError` unless the database holds the four raw tables."""
        if not Path(self.database.database).is_file():
            raise PipelineError(f"no database at {self.database.database}: run `lrl demo` or load the raw tables")
        with self.connect() as con:
            missing = [name for name in RAW_TABLES if not table_exists(con, "raw", name)]
        if missing:
            raise PipelineError(f"the database lacks raw tables {', '.join('raw.' + m for m in missing)}: "
                                "load them (see CONTRACT.md) or run `lrl demo`")


def run_retrain(db: Path, artifacts: Path, *, progress: Callable[[str], None] = print,
                instance: dg.DagsterInstance | None = None, run_config: dict | None = None) -> RetrainSummary:
    """Materialize the whole graph: validation, features, LR-learner, T-learners, every head, the report.

    ``run_config`` goes to the retrain job (e.g. ``{"ops": {"lr_learner": {"config":
    {"max_epochs": 5}}}}``); ``instance`` defaults to the one at ``$DAGSTER_HOME``.
    """
    started = time.perf_counter()
    session = _Session(db, artifacts, instance, run_config, progress)
    session.require_raw()
    progress("Validating raw tables, preparing features, training the LR-learner and the T-learners")
    session.run("retrain_job", run_config=session.retrain_config)
    session.fit_stale_heads(progress)
    progress("Evaluating the LR-learner against the T-learners")
    session.run("report_job")
    version = session.store.current_version()
    with session.connect() as con:
        counts = retrain_counts(con)
        chosen = chosen_config(con, version)
        served = served_counts(con)
    return RetrainSummary(
        extractor_version=version,
        chosen=chosen or "unknown",
        served=served,
        n_experiments=int(counts["valid_experiments"]),
        n_rows=int(counts["training_examples"]),
        n_quarantined=int(counts["quarantine"]),
        seconds=time.perf_counter() - started,
        summary=summary_table(db),
    )


def run_update(db: Path, artifacts: Path, *, progress: Callable[[str], None] = print,
               instance: dg.DagsterInstance | None = None) -> list[str]:
    """Fit heads (and their reports) for every experiment with none on the current extractor.

    Returns the ids of the experiments that got heads, in registry order;
    quarantined experiments are recorded in ``pipeline.head_status`` and left out.
    """
    session = _Session(db, artifacts, instance, None, progress)
    session.require_raw()
    session.require_readable_model()
    return session.fit_stale_heads(progress)


def summary_table(db: Path) -> pd.DataFrame:
    """Per metric, test-split mean risks of the LR-learner and the T-learners, averaged over
    experiments and arms, and the LR-learner's relative improvement ``1 - lr / other``.

    Columns: ``metric``, then ``"<risk> <model>"`` and ``"<risk> improvement_vs_<model>"`` for
    risks ``mu_risk``, ``tau_risk`` (and ``pehe`` where known).
    """
    with LRLDatabase(database=str(Path(db).resolve())).connect(read_only=True, timeout_s=60.0) as con:
        try:
            rows = read_table(con, "evaluation")
        except LookupError as error:
            raise PipelineError(f"no evaluation yet in {db}: run `lrl retrain` first") from error
    return summary_frame(rows, "test")


def latest_report_path(db: Path, artifacts: Path) -> Path | None:
    """The newest HTML retrain report under ``<artifacts>/reports/``, or None before the first retrain."""
    return latest_retrain_report(artifacts)
