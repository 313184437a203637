"""``lrl status``: where the pipeline stands, read without starting anything.

The current extractor and how it was chosen, which experiments have heads on
it, why the experiment sensor would wait, the last runs, and the next
scheduled retrain. Everything here reads (the database read-only).
"""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from lrl_pipeline.resources import ArtifactStoreResource
from lrl_pipeline.storage import DatabaseBusy, LRLDatabase, read_head_state, read_table
from lrl_pipeline.schedules import retrain_cron
from lrl_pipeline.scoring import PipelineError
from lrl_pipeline.planning import plan_heads

__all__ = ["pipeline_status"]

RECENT_RUNS = 5


def _next_retrain(cron: str) -> str:
    """The cron and the next time it fires (UTC)."""
    try:
        # Dagster's own cron iterator (not public API): the times its scheduler will use.
        from dagster._utils.schedules import cron_string_iterator

        nxt = next(cron_string_iterator(time.time(), cron, "UTC"))
        return f"{nxt:%Y-%m-%d %H:%M} UTC (cron {cron!r}; the schedule runs while `lrl ui` or a daemon does)"
    except Exception:  # an older or newer Dagster without it: the cron alone still says it
        return f"cron {cron!r} UTC (the schedule runs while `lrl ui` or a daemon does)"


def pipeline_status(db: Path, artifacts: Path, instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    """``(label, text)`` lines describing the pipeline over ``db`` and ``artifacts``."""
    store = ArtifactStoreResource(root=str(Path(artifacts).resolve())).store()
    version = store.current_version()
    try:
        with LRLDatabase(database=str(Path(db).resolve())).connect(read_only=True, timeout_s=10.0) as con:
            state = read_head_state(con)
            versions = read_table(con, "extractor_versions") if version else pd.DataFrame()
            status = read_table(con, "head_status") if state.head_versions else pd.DataFrame()
    except DatabaseBusy as error:
        raise PipelineError(f"{error}; try again when the running command finishes") from error
    except LookupError as error:
        raise PipelineError(f"{error}: load the raw tables (see README, 'Your own data')") from error
    lines = []
    if version is None:
        lines.append(("extractor", "none yet: run `lrl retrain`"))
    else:
        row = versions[versions["version"] == version]
        if len(row):
            r = row.iloc[0]
            lines.append(("extractor", f"{version}, trained {r['trained_at']:%Y-%m-%d %H:%M} UTC on {r['n_rows']:,} "
                                       f"rows of {r['n_experiments']} experiments in {r['seconds']:.0f} s"))
            if pd.notna(r.get("chosen")):
                lines.append(("model", str(r["chosen"])))
        else:
            lines.append(("extractor", version))
    registry = state.registry
    current = [] if version is None else [e for e in registry if state.head_versions.get(e) == version]
    stale = [e for e in registry if e not in set(current)]
    if len(status):
        mine = status[(status["extractor_version"] == version) & status["experiment_id"].isin(current)]
        counts = mine["status"].value_counts()
        lines.append(("experiments", f"{len(registry)} registered; {int(counts.get('fitted', 0))} with heads on the "
                                     f"current extractor, {int(counts.get('quarantined', 0))} quarantined, "
                                     f"{int(counts.get('failed', 0))} failed, {len(stale)} waiting"))
        bad = mine[mine["status"] != "fitted"]
        for row in bad.head(10).itertuples():
            lines.append((f"  {row.experiment_id}", f"{row.status}: {row.detail}"))
    else:
        lines.append(("experiments", f"{len(registry)} registered; none has heads yet"))
    if stale:
        shown = ", ".join(stale[:8]) + (f" and {len(stale) - 8} more" if len(stale) > 8 else "")
        lines.append(("waiting for heads", shown))
    if version is not None:
        plan = plan_heads(instance, state, version)
        if plan.retrain_run:
            lines.append(("sensor", f"waits: retrain run {plan.retrain_run} is in flight; heads follow its extractor"))
        elif plan.in_flight:
            lines.append(("sensor", f"waits: runs in flight fit {len(plan.in_flight)} experiment(s)"))
        if stale and plan.runs:
            lines.append(("sensor", "will request their heads at its next tick (every 30 s while `lrl ui` runs), "
                                    "or run `lrl update`"))
        else:
            lines.append(("sensor", "nothing to do: every experiment has heads on the current extractor"))
    for record in instance.get_run_records(limit=RECENT_RUNS):
        run = record.dagster_run
        started = record.start_time or record.create_timestamp.timestamp()
        when = dt.datetime.fromtimestamp(started, dt.timezone.utc)
        lines.append(("run", f"{when:%Y-%m-%d %H:%M:%S} UTC  {run.job_name}  {run.status.value.lower()}  "
                             f"({run.run_id[:8]})"))
    lines.append(("next retrain", _next_retrain(retrain_cron())))
    return lines
