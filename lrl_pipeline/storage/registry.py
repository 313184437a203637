"""What the automation needs to know: which experiments lack a head on the current extractor.

Shared by the sensor and the command-line runner so both plan the same
work. Everything here reads; nothing writes.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb

from lrl_pipeline.raw import table_exists

__all__ = ["HeadState", "read_head_state", "is_partition_key", "contiguous_blocks"]

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
    if not table_exists(con, "raw", "experiments"):
        raise LookupError("raw.experiments does not exist yet")
    ids = con.execute(
        "SELECT CAST(experiment_id AS VARCHAR) FROM raw.experiments WHERE experiment_id IS NOT NULL ORDER BY rowid"
    ).fetchall()
    registry = [e for e in dict.fromkeys(row[0] for row in ids) if is_partition_key(e)]
    head_versions: dict[str, str] = {}
    if table_exists(con, "pipeline", "head_status"):
        found = con.execute("SELECT experiment_id, extractor_version FROM pipeline.head_status").fetchall()
        head_versions = dict(found)
    report_version = None
    if table_exists(con, "pipeline", "evaluation"):
        found = con.execute("SELECT max(extractor_version) FROM pipeline.evaluation").fetchall()
        report_version = found[0][0]
    return HeadState(registry, head_versions, report_version)


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
