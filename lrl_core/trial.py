"""One configuration's resumable training run, and the fixed batches it trains on.

:class:`_Trial` advances an epoch at a time so that model selection
(:mod:`lrl_core.selection`) can pause and resume it; :class:`_Batches` lays
exposure rows out for it. :class:`lrl_core.training.LRLearner` builds both.

The feature matrix goes to the device once and is never copied: on a CPU
the training tensor *is* the caller's ``X`` (``torch.from_numpy``), on CUDA
one device copy of ``X`` when it fits (else batches are gathered on the host).
The training rows are shuffled once, in one seeded permutation, and cut into
fixed batches that hold only row indices, standardised outcomes and the
arm-page layout; every step gathers its batch's feature rows into one
preallocated buffer (``index_select(out=)``: no allocation per step), and
every epoch visits the batches in a fresh seeded order. Shuffling once
converges at the rate of reshuffling every epoch (Mishchenko et al. 2020,
"Random Reshuffling: Simple Analysis with Vast Improvements"). At the
paper's real-data scale (5.3M rows, 142 features) a gathered copy of the
training rows would add about 2.7 GB to the caller's 3 GB ``X``.

The schedule (:class:`_Trial`) counts its patience in optimizer
steps, not epochs, and halves the learning rate on plateaus; see
:class:`lrl_core.config.LRLConfig` for the measurements behind it.
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .config import LRLConfig
from .distributed import DataParallel
from .model import LowRankNet, arm_pages, page_rows_for

SMALL_STEP_MACS = 32_000_000
"""Below this many multiply-adds per forward pass of the extractor, a CPU
training step runs on one thread: such steps take microseconds, and waking
OpenMP workers costs more than it saves (on a busy machine, 50 times more)."""


@contextmanager
def _intra_op_threads(n: int | None) -> Iterator[None]:
    """Temporarily cap torch's intra-op threads at ``n`` (``None``: leave them), restoring on exit."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(min(n, before))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class _Batches:
    """Rows in batch order, cut into fixed batches with their arm-page layout.

    Features stay in ``features`` (shared, never copied): ``rows`` says which
    row of it each exposure row reads, and each step gathers its batch into
    ``buffer`` (shared by the training and validation batches).
    """

    features: torch.Tensor  # (n, p) float32 ``X``, on the device or, when it does not fit there, the CPU
    rows: torch.Tensor  # (r,) int64 row of ``features`` of each exposure row, on the same device
    buffer: torch.Tensor  # (largest batch, p) float32 on the same device, overwritten every step
    y: torch.Tensor  # (r, J) standardised outcomes, 0 where unobserved
    mask: torch.Tensor  # (r, J) 1.0 where observed
    slots: torch.Tensor  # (r,) position of each row in its batch's page grid
    page_arms: torch.Tensor  # (n_batches, max_pages)
    page_rows: int
    bounds: list[tuple[int, int]]
    observed: list[float]  # observed entries per batch: the loss denominator
    n_observed: float


def device_features(X: np.ndarray, device: torch.device) -> torch.Tensor:
    """``X`` as a tensor without a copy on the CPU; on CUDA, copied to ``device`` once if it fits."""
    with warnings.catch_warnings():
        # Read-only arrays (e.g. memory maps) are fine: training never writes to X.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        features = torch.from_numpy(X)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # Leave half the free memory to activations, the optimizer and other processes.
        if X.nbytes < free // 2:
            return features.to(device)
    elif device.type != "cpu":
        return features.to(device)
    return features


LAYOUT_ROWS = 1 << 17
"""Rows laid out at a time (rounded down to whole batches, at least one): batches are independent,
so the layout is the same in pieces, and its int64 and float64 temporaries (about 200 bytes a row)
stay near 100 MB instead of 0.8 GB at the paper's 4.2M training rows."""


