"""Effects on segments the experiments left out: Synthetic Interventions beside the LR-learner (issue 17).

After each retrain, for the segmentation column of the unit features named by
the run config (``segment_by``) or ``$LRL_SEGMENT_BY``: the segment x
intervention x metric means in DuckDB, then :mod:`lrl_pipeline.segments`
(observed effects, SI and the pooled model's extrapolation) into
``pipeline.segment_effects``. Without a column it materializes nothing and says so.
"""
# No `from __future__ import annotations`: Dagster reads the context, config and resource
# annotations at definition time to inject them.
import time

import dagster as dg
from pydantic import Field

from lrl_core.report.segment_figures import segment_heatmap_markdown
from lrl_pipeline.paths import segment_by
from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.segments import compute_segment_effects
from lrl_pipeline.storage import LRLDatabase, ensure_schema, replace_table, transaction, utc_now

GROUP = "effects"


class SegmentConfig(dg.Config):
    """Which unit feature column segments the units."""

    segment_by: str = Field(default="", description="A column of raw.unit_features whose levels are the "
                                                    "segments; empty: $LRL_SEGMENT_BY, or none.")


@dg.asset(group_name=GROUP, kinds={"duckdb", "python"}, pool="duckdb", deps=["lr_learner"], code_version="1")
def segment_effects(context: dg.AssetExecutionContext, config: SegmentConfig, database: LRLDatabase,
                    artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    """Per segment, experiment, treated arm and metric: the observed effect where the segment was
    in the experiment, and Synthetic Interventions' and the LR-learner's estimates where it was not
    (pipeline.segment_effects)."""
    column = config.segment_by or segment_by()
    if not column:
        return dg.MaterializeResult(metadata={
            "skipped": "no segmentation column: set segment_by in the run config or $LRL_SEGMENT_BY",
            "dagster/row_count": 0})
    started = time.perf_counter()
    model = artifacts.store().load()
    with database.connect() as con:
        try:
            found = compute_segment_effects(con, model, column)
        except ValueError as error:
            raise dg.Failure(str(error)) from error
    rows, table, disagree = found.rows, found.table, found.disagreements
    # Why SI left cells without an estimate (too few donors, no shared experiments, ...), most common first.
    reasons = found.si.loc[found.si["reason"].astype(str) != "", "reason"].value_counts()
    stamp = {"segment_by": column, "extractor_version": model.version, "computed_at": utc_now()}
    with database.connect() as con:
        ensure_schema(con)
        with transaction(con):
            n = replace_table(con, "segment_effects", rows.assign(**stamp))
    counts = rows["source"].value_counts()
    si_rows = rows[rows["source"] == "si"]
    context.log.info(f"segment effects by {column}: {len(table.segments)} segments, {n} rows")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": n,
        "segment_by": column,
        "segments": len(table.segments),
        "excluded_cells": int(table.excluded().sum()),
        **{f"{source}_rows": int(count) for source, count in counts.items()},
        "si_estimated": int(si_rows["effect"].notna().sum()),
        "si_test_failed": int((si_rows["si_test_passed"] == False).sum()),  # noqa: E712 (nullable boolean)
        "si_lr_disagreements": len(disagree),
        "si_not_estimated": dg.MetadataValue.md(
            reasons.rename_axis("reason").reset_index(name="cells").to_markdown(index=False)
            if len(reasons) else "SI estimated every left-out cell."),
        "seconds": round(time.perf_counter() - started, 2),
        "extractor_version": model.version,
        "heatmap": dg.MetadataValue.md(segment_heatmap_markdown(rows)),
        "disagreements": dg.MetadataValue.md(disagree.head(20).to_markdown(index=False, floatfmt=".4g")
                                             if len(disagree) else "SI and the LR-learner agree within their "
                                                                   "intervals on every excluded cell."),
    })
