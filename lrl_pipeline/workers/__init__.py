"""Processes the pipeline launches outside Dagster's own (through a Pipes client): data-parallel training."""
