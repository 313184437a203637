"""Heads: one partition per experiment, a closed-form linear head per arm and metric on v(x).

Each head is fitted on the experiment's train and validation units (the
test units are left for its report) with the extractor that is current
when the run starts, and stored with that extractor's version. A run may
cover one partition or a range: the extractor is loaded once per run.
"""
# No `from __future__ import annotations`: Dagster reads the context and resource
# annotations at definition time to inject them.
import time

import dagster as dg
from dagster._core.errors import DagsterInvalidPropertyError
import numpy as np
import pandas as pd

from lrl_core.artifacts import LoadedModel
from lrl_core.data import QUARANTINE_COLUMNS
from lrl_core.heads import MIN_HEAD_ROWS, ExperimentHead
from lrl_pipeline.compute import one_blas_thread
from lrl_pipeline.experiment_rows import ExperimentRows, FeatureMismatch, read_experiment_rows
from lrl_pipeline.partitions import experiment_partitions
from lrl_pipeline.planning import EXTRACTOR_TAG
from lrl_pipeline.storage import exposure_counts, LRLDatabase, read_head_state, utc_now, write_head_run
from lrl_pipeline.resources import ArtifactStoreResource

GROUP = "heads"
CATE_CHECK = "cate_is_finite"

TINY_ARM_ROWS = 10
"""Experiments whose smallest arm has fewer observed rows than this are fitted but flagged as tiny."""


def trained_arms(model: LoadedModel, experiment_id: str, arm_names: list[str]) -> np.ndarray | None:
    """The extractor's global index of each of an experiment's arms (control first), when it was
    trained on exactly these arms; None for a new experiment or one whose arms changed."""
    description = model.metadata
    if experiment_id not in description.get("experiments", []):
        return None
    k = description["experiments"].index(experiment_id)
    known = np.flatnonzero(np.asarray(description["arm_experiment"]) == k)
    index = {description["arm_names"][g]: g for g in known}
    if len(known) != len(arm_names) or any(name not in index for name in arm_names):
        return None
    return np.array([index[name] for name in arm_names], dtype=np.int64)


def fit_head(rows: ExperimentRows, experiment_id: str, model: LoadedModel) -> tuple[ExperimentHead, list[str]]:
    """The head of one valid experiment and its arm names, control first."""
    index, arms = rows.experiment(experiment_id)
    pooled = rows.pooled
    fit = index[rows.split[pooled.row_unit[index]] != 2]
    observed = np.flatnonzero(np.isfinite(pooled.Y[index]).any(axis=0))
    arm_names = [pooled.arm_names[g] for g in arms]
    head = ExperimentHead().fit(
        rows.V[pooled.row_unit[fit]], pooled.row_arm[fit] - arms[0], pooled.Y[np.ix_(fit, observed)],
        [pooled.metrics[j] for j in observed], model.learner, n_arms=len(arms),
        arms=trained_arms(model, experiment_id, arm_names))
    return head, arm_names


def fit_experiment(rows: ExperimentRows, experiment_id: str,
                   model: LoadedModel) -> tuple[pd.DataFrame | None, str, str, int, pd.DataFrame | None]:
    """``(records or None, status, detail, non-finite CATEs, quarantine rows)`` of one experiment's
    head fit; the quarantine rows name the (arm, metric) cells left without a head for want of rows.

    A quarantined experiment or a failed fit gives no records; it never stops the other
    experiments of the run.
    """
    if rows.experiment(experiment_id) is None:
        return None, "quarantined", rows.reasons(experiment_id), 0, None
    try:
        head, arm_names = fit_head(rows, experiment_id, model)
    except (ValueError, np.linalg.LinAlgError) as error:
        return None, "failed", f"head fit failed: {error}", 0, None
    units = np.unique(rows.pooled.row_unit[rows.experiment(experiment_id)[0]])
    cate = head.cate(rows.V[units])[:, estimable(head)[1:]]
    bad = int((~np.isfinite(cate)).sum())
    if bad:
        return None, "failed", f"{bad} non-finite CATEs", bad, None
    records = head_records(head, arm_names, experiment_id, model.version)
    short = short_cells(head, arm_names, experiment_id)
    detail = f"{len(records)} heads on {len(units)} units"
    smallest = int(head.n_.max(axis=1).min())
    if smallest < TINY_ARM_ROWS:
        detail += f"; tiny: its smallest arm has {smallest} observed rows, so its CATEs lean on the pooled model"
    if len(short):
        detail += f"; {len(short)} arm-metric cells without a head (fewer than {MIN_HEAD_ROWS} observed rows)"
    return records, "fitted", detail, 0, short


def short_cells(head: ExperimentHead, arm_names: list[str], experiment_id: str) -> pd.DataFrame:
    """Quarantine rows (``QUARANTINE_COLUMNS``) for the (arm, metric) cells with too few rows for a head."""
    arms, metrics = np.nonzero(head.n_ < MIN_HEAD_ROWS)
    return pd.DataFrame({
        "table": "arms", "unit_id": None, "experiment_id": experiment_id,
        "metric": [head.metric_names_[j] for j in metrics], "column": None,
        "reason": [f"arm {arm_names[a]!r} has {head.n_[a, j]} observed {head.metric_names_[j]!r} values, fewer "
                   f"than the {MIN_HEAD_ROWS} a head needs: no CATE for it" for a, j in zip(arms, metrics)],
    }, columns=QUARANTINE_COLUMNS)


def estimable(head: ExperimentHead) -> np.ndarray:
    """``(A, J)`` bool: heads worth storing. A treated arm's head needs its control's for a CATE,
    and a control head is kept only where some treated arm uses it."""
    finite = np.isfinite(head.coef_).all(axis=-1)
    pairs = finite[1:] & finite[:1]
    return np.vstack([pairs.any(axis=0, keepdims=True), pairs])


def head_records(head: ExperimentHead, arm_names: list[str], experiment_id: str, version: str) -> pd.DataFrame:
    """Rows of pipeline.experiment_heads for the estimable (arm, metric) heads of one experiment."""
    records = pd.DataFrame(head.to_records())  # arm-major, as estimable(head).ravel()
    records = records[estimable(head).ravel()].rename(columns={"arm": "arm_index"})
    return records.assign(arm=[arm_names[a] for a in records["arm_index"]], experiment_id=experiment_id,
                          extractor_version=version, fitted_at=utc_now())


HEAD_BATCH_ROWS = 1_000_000
"""Exposure rows read, validated and embedded at once by a run over many experiments: a retrain
refits every head, and holding all of them at the paper's scale would take several times the
feature matrix."""


def _experiment_groups(database: LRLDatabase, keys: list[str]) -> list[list[str]]:
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
    """The run's partitions, less those with heads on ``version`` when the run was planned for it.

    Planned runs (:mod:`lrl_pipeline.planning`) that overlapped are serialised by the ``duckdb``
    pool; the later one finds the heads fitted and leaves them. A run started by hand in the UI
    (no plan tag) refits every partition it names.
    """
    keys = list(context.partition_keys)
    try:
        planned_for = context.run.tags.get(EXTRACTOR_TAG)
    except DagsterInvalidPropertyError:  # invoked directly (tests): no run, so no plan
        planned_for = None
    if planned_for != version:
        return keys
    with database.connect(read_only=True, timeout_s=database.write_timeout_s) as con:
        done = read_head_state(con).head_versions
    fitted = [k for k in keys if done.get(k) == version]
    if fitted:
        context.log.info(f"{len(fitted)} experiment(s) already have heads on {version}: left as they are")
    return [k for k in keys if done.get(k) != version]


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
    for group in _experiment_groups(database, keys):
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
