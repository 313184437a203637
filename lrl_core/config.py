"""Configuration of the LR-learner: every hyperparameter in one typed dataclass."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class LRLConfig:
    """Hyperparameters of the LR-learner and its training loop.

    The defaults are chosen to work untuned from a few thousand to millions
    of exposure rows; early stopping on a validation split sets the number
    of epochs, so ``max_epochs`` is only a ceiling.
    """

    d: int = 32
    """Embedding dimension of ``v(x)``, the arm embeddings and the metric operators."""
    extractor: Literal["mlp", "linear"] = "mlp"
    """``"linear"``: ``v(x) = W x + b`` (the paper's synthetic study); ``"mlp"``: two layers with ReLU."""
    hidden: int = 64
    """Width of the hidden layer of the MLP extractor."""
    lr: float = 3e-3
    """Adam's learning rate."""
    weight_decay: float = 100.0
    """L2 penalty ``lambda`` of the summed objective ``sum (y - y_hat)^2 + lambda ||theta||^2``
    over observed standardised outcomes: a fixed prior, so its weight relative to
    the data falls as rows are added. 100 was the best or near-best of
    0 / 10 / 30 / 100 / 300 / 1000 on planted problems from 4,000 to 530,000
    rows with 142 features; 30 was better with 16 features and 4,000 rows."""
    batch_size: int = 8192
    """Largest minibatch; small data sets get smaller ones (see ``min_steps_per_epoch``)."""
    max_epochs: int = 300
    patience: int = 20
    """Epochs without validation improvement before training stops; the best epoch is restored."""
    min_steps_per_epoch: int = 8
    """Small data sets get batches no larger than rows / this, so each epoch takes several steps."""
    val_fraction: float = 0.1
    """Share of units held out for early stopping when no validation rows are given."""
    seed: int = 0
    device: str | None = None
    """``None``: ``LRL_DEVICE`` if set, else CUDA when available, else CPU."""
    progress: bool = True
    """Show a progress line per epoch on long fits."""

    def replace(self, **changes) -> "LRLConfig":
        """Return a copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain-JSON form, for the artifact's ``model.json``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "LRLConfig":
        """Inverse of :meth:`to_dict`; unknown keys (from newer versions) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
