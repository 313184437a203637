"""Data-parallel training over ``torch.distributed`` ranks (issue 16): every rank takes a share of
every batch, and the gradients are summed across ranks before each optimizer step.

The pooled model trains on fixed batches (:mod:`lrl_core.trial`). With ``W``
ranks, rank ``r`` computes the squared error of rows ``r, r + W, r + 2W, ...``
of each batch, divided by the batch's *global* count of observed entries;
summing those gradients over the ranks (``all_reduce``, the collective
``DistributedDataParallel`` is built on) gives exactly the single-process
gradient of the whole batch. Every rank then takes the same Adam step from
the same state, so the ranks stay identical without broadcasting weights,
and the fit equals the single-process fit with the same global batch size
up to the order of floating-point sums. Losses are summed the same way, so
early stopping, model selection and the jackknife decide alike on every rank.

``DistributedDataParallel`` itself is not used: it syncs gradients through
hooks prepared by the wrapped module's ``forward``, and the model is called
through its paged-outcome methods instead; the explicit ``all_reduce`` after
``backward`` is the same collective, without the wrapper.

Backends: gloo on CPUs, NCCL on GPUs (:func:`from_environment` picks).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DataParallel", "from_environment", "local_rank"]


@dataclass(frozen=True)
class DataParallel:
    """This process's place among ``world`` ranks of an initialised process group."""

    rank: int
    world: int

    def share(self, start: int, end: int, device: torch.device) -> torch.Tensor:
        """Positions of this rank's rows among rows ``start:end`` of a batch (every ``world``-th)."""
        return torch.arange(start + self.rank, end, self.world, device=device)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks, in place (returned for chaining)."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sum_gradients(self, parameters) -> None:
        """Sum every parameter's gradient over the ranks (parameters without one get zeros, so
        every rank takes part in the same collectives)."""
        for parameter in parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)

    def gather(self, value: float) -> list[float]:
        """``value`` of every rank, in rank order."""
        out = [0.0] * self.world
        dist.all_gather_object(out, value)
        return out


def from_environment(device: torch.device | None = None) -> DataParallel:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...):
    gloo on a CPU, NCCL on CUDA. Returns this rank's :class:`DataParallel`."""
    if not dist.is_initialized():
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DataParallel(rank=dist.get_rank(), world=dist.get_world_size())


def local_rank() -> int:
    """This process's rank on its machine (``LOCAL_RANK``; 0 outside ``torchrun``)."""
    return int(os.environ.get("LOCAL_RANK", "0"))
