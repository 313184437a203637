"""The one planner of head runs: which experiments need heads on which extractor, and who fits them.

The experiment sensor and the command line (``lrl retrain``, ``lrl update``)
both call :func:`plan_heads` and start exactly the runs it plans. A head run
started from a plan carries the extractor version it fits for
(:data:`EXTRACTOR_TAG`), so while it is in flight every other planner sees
its experiments as taken and plans around them: whoever starts first fits a
head, the other waits for it, and no head is fitted twice on one extractor
however the last retrain was started (command line, schedule, UI).
"""
from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from lrl_pipeline.partitions import EXPERIMENT_PARTITIONS
from lrl_pipeline.runs import IN_FLIGHT, is_alive
from lrl_pipeline.storage import HeadState

__all__ = ["EXTRACTOR_TAG", "RANGE_START", "RANGE_END", "HeadPlan", "plan_heads", "head_run_tags", "head_token"]

EXTRACTOR_TAG = "lrl/extractor_version"
"""On a head run started from a plan: the extractor version its heads are fitted for."""
PARTITION_TAG = "dagster/partition"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@dataclass(frozen=True)
class HeadPlan:
    """What to do for extractor ``version`` now.

    ``new_partitions``: registry experiments without a partition yet (add them first);
    ``runs``: head runs to start, each a block of neighbouring partitions;
    ``in_flight``: stale experiments a live run is fitting already (wait for it);
    ``retrain_run``: id of a live retrain run (its extractor will replace ``version``), or None;
    ``report_due``: every head is current and the evaluation of ``version`` is neither done nor running;
    ``tokens``: per planned experiment, what names this fit of it (:func:`head_token`).
    """

    version: str
    new_partitions: list[str]
    runs: list[list[str]]
    in_flight: list[str]
    retrain_run: str | None
    report_due: bool
    tokens: dict[str, str]


def head_token(state: HeadState, experiment_id: str) -> str:
    """The experiment, and the state of its rows when it changed since validation (``e@arms=3``):
    a head fit is asked for once per extractor version and token."""
    revision = state.revision(experiment_id)
    return f"{experiment_id}@{revision}" if revision else experiment_id


def head_run_tags(block: list[str], version: str) -> dict[str, str]:
    """Tags of a head run over the partition range ``block`` for extractor ``version``."""
    return {EXTRACTOR_TAG: version, RANGE_START: block[0], RANGE_END: block[-1]}


def _run_keys(tags, order: list[str]) -> list[str]:
    """The partitions a head run covers, from its tags (``order``: every partition, in order)."""
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    start, end = tags.get(RANGE_START), tags.get(RANGE_END)
    if start in order and end in order:
        return order[order.index(start): order.index(end) + 1]
    return []


def plan_heads(instance: dg.DagsterInstance, state: HeadState, version: str,
               wait_for_retrain: bool = True, requested: frozenset[str] = frozenset()) -> HeadPlan:
    """Plan head runs for extractor ``version`` from the registry state and the instance's live runs.

    ``requested``: tokens (:func:`head_token`) of experiments whose runs for ``version`` the caller
    has already asked for (the sensor's cursor) but that may not be in flight yet; they are not
    planned again.

    With ``wait_for_retrain`` (the sensor), nothing is started while a retrain
    is in flight: its new extractor would make the heads stale at once. The
    command line fits on the current extractor regardless.
    """
    known = instance.get_dynamic_partitions(EXPERIMENT_PARTITIONS)
    new = [e for e in state.registry if e not in set(known)]
    order = [*known, *new]
    asked = {e for e in state.registry if head_token(state, e) in requested}
    taken: set[str] = set(asked)
    retrain_run, reporting = None, False
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT)):
        run = record.dagster_run
        if not is_alive(run.tags):
            continue
        if run.job_name == "retrain_job":
            retrain_run = run.run_id
        elif run.job_name == "report_job":
            reporting = True
        elif run.job_name == "head_job" and run.tags.get(EXTRACTOR_TAG) == version:
            taken.update(_run_keys(run.tags, order))
    stale = state.stale(version)
    in_flight = [e for e in stale if e in taken and e not in asked]
    todo = [e for e in stale if e not in taken]
    waiting = wait_for_retrain and retrain_run is not None
    runs = [] if waiting else contiguous_blocks(order, todo)
    report_due = not stale and not waiting and not reporting and state.report_version != version
    tokens = {e: head_token(state, e) for block in runs for e in block}
    return HeadPlan(version, new, runs, in_flight, retrain_run, report_due, tokens)


def contiguous_blocks(order: list[str], wanted: list[str]) -> list[list[str]]:
    """Split ``wanted`` keys into runs of neighbours in ``order`` (a partition range per run).

    ``order``: all partition keys in the instance's order; keys of ``wanted``
    missing from ``order`` are left out.
    """
    wanted_set = set(wanted)
    blocks: list[list[str]] = []
    current: list[str] = []
    for key in order:
        if key in wanted_set:
            current.append(key)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks
