"""The training assets' run config (lrl_pipeline/assets/training.py)."""
from __future__ import annotations

import io
import sys

from lrl_pipeline.assets.training import TrainingConfig


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_epoch_bar_shows_at_a_terminal_and_stays_out_of_log_files(monkeypatch):
    """Issue 12 item 3: `lrl retrain` at a terminal shows training epochs; runs logging to files do not."""
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert TrainingConfig().lrl_config().progress is True
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    config = TrainingConfig(d=8).lrl_config()
    assert config.progress is False and config.d == 8
