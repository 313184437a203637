"""Ingest: the platform's raw tables and their validated parts plus a quarantine.

Bad input never stops good input: ``validate_raw`` names every dropped row,
arm, experiment or column with a reason, and everything valid flows on.
"""
# No `from __future__ import annotations`: Dagster reads the context and resource
# annotations at definition time to inject them.

import time

import dagster as dg

from lrl_core.data import check_unit_features, validate_raw
from lrl_core.memory import trim_heap
from lrl_pipeline.storage import (
    RAW_TABLES, VALID_TABLES, ensure_schema, LRLDatabase, quarantine_rows, read_raw_table,
    record_validated_arms, replace_table, transaction, utc_now,
)
from lrl_pipeline.storage.raw import drop_cached_pages
from lrl_pipeline.storage.tables import copy_raw_table, kept_whole

GROUP = "ingest"

RAW_DESCRIPTIONS = {
    "unit_features": "unit_id plus pre-treatment features, numeric or categorical (text, boolean, ENUM), "
                     "one row per unit (NULL = missing).",
    "experiments": "The experiment registry: experiment_id, launched_at. A new row is a new experiment.",
    "exposures": "Assignment: unit_id, experiment_id, arm ('control' or a treatment arm).",
    "outcomes": "Long-form outcomes: unit_id, experiment_id, metric, value.",
}

# Written by the experimentation platform, never by the pipeline.
raw_tables = [
    dg.AssetSpec(["raw", name], group_name=GROUP, kinds={"duckdb"}, description=RAW_DESCRIPTIONS[name])
    for name in RAW_TABLES
]


@dg.multi_asset(
    specs=[
        *(
            dg.AssetSpec(f"valid_{name}", deps=[["raw", name]], group_name=GROUP, kinds={"duckdb"},
                         description=f"The valid rows of raw.{name} (table pipeline.valid_{name}).")
            for name in VALID_TABLES
        ),
        dg.AssetSpec("quarantine", deps=[["raw", name] for name in RAW_TABLES], group_name=GROUP,
                     kinds={"duckdb"}, description="Every dropped row, arm, experiment or column, with a reason."),
    ],
    pool="duckdb",
    code_version="1",
)
def validated_tables(context: dg.AssetExecutionContext, database: LRLDatabase):
    """Validate the raw tables; replace pipeline.valid_* and pipeline.quarantine in one transaction."""
    with database.connect() as con:
        start = time.perf_counter()
        features = read_raw_table(con, "unit_features")
        check = check_unit_features(features)
        if check.keeps_all and kept_whole(con, "unit_features", features, check.n_rows):
            # Copied inside DuckDB below: the largest table need not sit beside the outcome rules.
            del features
            trim_heap()
            features = None
        result = validate_raw(features, *(read_raw_table(con, name) for name in RAW_TABLES[1:]), features=check)
        del features
        seconds = time.perf_counter() - start
        # Only the counts stay: each valid frame is let go once written, and DuckDB's cached
        # pages with it, so the write never holds all four tables beside DuckDB's buffers.
        valid = {name: getattr(result, name) for name in VALID_TABLES}
        quarantine, rows_in, n_experiments = result.quarantine, result.rows_in, len(result.experiments)
        del result
        ensure_schema(con)
        with transaction(con):
            rows = {}
            for name in VALID_TABLES:
                frame = valid.pop(name)
                if frame is None or kept_whole(con, name, frame, rows_in[name]):
                    del frame  # shares the raw table's values: DuckDB copies them itself
                    drop_cached_pages(con)  # the frame's memory goes back before DuckDB fills its own
                    rows[name] = copy_raw_table(con, name)
                else:
                    rows[name] = replace_table(con, f"valid_{name}", frame)
                    del frame
                drop_cached_pages(con)
            n_quarantined = replace_table(con, "quarantine", quarantine_rows(quarantine, utc_now()))
            record_validated_arms(con)

    for name in VALID_TABLES:
        dropped = int((quarantine["table"] == name).sum())
        yield dg.MaterializeResult(
            asset_key=f"valid_{name}",
            metadata={"dagster/row_count": rows[name], "rows_in": rows_in[name],
                      "rows_quarantined": dropped},
        )
    by_reason = quarantine.groupby(["table", "reason"]).size().rename("rows").reset_index()
    by_reason = by_reason.sort_values("rows", ascending=False)
    if n_quarantined:
        context.log.warning(f"{n_quarantined} quarantine rows; see pipeline.quarantine")
    yield dg.MaterializeResult(
        asset_key="quarantine",
        metadata={
            "dagster/row_count": n_quarantined,
            "by_reason": dg.MetadataValue.md(
                by_reason.head(50).to_markdown(index=False) if len(by_reason) else "none"),
            "experiments_dropped": int((quarantine["table"] == "experiments").sum()),
            "validation_seconds": round(seconds, 3),
        },
    )
    if n_experiments == 0:
        # Recorded above; nothing downstream can train on no experiment, so say why here.
        empty = [f"raw.{name}" for name in RAW_TABLES if rows_in[name] == 0]
        raise dg.Failure(
            "no valid experiment to train on: "
            + (f"{', '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty" if empty
               else f"all {rows_in['experiments']} experiments are quarantined")
            + "; see pipeline.quarantine")
