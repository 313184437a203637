"""The ``lrl`` command: the user's front door to the pipeline (see CONTRACT.md).

Every command resolves the database (``--db``, else ``LRL_DUCKDB_PATH``, else
``data/lrl.duckdb`` under the working directory) and points ``DAGSTER_HOME`` at
the project's instance before anything runs, so runs started here show in the
UI. Expected failures print one line saying what to do and exit non-zero.

``main`` is the console script's entry point; the modules of this package each
hold one part of the command (see their docstrings).
"""
from __future__ import annotations

from lrl_pipeline.cli.demo import DEMO_SHAPE, demo_pehe
from lrl_pipeline.cli.errors import CLIError
from lrl_pipeline.cli.main import build_parser, main

__all__ = ["CLIError", "DEMO_SHAPE", "build_parser", "demo_pehe", "main"]
