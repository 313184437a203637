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

    d: int | None = None
    """Embedding dimension of ``v(x)``, the arm embeddings and the metric operators;
    ``None``: chosen on the validation split from :data:`lrl_core.selection.SEARCH_SPACE`."""
    extractor: Literal["mlp", "linear"] | None = None
    """``"linear"``: ``v(x) = W x + b`` (the paper's synthetic study); ``"mlp"``: two layers
    with ReLU; ``None``: chosen on the validation split."""
    hidden: int = 64
    """Width of the hidden layer of the MLP extractor."""
    lr: float = 3e-3
    """Adam's learning rate."""
    weight_decay: float | None = None
    """L2 penalty ``lambda`` of the summed objective ``sum (y - y_hat)^2 + lambda ||theta||^2``
    over observed standardised outcomes: a fixed prior, so its weight relative to
    the data falls as rows are added; ``None``: chosen on the validation split. No
    single value serves every world: the old fixed default of 100 (best on noisy
    planted problems) gave 15-20x the PEHE of 1 on the paper's nearly noiseless
    Algorithm 2 world (benchmarks/README.md)."""
    batch_size: int = 8192
    """Largest minibatch; small data sets get smaller ones (see ``min_steps_per_epoch``)."""
    max_epochs: int = 1000
    """A ceiling only: early stopping decides. Weakly penalised fits of small data need
    several hundred epochs (the paper's world at 25 units per arm: 445)."""
    patience: int = 20
    """Patience of early stopping, counted in optimizer steps but expressed in epochs of
    the smallest data sets (``min_steps_per_epoch`` steps each): training stops after
    ``ceil(patience * min_steps_per_epoch / steps per epoch)`` epochs without validation
    improvement, at least ``min_patience`` and at most ``patience`` (which wins a
    conflict); the best epoch is restored. See :meth:`LRLearner.patience_epochs`.
    Steps, not epochs: an epoch of 517 steps (5.3M rows) gives the optimizer as much
    news as 65 epochs of 8 steps. 20 keeps the old patience of 20 epochs on small data
    and gives 4 epochs at 424,000 training rows (52 steps). Measured on
    ``nonlinear_synthetic(53, 5000, 142, 5, seed=0)`` split by unit (424k training
    rows), the old schedule (20 epochs, constant rate) vs this one (with
    ``min_patience=4``, ``lr_reductions=1``): 175 vs 67 epochs, 267 vs 78 s, best
    validation MSE 0.0933 vs 0.0926, PEHE 0.140 vs 0.127; the old schedule cut at 67
    epochs: 0.0950, PEHE 0.152. Seed 1: 80 epochs, 0.0919, PEHE 0.123."""
    min_patience: int = 4
    """Fewest epochs without validation improvement before training stops, whatever
    the steps per epoch: validation is only seen once an epoch, and two stale epochs
    per learning rate (see ``lr_reductions``) guard against one noisy evaluation. A
    floor of 6 at 424k rows: 76 epochs, validation MSE 0.0924, PEHE 0.126 (4: 67,
    0.0926, 0.127)."""
    lr_reductions: int = 1
    """Learning-rate reductions within the patience: the rate is multiplied by
    ``lr_factor`` after every ``patience // (lr_reductions + 1)`` epochs without
    improvement, and training stops after ``patience`` of them; the reductions
    persist, so the rate anneals over successive plateaus. A constant rate stalls
    well above the optimum (the old runs sat at 0.0948 from epoch 60 to 100 at 424k
    rows). 3 reductions halve too early: at 424k rows 59 epochs, validation MSE
    0.0931, PEHE 0.131; on demo-size data (``nonlinear_synthetic(19, 1100, 20, 5,
    overlap=0.1, missing_metric_rate=0.1, feature_missing_rate=0.05, seed=1)``,
    37k training rows, seeds 0-2) validation MSE 0.1547 vs 0.1539 for the old
    schedule. 1 reduction: 0.1531 (PEHE 0.284 vs 0.287), in 290-300 epochs instead
    of 190-205 (under 30 s). 0 restores the old constant-rate schedule on data of
    ``min_steps_per_epoch`` steps per epoch."""
    lr_factor: float = 0.5
    """Factor of each learning-rate reduction: the usual halving, not tuned."""
    tol: float = 1e-4
    """Relative improvement of the validation loss that counts as one, so that float noise
    does not reset the patience: the value the loop always used. In the 424k-row run
    above, the gains after epoch 30 come in relative steps of 1e-4 to 2e-2 while the
    rate anneals, so a tolerance of 1e-3 would cut that annealing short; not tuned."""
    min_steps_per_epoch: int = 8
    """Small data sets get batches no larger than rows / this, so each epoch takes several steps."""
    selection_rung_steps: int = 600
    """Optimizer steps every candidate gets in the first rung of successive halving
    (at least one epoch); each later rung doubles the budget and keeps the better half.
    See :mod:`lrl_core.selection`."""
    interval_refits: int = 2
    """Refits of the chosen configuration for the jackknife of the CATE standard errors
    (:mod:`lrl_core.uncertainty`); 0 leaves the extractor's own error out of them."""
    interval_drop: float = 0.1
    """Share of the training units each jackknife refit leaves out."""
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
