"""One dynamic partition per experiment: the sensor adds them as experiments launch."""
from __future__ import annotations

import dagster as dg

__all__ = ["experiment_partitions", "EXPERIMENT_PARTITIONS"]

EXPERIMENT_PARTITIONS = "experiment"

experiment_partitions = dg.DynamicPartitionsDefinition(name=EXPERIMENT_PARTITIONS)
