"""The experiment registry and which extractor each experiment's head is on: what the planner reads.

Everything here reads; nothing writes.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb

from lrl_pipeline.storage.raw import experiment_ids, table_exists

__all__ = ["HeadState", "read_head_state", "is_partition_key"]

# Dagster refuses these in partition keys (dagster's INVALID_PARTITION_SUBSTRINGS);
# validate_raw quarantines such ids anyway.
_BAD_KEY_PARTS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")


def is_partition_key(experiment_id: str) -> bool:
    """Whether an experiment id can name a Dagster partition."""
    return bool(experiment_id.strip()) and not any(part in experiment_id for part in _BAD_KEY_PARTS)


@dataclass(frozen=True)
class HeadState:
    """Registry experiments and the extractor version each one's head was last fitted on.

    ``registry``: ids in ``raw.experiments`` (first appearance order, each
    once, only those usable as partition keys); ``head_versions``: experiment
    -> extractor version of its last head run (fitted or quarantined);
    ``report_version``: extractor version of the last evaluation report.
    """

    registry: list[str]
    head_versions: dict[str, str]
    report_version: str | None

    def stale(self, version: str) -> list[str]:
        """Registry experiments whose head was not (re)fitted on ``version``, registry order."""
        return [e for e in self.registry if self.head_versions.get(e) != version]


def read_head_state(con: duckdb.DuckDBPyConnection) -> HeadState:
    """Read the registry, head status and report version (``LookupError`` without ``raw.experiments``)."""
    registry = [e for e in dict.fromkeys(experiment_ids(con)) if is_partition_key(e)]
    head_versions: dict[str, str] = {}
    if table_exists(con, "pipeline", "head_status"):
        found = con.execute("SELECT experiment_id, extractor_version FROM pipeline.head_status").fetchall()
        head_versions = dict(found)
    report_version = None
    if table_exists(con, "pipeline", "evaluation"):
        found = con.execute("SELECT max(extractor_version) FROM pipeline.evaluation").fetchall()
        report_version = found[0][0]
    return HeadState(registry, head_versions, report_version)