def lay_out_batches(features, buffer, units, arms, Y, order, batch_size, n_arms: int, y_mean: np.ndarray,
                    y_scale: np.ndarray, device: torch.device) -> _Batches:
    """Lay the rows in ``order`` out in batches and pages, standardise ``Y``, move to ``device`` once."""
    r, n_metrics = order.size, Y.shape[1]
    feature_rows, slots = np.empty(r, dtype=np.int64), np.empty(r, dtype=np.int64)
    y, mask = np.empty((r, n_metrics), dtype=np.float32), np.empty((r, n_metrics), dtype=np.float32)
    page_arms = []
    step = max(1, LAYOUT_ROWS // batch_size) * batch_size
    for s in range(0, r, step):
        part = order[s : s + step]
        pages = arm_pages(arms[part], batch_size, n_arms)
        page_arms.append(pages.page_arms)
        # Within each batch, rows in ascending feature row, each keeping its page slot: the step's
        # gather then walks X forwards, 5x faster than in random order once X outgrows the cache
        # (8,192 of 5.3M rows x 142 floats: 0.18 ms against 0.89 ms, one thread). The loss is a sum
        # over the batch, so the order within it changes nothing else.
        rows = part[pages.order]
        within = np.lexsort((units[rows], np.arange(rows.size) // batch_size))
        rows = rows[within]
        e = s + rows.size
        feature_rows[s:e], slots[s:e] = units[rows], pages.slots[within]
        part_y = Y[rows]
        observed = np.isfinite(part_y)
        y[s:e] = np.where(observed, (part_y - y_mean) / y_scale, 0.0)
        mask[s:e] = observed
    # Chunks may need different numbers of pages a batch: pad with empty pages of arm 0.
    width = max((a.shape[1] for a in page_arms), default=0)
    page_arms = np.concatenate([np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in page_arms]) if page_arms \
        else np.zeros((0, 0), dtype=np.int64)
    bounds = [(s, min(s + batch_size, r)) for s in range(0, r, batch_size)]
    per_row = mask.sum(axis=1, dtype=np.float64)
    return _Batches(
        features=features,
        rows=torch.from_numpy(feature_rows).to(features.device),
        buffer=buffer,
        y=torch.from_numpy(y).to(device),
        mask=torch.from_numpy(mask).to(device),
        slots=torch.from_numpy(slots).to(device),
        page_arms=torch.from_numpy(page_arms).to(device),
        page_rows=page_rows_for(batch_size, n_arms),
        bounds=bounds,
        observed=[float(per_row[s:e].sum()) for s, e in bounds],
        n_observed=float(per_row.sum()),
    )


def patience_epochs(config: LRLConfig, steps_per_epoch: int) -> int:
    """Epochs without validation improvement before stopping, for epochs of ``steps_per_epoch`` steps.

    ``ceil(patience * min_steps_per_epoch / steps_per_epoch)``, at least
    ``min_patience`` and at most ``patience`` (see :class:`lrl_core.config.LRLConfig`).
    """
    by_steps = math.ceil(config.patience * config.min_steps_per_epoch / max(steps_per_epoch, 1))
    return max(1, min(config.patience, max(config.min_patience, by_steps)))


def _squared_error(model: LowRankNet, data: _Batches, b: int, parallel: DataParallel | None = None) -> torch.Tensor:
    """Summed squared error of batch ``b`` over its observed entries (a 0-d tensor); with
    ``parallel``, over this rank's share of the batch's rows only."""
    s, e = data.bounds[b]
    if parallel is None:
        rows, slots, y, mask = data.rows[s:e], data.slots[s:e], data.y[s:e], data.mask[s:e]
    else:
        share = parallel.share(s, e, data.y.device)
        rows, slots, y, mask = (data.rows[share.to(data.rows.device)], data.slots[share], data.y[share],
                                data.mask[share])
    x = torch.index_select(data.features, 0, rows, out=data.buffer[: rows.shape[0]])
    v = model.embed(x.to(data.y.device))
    pred = model.paged_outcomes(v, slots, data.page_arms[b], data.page_rows)
    return (mask * (pred - y).square()).sum()


@torch.no_grad()
def _mean_squared_error(model: LowRankNet, data: _Batches, parallel: DataParallel | None = None) -> float:
    total = torch.zeros((), device=data.y.device)
    for b in range(len(data.bounds)):
        total += _squared_error(model, data, b, parallel)
    if parallel is not None:
        parallel.sum(total)
    return total.item() / data.n_observed


class _Trial:
    """One configuration's training run, advanced an epoch at a time so that selection can pause it.

    Adam until the validation loss stalls for the patience, halving the
    learning rate on the way: ``stale`` counts the epochs since the best one;
    every ``patience // (lr_reductions + 1)`` stale epochs the rate is
    multiplied by ``lr_factor``; after ``patience`` stale epochs (or
    ``max_epochs``) the run is done and :meth:`finish` restores the best epoch.
    """

    def __init__(self, config: LRLConfig, train: _Batches, val: _Batches | None, device: torch.device,
                 n_features: int, n_arms: int, n_metrics: int, batch_size: int, callback,
                 parallel: DataParallel | None = None) -> None:
        self.config, self.train, self.val, self.callback = config, train, val, callback
        self.parallel = parallel
        self.label = f"{config.extractor} d={config.d} weight_decay={config.weight_decay:g}"
        generator = torch.Generator().manual_seed(config.seed)
        self.model = LowRankNet(
            n_features, n_arms, n_metrics, config.d, config.extractor, config.hidden, generator=generator
        ).to(device)
        self.optimizer = self._optimizer(train.n_observed, device)
        self.rng = np.random.default_rng(config.seed)
        self.patience = patience_epochs(config, len(train.bounds))
        self.lr_every = max(1, self.patience // (config.lr_reductions + 1))
        width = config.hidden * (n_features + config.d) if config.extractor == "mlp" else n_features * config.d
        self.threads = 1 if device.type == "cpu" and batch_size * width < SMALL_STEP_MACS else None
        self.history: list[dict] = []
        self.best_loss, self.best_state, self.best_epoch, self.stale, self.done = math.inf, None, 0, 0, False

    @property
    def epochs(self) -> int:
        return len(self.history)

    @property
    def steps(self) -> int:
        return self.epochs * len(self.train.bounds)

    def _optimizer(self, n_observed: float, device: torch.device) -> torch.optim.Optimizer:
        """Adam on ``mean squared error + (weight_decay / n_observed) * ||theta||^2``.

        That is the summed objective ``sum (y - y_hat)^2 + weight_decay ||theta||^2``
        (a fixed Gaussian prior) divided by the number of observed entries, so
        the penalty fades as data grow, as a prior should. AdamW's decoupled
        decay was rejected: it shrinks by ``lr * wd`` per *step*, so its pull
        grows with the steps per epoch, i.e. with the data; measured on
        planted problems, the AdamW decay that helped at 4,000 rows cost 70%
        more PEHE at 530,000 rows than no decay at all. Fused on CPU as on CUDA:
        one kernel per step instead of a dozen small ops per parameter (46 us
        against 129 us a step for the MLP of the scale benchmark).
        """
        cfg = self.config
        return torch.optim.Adam(
            self.model.parameters(), lr=cfg.lr, weight_decay=2 * cfg.weight_decay / n_observed,
            fused=device.type in ("cpu", "cuda"),
        )

    def advance_to(self, steps: int) -> None:
        """Train whole epochs until ``steps`` optimizer steps are done in total, or the run is."""
        with _intra_op_threads(self.threads):
            while not self.done and self.steps < steps:
                self._epoch()

    def finish(self) -> None:
        """Train to the early stop and restore the best epoch."""
        self.advance_to(math.inf)
        self.model.load_state_dict(self.best_state)

    def _epoch(self) -> None:
        cfg, train, model = self.config, self.train, self.model
        started = time.perf_counter()
        total = torch.zeros((), device=train.y.device)
        for b in self.rng.permutation(len(train.bounds)):
            squared = _squared_error(model, train, b, self.parallel)
            self.optimizer.zero_grad(set_to_none=True)
            # Divided by the whole batch's count on every rank: summed over ranks, the batch's gradient.
            (squared / train.observed[b]).backward()
            if self.parallel is not None:
                self.parallel.sum_gradients(model.parameters())
            self.optimizer.step()
            total += squared.detach()
        if self.parallel is not None:
            self.parallel.sum(total)
        # One host synchronisation per epoch, never per step.
        train_loss = total.item() / train.n_observed
        val_loss = _mean_squared_error(model, self.val, self.parallel) if self.val is not None else train_loss
        epoch = self.epochs + 1
        record = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                  "seconds": time.perf_counter() - started, "candidate": self.label}
        self.history.append(record)
        if self.callback is not None:
            self.callback(record)
        # A relative tolerance keeps float noise from resetting the patience.
        if val_loss < self.best_loss * (1 - cfg.tol) or self.best_state is None:
            self.best_loss, self.stale, self.best_epoch = val_loss, 0, epoch
            self.best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
        else:
            self.stale += 1
            if self.stale % self.lr_every == 0:
                for group in self.optimizer.param_groups:
                    group["lr"] *= cfg.lr_factor
        self.done = self.stale >= self.patience or epoch >= cfg.max_epochs
