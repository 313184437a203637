"""Heads: one partition per experiment, a closed-form linear head per arm and metric on v(x).

Each head is fitted on the experiment's train and validation units (the
test units are left for its report) with the extractor that is current
when the run starts, and stored with that extractor's version. A run may
cover one partition or a range: the extractor is loaded once per run.
"""
# No `from __future__ import annotations`: Dagster reads the context and resource
# annotations at definition time to inject them.
import datetime as dt
import time

import dagster as dg
from dagster._core.errors import DagsterInvalidPropertyError
import pandas as pd

from lrl_core.artifacts import LoadedModel
from lrl_core.data import QUARANTINE_COLUMNS
from lrl_core.heads import MIN_HEAD_ROWS, ExperimentHead, HeadFit, fit_experiment_head, trained_arms
from lrl_pipeline.compute import one_blas_thread
from lrl_pipeline.experiment_rows import ExperimentRows, FeatureMismatch, read_experiment_rows
from lrl_pipeline.partitions import experiment_partitions
from lrl_pipeline.planning import EXTRACTOR_TAG
from lrl_pipeline.storage import exposure_counts, heads_fitted_since, LRLDatabase, utc_now, write_head_run
from lrl_pipeline.resources import ArtifactStoreResource

GROUP = "heads"
CATE_CHECK = "cate_is_finite"

def fit_experiment(rows: ExperimentRows, experiment_id: str,
                   model: LoadedModel) -> tuple[pd.DataFrame | None, str, str, int, pd.DataFrame | None]:
    """``(records or None, status, detail, non-finite CATEs, quarantine rows)`` of one experiment's
    head fit (:func:`lrl_core.heads.fit_experiment_head` on its train and validation rows); the
    quarantine rows name the (arm, metric) cells left without a head for want of rows."""
    if rows.experiment(experiment_id) is None:
        return None, "quarantined", rows.reasons(experiment_id), 0, None
    data = rows.arrays(experiment_id)
    fit = ~data.test
    result = fit_experiment_head(rows.V[data.unit[fit]], data.arm[fit], data.Y[fit], data.metrics, model.learner,
                                 rows.V[data.units], n_arms=len(data.arm_names),
                                 arms=trained_arms(model.metadata, experiment_id, data.arm_names))
    if result.head is None:
        return None, result.status, result.detail, result.non_finite, None
    return (head_records(result.head, data.arm_names, experiment_id, model.version), result.status, result.detail,
            0, short_cells(result, data.arm_names, experiment_id))


def short_cells(result: HeadFit, arm_names: list[str], experiment_id: str) -> pd.DataFrame:
    """Quarantine rows (``QUARANTINE_COLUMNS``) for the (arm, metric) cells with too few rows for a head."""
    head = result.head
    return pd.DataFrame({
        "table": "arms", "unit_id": None, "experiment_id": experiment_id,
        "metric": [head.metric_names_[j] for _, j in result.short_cells], "column": None,
        "reason": [f"arm {arm_names[a]!r} has {head.n_[a, j]} observed {head.metric_names_[j]!r} values, fewer "
                   f"than the {MIN_HEAD_ROWS} a head needs: no CATE for it" for a, j in result.short_cells],
    }, columns=QUARANTINE_COLUMNS)


def head_records(head: ExperimentHead, arm_names: list[str], experiment_id: str, version: str) -> pd.DataFrame:
    """Rows of pipeline.experiment_heads for the estimable (arm, metric) heads of one experiment."""
    records = pd.DataFrame(head.to_records())  # arm-major, as head.estimable().ravel()
    records = records[head.estimable().ravel()]
    return records.assign(arm=[arm_names[a] for a in records["arm_index"]], experiment_id=experiment_id,
                          extractor_version=version, fitted_at=utc_now())


HEAD_BATCH_ROWS = 1_000_000
"""Exposure rows read, validated and embedded at once by a run over many experiments: a retrain
refits every head, and holding all of them at the paper's scale would take several times the
feature matrix."""


def experiment_groups(database: LRLDatabase, keys: list[str]) -> list[list[str]]:
    """``keys`` in order, cut into groups of at most ``HEAD_BATCH_ROWS`` raw exposure rows
    (an experiment larger than that is a group of its own)."""
    if len(keys) <= 1:  # a newly launched experiment (or nothing left to fit): no need to count
        return [keys] if keys else []
    with database.connect() as con:
        counts = exposure_counts(con, keys)
    groups, size = [[]], 0
    for key in keys:
        rows = counts.get(key, 0)
        if groups[-1] and size + rows > HEAD_BATCH_ROWS:
            groups.append([])
            size = 0
        groups[-1].append(key)
        size += rows
    return groups


