"""The failures ``lrl`` expects, which it shows as one line instead of a traceback."""
from __future__ import annotations

import sys


class CLIError(Exception):
    """An expected failure; its message is shown to the user as one line."""


def is_pipeline_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the runner's ``PipelineError``, whose message says what to do."""
    # Only a loaded runner can have raised its PipelineError; looking it up
    # here avoids importing Dagster just to classify an error.
    runner = sys.modules.get("lrl_pipeline.runner")
    return runner is not None and isinstance(exc, runner.PipelineError)
