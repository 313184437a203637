"""The experiment registry and which extractor each experiment's head is on: what the planner reads.

Everything here reads; nothing writes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from lrl_pipeline.storage.raw import experiment_ids, table_exists
from lrl_pipeline.storage.tables import utc_now

__all__ = ["HeadState", "read_head_state", "is_partition_key", "changed_arms", "record_validated_arms"]

# Dagster refuses these in partition keys (dagster's INVALID_PARTITION_SUBSTRINGS);
# validate_raw quarantines such ids anyway.
_BAD_KEY_PARTS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")


_ARMS_PER_EXPERIMENT = ("SELECT CAST(experiment_id AS VARCHAR) AS experiment_id, "
                        "count(DISTINCT CAST(arm AS VARCHAR)) AS arms FROM raw.exposures "
                        "WHERE experiment_id IS NOT NULL AND ({}) GROUP BY 1")
_ALL, _IN_KEYS = "true", "CAST(experiment_id AS VARCHAR) IN (SELECT unnest(?::VARCHAR[]))"
_CHANGED = ("SELECT r.experiment_id, r.arms FROM ({}) r JOIN pipeline.validated_arms v USING (experiment_id) "
            "WHERE r.arms <> v.arms")
_CHANGED_ARMS = _CHANGED.format(_ARMS_PER_EXPERIMENT.format(_ALL))
_CHANGED_ARMS_OF = _CHANGED.format(_ARMS_PER_EXPERIMENT.format(_IN_KEYS))
_RECORD = "INSERT INTO pipeline.validated_arms SELECT experiment_id, arms, ? FROM ({})"
_RECORD_ARMS = _RECORD.format(_ARMS_PER_EXPERIMENT.format(_ALL))
_RECORD_ARMS_OF = _RECORD.format(_ARMS_PER_EXPERIMENT.format(_IN_KEYS))
_DELETE_ARMS_OF = f"DELETE FROM pipeline.validated_arms WHERE {_IN_KEYS}"


def is_partition_key(experiment_id: str) -> bool:
    """Whether an experiment id can name a Dagster partition."""
    return bool(experiment_id.strip()) and not any(part in experiment_id for part in _BAD_KEY_PARTS)


@dataclass(frozen=True)
class HeadState:
    """Registry experiments and the extractor version each one's head was last fitted on.

    ``registry``: ids in ``raw.experiments`` (first appearance order, each
    once, only those usable as partition keys); ``head_versions``: experiment
    -> extractor version of its last head run (fitted or quarantined);
    ``report_version``: extractor version of the last evaluation report;
    ``changed``: validated experiments whose raw rows now have another number of
    arms than when they were validated (an arm launched since) -> that number.
    """

    registry: list[str]
    head_versions: dict[str, str]
    report_version: str | None
    changed: dict[str, int] = field(default_factory=dict)

    def stale(self, version: str) -> list[str]:
        """Registry experiments whose head was not (re)fitted on ``version``, or whose arms changed
        since their rows were validated, registry order."""
        return [e for e in self.registry if self.head_versions.get(e) != version or e in self.changed]

    def revision(self, experiment_id: str) -> str:
        """What tells this state of the experiment's rows from an earlier one: ``""``, or the
        number of arms it has grown to (``"arms=3"``)."""
        n = self.changed.get(experiment_id)
        return "" if n is None else f"arms={n}"


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
    return HeadState(registry, head_versions, report_version, changed_arms(con))


def changed_arms(con: duckdb.DuckDBPyConnection, keys: list[str] | None = None) -> dict[str, int]:
    """Validated experiments (of ``keys``; default all) whose raw exposures now hold another number
    of distinct arms than when they were validated -> that number."""
    if not (table_exists(con, "pipeline", "validated_arms") and table_exists(con, "raw", "exposures")):
        return {}
    if keys is None:
        return dict(con.execute(_CHANGED_ARMS).fetchall())
    return dict(con.execute(_CHANGED_ARMS_OF, [keys]).fetchall())


def record_validated_arms(con: duckdb.DuckDBPyConnection, keys: list[str] | None = None) -> None:
    """Remember how many distinct arms the raw exposures of experiments ``keys`` (default: all,
    replacing the table) had when they were validated."""
    if keys is None:
        con.execute("DELETE FROM pipeline.validated_arms")
        con.execute(_RECORD_ARMS, [utc_now()])
    else:
        con.execute(_DELETE_ARMS_OF, [keys])
        con.execute(_RECORD_ARMS_OF, [utc_now(), keys])
