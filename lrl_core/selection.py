"""Model selection for the LR-learner: successive halving over a small grid, on validation loss.

No fixed configuration serves every world (benchmarks/README.md, "Defaults"):
the paper's nearly noiseless linear world wants a linear extractor, ``d`` of
at least its true rank and a weak penalty; a noisy nonlinear world wants an
MLP and a stronger one. So the fields of :class:`~lrl_core.config.LRLConfig`
that the user leaves unset (``None``) are chosen here, and a field the user
sets is never searched.

Cost: every candidate trains in the same loop as a plain fit, paused between
rungs (Jamieson and Talwalkar 2016, "Non-stochastic best arm identification
and hyperparameter optimization"). Rung ``r`` gives each surviving candidate
``selection_rung_steps * 2**r`` optimizer steps in total (at least ``r + 1``
epochs), ranks them by their best validation loss so far, and keeps the
better half; the last one trains to its own early stop. With 12 candidates
that is about 16 first-rung budgets before the winner runs alone: on large
data a rung is an epoch and the whole search costs a fraction of the
winner's own fit; on small data, where fits take seconds, about twice it.

Early rungs favour candidates that learn fast; a slow starter that would
win at convergence can be cut. The rungs double so that the last cut is
made with a quarter of a typical small-data fit behind every finalist.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Protocol

from .config import LRLConfig

__all__ = ["SEARCH_SPACE", "candidate_configs", "successive_halving", "Trial"]

SEARCH_SPACE: dict[str, tuple] = {
    "extractor": ("linear", "mlp"),
    "d": (16, 32),
    "weight_decay": (1.0, 10.0, 100.0),
}
"""Values tried for each field left unset. ``d``: 16 serves latent structure of
low rank (a nonlinear rank-8 world: PEHE 0.040 at d = 16, 0.055 at 32), 32
the paper's rank-32 world (d = 16 cannot represent it: PEHE 0.75 against
0.005 with 100 units per arm); 8 learned too slowly to survive the first rung.
The penalties span nearly noiseless (1) to very noisy (100) metrics."""


class Trial(Protocol):
    """What successive halving needs of a candidate's training run."""

    config: LRLConfig
    best_loss: float
    done: bool
    steps: int
    epochs: int

    def advance_to(self, steps: int) -> None: ...

    def finish(self) -> None: ...


def candidate_configs(config: LRLConfig) -> list[LRLConfig]:
    """Every completion of ``config``'s unset (``None``) searchable fields from :data:`SEARCH_SPACE`.

    A fully specified ``config`` gives ``[config]``: nothing is searched.
    """
    free = [name for name in SEARCH_SPACE if getattr(config, name) is None]
    return [config.replace(**dict(zip(free, values)))
            for values in itertools.product(*(SEARCH_SPACE[name] for name in free))]


def successive_halving(trials: Sequence[Trial], first_rung_steps: int,
                       steps_per_epoch: int) -> tuple[Trial, list[dict]]:
    """Run ``trials`` in rungs of doubling budgets, keeping the better half each time; finish the winner.

    Returns the winner (finished: trained to its early stop, best epoch
    restored) and one row per trial, in the given order: ``extractor``, ``d``,
    ``weight_decay``, ``val_loss`` (best so far), ``epochs`` trained, ``rung``
    it was last trained in, and ``chosen``. The winner has the lowest
    validation loss of all: a cut trial was worse than every survivor when cut.
    """
    if not trials:
        raise ValueError("no candidate to train")
    alive = list(trials)
    rung_of = {id(t): 0 for t in trials}
    rung, budget = 0, max(first_rung_steps, steps_per_epoch)
    while len(alive) > 1:
        for trial in alive:
            trial.advance_to(max(budget, (rung + 1) * steps_per_epoch))
            rung_of[id(trial)] = rung
        alive = sorted(alive, key=lambda t: t.best_loss)[: math.ceil(len(alive) / 2)]
        rung, budget = rung + 1, budget * 2
    winner = alive[0]
    winner.finish()
    rung_of[id(winner)] = rung
    return winner, [{
        "extractor": t.config.extractor, "d": t.config.d, "weight_decay": t.config.weight_decay,
        "val_loss": t.best_loss, "epochs": t.epochs, "rung": rung_of[id(t)], "chosen": t is winner,
    } for t in trials]