def _not_yet_fitted(context: dg.AssetExecutionContext, database: LRLDatabase, version: str) -> list[str]:
    """The run's partitions, less those another run fitted on ``version`` after this one was planned.

    Planned runs (:mod:`lrl_pipeline.planning`) that overlapped are serialised by the ``duckdb``
    pool; the later one finds the heads fitted since it was planned and leaves them. A run
    started by hand in the UI (no plan tag) refits every partition it names.
    """
    keys = list(context.partition_keys)
    try:
        planned_for = context.run.tags.get(EXTRACTOR_TAG)
        record = context.instance.get_run_record_by_id(context.run.run_id)
    except DagsterInvalidPropertyError:  # invoked directly (tests): no run, so no plan
        planned_for, record = None, None
    if planned_for != version or record is None:
        return keys
    planned_at = record.create_timestamp.astimezone(dt.timezone.utc).replace(tzinfo=None)
    with database.connect(read_only=True, timeout_s=database.write_timeout_s) as con:
        fitted_at = heads_fitted_since(con, keys, version, planned_at)
    fitted = [k for k in keys if k in fitted_at]
    if fitted:
        context.log.info(f"{len(fitted)} experiment(s) already have heads on {version}: left as they are")
    return [k for k in keys if k not in fitted_at]


@dg.asset(
    group_name=GROUP, kinds={"python", "duckdb"}, pool="duckdb", code_version="1",
    partitions_def=experiment_partitions,
    deps=["experiment_rows", "lr_learner"],
    check_specs=[dg.AssetCheckSpec(
        CATE_CHECK, asset="experiment_heads", blocking=True,
        description="Every stored head gives a finite CATE for every unit of its experiment.")],
)
def experiment_heads(context: dg.AssetExecutionContext, database: LRLDatabase,
                     artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    """Linear heads on the current extractor, per experiment, arm and metric (pipeline.experiment_heads)."""
    model = artifacts.store().load()
    keys = _not_yet_fitted(context, database, model.version)
    start = time.perf_counter()
    results, quarantined = {}, []
    for group in experiment_groups(database, keys):
        with database.connect() as con:
            try:
                rows = read_experiment_rows(con, group, model)
            except FeatureMismatch as error:
                raise dg.Failure(str(error)) from error
        with one_blas_thread():
            results.update({e: fit_experiment(rows, e, model) for e in group})
        quarantined.append(rows.quarantine[rows.quarantine["experiment_id"].isin(group)])
        quarantined.extend(result[4] for e, result in results.items() if e in group and result[4] is not None)
        context.log.info(f"heads of {len(results)} of {len(keys)} experiments fitted")
        del rows
    frames = [records for records, *_ in results.values() if records is not None]
    bad_cates = {e: bad for e, (_, _, _, bad, _) in results.items() if bad}
    heads = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["experiment_id"])
    status = pd.DataFrame(
        [(e, state, detail, 0 if records is None else len(records))
         for e, (records, state, detail, _, _) in results.items()],
        columns=["experiment_id", "status", "detail", "n_heads"],
    ).assign(extractor_version=model.version, updated_at=utc_now())
    own_quarantine = pd.concat(quarantined, ignore_index=True) if quarantined else pd.DataFrame(
        columns=QUARANTINE_COLUMNS)
    with database.connect() as con:
        write_head_run(con, keys, heads, status, own_quarantine)
    counts = status["status"].value_counts()
    return dg.MaterializeResult(
        metadata={
            "extractor_version": model.version,
            "experiments_fitted": int(counts.get("fitted", 0)),
            "experiments_quarantined": int(counts.get("quarantined", 0)),
            "experiments_failed": int(counts.get("failed", 0)),
            "heads": len(heads),
            "seconds": round(time.perf_counter() - start, 3),
            "status": dg.MetadataValue.md(status[["experiment_id", "status", "detail"]].head(60)
                                          .to_markdown(index=False)),
        },
        check_results=[dg.AssetCheckResult(
            check_name=CATE_CHECK, passed=not bad_cates,
            metadata={"experiments_checked": int((status["status"] != "quarantined").sum()),
                      "experiments_with_non_finite": bad_cates})],
    )
